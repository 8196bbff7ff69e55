"""One-step models (diffusion.one_step): the permutation-invariant instance loss, the one-step objective learning,
and `ldmseg distill` (labels or a teacher's predictions) giving a pipeline that serves one deterministic call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_multitask import tiny_multitask_pipeline

from ldmseg.cli import main
from ldmseg.diffusion.one_step import OneStepObjective, canonical_targets, instance_loss, matched_targets
from ldmseg.models.denoiser import task_prediction
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.training.teacher import TeacherTargets


def two_segment_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """GT ids (left half 1, right half 2, a VOID row) and log-probs where channel 5 covers the left, 9 the right."""
    ids = torch.ones(1, 8, 8, dtype=torch.long)
    ids[:, :, 4:] = 2
    ids[:, 0] = 0
    logits = torch.full((1, 16, 8, 8), -4.0)
    logits[0, 5, :, :4] = 4.0
    logits[0, 9, :, 4:] = 4.0
    return ids, logits.log_softmax(1)


def test_each_segment_is_matched_to_the_id_channel_that_covers_it() -> None:
    ids, log_probs = two_segment_scene()
    target, pairs = matched_targets(log_probs, ids)
    assert set(target[0, 1:, :4].unique().tolist()) == {5} and set(target[0, 1:, 4:].unique().tolist()) == {9}
    assert (target[0, 0] == 0).all()  # VOID stays VOID
    assert sorted(pairs[0][1].tolist()) == [5, 9]


def test_the_instance_loss_does_not_depend_on_which_ids_the_ground_truth_uses() -> None:
    ids, log_probs = two_segment_scene()
    renamed = torch.where(ids == 1, 14, torch.where(ids == 2, 3, ids))
    swapped = torch.where(ids == 1, 2, torch.where(ids == 2, 1, ids))
    losses = [float(instance_loss(log_probs, gt)[0]) for gt in (ids, renamed, swapped)]
    assert losses == pytest.approx([losses[0]] * 3)
    merged = torch.where(ids == 2, 1, ids)  # a prediction that splits what GT calls one segment scores worse
    assert float(instance_loss(log_probs, merged)[0]) > losses[0] + 0.5


def test_canonical_ids_number_segments_in_raster_order_whatever_ids_the_ground_truth_uses() -> None:
    ids = torch.tensor([[[0, 7, 7], [3, 3, 9], [3, 9, 9]]])
    target, pairs = canonical_targets(ids)
    assert target.tolist() == [[[0, 1, 1], [2, 2, 3], [2, 3, 3]]]
    assert torch.equal(canonical_targets(torch.where(ids == 7, 40, ids))[0], target)  # ids renamed: same target
    assert pairs[0][1].tolist() == [1, 2, 3] and pairs[0][0].sum(1).tolist() == [2, 3, 3]
    decoded = torch.randn(1, 8, 3, 3)
    loss, logs = instance_loss(decoded, ids, canonical=True)
    assert torch.isfinite(loss) and set(logs) == {"ce/instances", "dice/instances"}


def test_the_one_step_objective_learns_a_fixed_batch() -> None:
    """The loss through the frozen decoders falls when the denoiser is fitted to one batch (every task)."""
    pipe = tiny_multitask_pipeline()
    torch.manual_seed(0)
    with torch.no_grad():  # random tiny decoders barely depend on their latents: sharpen their logits
        for ae in (pipe.mask_autoencoder, pipe.semantic_autoencoder):
            ae.decoder[-1].weight.mul_(30)
    aes = {"instances": pipe.mask_autoencoder, "semantic": pipe.semantic_autoencoder, "depth": pipe.depth_autoencoder}
    objective = OneStepObjective(self_condition=bool(pipe.config.self_condition)).attach(aes, {t: 0.5 for t in aes})
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    ids = torch.ones(6, 32, 32, dtype=torch.long)
    ids[:, :, 16:] = 2
    semantic = torch.ones(6, 32, 32, dtype=torch.long)
    semantic[:, 16:] = 3
    depth = torch.linspace(0, 1, 32).expand(6, 32, 32).contiguous()
    labels = {"ids": ids, "semantic": semantic, "depth": depth}
    tasks = torch.tensor([0, 0, 1, 1, 2, 2])
    params = [*pipe.unet.parameters(), *pipe.image_encoder.parameters(), *pipe.task_embeddings.parameters()]
    optimiser = torch.optim.Adam(params, lr=3e-3)
    names = pipe.task_embeddings.tasks

    def loss() -> torch.Tensor:
        z_img = pipe.image_encoder.encode(images)
        tokens = pipe.task_embeddings(tasks)
        denoise = lambda x, t: task_prediction(pipe.unet, x, t, tokens, tasks, 4)  # noqa: E731
        groups = {name: tasks == k for k, name in enumerate(names)}
        return objective(denoise, torch.zeros(6, 4, 4, 4), z_img, None, groups, labels=labels)

    first = loss()[1]
    for _ in range(30):
        optimiser.zero_grad()
        loss()[0].backward()
        optimiser.step()
    last = loss()[1]
    assert last["loss/instances"] < 0.6 * first["loss/instances"]
    assert last["loss/semantic"] < 0.6 * first["loss/semantic"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one-step")
    tiny_multitask_pipeline().save_pretrained(root / "teacher")
    return root / "teacher"


def test_distill_gives_a_one_step_model_that_serves_one_deterministic_call(tmp_path: Path, teacher_dir: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--model", str(teacher_dir), "--tasks", "instances,semantic,depth", "--out", str(out),
                 "--resolution", "32", "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1",
                 "--val-every", "2", "--val-num", "2", "--checkpoint-every", "2", "--log-every", "1",
                 "--threads", "1"]) == 0
    pipe = LDMSegPipeline.from_pretrained(out / "model")
    assert pipe.config.initial_noise == "zeros" and pipe.config.default_num_inference_steps == 1
    assert pipe.config.final_x0 and pipe.config.default_ensemble_size == 1 and pipe.tasks[-1] == "panoptic"
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    a = pipe(image, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 2  # panoptic = instances + semantic: one UNet call each
    b = pipe(image, generator=torch.Generator().manual_seed(2))
    assert np.array_equal(a.panoptic[0], b.panoptic[0]) and np.array_equal(a.semantic[0], b.semantic[0])


def test_teacher_targets_replace_the_labels_with_the_teachers_predictions(teacher_dir: Path) -> None:
    teacher = LDMSegPipeline.from_pretrained(teacher_dir)
    targets = TeacherTargets(teacher, teacher.task_embeddings.tasks, 32)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    torch.manual_seed(4)
    batch = targets({"image": images, "task": torch.tensor([0, 1, 2])})
    assert batch["ids"].shape == batch["semantic"].shape == batch["depth"].shape == (3, 32, 32)
    torch.manual_seed(4)
    alone = teacher([images[0]], task="instances").panoptic[0]
    assert np.array_equal(batch["ids"][0].numpy(), alone)
    assert set(np.unique(batch["semantic"][1].numpy())) <= {1, 2, 3, 4}
    assert 0 <= float(batch["depth"][2].min()) and float(batch["depth"][2].max()) <= 1


def test_distill_from_a_teacher_reads_unlabelled_images(tmp_path: Path, teacher_dir: Path) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "3", "--resolution", "32"]) == 0
    out = tmp_path / "run"
    assert main(["distill", "--model", str(teacher_dir), "--targets", "teacher", "--tasks", "instances,semantic",
                 "--data", str(tmp_path / "s" / "images"), "--out", str(out), "--resolution", "32", "--batch-size", "2",
                 "--max-steps", "1", "--warmup-steps", "1", "--val-every", "1", "--val-num", "2",
                 "--checkpoint-every", "1", "--threads", "1"]) == 0
    pipe = LDMSegPipeline.from_pretrained(out / "model")
    assert "targets predicted by" in pipe.config.trained_on and pipe.config.initial_noise == "zeros"
    assert main(["distill", "--model", str(teacher_dir), "--targets", "teacher", "--objective", "diffusion",
                 "--out", str(tmp_path / "bad")]) == 2

"""How the denoiser is told its task: task tokens (cross-attention), the optional per-task vectors on the timestep
path and output heads, and the per-task training loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_multitask import tiny_multitask_pipeline

from ldmseg.errors import LDMSegError
from ldmseg.models.denoiser import TaskEmbeddings, add_task_heads, add_task_time_embedding, build_unet, task_prediction
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.training.config import DiffusionConfig


def test_task_embeddings_grow_and_keep_the_trained_tokens() -> None:
    torch.manual_seed(0)
    tokens = TaskEmbeddings(("panoptic",), dim=8)
    assert tokens.tasks == ("instances",)
    grown = tokens.with_tasks(("instances", "depth"))
    assert grown.tasks == ("instances", "depth")
    assert torch.equal(grown.embeddings[0], tokens.embeddings[0])
    assert not torch.equal(grown.embeddings[1], grown.embeddings[0])
    per_example = grown(torch.tensor([1, 0, 1]))
    assert per_example.shape == (3, 1, 8) and torch.equal(per_example[1], tokens.embeddings[0])
    with pytest.raises(LDMSegError, match="no 'semantic' embedding"):
        grown("semantic", 2)


def test_the_objective_logs_each_groups_loss_and_they_add_up_to_the_loss() -> None:
    from ldmseg.diffusion.objective import DiffusionObjective, ObjectiveConfig

    torch.manual_seed(0)
    objective = DiffusionObjective(ObjectiveConfig("sample", "none", 2.0, 0.0, True, "mean"))
    z0, valid = torch.randn(6, 4, 4, 4), torch.rand(6, 32, 32) > 0.3
    tasks = torch.tensor([0, 1, 1, 0, 2, 1])
    groups = {name: tasks == k for k, name in enumerate(("instances", "semantic", "depth"))}
    loss, logs = objective(lambda x, t: x[:, :4] * 0.5, z0, torch.zeros(6, 0, 4, 4), valid, groups)
    by_group = sum(int(sel.sum()) * logs[f"loss/{name}"] for name, sel in groups.items()) / len(tasks)
    assert by_group == pytest.approx(loss.item(), rel=1e-5)  # mean reduction, no weighting: the batch mean


def test_task_vectors_on_the_timestep_path_start_neutral_grow_and_save(tmp_path: Path) -> None:
    from ldmseg.training.diffusion import DiffusionTask, train_diffusion

    unet = build_unet("tiny", 4, 4, 4).eval()
    x, t, tokens = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.randn(2, 1, 32)
    before = unet(x, t, encoder_hidden_states=tokens).sample
    add_task_time_embedding(unet, 2)
    after = unet(x, t, encoder_hidden_states=tokens, class_labels=torch.tensor([0, 1])).sample
    assert torch.equal(before, after)  # new vectors start at zero: the model is unchanged
    with torch.no_grad():
        unet.class_embedding.weight.normal_()
    trained = unet.class_embedding.weight.clone()
    add_task_time_embedding(unet, 3)
    assert torch.equal(unet.class_embedding.weight[:2], trained) and not unet.class_embedding.weight[2].any()
    assert not torch.allclose(unet(x, t, encoder_hidden_states=tokens, class_labels=torch.tensor([0, 1])).sample,
                              unet(x, t, encoder_hidden_states=tokens, class_labels=torch.tensor([1, 0])).sample)
    with pytest.raises(LDMSegError, match="cannot shrink"):
        add_task_time_embedding(unet, 1)

    single = tiny_multitask_pipeline(("instances",))
    single.save_pretrained(tmp_path / "single")
    torch.manual_seed(1)
    MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16).save_pretrained(tmp_path / "sem")
    cfg = DiffusionConfig(out=str(tmp_path / "run"), init_from=str(tmp_path / "single"),
                          semantic_ae=str(tmp_path / "sem"), tasks=("instances", "semantic"),
                          conditioning="task-embedding+time", size=32, batch_size=4, max_steps=2,
                          warmup_steps=1, val_every=2, val_num=2, val_steps=1, checkpoint_every=2, log_every=1,
                          threads=1, self_condition_prob=float(single.config.self_condition))
    task = DiffusionTask(cfg)
    assert task.model.unet.class_embedding.weight.shape[0] == 2 and not task.model.unet.class_embedding.weight.any()
    exported = LDMSegPipeline.from_pretrained(train_diffusion(cfg))
    vectors = exported.unet.class_embedding.weight
    assert vectors.shape[0] == 2 and vectors.abs().sum() > 0  # trained, saved, and loaded back
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    first = exported(image, task="semantic", generator=torch.Generator().manual_seed(0)).semantic[0]
    with torch.no_grad():
        vectors[1] += 50 * torch.randn_like(vectors[1])  # the semantic task's vector is read when sampling it
    second = exported(image, task="semantic", generator=torch.Generator().manual_seed(0)).semantic[0]
    assert not np.array_equal(first, second)


def test_output_heads_start_as_the_shared_head_grow_and_read_each_examples_task() -> None:
    torch.manual_seed(0)
    unet = build_unet("tiny", 4, 4, 4).eval()
    x, t, tokens = torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 900]), torch.randn(3, 1, 32)
    index = torch.tensor([0, 1, 1])
    before = task_prediction(unet, x, t, tokens, index, 4)
    add_task_heads(unet, 2, 4)
    assert unet.config.out_channels == 8 and unet.conv_out.out_channels == 8
    assert torch.equal(task_prediction(unet, x, t, tokens, index, 4), before)  # copies of the shared head
    with torch.no_grad():
        unet.conv_out.weight[4:] += torch.randn_like(unet.conv_out.weight[4:])
    trained = unet.conv_out.weight.clone()
    after = task_prediction(unet, x, t, tokens, index, 4)
    assert torch.equal(after[0], before[0]) and not torch.allclose(after[1:], before[1:])  # head 1 for tasks 1
    add_task_heads(unet, 3, 4)
    assert torch.equal(unet.conv_out.weight[:8], trained) and torch.equal(unet.conv_out.weight[8:], trained[:4])
    with pytest.raises(LDMSegError, match="cannot shrink"):
        add_task_heads(unet, 1, 4)
    with pytest.raises(LDMSegError, match="not a multiple"):
        add_task_heads(unet, 3, 5)


def test_task_heads_fine_tune_save_and_serve_each_task_from_its_head(tmp_path: Path) -> None:
    from ldmseg.training.diffusion import DiffusionTask, train_diffusion

    single = tiny_multitask_pipeline(("instances",))
    single.save_pretrained(tmp_path / "single")
    torch.manual_seed(1)
    MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16).save_pretrained(tmp_path / "sem")
    cfg = DiffusionConfig(out=str(tmp_path / "run"), init_from=str(tmp_path / "single"),
                          semantic_ae=str(tmp_path / "sem"), tasks=("instances", "semantic"), task_heads=True,
                          size=32, batch_size=4, max_steps=2, warmup_steps=1, val_every=2, val_num=2, val_steps=1,
                          checkpoint_every=2, log_every=1, threads=1,
                          self_condition_prob=float(single.config.self_condition))
    task = DiffusionTask(cfg)
    d = single.latent_channels
    head = task.model.unet.conv_out.weight
    assert head.shape[0] == 2 * d and torch.equal(head[d:], head[:d])
    exported = LDMSegPipeline.from_pretrained(train_diffusion(cfg))
    assert exported.unet.config.out_channels == 2 * exported.latent_channels == 2 * d
    trained = exported.unet.conv_out.weight
    assert not torch.equal(trained[d:], trained[:d])  # the heads were trained apart
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    first = exported(image, task="semantic", generator=torch.Generator().manual_seed(0)).semantic[0]
    instances = exported(image, task="instances", generator=torch.Generator().manual_seed(0)).panoptic[0]
    with torch.no_grad():
        exported.unet.conv_out.bias[d:] += 50  # the semantic head is what semantic sampling reads...
    assert not np.array_equal(first, exported(image, task="semantic", generator=torch.Generator().manual_seed(0)
                                              ).semantic[0])
    again = exported(image, task="instances", generator=torch.Generator().manual_seed(0)).panoptic[0]
    assert np.array_equal(instances, again)  # ...and instances sampling does not


def test_task_balance_weights_each_example_by_its_tasks_running_mean_loss() -> None:
    from ldmseg.diffusion.objective import DiffusionObjective, ObjectiveConfig
    from ldmseg.training.stage2_model import Denoiser

    torch.manual_seed(0)
    objective = DiffusionObjective(ObjectiveConfig("sample", "none", 2.0, 0.0, True, "mean"))
    z0, valid = torch.randn(4, 4, 4, 4), torch.ones(4, 32, 32, dtype=torch.bool)

    def loss_with(weights):
        torch.manual_seed(1)
        return objective(lambda x, t: x[:, :4] * 0.5, z0, torch.zeros(4, 0, 4, 4), valid, None, weights)[0]

    assert loss_with(torch.full((4,), 2.0)).item() == pytest.approx(2 * loss_with(None).item(), rel=1e-6)

    tokens = TaskEmbeddings(("instances", "semantic"), dim=32)
    model = Denoiser(build_unet("tiny", 4, 4, 4), torch.nn.Identity(), tokens, objective, 4, task_balance=0.5)
    tasks = torch.tensor([0, 0, 1])
    assert model.balance_weights(tasks) is None  # no running mean yet: plain losses
    logs = {"loss/instances": 1.0, "loss/semantic": 3.0}
    model.update_task_loss_mean(logs)
    assert model.task_loss_mean.tolist() == [1.0, 3.0] and logs["balance/semantic"] == 3.0
    assert model.balance_weights(tasks).tolist() == pytest.approx([5 / 3, 5 / 3, 5 / 9])
    model.update_task_loss_mean({"loss/semantic": 1.0})  # a task absent from the batch keeps its mean
    assert model.task_loss_mean.tolist() == [1.0, 2.0]
    single = Denoiser(build_unet("tiny", 4, 4, 4), torch.nn.Identity(), TaskEmbeddings(("instances",), dim=32),
                      objective, 4, task_balance=0.5)
    assert single.balance_weights(tasks[:2] * 0) is None and "task_loss_mean" not in single.state_dict()


def test_task_balance_trains_and_resumes_exactly(tmp_path: Path) -> None:
    import shutil

    from ldmseg.training import checkpoint
    from ldmseg.training.config import check_config_values
    from ldmseg.training.diffusion import train_diffusion

    single = tiny_multitask_pipeline(("instances",))
    single.save_pretrained(tmp_path / "single")
    torch.manual_seed(1)
    MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16).save_pretrained(tmp_path / "sem")

    def config(out: str, **kw) -> DiffusionConfig:
        return DiffusionConfig(out=str(tmp_path / out), init_from=str(tmp_path / "single"),
                               semantic_ae=str(tmp_path / "sem"), tasks=("instances", "semantic"), task_balance=0.9,
                               size=32, batch_size=4, max_steps=4, warmup_steps=1, val_every=0, checkpoint_every=2,
                               log_every=1, threads=1, self_condition_prob=float(single.config.self_condition), **kw)

    train_diffusion(config("full"))
    part = tmp_path / "part" / "checkpoints"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step_00000002", part / "step_00000002")
    train_diffusion(config("part", resume="latest"))
    a = checkpoint.load_tree(tmp_path / "full" / "checkpoints" / "step_00000004", "model")
    b = checkpoint.load_tree(part / "step_00000004", "model")
    assert (a["task_loss_mean"] > 0).all()  # both tasks' running means were kept in the checkpoint
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(LDMSegError, match="task_balance"):
        check_config_values(DiffusionConfig, {"task_balance": 1.0}, "run.json")

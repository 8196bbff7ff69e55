"""Multi-task LDMSeg: task names, semantic / depth autoencoders, one denoiser for several tasks, class-aware
panoptic by merging, and the predict / evaluate commands per task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ldmseg.cli import main
from ldmseg.data import formats
from ldmseg.data.transforms import semantic_from_panoptic
from ldmseg.diffusion.merge import merge_panoptic
from ldmseg.diffusion.postprocess import labels_at_size, vote_counts
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.models.denoiser import TaskEmbeddings, build_unet
from ldmseg.models.depth_autoencoder import DepthAutoencoder, depth_autoencoder_loss, depth_planes
from ldmseg.models.image_encoder import LearnedImageEncoder
from ldmseg.models.loading import load_autoencoder
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.pipeline import LDMSegPipeline
from ldmseg.tasks import available_tasks, check_task, parse_tasks, trained_task_names
from ldmseg.training.autoencoder import train_autoencoder
from ldmseg.training.config import AutoencoderConfig, DiffusionConfig

CATEGORIES = [{"id": 1, "name": "ball", "isthing": 1}, {"id": 2, "name": "box", "isthing": 1},
              {"id": 3, "name": "sky", "isthing": 0}, {"id": 4, "name": "grass", "isthing": 0}]


def test_task_names_checks_and_legacy_token() -> None:
    assert parse_tasks(["instances,semantic", "depth"]) == ("instances", "semantic", "depth")
    with pytest.raises(LDMSegError, match="merged"):
        parse_tasks(["panoptic"])
    with pytest.raises(LDMSegError, match="twice"):
        parse_tasks(["depth,depth"])
    assert trained_task_names(["panoptic"]) == ("instances",)  # models saved before multi-task
    assert available_tasks(("instances", "semantic")) == ("instances", "semantic", "panoptic")
    with pytest.raises(LDMSegError, match="it has: depth"):
        check_task("semantic", ("depth",))
    with pytest.raises(LDMSegError, match="unknown task"):
        check_task("normals", ("depth",))




def test_semantic_from_panoptic_and_evaluators() -> None:
    ids = np.array([[0, 5, 5], [9, 9, 7]])
    sem = semantic_from_panoptic(ids, [{"id": 5, "category_id": 3}, {"id": 9, "category_id": 1}])
    assert sem.tolist() == [[0, 3, 3], [1, 1, 0]]  # id 7 has no segment: VOID
    ev = SemanticEvaluator(4, ignore_label=0)
    ev.process(np.array([0, 1, 1, 2, 3]), np.array([2, 1, 0, 2, 2]))
    res = ev.evaluate()  # class 1: 1/2, class 2: 1/2 (the predicted 0 is a miss of class 1), class 3: 0
    assert np.isnan(res["per_class_iou"][0]) and res["miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    dev = DepthEvaluator()
    dev.process(np.array([0.5, 0.5, 0.2]), np.array([0.55, 0.8, 0.2]))
    assert dev.evaluate()["delta1"] == pytest.approx(2 / 3)


def test_merge_rule_case_by_case() -> None:
    inst = np.array([[1, 1, 2, 2, 0, 0],
                     [1, 1, 2, 2, 0, 0],
                     [3, 3, 0, 0, 0, 4],
                     [3, 3, 0, 0, 0, 0]])
    sem = np.array([[1, 1, 3, 3, 3, 3],
                    [1, 3, 3, 3, 3, 3],
                    [0, 0, 4, 4, 2, 2],
                    [0, 0, 4, 4, 2, 2]])
    ids, segs = merge_panoptic(inst, sem, CATEGORIES, min_area=2, instance_scores={1: 0.9})
    by_id = {s["id"]: s for s in segs}
    ball = ids[0, 0]
    assert by_id[ball]["category_id"] == 1 and by_id[ball]["isthing"] == 1 and by_id[ball]["score"] == 0.9
    assert (ids[:2, :2] == ball).all()  # a thing instance claims its pixels, the sky pixel under it included
    sky = ids[0, 2]  # instance 2 is mostly sky (stuff): released; sky becomes one segment with the free sky pixels
    assert by_id[sky]["category_id"] == 3 and (ids[:2, 2:] == sky).all() and "score" not in by_id[sky]
    assert (ids[2:, :2] == 0).all()  # instance 3 covers ignore pixels only: VOID
    assert (ids[2:, 4:] == 0).all()  # thing pixels without an instance (instance 4 is 1 px < min_area): VOID
    grass = ids[2, 2]
    assert by_id[grass]["category_id"] == 4 and by_id[grass]["isthing"] == 0
    assert sorted(s["category_id"] for s in segs) == [1, 3, 4]
    small, _ = merge_panoptic(inst, sem, CATEGORIES, min_area=5)  # grass (4 px) is now too small too
    assert (small[2:, 2:4] == 0).all()


def test_merged_output_is_scored_class_aware_by_the_evaluator(tmp_path: Path) -> None:
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 3, 3]])
    gt_segs = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4}, {"id": 2, "category_id": 2, "iscrowd": 0,
                                                                          "area": 4},
               {"id": 3, "category_id": 4, "iscrowd": 0, "area": 8}]
    inst = np.array([[5, 5, 6, 6], [5, 5, 6, 6], [0, 0, 0, 0], [0, 0, 0, 0]])
    sem = semantic_from_panoptic(gt, gt_segs)
    pred, segs = merge_panoptic(inst, sem, CATEGORIES)
    for name, ids, s in (("gt", gt, gt_segs), ("pred", pred, segs)):
        formats.write_panoptic_png(tmp_path / name / "a.png", ids)
        formats.write_json(tmp_path / f"{name}.json", {"annotations": [{"image_id": 0, "file_name": "a.png",
                                                                        "segments_info": s}],
                                                       "categories": CATEGORIES})
    from ldmseg.metrics.panoptic import evaluate_files

    res = evaluate_files(tmp_path / "gt.json", tmp_path / "gt", tmp_path / "pred.json", tmp_path / "pred")
    assert res["All"]["pq"] == pytest.approx(1.0) and res["Things"]["n"] == 2 and res["Stuff"]["n"] == 1


def test_depth_autoencoder_learns_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ae = DepthAutoencoder(encoder_channels=(4, 8, 8, 8), decoder_channels=16)
    depth = torch.rand(2, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3)[:, 0]
    opt = torch.optim.Adam(ae.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss, logs = depth_autoencoder_loss(ae(depth_planes(depth)), depth)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and set(logs) == {"l1", "grad_l1"}
    ae.save_pretrained(tmp_path / "depth")
    again = load_autoencoder(tmp_path / "depth", "depth")
    assert torch.allclose(again.reconstruct(depth), ae.eval().reconstruct(depth))
    assert again.reconstruct(depth).min() >= 0
    with pytest.raises(LDMSegError, match="not a mask autoencoder"):
        load_autoencoder(tmp_path / "depth", "ids")


@pytest.mark.parametrize("target", ["semantic", "depth"])
def test_train_ae_for_other_targets(tmp_path: Path, target: str) -> None:
    cfg = AutoencoderConfig(out=str(tmp_path / target), target=target, num_bits=4, size=32, val_size=32, val_num=4,
                            batch_size=2, encoder_channels=(4, 8, 8, 8), decoder_channels=8, warmup_steps=1,
                            max_steps=2, checkpoint_every=2, val_every=2, log_every=1, threads=1)
    model = train_autoencoder(cfg)
    ae = load_autoencoder(model, "depth" if target == "depth" else "ids")
    assert isinstance(ae, DepthAutoencoder if target == "depth" else MaskAutoencoder)
    few_bits = AutoencoderConfig(**{**cfg.__dict__, "out": str(tmp_path / "x"), "num_bits": 2})
    if target == "semantic":  # 12 synthetic classes do not fit 2 bits
        with pytest.raises(LDMSegError, match="does not fit"):
            train_autoencoder(few_bits)


def tiny_multitask_pipeline(tasks: tuple[str, ...] = ("instances", "semantic", "depth")) -> LDMSegPipeline:
    torch.manual_seed(0)
    mask = MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16)
    semantic = MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16)
    depth = DepthAutoencoder(encoder_channels=(8, 8, 8, 8), decoder_channels=16)
    enc = LearnedImageEncoder(out_channels=8, channels=(8, 8, 8))
    unet = build_unet("tiny", 4 + 8 + 4, 4, 4)
    return LDMSegPipeline(unet, enc, mask if "instances" in tasks else None, make_sampler("ddim", "sample"),
                          TaskEmbeddings(tasks, dim=32), semantic_autoencoder=semantic if "semantic" in tasks else None,
                          depth_autoencoder=depth if "depth" in tasks else None, scale_factor=0.5,
                          scale_factors={t: 0.5 for t in tasks}, categories=CATEGORIES,
                          default_num_inference_steps=2, default_processing_resolution=32)


def test_pipeline_answers_every_task_and_saves_them(tmp_path: Path) -> None:
    pipe = tiny_multitask_pipeline()
    assert pipe.tasks == ("instances", "semantic", "depth", "panoptic") and pipe.default_task() == "panoptic"
    image = np.random.default_rng(0).integers(0, 255, (40, 24, 3), dtype=np.uint8)
    gen = torch.Generator().manual_seed(0)
    sem = pipe(image, task="semantic", generator=gen, ensemble_size=3).semantic[0]
    assert sem.shape == (40, 24) and set(np.unique(sem)) <= {1, 2, 3, 4}  # never VOID, never an unknown class
    out = pipe(image, task="depth", generator=gen, ensemble_size=3)
    assert out.depth[0].shape == (40, 24) and 0 <= out.depth[0].min() and out.depth[0].max() <= 1
    assert out.depth_uncertainty[0].shape == (40, 24) and out.depth_uncertainty[0].min() >= 0
    pan = pipe(image, generator=gen)
    assert pan.task == "panoptic" and pan.panoptic[0].shape == (40, 24)
    assert all(s["category_id"] in (1, 2, 3, 4) for s in pan.segments_info[0])
    assert pipe(image, task="depth", output_type="pil").depth[0].size == (24, 40)
    with pytest.raises(LDMSegError, match="does not take one"):
        pipe(image, task="depth", partial_mask=np.zeros((40, 24), np.int64))
    pipe.save_pretrained(tmp_path / "mt")
    again = LDMSegPipeline.from_pretrained(tmp_path / "mt")
    assert again.tasks == pipe.tasks and again.categories == CATEGORIES
    assert isinstance(again.depth_autoencoder, DepthAutoencoder)
    only_depth = tiny_multitask_pipeline(("depth",))
    only_depth.save_pretrained(tmp_path / "depth-only")
    loaded = LDMSegPipeline.from_pretrained(tmp_path / "depth-only")
    assert loaded.tasks == ("depth",) and loaded.mask_autoencoder is None
    with pytest.raises(LDMSegError, match="it has: depth"):
        loaded(image, task="semantic")


def test_a_task_samples_with_its_own_step_count_unless_the_caller_gives_one(tmp_path: Path) -> None:
    pipe = tiny_multitask_pipeline()
    pipe.register_to_config(task_num_inference_steps={"depth": 1})
    pipe.save_pretrained(tmp_path / "mt")
    pipe = LDMSegPipeline.from_pretrained(tmp_path / "mt")
    steps: list[tuple[str, int]] = []
    record = lambda p, i, t, info: steps.append((info["task"], i))  # noqa: E731
    image = np.zeros((32, 32, 3), np.uint8)
    pipe(image, task="depth", callback_on_step_end=record)
    pipe(image, task="panoptic", callback_on_step_end=record)
    assert [t for t, _ in steps] == ["depth", "instances", "instances", "semantic", "semantic"]
    steps.clear()
    pipe(image, task="depth", num_inference_steps=3, callback_on_step_end=record)
    assert len(steps) == 3 and pipe.default_steps("depth") == 1 and pipe.default_steps("semantic") == 2
    for bad in ({"depht": 1}, {"depth": 0}, {"depth": 1.5}):
        pipe.register_to_config(task_num_inference_steps=bad)
        with pytest.raises(LDMSegError, match="task_num_inference_steps in the pipeline config"):
            pipe(image, task="semantic")


def test_vote_takes_the_per_pixel_majority_and_upsamples_band_by_band() -> None:
    maps = torch.tensor([[[1, 2, 5]], [[1, 3, 6]], [[4, 3, 7]]])
    stack, present = vote_counts(maps)
    assert present.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert labels_at_size(stack, present, (1, 3)).tolist() == [[1, 3, 5]]  # a three-way tie: the smallest
    logits = torch.randn(5, 6, 7)
    labels = torch.tensor([2, 4, 5, 8, 9])
    whole = labels[F.interpolate(logits[None], size=(61, 45), mode="bilinear", align_corners=False)[0].argmax(0)]
    banded = labels_at_size(logits, labels, (61, 45), band_pixels=200)
    assert (torch.from_numpy(banded) == whole).float().mean() > 0.999


def test_multitask_training_fine_tunes_a_model_into_new_tasks(tmp_path: Path) -> None:
    from ldmseg.training.diffusion import DiffusionTask, train_diffusion

    single = tiny_multitask_pipeline(("instances",))
    single.save_pretrained(tmp_path / "single")
    single.mask_autoencoder.save_pretrained(tmp_path / "ae")
    torch.manual_seed(1)
    MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16).save_pretrained(tmp_path / "sem")
    DepthAutoencoder(encoder_channels=(8, 8, 8, 8), decoder_channels=16).save_pretrained(tmp_path / "depth")
    cfg = DiffusionConfig(out=str(tmp_path / "run"), ae=str(tmp_path / "ae"), init_from=str(tmp_path / "single"),
                          semantic_ae=str(tmp_path / "sem"), depth_ae=str(tmp_path / "depth"),
                          tasks=("instances", "semantic", "depth"), task_weights=(1, 1, 2), size=32, batch_size=4,
                          max_steps=2, warmup_steps=1, val_every=2, val_num=2, val_steps=1, checkpoint_every=2,
                          log_every=1, threads=1, self_condition_prob=float(single.config.self_condition))
    task = DiffusionTask(cfg)
    assert task.model.task_embeddings.tasks == ("instances", "semantic", "depth")
    assert torch.equal(task.model.task_embeddings.embeddings[0], single.task_embeddings.embeddings[0])
    assert task.scales["instances"] == pytest.approx(0.5)  # the pipeline's own AE: its s is kept
    drawn = [int(task.train_dataset[(i, i)]["task"]) for i in range(40)]
    assert set(drawn) == {0, 1, 2} and drawn == [int(task.train_dataset[(i, i)]["task"]) for i in range(40)]
    batch = {k: torch.stack([task.train_dataset[(i, i)][k] for i in range(8)])
             for k in ("image", "ids", "semantic", "depth", "task")}
    loss, logs = task.loss(task.model, batch)
    assert torch.isfinite(loss)
    counts = {name: int((batch["task"] == k).sum()) for k, name in enumerate(task.model.task_embeddings.tasks)}
    logged = {k.removeprefix("loss/") for k in logs if k.startswith("loss/")}
    assert {name for name, n in counts.items() if n} == logged & counts.keys()  # each drawn task's own loss
    model_dir = train_diffusion(cfg)
    exported = LDMSegPipeline.from_pretrained(model_dir)
    assert exported.tasks == ("instances", "semantic", "depth", "panoptic")
    assert [c["id"] for c in exported.categories] == list(range(1, 13))  # the synthetic scenes' categories
    missing = DiffusionConfig(**{**cfg.__dict__, "semantic_ae": "", "init_from": "", "out": str(tmp_path / "r2")})
    with pytest.raises(LDMSegError, match="--semantic-ae"):
        DiffusionTask(missing)






def test_predict_and_evaluate_per_task(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pipe = tiny_multitask_pipeline()
    pipe.save_pretrained(tmp_path / "mt")
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "2", "--resolution", "32"]) == 0
    s = tmp_path / "s"
    for task in ("semantic", "depth", "panoptic"):
        assert main(["predict", "--model", str(tmp_path / "mt"), "--images", str(s / "images"), "--out",
                     str(tmp_path / task), "--task", task, "--ensemble-size", "2"]) == 0
    sem = np.asarray(Image.open(next((tmp_path / "semantic" / "semantic").glob("*.png"))))
    assert sem.dtype == np.uint8 and sem.shape == (32, 32)
    depth_png = Image.open(next((tmp_path / "depth" / "depth").glob("*.png")))
    assert depth_png.mode.startswith("I")
    pan = json.loads((tmp_path / "panoptic" / "panoptic.json").read_text())
    assert pan["categories"] == CATEGORIES
    capsys.readouterr()
    assert main(["evaluate", "--task", "semantic", "--gt-dir", str(s / "semantic"), "--pred-dir",
                 str(s / "semantic")]) == 0
    assert "mIoU 100.00" in capsys.readouterr().out
    assert json.loads((tmp_path / "semantic" / "categories.json").read_text())["categories"] == CATEGORIES
    scored = ["evaluate", "--task", "semantic", "--gt-dir", str(s / "semantic"), "--pred-dir",
              str(tmp_path / "semantic" / "semantic")]
    assert main(scored) == 2  # the GT's 12 synthetic classes are not this model's 4 (its categories.json)
    assert "neither a predicted class" in capsys.readouterr().err
    assert main([*scored, "--classes", "ldmseg"]) == 0
    table = capsys.readouterr().out  # names come from the categories.json predict wrote beside its PNGs
    assert any(c["name"][:12] in table for c in CATEGORIES)
    assert main(["evaluate", "--task", "depth", "--gt-dir", str(s / "depth"), "--pred-dir",
                 str(tmp_path / "depth" / "depth"), "--out", str(tmp_path / "d.json")]) == 0
    assert 0 < json.loads((tmp_path / "d.json").read_text())["rmse"] < 1
    # bad inputs: a depth PNG of the wrong bit depth, class ids beyond --num-classes, a model without the task
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (s / "depth").glob("*.png"):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad / f.name)
    assert main(["evaluate", "--task", "depth", "--gt-dir", str(s / "depth"), "--pred-dir", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "16-bit" in err and str(bad) in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--task", "semantic", "--gt-dir", str(s / "semantic"), "--pred-dir",
                 str(s / "semantic"), "--num-classes", "3"]) == 2
    assert "outside 0..2" in capsys.readouterr().err
    tiny_multitask_pipeline(("depth",)).save_pretrained(tmp_path / "d-only")
    assert main(["predict", "--model", str(tmp_path / "d-only"), "--images", str(s / "images"), "--out",
                 str(tmp_path / "no"), "--task", "semantic"]) == 2
    assert "it has: depth" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_class_agnostic_predictions_scored_class_aware_get_a_warning(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "2", "--resolution", "32"]) == 0
    s = tmp_path / "s"
    gt = json.loads((s / "panoptic.json").read_text())
    for ann in gt["annotations"]:
        for seg in ann["segments_info"]:
            seg["category_id"] = 1
    formats.write_json(tmp_path / "agnostic.json", gt)
    capsys.readouterr()
    assert main(["evaluate", "--gt-json", str(s / "panoptic.json"), "--gt-dir", str(s / "panoptic"), "--pred-json",
                 str(tmp_path / "agnostic.json"), "--pred-dir", str(s / "panoptic"), "--workers", "1"]) == 0
    assert "Score it with --task instances" in capsys.readouterr().err


def test_app_answers_each_task_of_the_model(tmp_path: Path) -> None:
    from ldmseg.commands.app import Segmenter

    tiny_multitask_pipeline().save_pretrained(tmp_path / "mt")
    segmenter = Segmenter(str(tmp_path / "mt"), steps=1)
    image = np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    for task in segmenter.pipe.tasks:
        picture, files, status = segmenter.run({"background": image, "layers": []}, 0, False, task)
        assert all(Path(f).exists() for f in files) and status
        if task in ("semantic", "depth"):  # the picture carries its key: a legend / a depth bar on the right
            assert picture.shape[0] >= 48 and picture.shape[1] > 40 and (picture[:48, :40] != 255).any()
        else:
            assert picture.shape == image.shape
    assert len(list(segmenter.root.iterdir())) == len(segmenter.pipe.tasks)  # one folder per result, one root
    from ldmseg.commands import app

    for _ in range(app.KEEP_RESULTS + 3):
        segmenter.result_folder()
    assert len(list(segmenter.root.iterdir())) == app.KEEP_RESULTS
    stroke = np.zeros((48, 40, 4), np.uint8)
    stroke[10:20, 10:20] = (230, 25, 75, 255)
    with pytest.raises(LDMSegError, match="instances or panoptic"):
        segmenter.run({"background": image, "layers": [stroke]}, 0, True, "depth")


def test_demo_names_each_tasks_own_autoencoder() -> None:
    """--semantic-ae demo / --depth-ae demo load the demo pipeline's semantic and depth AEs, not its mask AE."""
    from ldmseg.training.diffusion import DiffusionTask

    task = object.__new__(DiffusionTask)
    task.cfg = DiffusionConfig(out="unused", ae="demo", semantic_ae="demo", depth_ae="demo",
                               tasks=("instances", "semantic", "depth"))
    task.tasks = task.cfg.tasks
    aes = task.load_autoencoders(None)
    assert isinstance(aes["depth"], DepthAutoencoder)
    assert aes["semantic"].config.num_bits == 4 and aes["instances"].config.num_bits == 7


def test_merge_and_segment_infos_are_the_same_band_by_band() -> None:
    from ldmseg.data.synthetic import categories
    from ldmseg.diffusion.postprocess import segment_infos

    rng = np.random.default_rng(5)
    inst = rng.integers(0, 6, (37, 29)).astype(np.int32)
    sem = rng.integers(0, 13, (37, 29))
    whole = merge_panoptic(inst, sem, categories(), 3, {2: 0.7})
    for band_pixels in (1, 29, 100):
        ids, segs = merge_panoptic(inst, sem, categories(), 3, {2: 0.7}, band_pixels=band_pixels)
        assert np.array_equal(ids, whole[0]) and segs == whole[1]
    big = inst * 1_000_003  # ids far apart (COCO-style), with a confidence map
    conf = rng.random(inst.shape)
    banded, whole_infos = segment_infos(big, conf, band_pixels=7), segment_infos(big, conf)
    assert [{**s, "score": 0} for s in banded] == [{**s, "score": 0} for s in whole_infos]
    assert np.allclose([s["score"] for s in banded], [s["score"] for s in whole_infos], rtol=0, atol=1e-12)
    assert [s["id"] for s in segment_infos(big)] == sorted(set(big.ravel().tolist()) - {0})


def tiny_ade20k(root: Path, num: int = 3, size: int = 32) -> Path:
    """ADEChallengeData2016's layout: JPG images, PNG labels (0 = ignore, classes 1..150), objectInfo150.txt."""
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(num):
            label = np.zeros((size, size), np.uint8)
            label[: size // 2], label[size // 2 :, : size // 2] = 1, 150  # wall, ignore, and the last class
            Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(root / "images" / split / f"{i}.jpg")
            Image.fromarray(label).save(root / "annotations" / split / f"{i}.png")
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n"
                                            "150\t0.0001\t10\t1\tflag;banner\n")
    return root


def test_ade20k_trains_semantic_stage_1_and_stage_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ade = tiny_ade20k(tmp_path / "ADEChallengeData2016")
    common = ["--data", str(ade), "--val-data", str(ade), "--resolution", "32", "--batch-size", "2", "--max-steps", "1",
              "--val-every", "1", "--val-num", "2", "--threads", "1"]
    assert main(["train-ae", "--target", "semantic", "--num-bits", "8", "--out", str(tmp_path / "sem"),
                 "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8", "--val-resolution", "32",
                 *common]) == 0
    assert main(["train-ae", "--target", "instances", "--out", str(tmp_path / "bad"), *common]) == 2
    assert "a semantic label set (no instances)" in capsys.readouterr().err
    stage2 = ["train", "--semantic-ae", str(tmp_path / "sem" / "model"), "--out", str(tmp_path / "run"), "--unet",
              "tiny", "--image-channels", "8", "--val-steps", "1", "--inference-steps", "1", *common]
    assert main([*stage2, "--tasks", "instances,semantic"]) == 2
    assert "train it with --tasks semantic" in capsys.readouterr().err
    assert main([*stage2, "--tasks", "semantic"]) == 0
    pipe = LDMSegPipeline.from_pretrained(tmp_path / "run" / "model")
    assert "semantic" in pipe.tasks and len(pipe.categories) == 150
    names = {c["id"]: c["name"] for c in pipe.categories}
    assert (names[1], names[150], names[2]) == ("wall", "flag", "class_2")
    sem = pipe(np.zeros((32, 32, 3), np.uint8), task="semantic", num_inference_steps=1, ensemble_size=1).semantic[0]
    assert sem.shape == (32, 32)

"""Real-data readers on tiny sets built here: COCO instance annotations (polygons, RLE, crowd, overlaps) as panoptic
maps and training data, semantic label folders with a class list (CamVid's SegNet layout), the discriminative
baseline objective, and the `trained_on` note models carry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldmseg.cli import main
from ldmseg.data import formats
from ldmseg.data.classes import ClassList, load_class_list
from ldmseg.data.coco_instances import load_instances, panoptic_from_instances
from ldmseg.data.datasets import CocoInstancesDataset, SampleConfig, labelled_folder
from ldmseg.errors import LDMSegError
from ldmseg.pipeline import LDMSegPipeline


def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def rle_rows(height: int, width: int, rows: slice) -> dict:
    """Uncompressed COCO RLE (column-major runs) of the full-width band `rows`."""
    mask = np.zeros((height, width), np.uint8)
    mask[rows] = 1
    flat = mask.T.ravel()
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [height, width], "counts": counts}


def tiny_instances(root: Path, extra_annotations: list[dict] = (), num: int = 4) -> Path:
    """`num` 40x48 images: a large box, a small box on top of it, a crowd band at the bottom (RLE)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(num):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(root / "images" / f"{i:03d}.jpg")
        images.append({"id": 100 + i, "file_name": f"{i:03d}.jpg", "height": 40, "width": 48})
        anns += [{"id": 10 * i + 1, "image_id": 100 + i, "category_id": 3, "iscrowd": 0,
                  "segmentation": [box(4, 4, 30, 30)]},
                 {"id": 10 * i + 2, "image_id": 100 + i, "category_id": 7, "iscrowd": 0,
                  "segmentation": [box(10, 10, 16, 16)]},
                 {"id": 10 * i + 3, "image_id": 100 + i, "category_id": 3, "iscrowd": 1,
                  "segmentation": rle_rows(40, 48, slice(34, 40))}]
    data = {"images": images, "annotations": anns + list(extra_annotations),
            "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]}
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


def test_instances_paint_larger_first_smaller_on_top_crowd_below(tmp_path: Path) -> None:
    path = tiny_instances(tmp_path)
    ids, segments = panoptic_from_instances(load_instances(path).images[0])
    by_id = {s["id"]: s for s in segments}
    crowd, large, small = ids[36, 20], ids[5, 5], ids[12, 12]
    assert by_id[crowd]["iscrowd"] == 1 and by_id[large]["category_id"] == 3 and by_id[small]["category_id"] == 7
    assert len({crowd, large, small}) == 3 and ids[2, 40] == 0  # uncovered pixels are VOID
    assert by_id[small]["area"] == int((ids == small).sum()) and by_id[large]["area"] > by_id[small]["area"]
    item = CocoInstancesDataset(tmp_path / "images", path, SampleConfig(size=40, reassign=False))[0]
    assert int(item["ids"][36, 20]) == 0  # crowd -> VOID in training
    assert set(item["semantic"].unique().tolist()) == {0, 3, 7}


def test_instances_to_panoptic_writes_what_evaluate_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tiny_instances(tmp_path / "set")
    out = tmp_path / "pan"
    assert main(["data", "instances-to-panoptic", str(path), str(tmp_path / "set" / "images"), str(out)]) == 0
    gt = json.loads((out / "panoptic.json").read_text())
    assert len(gt["annotations"]) == 4 and {c["name"] for c in gt["categories"]} == {"car", "dog"}
    assert main(["evaluate", "--gt-json", str(out / "panoptic.json"), "--gt-dir", str(out / "panoptic"),
                 "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic"), "--workers", "1",
                 "--output", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["All"]["pq"] == 1.0
    agnostic = tmp_path / "agn"
    assert main(["data", "instances-to-panoptic", str(path), str(tmp_path / "set" / "images"), str(agnostic),
                 "--class-agnostic"]) == 0
    assert json.loads((agnostic / "panoptic.json").read_text())["categories"][0]["name"] == "object"


def added(ann: dict) -> Callable[[dict], object]:
    """A fault: one more annotation on image 101, the last (category 3, a box, unless `ann` says otherwise)."""
    return lambda d: d["annotations"].append({"id": 901, "image_id": 101, "category_id": 3,
                                              "segmentation": [box(1, 1, 5, 5)], **ann})


def short_rle_string() -> str:
    """A well-formed compressed RLE of 40x47 px: one column short of the 40x48 image."""
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.zeros((40, 47), np.uint8, order="F"))["counts"].decode()


INSTANCE_FAULTS = {  # name: (change to the JSON, what the one-line error says)
    "polygon-2-points": (added({"segmentation": [[1, 1, 5, 5]]}), "annotation 901: segmentation[0]: expected a "
                                                                  "polygon"),
    "polygon-nan": (added({"segmentation": [[1, 1, 5, float("nan"), 5, 5]]}), "annotation 901: segmentation[0][3]: "
                                                                             "expected a finite y coordinate"),
    "polygon-inf": (added({"segmentation": [[1, 1, float("inf"), 1, 5, 5]]}), "segmentation[0][2]: expected a "
                                                                             "finite x"),
    "polygon-3e7": (added({"segmentation": [[1, 1, 3e7, 1, 5, 5]]}), "got 30000000.0"),
    "polygon-huge-int": (added({"segmentation": [[1, 1, 10**400, 1, 5, 5]]}), "segmentation[0][2]"),
    "polygon-bool": (added({"segmentation": [[1, 1, True, 1, 5, 5]]}), "segmentation[0][2]"),
    "polygon-zigzag": (added({"segmentation": [[0, 0, 48, 39] * 300]}),
                       "annotation 901: segmentation: expected polygons at most"),
    "rle-size": (added({"segmentation": {"size": [4, 4], "counts": [16]}}), "segmentation.size: expected [40, 48]"),
    "rle-size-int": (added({"segmentation": {"size": 40, "counts": [16]}}), "segmentation.size"),
    "rle-short-list": (added({"segmentation": {"size": [40, 48], "counts": [7]}}),
                       "annotation 901: segmentation.counts: expected runs covering the 40x48 image (1920 px), got 7"),
    "rle-empty-string": (added({"segmentation": {"size": [40, 48], "counts": ""}}), "got 0 px"),
    "rle-short-string": (added({"segmentation": {"size": [40, 48], "counts": short_rle_string()}}), "got 1880 px"),
    "rle-foreign-chars": (added({"segmentation": {"size": [40, 48], "counts": "ab~!"}}), "characters '0'..'o'"),
    "rle-cut-off-string": (added({"segmentation": {"size": [40, 48], "counts": "0o"}}), "whole run lengths"),
    "rle-negative-run": (added({"segmentation": {"size": [40, 48], "counts": "@"}}), "run lengths >= 0"),
    "rle-counts-float": (added({"segmentation": {"size": [40, 48], "counts": [1920.0]}}), "a list of run lengths"),
    "unknown-image": (added({"image_id": 555}), "annotation 901: image_id: expected the id of an image"),
    "image-id-list": (added({"image_id": [100]}), "annotation 901: image_id"),
    "unknown-category": (added({"category_id": 99}), "category_id: expected the id of a category in the file, "
                                                     "got 99"),
    "iscrowd-yes": (added({"iscrowd": "yes"}), "annotation 901: iscrowd: expected 0 or 1"),
    "annotation-id-missing": (added({"id": None}), "annotations[6]: id: expected an integer"),
    "annotation-id-duplicate": (added({"id": 1}), "annotation 1: id: expected a unique id"),
    "image-id-duplicate": (lambda d: d["images"].append({**d["images"][0], "file_name": "b.jpg"}),
                           "image 100: id: expected a unique id"),
    "image-file-name-duplicate": (lambda d: d["images"].append({**d["images"][0], "id": 7}),
                                  "image 7: file_name: expected a name no other image has (image 100"),
    "image-file-name-dot": (lambda d: d["images"][0].__setitem__("file_name", "."), "image 100: file_name"),
    "image-height-nan": (lambda d: d["images"][0].__setitem__("height", float("nan")), "image 100: height: expected "
                                                                                      "a positive integer"),
    "image-too-large": (lambda d: d["images"][0].update(height=10**6, width=10**6), "image 100: height x width"),
    "category-id-duplicate": (lambda d: d["categories"].append({"id": 3, "name": "truck"}),
                              "category 3: id: expected a unique id"),
    "category-name-missing": (lambda d: d["categories"][0].pop("name"), "category 3: name: expected a string"),
}


@pytest.mark.parametrize("name", sorted(INSTANCE_FAULTS))
def test_malformed_instance_records_are_one_line_naming_file_record_and_field(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    change, message = INSTANCE_FAULTS[name]
    path = tiny_instances(tmp_path / "set", num=2)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    code = main(["data", "instances-to-panoptic", str(path), str(tmp_path / "set" / "images"), str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"ldmseg: error: {path}: ") and message in err, err
    assert not (tmp_path / "o").exists()  # every record is checked before anything is written (image 100's map)


@pytest.mark.parametrize("names", [("a.png", "a.jpg"), ("a/x.png", "b/x.png")])
def test_file_names_sharing_an_output_map_are_refused_before_writing(names: tuple[str, str], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    path = tiny_instances(tmp_path / "set", num=2)
    data = json.loads(path.read_text())
    for image, name in zip(data["images"], names, strict=True):
        (tmp_path / "set" / "images" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "set" / "images" / image["file_name"]).rename(tmp_path / "set" / "images" / name)
        image["file_name"] = name
    path.write_text(json.dumps(data))
    assert main(["data", "instances-to-panoptic", str(path), str(tmp_path / "set" / "images"), str(tmp_path / "o")]
                ) == 2
    assert "image 101: file_name: expected a name whose output" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert len(CocoInstancesDataset(tmp_path / "set" / "images", path, SampleConfig(size=32))) == 2  # trainable


def test_rle_strings_paint_what_pycocotools_encoded_and_one_mask_is_held_at_a_time(tmp_path: Path) -> None:
    import tracemalloc

    from pycocotools import mask as mask_utils

    size = 500
    masks = [np.zeros((size, size), np.uint8, order="F") for _ in range(120)]
    for k, m in enumerate(masks):
        m[k:size - k, 2 * k:] = 1  # nested: each smaller than the one before, all overlapping
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": {"size": [size, size], "counts": mask_utils.encode(m)["counts"].decode()}}
            for k, m in enumerate(masks)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": size, "width": size}],
                                "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    image = load_instances(path).images[0]
    panoptic_from_instances(image)  # imports outside the measurement
    tracemalloc.start()
    try:
        ids, segments = panoptic_from_instances(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * size * size  # all 120 masks at once would be >= 120 x size^2 bytes
    assert len(segments) == 120 and ids[0, 0] == 1 and ids[size // 2, size - 1] == 120
    assert [s["area"] for s in segments] == [int((ids == s["id"]).sum()) for s in segments]
    assert segments[-1]["bbox"] == [238, 119, 262, 262]


def test_missing_image_and_escaping_file_names_are_refused(tmp_path: Path) -> None:
    path = tiny_instances(tmp_path / "set", num=2)
    (tmp_path / "set" / "images" / "001.jpg").unlink()
    assert main(["data", "instances-to-panoptic", str(path), str(tmp_path / "set" / "images"), str(tmp_path / "o")]
                ) == 2
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "../../etc/passwd"
    path.write_text(json.dumps(data))
    with pytest.raises(LDMSegError, match="image 100: file_name: expected a file name inside the image folder"):
        load_instances(path)


def test_instances_split_and_training_from_instances(tmp_path: Path) -> None:
    path = tiny_instances(tmp_path / "set", num=6)
    split = tmp_path / "split"
    assert main(["data", "instances-split", str(path), str(tmp_path / "set" / "images"), str(split), "--val", "2"]
                ) == 0
    train, val = (json.loads((split / f"{n}.json").read_text()) for n in ("train", "val"))
    assert len(train["images"]) == 4 and len(val["images"]) == 2
    assert not {i["id"] for i in train["images"]} & {i["id"] for i in val["images"]}
    assert len(labelled_folder(split / "train.json", SampleConfig(size=32), 0, True)) == 4
    assert main(["train-ae", "--data", str(split / "train.json"), "--val-data", str(split / "val.json"), "--size",
                 "32", "--val-size", "32", "--batch-size", "2", "--max-steps", "1", "--val-every", "1", "--val-num",
                 "2", "--threads", "1", "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8", "--out",
                 str(tmp_path / "ae")]) == 0
    assert (tmp_path / "ae" / "model" / "config.json").exists()
    mixed = ["train-ae", "--data", f"synthetic+{split / 'train.json'}", "--size", "32", "--val-size", "32",
             "--batch-size", "2", "--max-steps", "2", "--val-every", "2", "--val-num", "2", "--threads", "1",
             "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8", "--out", str(tmp_path / "mix")]
    assert main(mixed) == 2  # a mix needs crops
    assert main([*mixed, "--crop", "16", "--crops-per-mask", "2"]) == 0


def tiny_segnet(root: Path, num: int = 3) -> Path:
    """SegNet's layout (train/, trainannot/, val/, valannot/) with CamVid's values: 0..10 classes, 11 unlabelled."""
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(num):
            label = np.full((36, 48), 11, np.uint8)
            label[:18], label[18:, :24] = 0, 3  # sky, road, unlabelled
            Image.fromarray(rng.integers(0, 255, (36, 48, 3), np.uint8)).save(root / split / f"f{i}.jpg")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_class_lists_map_labels_to_ldmseg_semantic_ids(tmp_path: Path) -> None:
    camvid = load_class_list("camvid")
    assert len(camvid.names) == 11 and camvid.ignore == 11 and camvid.names[3] == "Road"
    labels = np.array([[0, 3, 11]])
    assert camvid.to_semantic(labels, "x").tolist() == [[1, 4, 0]]
    with pytest.raises(LDMSegError, match="x: label value 12"):
        camvid.to_semantic(np.array([[12]]), "x")
    (tmp_path / "c.json").write_text(json.dumps({"classes": ["a", "b"], "first_value": 1, "ignore": 1}))
    with pytest.raises(LDMSegError, match="ignore value 1 is also a class"):
        load_class_list(tmp_path / "c.json")
    assert ClassList(("a",), palette=((1, 2, 3),)).categories() == [{"id": 1, "name": "a", "isthing": 0,
                                                                      "color": [1, 2, 3]}]


def test_segnet_folder_trains_both_stages_and_the_direct_baseline(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    root = tiny_segnet(tmp_path / "camvid")
    with pytest.raises(LDMSegError, match="a class list"):
        labelled_folder(root, SampleConfig(size=32), 0, True)
    item = labelled_folder(root, SampleConfig(size=32), 0, True, classes="camvid")[0]
    assert set(item["semantic"].unique().tolist()) == {0, 1, 4}
    common = ["--data", str(root), "--val-data", str(root), "--classes", "camvid", "--size", "32", "--batch-size",
              "2", "--max-steps", "1", "--val-every", "1", "--val-num", "2", "--threads", "1"]
    assert main(["train-ae", "--target", "semantic", "--num-bits", "4", "--out", str(tmp_path / "sem"),
                 "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8", "--val-size", "32", *common]) == 0
    stage2 = ["train", "--tasks", "semantic", "--semantic-ae", str(tmp_path / "sem" / "model"), "--unet", "tiny",
              "--image-channels", "8", "--val-steps", "1", "--inference-steps", "1", *common]
    assert main([*stage2, "--out", str(tmp_path / "diff")]) == 0
    pipe = LDMSegPipeline.from_pretrained(tmp_path / "diff" / "model")
    assert [c["name"] for c in pipe.categories][:2] == ["Sky", "Building"] and "CamVid" in pipe.config.trained_on
    assert main([*stage2, "--out", str(tmp_path / "direct"), "--objective", "direct"]) == 2
    assert "--prediction-type sample" in capsys.readouterr().err
    assert main([*stage2, "--out", str(tmp_path / "direct"), "--objective", "direct", "--prediction-type", "sample",
                 "--self-condition-prob", "0"]) == 0
    direct = LDMSegPipeline.from_pretrained(tmp_path / "direct" / "model")
    assert direct.config.final_x0 and direct.config.default_num_inference_steps == 1
    out = direct(np.zeros((36, 48, 3), np.uint8), task="semantic", generator=torch.Generator().manual_seed(0))
    again = direct(np.zeros((36, 48, 3), np.uint8), task="semantic", generator=torch.Generator().manual_seed(5))
    assert out.semantic[0].shape == (36, 48)
    assert np.mean(out.semantic[0] == again.semantic[0]) > 0.9  # one step from noise at t=999: near deterministic


def test_direct_objective_is_cross_entropy_through_the_decoder() -> None:
    from ldmseg.diffusion.objective import DirectObjective
    from ldmseg.models.mask_autoencoder import MaskAutoencoder

    torch.manual_seed(0)
    ae = MaskAutoencoder(num_bits=2, encoder_channels=(8, 8, 8, 8), decoder_channels=8).eval().requires_grad_(False)
    labels = torch.randint(0, 4, (2, 16, 16))
    target = ae.encode_ids(labels)
    prediction = (target * 2.0).requires_grad_()
    seen = {}

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen["t"] = t
        return prediction

    loss, _ = DirectObjective(ae, scale=2.0)(denoise, target, torch.zeros(2, 4, 2, 2), labels=labels)
    expected = torch.nn.functional.nll_loss(ae.decode(target, size=(16, 16)).log_softmax(1), labels, ignore_index=0)
    assert torch.allclose(loss, expected) and seen["t"].tolist() == [999, 999]
    loss.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    nothing, _ = DirectObjective(ae, 2.0)(denoise, target, torch.zeros(2, 4, 2, 2), labels=torch.zeros_like(labels))
    assert float(nothing) == 0.0


def test_commands_say_what_a_model_was_trained_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    formats.write_png(images / "a.png", np.zeros((32, 32, 3), np.uint8))
    assert main(["predict", "--images", str(images), "--out", str(tmp_path / "o"), "--task", "instances",
                 "--resolution", "64"]) == 0
    err = capsys.readouterr().err
    assert err.count("trained on synthetic scenes only") == 1 and "not real photographs" in err


def test_evaluate_maps_a_class_lists_raw_gt_and_names_the_classes(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    root = tiny_segnet(tmp_path / "camvid", num=2)
    pred = tmp_path / "pred"
    for f in (root / "valannot").iterdir():
        raw = np.asarray(Image.open(f))
        formats.write_png(pred / f.name, load_class_list("camvid").to_semantic(raw, f).astype(np.uint8))
    assert main(["evaluate", "--task", "semantic", "--gt-dir", str(root / "valannot"), "--pred-dir", str(pred),
                 "--classes", "camvid", "--output", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "mIoU 100.00" in out and "Sky" in out and "Road" in out
    assert main(["evaluate", "--task", "semantic", "--gt-dir", str(root / "valannot"), "--pred-dir", str(pred)]) == 0
    assert "mIoU 100.00" not in capsys.readouterr().out  # raw GT values read as ids: no longer the same classes


def test_silhouettes_paste_real_outlines_small_ones_on_top(tmp_path: Path) -> None:
    from ldmseg.data.silhouettes import SilhouetteBank, SilhouetteScenes, paste_silhouettes, scaled_shape
    from ldmseg.data.synthetic import SceneConfig

    bank = SilhouetteBank.from_instances(tiny_instances(tmp_path / "set", num=2))
    assert sorted(s.shape for s in bank.shapes) == [(6, 6), (6, 6), (26, 26), (26, 26)]  # crowd left out
    assert scaled_shape(bank.shapes[-1], 54).shape == (54, 54) and scaled_shape(bank.shapes[-1], 54).all()
    assert scaled_shape(bank.shapes[-1], 9).shape == (9, 9)
    rng = np.random.default_rng(0)
    pasted = paste_silhouettes(np.ones((64, 64), np.int64), bank, 12, rng, scale=(0.05, 0.6))
    assert pasted.max() > 1 and (np.unique(pasted) == np.arange(1, pasted.max() + 1)).all()  # fresh id per shape
    assert bank.pick(50, rng).shape == (26, 26)  # enlarged at most twice: only the large outline reaches 50 px
    scenes = SilhouetteScenes(bank, [SceneConfig.preset("dense", 64)], num_ids=32, seed=3)
    one, again = scenes[(5, 9)]["ids"], scenes[(5, 9)]["ids"]
    assert one.shape == (64, 64) and torch.equal(one, again) and int(one.max()) < 32
    assert not torch.equal(one, scenes[(5, 10)]["ids"])  # the sample seed draws other outlines / ids


def test_silhouettes_as_training_data(tmp_path: Path) -> None:
    path = tiny_instances(tmp_path / "set", num=2)
    args = ["train-ae", "--data", f"synthetic+silhouettes:{path}", "--size", "32", "--val-size", "32", "--crop",
            "16", "--crops-per-mask", "2", "--batch-size", "2", "--max-steps", "2", "--val-every", "2", "--val-num",
            "2", "--threads", "1", "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8"]
    assert main([*args, "--out", str(tmp_path / "ae")]) == 0
    assert (tmp_path / "ae" / "model" / "config.json").exists()
    assert main([*args[:2], f"silhouettes:{tmp_path / 'nope.json'}", *args[3:], "--out", str(tmp_path / "x")]) == 2
    assert main([*args, "--target", "semantic", "--out", str(tmp_path / "y")]) == 2

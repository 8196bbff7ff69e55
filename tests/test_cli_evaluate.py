"""`ldmseg evaluate` / `visualize` / `data synth` end to end, and every bad input as a one-line error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ldmseg.cli import main
from ldmseg.data import formats


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldmseg", *args], capture_output=True, text=True)


def make_pred(synth_set: Path, tmp: Path) -> tuple[Path, Path]:
    """Predictions = the GT itself (perfect), as a separate set the tests can break."""
    pred_dir = tmp / "pred"
    shutil.copytree(synth_set / "panoptic", pred_dir)
    gt = json.loads((synth_set / "panoptic.json").read_text())
    pred_json = tmp / "pred.json"
    pred_json.write_text(json.dumps({"annotations": gt["annotations"]}))
    return pred_json, pred_dir


def evaluate_args(synth_set: Path, pred_json: Path, pred_dir: Path, *extra: str) -> list[str]:
    return ["evaluate", "--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"),
            "--pred-json", str(pred_json), "--pred-dir", str(pred_dir), *extra]


def test_perfect_prediction_scores_one(synth_set: Path, tmp_path: Path) -> None:
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    out = tmp_path / "res.json"
    res = run_cli(*evaluate_args(synth_set, pred_json, pred_dir, "--out", str(out), "--workers", "2"))
    assert res.returncode == 0, res.stderr
    assert "All" in res.stdout and "100.00" in res.stdout
    results = json.loads(out.read_text())
    assert results["All"]["pq"] == 1.0 and results["Things"]["n"] >= 1 and results["Stuff"]["n"] >= 1
    assert set(results["per_class"]) == {str(i) for i in range(1, 13)}


def test_workers_give_identical_results(synth_set: Path, tmp_path: Path) -> None:
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    for png in pred_dir.glob("*.png"):  # shift predictions so the score is not trivial
        ids = formats.read_panoptic_png(png)
        formats.write_panoptic_png(png, np.roll(ids, 3, axis=1))
    outs = []
    for workers in ("1", "3"):
        out = tmp_path / f"r{workers}.json"
        assert main(evaluate_args(synth_set, pred_json, pred_dir, "--out", str(out), "--workers", workers)) == 0
        outs.append(json.loads(out.read_text()))
    for name in ("All", "Things", "Stuff"):  # float sums in another order: equal to rounding
        assert outs[0][name] == pytest.approx(outs[1][name], abs=1e-12)
    assert 0 < outs[0]["All"]["pq"] < 1


def break_first(pred_json: Path, edit) -> None:
    data = json.loads(pred_json.read_text())
    edit(data["annotations"])
    pred_json.write_text(json.dumps(data))


BAD_INPUTS = {
    "missing png": (lambda pj, pd: (pd / "000000.png").unlink(), "000000.png: file not found"),
    "corrupt png": (lambda pj, pd: (pd / "000000.png").write_bytes(b"\x89PNG garbage"), "corrupt or unreadable"),
    "id only in png": (lambda pj, pd: break_first(pj, lambda a: a[0]["segments_info"].pop()),
                       "in the PNG but not in segments_info"),
    "id only in json": (lambda pj, pd: break_first(pj, lambda a: a[0]["segments_info"].append(
        {"id": 4242, "category_id": 1})), "in segments_info but not in the PNG"),
    "unknown category": (lambda pj, pd: break_first(pj, lambda a: a[0]["segments_info"][0].update(category_id=77)),
                         "unknown category_id 77"),
    "size mismatch": (lambda pj, pd: formats.write_panoptic_png(pd / "000000.png",
                                                                formats.read_panoptic_png(pd / "000000.png")[:-1]),
                      "differs from GT"),
    "duplicate image id": (lambda pj, pd: break_first(pj, lambda a: a.append(dict(a[0]))), "duplicate image_id 0"),
    "broken json": (lambda pj, pd: pj.write_text("{not json"), "broken JSON"),
    "missing prediction": (lambda pj, pd: break_first(pj, lambda a: a.pop(0)),
                           "no prediction for image_id 0 of --gt-json"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case: str, synth_set: Path, tmp_path: Path) -> None:
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    breaker, message = BAD_INPUTS[case]
    breaker(pred_json, pred_dir)
    res = run_cli(*evaluate_args(synth_set, pred_json, pred_dir, "--out", str(tmp_path / "r.json")))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert message in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_evaluate_does_not_import_torch(synth_set: Path, tmp_path: Path) -> None:
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    args = evaluate_args(synth_set, pred_json, pred_dir)
    code = f"import sys; from ldmseg.cli import main; main({args!r}); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip().endswith("False"), res.stdout + res.stderr


def test_synth_and_visualize_cli(tmp_path: Path) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "2", "--resolution", "48"]) == 0
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 2
    s = tmp_path / "s"
    assert main(["visualize", "--images", str(s / "images"), "--gt-json", str(s / "panoptic.json"), "--gt-dir",
                 str(s / "panoptic"), "--pred-json", str(s / "panoptic.json"), "--pred-dir", str(s / "panoptic"),
                 "--out", str(tmp_path / "viz")]) == 0
    pics = sorted((tmp_path / "viz").glob("*.png"))
    assert len(pics) == 2
    from PIL import Image
    assert Image.open(pics[0]).size[0] > 5 * 48


@pytest.mark.parametrize("command", ["predict", "inpaint", "reconstruct", "app", "demo"])
def test_threads_flag_and_passive_waiting(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from ldmseg.cli import _use_threads, build_parser

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    required = {"predict": ["--images", "x", "--out", "y"], "inpaint": ["--out", "y"],
                "reconstruct": ["--ae", "demo", "--images", "x", "--gt-json", "j", "--gt-dir", "d",
                                "--out", "y"], "app": [], "demo": []}[command]
    before = torch.get_num_threads()
    try:
        _use_threads(build_parser().parse_args([command, *required, "--threads", "1"]))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_visualize_predictions_alone_and_matched_colours(tmp_path: Path) -> None:
    """Predictions without GT draw (image, overlay, colours); beside GT, a matched prediction segment wears its
    GT segment's colour even though its id differs."""
    from PIL import Image

    from ldmseg.data import coco_panoptic, formats
    from ldmseg.viz import id_colours

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "1", "--resolution", "48"]) == 0
    s = tmp_path / "s"
    gt = coco_panoptic.load_panoptic_json(s / "panoptic.json")
    rec = gt.records[0]
    ids = formats.read_panoptic_png(s / "panoptic" / rec.png_file)
    shifted = np.where(ids > 0, ids + 1000, 0)  # the same segments under other ids: what a sampler returns
    (tmp_path / "p").mkdir()
    formats.write_panoptic_png(tmp_path / "p" / rec.png_file, shifted)
    segs = [{**seg, "id": seg["id"] + 1000} for seg in rec.segments]
    doc = json.loads((s / "panoptic.json").read_text())
    doc["annotations"][0]["segments_info"] = segs
    (tmp_path / "pred.json").write_text(json.dumps(doc))
    pred = ["--pred-json", str(tmp_path / "pred.json"), "--pred-dir", str(tmp_path / "p")]
    assert main(["visualize", "--images", str(s / "images"), *pred, "--out", str(tmp_path / "alone")]) == 0
    alone = np.asarray(Image.open(tmp_path / "alone" / rec.png_file))
    assert alone.shape[1] >= 3 * 48 and alone.shape[1] < 5 * 48  # three panels: no GT drawn
    both = ["--gt-json", str(s / "panoptic.json"), "--gt-dir", str(s / "panoptic"), *pred]
    assert main(["visualize", "--images", str(s / "images"), *both, "--out", str(tmp_path / "both")]) == 0
    grid_rgb = np.asarray(Image.open(tmp_path / "both" / rec.png_file))
    gt_colours = {tuple(c) for c in id_colours(ids).reshape(-1, 3)}
    pred_panel = grid_rgb[-52:-4, -52:-4].reshape(-1, 3)  # the last panel, inside the 4 px white padding
    inside = [tuple(c) for c in pred_panel if tuple(c) != (255, 255, 255)]  # borders are white
    assert inside and set(inside) <= gt_colours
    assert main(["visualize", "--images", str(s / "images"), "--out", str(tmp_path / "none")]) == 2


def test_match_ids_follows_pq_matching() -> None:
    from ldmseg.viz import match_ids

    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3]])
    pred = np.array([[7, 7, 1, 1], [7, 7, 1, 1], [0, 5, 5, 5]])
    assert match_ids(gt, pred).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [0, 3, 3, 3]]
    unmatched = np.array([[1, 1, 1, 1], [4, 4, 4, 4], [4, 4, 4, 4]])  # no IoU > 0.5: ids unused by the GT
    relabelled = match_ids(gt, unmatched)
    assert set(np.unique(relabelled)) & {0, 1, 2, 3} == set() and len(np.unique(relabelled)) == 2


@pytest.mark.parametrize("band_pixels", [1, 7, 50, 1 << 20])
def test_overlay_band_by_band_equals_whole_picture(band_pixels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full-size overlays are blended in row bands (81 MP in ~2 GB instead of ~7): any band height gives the
    picture the whole-image formula gives, borders across band edges included."""
    from ldmseg import viz

    rng = np.random.default_rng(band_pixels)
    image = rng.integers(0, 256, (37, 23, 3)).astype(np.uint8)
    ids = rng.integers(0, 4, (37, 23)) * 70001  # large ids: the unique-id colour table
    colours = viz.id_colours(ids).astype(np.float32)
    whole = image.astype(np.float32)
    whole[ids != 0] = 0.5 * whole[ids != 0] + 0.5 * colours[ids != 0]
    whole[viz.segment_borders(ids)] = 255
    whole_blend = (0.5 * image.astype(np.float32) + 0.5 * colours).round().astype(np.uint8)
    real_bands = viz.row_bands
    monkeypatch.setattr(viz, "row_bands", lambda h, w: real_bands(h, w, band_pixels))
    assert np.array_equal(viz.overlay(image, ids), whole.round().astype(np.uint8))
    assert np.array_equal(viz.blend(image, viz.id_colours(ids)), whole_blend)


def test_predictions_name_their_images_so_visualize_finds_any_format(tmp_path: Path) -> None:
    """predict's panoptic.json lists its images (file_name, size), so `visualize` draws predictions alone for
    photos of any format, a WebP and a JPEG with a space in its name included."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    for name in ("b.webp", "street one.JPG"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(photos / name)
    assert main(["predict", "--images", str(photos), "--out", str(tmp_path / "pred"), "--task", "instances",
                 "--ensemble-size", "1", "--steps", "1"]) == 0
    listed = json.loads((tmp_path / "pred" / "panoptic.json").read_text())["images"]
    assert sorted((im["file_name"], im["width"], im["height"]) for im in listed) == [
        ("b.webp", 64, 48), ("street one.JPG", 64, 48)]
    assert main(["visualize", "--images", str(photos), "--pred-json", str(tmp_path / "pred" / "panoptic.json"),
                 "--pred-dir", str(tmp_path / "pred" / "panoptic"), "--out", str(tmp_path / "viz")]) == 0
    assert sorted(p.name for p in (tmp_path / "viz").iterdir()) == ["b.png", "street one.png"]


def camvid_like(tmp: Path) -> tuple[Path, Path]:
    """CamVid's own label PNGs (0..10 classes, 11 unlabelled) and predictions of them in ldmseg's ids, beside the
    categories.json `predict --task semantic` writes for the camvid model."""
    from ldmseg.data.classes import load_class_list

    camvid = load_class_list("camvid")
    gt, pred = tmp / "valannot", tmp / "pred" / "semantic"
    for i in range(2):
        raw = np.full((12, 16), 11, np.uint8)
        raw[:6], raw[6:, :8] = 0, 3  # sky, road, unlabelled
        formats.write_png(gt / f"f{i}.png", raw)
        formats.write_png(pred / f"f{i}.png", camvid.to_semantic(raw, "x").astype(np.uint8))
    formats.write_json(tmp / "pred" / "categories.json", {"categories": camvid.categories()})
    return gt, pred


def test_semantic_gt_in_another_convention_is_refused_never_scored(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """Issue 43: CamVid's raw label PNGs scored without --classes against camvid predictions printed mIoU 1.39;
    now the predictions' categories.json decides: one line naming --classes, or the labels mapped as told."""
    gt, pred = camvid_like(tmp_path)
    semantic = ["evaluate", "--task", "semantic", "--gt-dir", str(gt), "--pred-dir", str(pred)]
    capsys.readouterr()
    assert main(semantic) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--classes camvid" in err and "categories.json" in err
    assert main([*semantic, "--classes", "camvid"]) == 0
    out = capsys.readouterr().out
    assert "mIoU 100.00" in out and "Road" in out and out.startswith("semantic segmentation (--task semantic)")
    assert main([*semantic, "--classes", "ldmseg"]) == 0  # told the GT holds ids: scored as they are
    assert "mIoU 100.00" not in capsys.readouterr().out
    from ldmseg.data.synthetic import categories

    formats.write_json(tmp_path / "pred" / "categories.json", {"categories": categories()})  # 12 synthetic ids
    assert main([*semantic, "--classes", "camvid"]) == 2  # a class list that is not the predictions' classes
    assert "not the predictions' classes" in capsys.readouterr().err
    formats.write_png(gt / "f0.png", np.full((12, 16), 200, np.uint8))
    assert main(semantic) == 2  # a GT value no predicted class has
    err = capsys.readouterr().err
    assert "f0.png: GT value 200 is neither a predicted class" in err and "--classes" in err
    formats.write_png(gt / "f0.png", np.zeros((12, 16), np.uint8))
    assert main([*semantic, "--ignore-label", "255"]) == 2  # 0 used as a class, but the predictions' 0 is none
    assert "GT value 0 is neither" in capsys.readouterr().err
    for broken in ({"categories": [{"id": "x", "name": "Sky"}]}, {"categories": 3}, [1]):  # never silently skipped
        formats.write_json(tmp_path / "pred" / "categories.json", broken)
        assert main([*semantic, "--classes", "camvid"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "categories.json: expected" in err


def test_evaluate_task_instances_titles_and_out(synth_set: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """--task instances is --class-agnostic; every table has a title line saying what was scored; --out is the
    results file (--output still works, and says the new name once)."""
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    capsys.readouterr()
    assert main(evaluate_args(synth_set, pred_json, pred_dir, "--task", "instances", "--out",
                              str(tmp_path / "i.json"))) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("class-agnostic panoptic quality (--task instances)")
    assert main(evaluate_args(synth_set, pred_json, pred_dir, "--class-agnostic", "--output", str(tmp_path / "a.json"),
                              "--output", str(tmp_path / "a.json"))) == 0
    captured = capsys.readouterr()
    assert captured.err.count("--output is now --out") == 1
    assert json.loads((tmp_path / "i.json").read_text()) == json.loads((tmp_path / "a.json").read_text())
    assert "Stuff" not in json.loads((tmp_path / "i.json").read_text())
    assert main(evaluate_args(synth_set, pred_json, pred_dir)) == 0
    assert capsys.readouterr().out.startswith("class-aware panoptic quality (--task panoptic)")
    assert main(["evaluate", "--task", "depth", "--gt-dir", str(synth_set / "depth"), "--pred-dir",
                 str(synth_set / "depth")]) == 0
    assert capsys.readouterr().out.startswith("depth (--task depth)")


def test_predictions_named_by_file_say_to_predict_with_gt_json(synth_set: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """Predictions made without --gt-json name their images by file stem: the line names both JSON flags and
    the fix."""
    pred_json, pred_dir = make_pred(synth_set, tmp_path)
    break_first(pred_json, lambda anns: [a.update(image_id=Path(a["file_name"]).stem) for a in anns])
    assert main(evaluate_args(synth_set, pred_json, pred_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--pred-json {pred_json}: no prediction for image_id 0 of --gt-json" in err
    assert "6 of 6 GT images have none" in err and "predict with --gt-json" in err


def test_visualize_semantic_and_depth_with_legend_and_colour_bar(synth_set: Path, tmp_path: Path) -> None:
    """Semantic grids: image, GT and prediction over the image and alone, then a legend naming the classes (from
    the predictions' categories.json); depth grids end in the colour bar; --num caps the pictures."""
    from PIL import Image

    from ldmseg.data.synthetic import categories
    from ldmseg.viz import class_palette

    pred = tmp_path / "pred"
    shutil.copytree(synth_set / "semantic", pred / "semantic")
    shutil.copytree(synth_set / "depth", pred / "depth")
    formats.write_json(pred / "categories.json", {"categories": categories()})
    images = ["--images", str(synth_set / "images")]
    assert main(["visualize", "--task", "semantic", *images, "--gt-dir", str(synth_set / "semantic"), "--pred-dir",
                 str(pred / "semantic"), "--out", str(tmp_path / "sem"), "--num", "2"]) == 0
    pics = sorted((tmp_path / "sem").glob("*.png"))
    assert [p.name for p in pics] == ["000000.png", "000001.png"]
    picture = np.asarray(Image.open(pics[0]).convert("RGB"))
    assert picture.shape[1] > 5 * 64 + 40  # five panels and the legend beside them
    labels = formats.read_label_png(synth_set / "semantic" / "000000.png")
    swatch = class_palette(np.array([int(labels.max())]), categories())[0]
    legend = picture[:, 5 * 64 + 6 * 4:].reshape(-1, 3)
    assert (legend == swatch).all(1).any()  # the legend shows the class's own colour
    assert main(["visualize", "--task", "depth", *images, "--pred-dir", str(pred / "depth"), "--out",
                 str(tmp_path / "depth")]) == 0
    depth = np.asarray(Image.open(tmp_path / "depth" / "000000.png").convert("RGB"))
    assert depth.shape[1] == 2 * 64 + 3 * 4 + 14 + 40  # image, prediction, then the colour bar
    assert main(["visualize", "--task", "depth", *images, "--pred-json", "p.json", "--pred-dir", str(pred / "depth"),
                 "--out", str(tmp_path / "x")]) == 2


def test_visualize_and_reconstruct_take_images_as_predict_does(synth_set: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    """--images is a folder, one file, a quoted glob or - in visualize and reconstruct too: only the images named
    are drawn / reconstructed. Reconstruct prints its latent statistics only with --verbose."""
    import io

    gt = ["--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic")]
    one = str(synth_set / "images" / "000002.png")
    assert main(["visualize", "--images", one, *gt, "--out", str(tmp_path / "one")]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["000002.png"]
    pattern = str(synth_set / "images" / "00000[13].png")
    assert main(["visualize", "--images", pattern, *gt, "--out", str(tmp_path / "glob"), "--limit", "5"]) == 0
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["000001.png", "000003.png"]
    monkeypatch.setattr("sys.stdin", io.StringIO(one + "\n"))
    assert main(["reconstruct", "--ae", "demo", "--images", "-", *gt, "--out", str(tmp_path / "rec"),
                 "--resolution", "64"]) == 0
    assert [p.name for p in (tmp_path / "rec" / "panoptic").iterdir()] == ["000002.png"]
    assert "latent mean" not in capsys.readouterr().out
    assert main(["reconstruct", "--ae", "demo", *gt, "--out", str(tmp_path / "all"), "--resolution", "64",
                 "--verbose"]) == 0
    assert len(list((tmp_path / "all" / "panoptic").iterdir())) == 6  # no --images: every mask
    assert "latent mean per channel" in capsys.readouterr().out

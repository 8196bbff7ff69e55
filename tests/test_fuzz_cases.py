"""The fuzz suite (issue 36): bad inputs and faults across every command, each held to the same rules. Exit 2 with
one line naming the problem (no traceback), inputs byte-identical afterwards, nothing written outside the output,
nothing half-written, no network attempt. Each case builds its fault from a tiny synthetic set."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fuzz_harness import (
    CASE_SECONDS,
    CASES,
    WEIGHTS,
    World,
    ae_fault,
    annotation,
    case,
    category,
    depth_eval,
    digest,
    dropper,
    edit_config,
    evaluate,
    fill_all,
    first_name,
    huge_header_png,
    inpaint_one,
    inpaint_set,
    model_fault,
    nan_tiff,
    on_first,
    only_text_files,
    out_is,
    png16_rgb,
    predict,
    predict_gt,
    reconstruct,
    reshape_first_tensor,
    said,
    segment,
    semantic_eval,
    setter,
    too_slow,
    train,
    train_ae,
    truncate,
    under,
    visualize,
    with_pred_copy,
    write_text,
)
from PIL import Image

from ldmseg.cli import main

# --- COCO-panoptic JSON: every kind of bad value, fed to every command that reads one --------------------------


JSON_FAULTS: dict[str, Callable[[World], object]] = {
    "area-negative": segment(setter("area", -5)),
    "area-nan": segment(setter("area", float("nan"))),
    "area-inf": segment(setter("area", float("inf"))),
    "area-1e308": segment(setter("area", 1e308)),
    "area-string": segment(setter("area", "12")),
    "area-bool": segment(setter("area", True)),
    "isthing-maybe": category(setter("isthing", "maybe")),
    "isthing-2": category(setter("isthing", 2)),
    "isthing-missing": category(dropper("isthing")),
    "iscrowd-yes": segment(setter("iscrowd", "yes")),
    "iscrowd-2": segment(setter("iscrowd", 2)),
    "iscrowd-null": segment(setter("iscrowd", None)),
    "segment-id-zero": segment(setter("id", 0)),
    "segment-id-negative": segment(setter("id", -3)),
    "segment-id-2^24": segment(setter("id", 2**24)),
    "segment-id-float": segment(setter("id", 1.0)),
    "segment-id-missing": segment(dropper("id")),
    "category-id-string": segment(setter("category_id", "1")),
    "category-id-unknown": segment(setter("category_id", 999)),
    "category-id-missing": segment(dropper("category_id")),
    "segment-not-object": annotation(lambda a: a["segments_info"].append([1, 2])),
    "segment-duplicate": annotation(lambda a: a["segments_info"].append(dict(a["segments_info"][0]))),
    "segment-absent-from-png": annotation(lambda a: a["segments_info"].append(
        {"id": 4000, "category_id": a["segments_info"][0]["category_id"], "iscrowd": 0, "area": 5})),
    "png-id-absent-from-json": annotation(lambda a: a["segments_info"].pop()),
    "image-id-list": annotation(setter("image_id", [1])),
    "image-id-object": annotation(setter("image_id", {"a": 1})),
    "image-id-null": annotation(setter("image_id", None)),
    "image-id-float": annotation(setter("image_id", 0.5)),
    "image-id-duplicate": lambda w: w.edit_json(lambda d: d["annotations"][1].__setitem__(
        "image_id", d["annotations"][0]["image_id"])),
    "file-name-int": annotation(setter("file_name", 7)),
    "file-name-empty": annotation(setter("file_name", "")),
    "file-name-duplicate": lambda w: w.edit_json(lambda d: d["annotations"][1].__setitem__(
        "file_name", d["annotations"][0]["file_name"])),
    "file-name-parent": annotation(setter("file_name", "../x.png")),
    "file-name-absolute": annotation(setter("file_name", "/tmp/ldmseg-fuzz-escape.png")),
    "file-name-missing-png": annotation(setter("file_name", "no-such-file.png")),
    "segments-info-null": annotation(setter("segments_info", None)),
    "segments-info-string": annotation(setter("segments_info", "many")),
    "annotations-object": lambda w: w.edit_json(setter("annotations", {})),
    "annotations-missing": lambda w: w.edit_json(dropper("annotations")),
    "categories-null": lambda w: w.edit_json(setter("categories", None)),
    "categories-duplicate-id": lambda w: w.edit_json(lambda d: d["categories"].append(dict(d["categories"][0]))),
    "category-id-not-int": category(setter("id", "one")),
    "top-level-list": write_text("[1, 2, 3]"),
    "deeply-nested": write_text("[" * 100_000 + "]" * 100_000),
    "broken-json": write_text('{"annotations": [ {"image_id": 1,'),
    "empty-file": write_text(""),
    "binary-garbage": lambda w: w.pjson.write_bytes(bytes(range(256)) * 4),
    "nan-literal-top": write_text("NaN"),
    "fifo": lambda w: (w.pjson.unlink(), os.mkfifo(w.pjson)),
}

JSON_READERS: dict[str, Callable[..., list[str]]] = {
    "evaluate": evaluate, "visualize": visualize, "reconstruct": reconstruct, "predict-gt": predict_gt,
    "inpaint-set": inpaint_set,
}
PNG_FAULTS = {  # faults the PNGs show, and the PNG the error names
    "segment-absent-from-png": first_name("panoptic"), "png-id-absent-from-json": first_name("panoptic"),
    "file-name-missing-png": said("no-such-file.png")}
for fault_name, fault in JSON_FAULTS.items():
    for reader_name, reader in JSON_READERS.items():
        if reader_name == "predict-gt" and fault_name in PNG_FAULTS:
            continue  # predict reads the JSON's image list, not its PNGs
        case(f"json/{fault_name}/{reader_name}", reader, fault,
             PNG_FAULTS.get(fault_name, under("in", "panoptic.json")))
PNG_READERS = {name: reader for name, reader in JSON_READERS.items() if name != "predict-gt"}  # predict reads no PNG


# --- panoptic PNGs and images ------------------------------------------------------------------------------------


FILE_FAULTS: dict[str, Callable[[Path], object]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("not an image at all\n"),
    "16bit-rgb": png16_rgb,
    "huge-header": huge_header_png,
    "folder": lambda p: (p.unlink(), p.mkdir()),
    "fifo": lambda p: (p.unlink(), os.mkfifo(p)),  # opening it would wait for a writer forever
    "missing": lambda p: p.unlink(),
}
PNG_ONLY_FAULTS: dict[str, Callable[[Path], object]] = {
    "grayscale": lambda p: Image.new("L", (64, 64)).save(p),
    "wrong-size": lambda p: Image.new("RGB", (40, 24), (1, 0, 0)).save(p),
}
for fault_name, damage in {**FILE_FAULTS, **PNG_ONLY_FAULTS}.items():
    for reader_name, reader in PNG_READERS.items():
        case(f"panoptic-png/{fault_name}/{reader_name}", reader, on_first("panoptic", damage), first_name("panoptic"))
for fault_name, damage in FILE_FAULTS.items():
    if fault_name == "missing":
        continue  # a missing image in a folder is no fault: the folder is what was given
    if fault_name == "16bit-rgb":  # a 16-bit photo is read (scaled to 8 bits): a fault only where sizes must agree
        case("image/16bit-rgb-wrong-size/visualize", visualize, on_first("images", damage), first_name("images"))
        continue
    for name, command in {"predict": predict, "visualize": visualize, "inpaint-set": inpaint_set,
                          "inpaint-one": inpaint_one}.items():
        case(f"image/{fault_name}/{name}", command, on_first("images", damage), first_name("images"))
    case(f"partial/{fault_name}/inpaint-one", inpaint_one, on_first("panoptic", damage), first_name("panoptic"))


case("images/all-nan-float-tiff/predict", predict, nan_tiff, under("in", "images", "nan.tif"))
case("images/folder-of-text/predict", predict, only_text_files, under("in", "images"))
case("images/empty-folder/predict", predict, lambda w: [p.unlink() for p in w.images.iterdir()],
     under("in", "images"))
case("images/missing-folder/predict", predict, lambda w: shutil.rmtree(w.images), under("in", "images"))
case("images/glob-matches-nothing/predict", lambda w: predict(w, images=w.images / "*.nothing"),
     names=under("in", "images", "*.nothing"))


# --- numbers out of bounds: checked by the parser, before anything loads ------------------------------------------
BOUNDS: dict[str, tuple[Callable[..., list[str]], list[tuple[str, ...]]]] = {
    "predict": (predict, [
        ("--steps", "0"), ("--steps", "-1"), ("--steps", "1001"), ("--steps", "100000"), ("--steps", "abc"),
        ("--steps", "1e3"), ("--threads", "-2"), ("--threads", "100000"), ("--seed", "-1"),
        ("--seed", str(2**80)), ("--seed", "x"), ("--resolution", "0"), ("--resolution", "-64"),
        ("--resolution", "1048576"), ("--resolution", "nan"), ("--ensemble-size", "0"),
        ("--ensemble-size", "1000000"), ("--batch-size", "0"), ("--preset", "nope"),
        ("--task", "nope"), ("--precision", "nope"), ("--scheduler", "bogus")]),
    "inpaint": (inpaint_set, [
        ("--block-size", "100000000"), ("--block-size", "60000"), ("--block-size", "0"), ("--block-size", "-4"),
        ("--drop-rate", "1.5"),
        ("--drop-rate", "-0.1"), ("--drop-rate", "nan"), ("--ensemble-size", "1000000"), ("--steps", "1001"),
        ("--batch-size", "0"), ("--seed", str(2**64)), ("--threads", "100000"), ("--mask-type", "nope")]),
    "reconstruct": (reconstruct, [
        ("--latent-noise", "nan"), ("--latent-noise", "-1"), ("--latent-noise", "inf"), ("--threshold", "2"),
        ("--threshold", "nan"), ("--min-area", "-1"), ("--min-core", "-1"), ("--resolution", "1048576"),
        ("--resolution", "0"), ("--batch-size", "0"), ("--threads", "-1")]),
    "evaluate": (evaluate, [("--workers", "0"), ("--workers", "100000"), ("--task", "nope")]),
    "evaluate-semantic": (lambda w, *e: ["evaluate", "--task", "semantic", "--gt-dir", str(w.gt / "semantic"),
                                         "--pred-dir", str(w.gt / "semantic"), "--out", str(w.out / "s.json"),
                                         *e], [
        ("--num-classes", "0"), ("--num-classes", "1000000"), ("--num-classes", "-3"), ("--ignore-label", "-5"),
        ("--ignore-label", "70000")]),
    "visualize": (visualize, [("--num", "-1"), ("--num", "abc")]),
    "synth": (lambda w, *e: ["data", "synth", "--out", str(w.out), *e], [
        ("--num", "-1"), ("--num", "1000000000"), ("--resolution", "1048576"), ("--resolution", "0")]),
    "train-ae": (train_ae, [
        ("--resolution", "100000"), ("--batch-size", "100000"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "inf"),
        ("--max-steps", "-1"), ("--num-bits", "0"), ("--num-bits", "40"), ("--latent-channels", "0"),
        ("--threads", "100000"), ("--seed", str(2**80)), ("--crop", "100000"), ("--grad-accum", "2000"),
        ("--val-num", "1000000")]),
    "train": (train, [
        ("--resolution", "100000"), ("--batch-size", "100000"), ("--lr", "inf"), ("--inference-steps", "5000"),
        ("--val-steps", "0"), ("--max-steps", "0"), ("--threads", "3"), ("--grad-accum", "1000000000000"),
        ("--val-num", "1000000000000")]),
}
for command_name, (command, flag_values) in BOUNDS.items():
    for flag_value in flag_values:
        case(f"bounds/{command_name}/{'='.join(flag_value)}",
             lambda w, command=command, flag_value=flag_value: command(w, *flag_value),
             names=said(flag_value[0], *[v for v in flag_value[1:] if len(v) > 3]))  # the flag, or a telling value
for value in ("inf", "-1", "abc", "0", "1e9", "12 MP"):
    case(f"env/LDMSEG_MAX_PIXELS={value}/predict", predict,
         lambda w, value=value: w.env.__setitem__("LDMSEG_MAX_PIXELS", value), said("LDMSEG_MAX_PIXELS"))


# --- output paths that cannot be written --------------------------------------------------------------------------


OUT_PLACES: dict[str, tuple[Callable[[World], Path], Callable[[Path], object] | None]] = {
    "existing-file": (lambda w: w.root / "out" / "file", lambda p: p.write_text("keep me")),
    "under-a-file": (lambda w: w.root / "out" / "file" / "child", lambda p: p.parent.write_text("keep me")),
    "dev-null": (lambda w: Path("/dev/null"), None),
    "proc": (lambda w: Path("/proc/ldmseg-fuzz/x"), None),
}


def output_or_folder(place: Callable[[World], Path]) -> Callable[[World], tuple[str, ...]]:
    """An output that cannot be written: its error names it, or the folder it would be made in."""
    return lambda w: (str(place(w)), str(place(w).parent))


for out_name, (place, make) in OUT_PLACES.items():
    with_out, the_place = out_is(place, make), output_or_folder(place)
    for command_name, command in {"predict": predict, "visualize": visualize, "reconstruct": reconstruct,
                                  "inpaint-one": inpaint_one, "synth": BOUNDS["synth"][0]}.items():
        case(f"out/{out_name}/{command_name}", with_out(command), names=the_place)
    if out_name != "existing-file":  # evaluate --output names a file: an existing one is replaced
        case(f"out/{out_name}/evaluate", with_out(evaluate, "--out"), names=the_place)
case("out/evaluate-output-is-a-folder", lambda w: evaluate(w)[:-2] + ["--out", str(w.root)], names=under())


# --- broken model directories ---------------------------------------------------------------------------------------


MODEL_FAULTS: dict[str, Callable[[Path], object]] = {
    "model-index-missing": lambda m: (m / "model_index.json").unlink(),
    "model-index-broken": lambda m: (m / "model_index.json").write_text("{"),
    "model-index-list": lambda m: (m / "model_index.json").write_text("[]"),
    "model-index-foreign-class": lambda m: edit_config(m / "model_index.json", setter("_class_name", "EvilPipeline")),
    "model-index-component-type": lambda m: edit_config(m / "model_index.json", setter("unet", ["os", "system"])),
    "model-index-component-foreign": lambda m: edit_config(m / "model_index.json",
                                                           setter("unet", ["os", "system"])),
    "unet-folder-missing": lambda m: shutil.rmtree(m / "unet"),
    "unet-weights-missing": lambda m: (m / "unet" / WEIGHTS).unlink(),
    "unet-weights-truncated": lambda m: truncate(m / "unet" / WEIGHTS),
    "unet-weights-empty": lambda m: (m / "unet" / WEIGHTS).write_bytes(b""),
    "unet-weights-wrong-shape": lambda m: reshape_first_tensor(m / "unet" / WEIGHTS),
    "unet-config-broken": lambda m: (m / "unet" / "config.json").write_text("{"),
    "unet-config-wrong-type": lambda m: edit_config(m / "unet" / "config.json", setter("sample_size", "big")),
    "unet-config-foreign-class": lambda m: edit_config(m / "unet" / "config.json", setter("_class_name", "Evil")),
    "mask-ae-weights-truncated": lambda m: truncate(m / "mask_autoencoder" / WEIGHTS),
    "mask-ae-weights-wrong-shape": lambda m: reshape_first_tensor(m / "mask_autoencoder" / WEIGHTS),
    "mask-ae-config-wrong-type": lambda m: edit_config(m / "mask_autoencoder" / "config.json",
                                                       setter("num_bits", "seven")),
    "image-encoder-missing": lambda m: shutil.rmtree(m / "image_encoder"),
    "scheduler-config-broken": lambda m: (m / "scheduler" / "scheduler_config.json").write_text("]"),
    "scale-factor-nan": lambda m: edit_config(m / "model_index.json", setter("scale_factor", float("nan"))),
    "scale-factor-string": lambda m: edit_config(m / "model_index.json", setter("scale_factor", "big")),
    "categories-broken": lambda m: edit_config(m / "model_index.json", setter("categories", [{"id": "x"}])),
    "empty-folder": lambda m: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in m.iterdir()],
    "a-file-not-a-folder": lambda m: (shutil.rmtree(m), m.write_text("model")),
}
for fault_name, damage in MODEL_FAULTS.items():
    case(f"model/{fault_name}/predict", model_fault(damage), names=under("in", "model"))
case("model/missing-path/predict", lambda w: predict(w, "--model", str(w.root / "nothing-here")),
     names=under("nothing-here"))


for fault_name, damage in {
    "weights-missing": lambda a: (a / WEIGHTS).unlink(),
    "weights-truncated": lambda a: truncate(a / WEIGHTS),
    "weights-wrong-shape": lambda a: reshape_first_tensor(a / WEIGHTS),
    "config-missing": lambda a: (a / "config.json").unlink(),
    "config-wrong-type": lambda a: edit_config(a / "config.json", setter("latent_channels", "four")),
    "config-foreign-class": lambda a: edit_config(a / "config.json", setter("_class_name", "Evil")),
}.items():
    case(f"ae/{fault_name}/reconstruct", ae_fault(damage), names=under("in", "ae"))


# --- semantic and depth scoring: degenerate or mismatched ground truth ----------------------------------------------


SEMANTIC, DEPTH = under("in", "semantic"), under("in", "depth")  # the GT folder or its *_pred copy
case("semantic/all-ignore-gt", semantic_eval, with_pred_copy("semantic", fill_all("semantic", 0, "uint8")), SEMANTIC)
case("semantic/label-over-num-classes", semantic_eval,
     with_pred_copy("semantic", fill_all("semantic_pred", 200, "uint8")), SEMANTIC)
case("semantic/pred-missing", semantic_eval, with_pred_copy("semantic", lambda w: w.first("semantic_pred").unlink()),
     SEMANTIC)
case("semantic/pred-wrong-size", semantic_eval, with_pred_copy(
    "semantic", lambda w: Image.new("L", (10, 10)).save(w.first("semantic_pred"))), SEMANTIC)
case("semantic/pred-rgb", semantic_eval, with_pred_copy(
    "semantic", lambda w: Image.new("RGB", (64, 64)).save(w.first("semantic_pred"))), SEMANTIC)
case("depth/constant-zero-gt", depth_eval, with_pred_copy("depth", fill_all("depth", 0, "uint16")), DEPTH)
case("depth/pred-missing", depth_eval, with_pred_copy("depth", lambda w: w.first("depth_pred").unlink()), DEPTH)
case("depth/pred-8bit", depth_eval, with_pred_copy(
    "depth", lambda w: Image.new("L", (64, 64)).save(w.first("depth_pred"))), DEPTH)
case("depth/pred-wrong-size", depth_eval, with_pred_copy(
    "depth", lambda w: Image.fromarray(np.zeros((8, 8), np.uint16)).save(w.first("depth_pred"))), DEPTH)


# --- inpainting with nothing to go on, or masks that do not fit -----------------------------------------------------
case("inpaint/partial-all-void", inpaint_one,
     lambda w: Image.new("RGB", (64, 64)).save(w.first("panoptic")), first_name("panoptic"))
case("inpaint/partial-wrong-size", inpaint_one,
     lambda w: Image.new("RGB", (40, 24), (3, 0, 0)).save(w.first("panoptic")), first_name("panoptic"))
case("inpaint/valid-all-zero", lambda w: inpaint_one(w, "--valid", str(w.gt / "valid.png")),
     lambda w: Image.new("L", (64, 64)).save(w.gt / "valid.png"), under("in", "valid.png"))
case("inpaint/valid-wrong-size", lambda w: inpaint_one(w, "--valid", str(w.gt / "valid.png")),
     lambda w: Image.new("L", (10, 10), 255).save(w.gt / "valid.png"), under("in", "valid.png"))
case("inpaint/valid-missing", lambda w: inpaint_one(w, "--valid", str(w.gt / "valid.png")),
     names=under("in", "valid.png"))
case("inpaint/drop-everything", lambda w: inpaint_set(w, "--drop-rate", "1"), names=said("--drop-rate"))
case("inpaint/image-and-set-both", lambda w: inpaint_one(w, "--images", str(w.images)), names=said("--image"))
for flag, value in (("--drop-rate", "0.9"), ("--block-size", "8"), ("--mask-type", "beit")):  # hide nothing there
    case(f"inpaint/image-with-{flag[2:]}", lambda w, f=flag, v=value: inpaint_one(w, f, v), names=said(flag))


# --- training: bad data, bad runs -----------------------------------------------------------------------------------
case("train-ae/data-missing", lambda w: train_ae(w, "--data", str(w.root / "nothing")), names=under("nothing"))
case("train-ae/data-broken-json", lambda w: train_ae(w, "--data", str(w.gt)), write_text("{"),
     under("in", "panoptic.json"))
case("train-ae/data-png-corrupt", lambda w: train_ae(w, "--data", str(w.gt)),
     lambda w: [p.write_bytes(b"junk") for p in w.pdir.iterdir()], under("in", "panoptic"))
case("train-ae/val-data-missing", lambda w: train_ae(w, "--val-data", str(w.root / "nothing")),
     names=under("nothing"))
case("train-ae/resume-missing-run", lambda w: train_ae(w, "--resume", str(w.root / "no-run")), names=under("no-run"))
case("train/ae-missing", lambda w: train(w, "--ae", str(w.root / "nothing")), names=under("nothing"))
case("train/data-missing", lambda w: train(w, "--data", str(w.root / "nothing")), names=under("nothing"))
case("train/config-missing", lambda w: train(w, "--config", str(w.root / "nothing.json")),
     names=under("nothing.json"))
case("train/config-broken", lambda w: train(w, "--config", str(w.gt / "c.json")),
     lambda w: (w.gt / "c.json").write_text("{"), under("in", "c.json"))
case("train/config-unknown-key", lambda w: train(w, "--config", str(w.gt / "c.json")),
     lambda w: (w.gt / "c.json").write_text('{"no_such_option": 1}'), under("in", "c.json"))
case("train/config-wrong-type", lambda w: train(w, "--config", str(w.gt / "c.json")),
     lambda w: (w.gt / "c.json").write_text('{"lr": "fast"}'), under("in", "c.json"))


def test_the_suite_is_large() -> None:
    assert len(CASES) >= 250


def test_a_16_bit_photo_is_read_scaled_and_a_16_bit_panoptic_png_refused(tmp_path: Path) -> None:
    from ldmseg.data import formats
    from ldmseg.errors import LDMSegError

    png16_rgb(tmp_path / "deep.png")  # every channel 4000 / 65535
    assert (formats.read_rgb(tmp_path / "deep.png") == 4000 * 255 // 65535).all()
    with pytest.raises(LDMSegError, match="16-bit-per-channel panoptic PNG"):
        formats.read_panoptic_png(tmp_path / "deep.png")


def test_json_outputs_hold_no_nan(tmp_path: Path) -> None:
    from ldmseg.data import formats

    formats.write_json(tmp_path / "s.json", {"miou": float("nan"), "per_class": [1.0, float("inf")], "n": 3})
    text = (tmp_path / "s.json").read_text()
    assert json.loads(text) == {"miou": None, "per_class": [1.0, None], "n": 3} and "NaN" not in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_harms_nothing(name: str, synth_set: Path, tmp_path: Path, no_network: list,
                                                 capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    w = World(tmp_path)
    shutil.copytree(synth_set, w.gt)
    argv = CASES[name](w)
    for key, value in w.env.items():
        monkeypatch.setenv(key, value)
    inputs, everything = digest(w.gt), digest(tmp_path)
    capsys.readouterr()
    signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(CASE_SECONDS)
    try:
        rc = main(argv)
    finally:
        signal.alarm(0)
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert rc == 2, f"{name}: exit {rc}, stderr {err[-500:]!r}"
    assert "Traceback" not in err and lines and re.match(r"ldmseg( [a-z-]+)*: error: ", lines[-1]), err[-500:]
    assert w.named, f"{name}: the case says not what its error must name"
    assert any(n in lines[-1] for n in w.named), f"the error names none of {w.named}: {lines[-1]}"
    assert sum("error" in line.lower() for line in lines) == 1, err[-500:]
    assert digest(w.gt) == inputs, "an input changed"
    after = digest(tmp_path)
    outside = {p for p in after if not p.startswith("out/") and after[p] != everything.get(p)}
    assert not outside, f"written outside the output: {sorted(outside)}"
    leftovers = [p for p in after if p.startswith("out/") and p not in everything and ("tmp" in Path(p).name)]
    assert not leftovers, f"half-written files: {leftovers}"
    assert not no_network, f"network attempts: {no_network}"
    if name.startswith(("train", "bounds/", "model/", "env/", "ae/")):  # refused before any output (or a run
        assert not w.out.exists(), f"{w.out} left behind"                # that failed before its first checkpoint)
    assert not Path("/tmp/ldmseg-fuzz-escape.png").exists()

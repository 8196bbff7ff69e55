"""The Python API as diffusers users expect it: an output object that behaves like diffusers' BaseOutput, inputs of
every kind (paths, PIL, arrays, tensors, lists), and the same argument rules and messages as the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.utils import BaseOutput
from PIL import Image

from ldmseg.cli import main
from ldmseg.errors import LDMSegError
from ldmseg.pipeline import LDMSegPipeline


@pytest.fixture(scope="module")
def pipe() -> LDMSegPipeline:
    p = LDMSegPipeline.from_pretrained("demo")
    p.set_progress_bar_config(disable=True)
    return p


def image(h: int = 32, w: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)


@dataclass
class Reference(BaseOutput):
    """A plain diffusers output with the same fields: what BaseOutput does with them is the expectation."""

    panoptic: list | None = None
    segments_info: list | None = None
    logits: list | None = None
    known_agreement: list | None = None
    semantic: list | None = None
    depth: list | None = None
    depth_uncertainty: list | None = None


@pytest.mark.parametrize("task", ["instances", "semantic", "depth", "panoptic"])
def test_output_behaves_like_diffusers_base_output(pipe: LDMSegPipeline, task: str) -> None:
    out = pipe(image(), task=task, num_inference_steps=1, processing_resolution=64)
    filled = {k: getattr(out, k) for k in Reference.__dataclass_fields__ if getattr(out, k) is not None}
    ref = Reference(**filled)
    assert list(out.keys()) == list(ref.keys()) and out.task == task
    assert all(out[k] is ref[k] for k in ref.keys())
    assert all(out[i] is ref[i] for i in range(len(ref)))
    assert out.to_tuple() == ref.to_tuple() and len(out.to_tuple()) == len(filled)
    plain = pipe(image(), task=task, num_inference_steps=1, processing_resolution=64, return_dict=False)
    assert isinstance(plain, tuple) and len(plain) == len(out.to_tuple())
    assert isinstance(out, BaseOutput)


def test_output_as_pictures_updates_the_keys(pipe: LDMSegPipeline) -> None:
    out = pipe(image(), task="instances", num_inference_steps=1, processing_resolution=64, output_type="pil")
    assert isinstance(out["panoptic"][0], Image.Image) and out[0] is out.panoptic


def test_images_of_every_kind(pipe: LDMSegPipeline, tmp_path: Path) -> None:
    arr = image()
    Image.fromarray(arr).save(tmp_path / "a.png")
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1
    kinds = [str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(arr), arr, tensor]
    outs = [pipe(k, task="instances", num_inference_steps=1, processing_resolution=64,
                 generator=torch.Generator().manual_seed(0)).panoptic[0] for k in kinds]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    both = pipe([str(tmp_path / "a.png"), arr[:20]], task="instances", num_inference_steps=1,
                processing_resolution=64)
    assert [p.shape for p in both.panoptic] == [(32, 40), (20, 40)]
    with pytest.raises(LDMSegError, match="no-such.png: file not found"):
        pipe(str(tmp_path / "no-such.png"))
    with pytest.raises(LDMSegError, match="not an image: int"):
        pipe(3)
    with pytest.raises(LDMSegError, match="must be \\[3, H, W\\]"):
        pipe(torch.zeros(1, 3, 8, 8))


def test_float_images_in_0_1_are_read_as_the_uint8_image(pipe: LDMSegPipeline) -> None:
    """A float array was scaled as if it held 0..255: the map of an image in [0, 1] agreed with the uint8
    image's on a quarter of its pixels."""
    arr = image()
    outs = [pipe(a, task="instances", num_inference_steps=1, processing_resolution=64,
                 generator=torch.Generator().manual_seed(0)).panoptic[0]
            for a in (arr, arr.astype(np.float32) / 255, arr / 255.0, arr[..., 0], arr[..., 0] / 255.0)]
    assert (outs[0] == outs[1]).mean() > 0.99 and (outs[0] == outs[2]).mean() > 0.99
    assert (outs[3] == outs[4]).mean() > 0.99


NAN = np.full((32, 40, 3), np.nan, np.float32)


@pytest.mark.parametrize("bad, message", [
    (image().astype(np.uint16) * 257, "an image array must be uint8 in 0..255 or floating point in [0, 1], got dtype "
                                      "uint16"),
    (image().astype(np.int64), "got dtype int64"),
    (image() > 100, "got dtype bool"),
    (image().astype(np.complex64), "got dtype complex64"),
    (image().astype(np.float32), "an image array must be uint8 in 0..255 or floating point in [0, 1], got values in "
                                 "[0, "),
    (NAN, "got values in [nan, nan] (NaN or infinity)"),
    (np.where(np.arange(3) == 1, np.inf, image() / 255), "(NaN or infinity)"),
    (torch.from_numpy(image()).permute(2, 0, 1), "an image tensor must be floating point in [-1, 1], got dtype uint8"),
    (torch.from_numpy(image()).permute(2, 0, 1).float(), "an image tensor must be floating point in [-1, 1], got "
                                                         "values in [0, "),
    (torch.from_numpy(NAN).permute(2, 0, 1), "got values in [nan, nan]"),
    (Image.fromarray(image()[..., 0].astype(np.uint16) * 257), "a PIL image of mode 'I;16'"),
    (torch.zeros(3, 0, 8), "must be [3, H, W]"),
])
def test_image_dtypes_and_ranges_other_than_documented_are_one_line(pipe: LDMSegPipeline, bad: object,
                                                                    message: str) -> None:
    with pytest.raises(LDMSegError) as err:
        pipe(bad, num_inference_steps=1, processing_resolution=64)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"processing_resolution": 0}, "processing_resolution: must be a positive multiple of 8, got 0"),
    ({"processing_resolution": 8 * 10**5}, "2 image(s) x ensemble_size 8 at processing_resolution 800000 needs ~"),
    ({"output_type": "foo"}, "output_type must be one of np, pil, got 'foo'"),
    ({"min_area": -5}, "min_area: must be >= 0, got -5"),
    ({"min_area": float("nan")}, "min_area: expected an integer, got nan"),
    ({"num_inference_steps": True}, "num_inference_steps: must be a number, got True"),
    ({"generator": [torch.Generator()] * 3}, "generator: give one torch.Generator, or a list of one per image (2)"),
])
def test_call_settings_out_of_range_are_one_line(pipe: LDMSegPipeline, kwargs: dict, message: str) -> None:
    with pytest.raises(LDMSegError) as err:
        pipe([image(), image()], **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps: must be in [1, 1000], got 0"),
    ({"num_inference_steps": 1001}, "num_inference_steps: must be in [1, 1000], got 1001"),
    ({"processing_resolution": 60}, "processing_resolution: must be a positive multiple of 8, got 60"),
    ({"ensemble_size": 0}, "ensemble_size: must be >= 1, got 0"),
])
def test_pipeline_arguments_follow_the_cli_rules(pipe: LDMSegPipeline, kwargs: dict, message: str,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(LDMSegError) as err:
        pipe(image(), **kwargs)
    assert str(err.value) == message
    flag = {"num_inference_steps": "--steps", "processing_resolution": "--resolution",
            "ensemble_size": "--ensemble-size"}[next(iter(kwargs))]
    assert main(["predict", "--images", str(tmp_path), "--out", str(tmp_path / "o"), flag,
                 str(next(iter(kwargs.values())))]) == 2
    assert message.split(": ", 1)[1] in capsys.readouterr().err


def test_predict_takes_a_file_a_glob_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    for name in ("a", "b"):
        Image.fromarray(image()).save(tmp_path / f"{name}.png")
    common = ["--steps", "1", "--resolution", "64", "--task", "instances"]
    assert main(["predict", "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "one"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "one" / "panoptic").iterdir()) == ["a.png"]
    assert main(["predict", "--images", str(tmp_path / "*.png"), "--out", str(tmp_path / "glob"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "glob" / "panoptic").iterdir()) == ["a.png", "b.png"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{tmp_path / 'b.png'}\n"))
    assert main(["predict", "--images", "-", "--out", str(tmp_path / "stdin"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "stdin" / "panoptic").iterdir()) == ["b.png"]
    assert main(["predict", "--images", str(tmp_path / "none*.jpg"), "--out", str(tmp_path / "x"), *common]) == 2


def test_os_errors_and_a_missing_app_extra_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    code = main(["data", "synth", "--out", str(tmp_path / "file" / "synth"), "--num", "1", "--resolution", "32"])
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert code == 2 and "Traceback" not in err and last.startswith("ldmseg: error: ") and "is a file" in last
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app"]) == 2
    assert 'pip install "ldmseg[app]"' in capsys.readouterr().err


def test_old_flag_names_still_work_and_say_the_new_name_once(synth_set: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "1", "--size", "32"]) == 0
    assert capsys.readouterr().err.count("--size is now --resolution") == 1
    assert main(["reconstruct", "--ae", "demo", "--images", str(synth_set / "images"), "--panoptic-json",
                 str(synth_set / "panoptic.json"), "--panoptic-dir", str(synth_set / "panoptic"), "--out",
                 str(tmp_path / "r"), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "--panoptic-json is now --gt-json" in err and "--panoptic-dir is now --gt-dir" in err
    assert (tmp_path / "r" / "panoptic.json").exists()
    help_text = build_help("reconstruct")
    assert "--gt-json" in help_text and "--panoptic-json" not in help_text


def build_help(command: str) -> str:
    from ldmseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return sub.choices[command].format_help()


@pytest.mark.parametrize("argv, message", [
    (["predict", "--images", "x", "--out", "o", "--threads", "100000"], "argument --threads: must be in [0, "),
    (["predict", "--images", "x", "--out", "o", "--seed", str(2**80)], "argument --seed: must be in [0, "),
    (["train", "--out", "o", "--inference-steps", "1001"], "argument --inference-steps: must be in [1, 1000]"),
    (["inpaint", "--out", "o", "--steps", "100000"], "argument --steps: must be in [1, 1000]"),
])
def test_numbers_are_bounded_by_the_parser(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_pixel_limit_variable_is_parsed_strictly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ldmseg.data.formats import max_pixels

    for bad in ("inf", "1e9", "-5", "lots"):
        monkeypatch.setenv("LDMSEG_MAX_PIXELS", bad)
        with pytest.raises(LDMSegError, match="LDMSEG_MAX_PIXELS"):
            max_pixels()
    monkeypatch.setenv("LDMSEG_MAX_PIXELS", "5000")
    assert max_pixels() == 5000


def test_pictures_carry_a_legend_and_a_depth_bar() -> None:
    from ldmseg.viz import class_colours, colorize_depth, colorize_semantic, with_depth_bar, with_legend

    cats = [{"id": 1, "name": "sky", "color": [10, 20, 30]}, {"id": 2, "name": "road"}]
    labels = np.zeros((30, 40), np.int64)
    labels[:10], labels[10:20] = 1, 2
    entries = class_colours(labels, cats)
    assert [e[0] for e in entries] == ["sky", "road", "unlabelled / VOID"] and entries[0][1] == (10, 20, 30)
    assert entries[1][1] == tuple(colorize_semantic(labels, cats)[15, 5])  # the colour the map paints
    pic = with_legend(colorize_semantic(labels, cats), entries)
    assert pic.shape[1] > 40 and tuple(pic[8, 40 + 8]) == (10, 20, 30)  # first swatch
    bar = with_depth_bar(colorize_depth(np.zeros((30, 40))))
    assert tuple(bar[0, 45]) == tuple(colorize_depth(np.zeros((1, 1)))[0, 0])
    assert tuple(bar[29, 45]) == tuple(colorize_depth(np.ones((1, 1)))[0, 0])

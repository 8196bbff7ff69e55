"""Validation at the door (ldmseg.checks): every bad flag value and config-file key is one line naming it,
exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from ldmseg.checks import strict_bool
from ldmseg.cli import main
from ldmseg.training.config import FIELD_CHECKS, FIELD_CHOICES, AutoencoderConfig, DiffusionConfig, checks

BAD_BY_CHECK = {
    checks.positive: ["0", "-2", "1.5", "x"],
    checks.non_negative: ["-1", "2.5", "many"],
    checks.non_negative_float: ["-0.5", "nan", "inf"],
    checks.positive_float: ["0", "-1e-4", "nan"],
    checks.probability: ["1.5", "-0.1", "nan"],
}


def bad_field_values(cls: type) -> list[tuple[str, str]]:
    """(flag, bad value) for every range-checked, choice and boolean field of a training config."""
    hints = typing.get_type_hints(cls)
    cases = []
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            cases.append((flag, "maybe"))
        elif f.name in FIELD_CHOICES:
            cases.append((flag, "bogus"))
        elif f.name in FIELD_CHECKS:
            check = FIELD_CHECKS[f.name]
            cases += [(flag, v) for v in BAD_BY_CHECK.get(check, ["-7", "abc"])]
    return cases


CLI_CASES = [
    ["data", "synth", "--out", "{out}", "--num", "0"], ["data", "synth", "--out", "{out}", "--resolution", "30"],
    ["data", "synth", "--out", "{out}", "--preset", "nope"], ["data", "synth", "--out", "{out}", "--seed", "-5"],
    ["demo", "--out", "{out}", "--num", "0"], ["demo", "--out", "{out}", "--threads", "-1"],
    ["predict", "--images", "x", "--out", "{out}", "--batch-size", "-2"],
    ["predict", "--images", "x", "--out", "{out}", "--steps", "0"],
    ["predict", "--images", "x", "--out", "{out}", "--steps", "-1"],
    ["predict", "--images", "x", "--out", "{out}", "--resolution", "0"],
    ["predict", "--images", "x", "--out", "{out}", "--resolution", "37"],
    ["predict", "--images", "x", "--out", "{out}", "--ensemble-size", "0"],
    ["predict", "--images", "x", "--out", "{out}", "--task", "normals"],
    ["predict", "--images", "x", "--out", "{out}", "--seed", "-5"],
    ["predict", "--images", "x", "--out", "{out}", "--precision", "fp8"],
    ["inpaint", "--out", "{out}", "--precision", "half"], ["app", "--precision", "bf32"],
    ["app", "--time-limit", "0"], ["app", "--time-limit", "nan"],
    ["inpaint", "--out", "{out}", "--drop-rate", "1.5"], ["inpaint", "--out", "{out}", "--drop-rate", "nan"],
    ["inpaint", "--out", "{out}", "--block-size", "0"], ["inpaint", "--out", "{out}", "--mask-type", "circles"],
    ["inpaint", "--out", "{out}", "--mask-rule", "some"],
    ["app", "--port", "99999"], ["app", "--port", "0"], ["app", "--steps", "0"],
    ["reconstruct", "--ae", "demo", "--images", "a", "--gt-json", "b", "--gt-dir", "c", "--out", "{out}",
     "--threshold", "5"],
    ["reconstruct", "--ae", "demo", "--images", "a", "--gt-json", "b", "--gt-dir", "c", "--out", "{out}",
     "--latent-noise", "nan"],
    ["reconstruct", "--ae", "demo", "--images", "a", "--gt-json", "b", "--gt-dir", "c", "--out", "{out}",
     "--resolution", "0"],
    ["evaluate", "--gt-dir", "a", "--pred-dir", "b", "--workers", "0"],
    ["evaluate", "--gt-dir", "a", "--pred-dir", "b", "--task", "normals"],
    ["evaluate", "--gt-dir", "a", "--pred-dir", "b", "--num-classes", "0"],
    ["visualize", "--images", "a", "--gt-json", "b", "--gt-dir", "c", "--out", "{out}", "--limit", "0"],
    ["train", "--out", "{out}", "--tasks", "panoptic"], ["train", "--out", "{out}", "--tasks", "depth,depth"],
    ["frobnicate"],
]
CLI_CASES += [["train-ae", "--out", "{out}", flag, value] for flag, value in bad_field_values(AutoencoderConfig)]
CLI_CASES += [["train", "--out", "{out}", flag, value] for flag, value in bad_field_values(DiffusionConfig)]


def test_there_are_enough_cases() -> None:
    assert len({" ".join(c) for c in CLI_CASES}) >= 150


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_bad_flag_is_one_clean_line(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "error" in err
    flag = next((a for a in reversed(argv) if a.startswith("--")), None)
    if flag is not None and flag not in ("--out", "--tasks"):
        assert flag in err
    assert not out.exists()


def test_strict_booleans() -> None:
    assert strict_bool("TRUE") is True and strict_bool("off") is False
    with pytest.raises(Exception, match="true or false"):
        strict_bool("maybe")


@pytest.mark.parametrize("content, message", [
    ({"bogus_key": 1}, "unknown key 'bogus_key'"),
    ({"max_steps": 0}, "key 'max_steps': must be >= 1"),
    ({"max_steps": 2.5}, "key 'max_steps'"),
    ({"lr": "fast"}, "key 'lr': expected float"),
    ({"unet": "huge"}, "key 'unet': invalid choice"),
    ({"hflip": "maybe"}, "key 'hflip'"),
    ({"tasks": ["instances", "panoptic"]}, "not a trainable task"),
    ({"image_encoder_channels": [8, -1]}, "key 'image_encoder_channels'"),
    ({"size": [128]}, "key 'size': expected one value"),
    ([1, 2], "expected a JSON object"),
])
def test_config_file_checked_key_by_key(content, message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(content))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert str(config) in err or "trainable" in err
    assert not (tmp_path / "run").exists()


def test_help_lists_defaults_and_comments(capsys: pytest.CaptureFixture) -> None:
    assert main(["train-ae", "--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: 128)" in text and "what the AE encodes" in text


@pytest.mark.parametrize("command", ["visualize", "reconstruct"])
def test_batch_commands_skip_a_corrupt_file_and_finish_the_rest(command: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    s = tmp_path / "s"
    assert main(["data", "synth", "--out", str(s), "--num", "3", "--resolution", "32"]) == 0
    broken = sorted((s / "panoptic").glob("*.png"))[1]
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    out = tmp_path / "out"
    argv = {"visualize": ["visualize", "--images", str(s / "images"), "--gt-json", str(s / "panoptic.json"),
                          "--gt-dir", str(s / "panoptic"), "--out", str(out)],
            "reconstruct": ["reconstruct", "--ae", "demo", "--images", str(s / "images"), "--gt-json",
                            str(s / "panoptic.json"), "--gt-dir", str(s / "panoptic"), "--out", str(out),
                            "--resolution", "32"]}[command]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert broken.name in err and "skipped.json" in err and "Traceback" not in err
    skipped = json.loads((out / "skipped.json").read_text())
    assert [Path(x["input"]).name for x in skipped] == [broken.name]
    written = {p.name for p in out.rglob("*.png")}
    assert broken.name not in written and len(written) == 2


def test_outputs_get_the_umask_permissions(tmp_path: Path) -> None:
    import os

    import numpy as np

    from ldmseg.data import formats

    old = os.umask(0o022)
    try:
        formats.write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
        formats.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o644 for f in ("a.png", "a.json"))
    assert not list(tmp_path.glob(".*.tmp"))


def _flags(parser, prefix: str = ""):
    """(command, action) for every option of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{prefix} {name}".strip())
        elif action.option_strings and action.dest != "help" and action.help != argparse.SUPPRESS:
            yield prefix, action


def test_every_flag_has_help_that_says_its_default() -> None:
    """One formatter for all commands: each visible flag has a help line, and one that is optional and takes a
    value says its default (or that it is required)."""
    import argparse

    from ldmseg.cli import build_parser

    missing = []
    for command, action in _flags(build_parser()):
        text = action.help or ""
        if "%(" in text:
            text = text % {"default": action.default, "prog": command}
        takes_value = not isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
        if not text or (takes_value and not action.required and not re.search("default|required", text, re.I)):
            missing.append(f"{command} {action.option_strings[0]}")
    assert not missing, missing

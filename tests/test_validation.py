"""Validation at the door (ldmseg.checks): every bad flag value and config-file key is one line naming it,
exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from ldmseg.checks import strict_bool
from ldmseg.cli import main
from ldmseg.errors import LDMSegError
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
    ["train", "--out", "{out}", "--resolution", "30"], ["train", "--out", "{out}", "--time-limit", "-60"],
    ["train-ae", "--out", "{out}", "--workers", "-1"], ["train-ae", "--out", "{out}", "--val-resolution", "12"],
    ["visualize", "--images", "a", "--gt-json", "b", "--gt-dir", "c", "--out", "{out}", "--num", "0"],
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
    ({"grad_accum": 10**12}, "key 'grad_accum': must be in [1, 1024]"),
    ({"val_num": 10**12}, "key 'val_num': must be in [1, 100000]"),
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


REPORT = " - please report it; LDMSEG_DEBUG=1 shows the traceback"


@pytest.mark.parametrize("error, code, line", [
    (TypeError("'int' object is not iterable\nsecond line"), 70,
     "ldmseg: internal error: TypeError: 'int' object is not iterable" + REPORT),
    (KeyError("size"), 70, "ldmseg: internal error: KeyError: 'size'" + REPORT),
    (MemoryError(), 70, "ldmseg: internal error: MemoryError" + REPORT),
    (RuntimeError("boom"), 70, "ldmseg: internal error: RuntimeError: boom" + REPORT),
    (ValueError("bad"), 70, "ldmseg: internal error: ValueError: bad" + REPORT),
    (FileNotFoundError(2, "No such file or directory", "/x/a.png"), 2, "ldmseg: error: /x/a.png: No such file or "
                                                                       "directory"),
    (OSError(28, "No space left on device", "/x/out"), 2, "ldmseg: error: /x/out: No space left on device"),
    (LDMSegError("x.json: key 'a': expected 1"), 2, "ldmseg: error: x.json: key 'a': expected 1"),
])
def test_input_errors_exit_2_and_internal_errors_exit_70(error: Exception, code: int, line: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ldmseg.commands import data

    def fail(args: object) -> None:
        raise error

    monkeypatch.setattr(data, "_cmd_data_synth", fail)
    monkeypatch.delenv("LDMSEG_DEBUG", raising=False)
    assert main(["data", "synth", "--out", str(tmp_path / "o")]) == code
    assert capsys.readouterr().err.splitlines() == [line]
    if code == 70:
        monkeypatch.setenv("LDMSEG_DEBUG", "1")
        with pytest.raises(type(error)):
            main(["data", "synth", "--out", str(tmp_path / "o")])


def test_worker_processes_are_lowered_to_the_cores_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    import argparse
    import os

    from ldmseg.training.config import check_config_values

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert checks.workers("32") == 2 and checks.workers("1") == 1 and checks.workers("0") == 0
    note = "ldmseg: note: 32 data-loading workers asked for, this machine has 2 cores: using 2"
    assert capsys.readouterr().err.strip() == note
    with pytest.raises(argparse.ArgumentTypeError):
        checks.workers("-1")
    assert check_config_values(DiffusionConfig, {"num_workers": 8}, "c.json")["num_workers"] == 2  # a bigger box's


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


# The names every command uses for one concept, and the old names they replace (hidden, still accepted).
RENAMED = {"--size": "--resolution", "--val-size": "--val-resolution", "--output": "--out", "--limit": "--num",
           "--num-workers": "--workers", "--time-limit-minutes": "--time-limit"}


@pytest.mark.parametrize("argv, dest, value", [
    (["train", "--size", "64"], "size", 64), (["train-ae", "--val-size", "32"], "val_size", 32),
    (["train", "--num-workers", "2"], "num_workers", 2), (["train-ae", "--time-limit-minutes", "3"],
                                                          "time_limit_minutes", 3.0),
    (["visualize", "--images", "i", "--out", "o", "--limit", "2"], "num", 2),
    (["evaluate", "--gt-dir", "g", "--pred-dir", "p", "--output", "r.json"], "out", "r.json"),
    (["train", "--resolution", "64", "--workers", "2", "--time-limit", "90"], "time_limit_minutes", 1.5),
])
def test_one_name_per_concept_old_names_hidden_and_warned_once(argv: list[str], dest: str, value: object,
                                                                capsys: pytest.CaptureFixture) -> None:
    """No command shows an old name; each still sets the new flag's value (train's --time-limit is seconds, its
    config keeps minutes) and says the new name once."""
    from ldmseg.cli import build_parser
    from ldmseg.cli_flags import RenamedFlag

    shown = {flag for _, action in _flags(build_parser()) for flag in action.option_strings}
    assert not shown & set(RENAMED) and set(RENAMED.values()) <= shown
    RenamedFlag.warned.clear()
    args = build_parser().parse_args([*argv, *argv[-2:]])  # the flag twice: one warning
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    old = argv[-2]
    assert err.count("is now") == (1 if old in RENAMED else 0)
    if old in RENAMED:
        assert f"{old} is now {RENAMED[old]}" in err


def test_renamed_training_flags_count_as_given_on_resume() -> None:
    """A resumed run takes again only the fields a command line gives: the new names are those fields."""
    from ldmseg.cli import field_flags
    from ldmseg.training.config import explicit_fields

    argv = field_flags(["--resolution=64", "--workers", "2", "--time-limit", "60", "--val-resolution", "32"])
    assert explicit_fields(argv, AutoencoderConfig) == {"size", "num_workers", "time_limit_minutes", "val_size"}


def test_sampling_commands_share_one_batch_size_default() -> None:
    from ldmseg.cli import build_parser

    parser = build_parser()
    predict = parser.parse_args(["predict", "--images", "x", "--out", "y"])
    inpaint = parser.parse_args(["inpaint", "--out", "y"])
    assert predict.batch_size == inpaint.batch_size == 4


def test_training_errors_name_the_flags_the_command_shows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A resumed run refuses a changed --resolution under that name, and lists the flags that may change by the
    names --help shows."""
    run = tmp_path / "run"
    tiny = ["--resolution", "32", "--val-resolution", "32", "--batch-size", "2", "--max-steps", "1", "--val-every",
            "100", "--threads", "1", "--encoder-channels", "8", "8", "8", "8", "--decoder-channels", "8"]
    assert main(["train-ae", "--out", str(run), *tiny]) == 0
    capsys.readouterr()
    assert main(["train-ae", "--out", str(run), "--resume", "latest", "--resolution=64", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resolution 64 differs from this run's 32" in err and len(err.splitlines()) == 1
    assert "--time-limit," in err and "--workers," in err and "--size" not in err


def test_a_closed_output_pipe_is_not_reported_as_a_bug(tmp_path: Path) -> None:
    """`ldmseg ... | head`: the reader leaves early; the command stops quietly (141, as shells report SIGPIPE)."""
    script = (f"sleep 0.2 | {sys.executable} -m ldmseg data synth --out {tmp_path / 's'} --num 2 --resolution 32 "
              "2>err.txt | true; echo ${PIPESTATUS[1]}")
    res = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "141" and "internal error" not in (tmp_path / "err.txt").read_text()

"""The README's quickstart runs as written: every `ldmseg` line of its shell block and its Python block, in a fresh
folder holding the one photo they name."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmseg.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_blocks() -> tuple[list[str], str]:
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shell = shell.replace("\\\n", " ")  # continued lines are one command
    return [line for line in shell.splitlines() if line.startswith("ldmseg ")], python


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8)).save("street.jpg")
    commands, python = quickstart_blocks()
    assert len(commands) >= 4
    for line in commands:
        assert main(shlex.split(line, comments=True)[1:]) == 0, line
    assert list(Path("pred/overlays").glob("*.png")) and Path("pred-street/semantic/street.png").exists()
    assert len(list(Path("viz").glob("*.png"))) == 4  # the grids the README's picture shows
    scope: dict = {}
    exec(compile(python, "README quickstart", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["labels"].shape == (90, 120)


USAGE = README.parent / "docs" / "usage.md"


def test_usage_guide_predict_section_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/usage.md's Predict section runs as written: its first two shell lines and its Python block."""
    section = USAGE.read_text().split("## Predict", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    Path("photos").mkdir()
    rng = np.random.default_rng(1)
    for name in ("photo.jpg", "photos/a.jpg", "photos/b.jpg"):
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), np.uint8)).save(name)
    for line in [line for line in shell.splitlines() if line.startswith("ldmseg ")][:2]:
        assert main(shlex.split(line, comments=True)[1:]) == 0, line
    assert len(list(Path("pred/overlays").glob("*.png"))) == 3  # a file, then a glob of two, into one folder
    scope: dict = {}
    exec(compile(python, "docs/usage.md Predict", "exec"), scope)  # noqa: S102 - the guide's own code
    assert scope["out"].semantic[0].shape == (72, 96) and list(scope["out"].keys()) == ["semantic"]

"""The README runs as written and says what is so: every `ldmseg` line of its quickstart's shell block and its Python
block, in an empty folder (every file they read, they make); its demo numbers are those of the committed demo
results; its test command keeps to its own environment."""

from __future__ import annotations

import json
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
    monkeypatch.chdir(tmp_path)  # empty: the commands run on what the repository ships and what they make
    commands, python = quickstart_blocks()
    assert len(commands) >= 6
    for line in commands:
        assert main(shlex.split(line, comments=True)[1:]) == 0, line
    assert list(Path("pred/overlays").glob("*.png")) and Path("pred-camvid/semantic/000000.png").exists()
    assert len(list(Path("viz").glob("*.png"))) == 4  # the grids the README's picture shows
    assert len(list(Path("viz-semantic").glob("*.png"))) == 4
    scope: dict = {}
    exec(compile(python, "README quickstart", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["labels"].shape == (128, 128)


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


DEMO_RESULTS = README.parent / "bench" / "results" / "demo.json"


def test_readme_demo_numbers_are_the_committed_demo_results() -> None:
    """The README's demo row holds the numbers of bench/results/demo.json, which `ldmseg demo` wrote (its
    OUT/results.json), and says the precision and machine they were measured with."""
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `demo`"))
    shown = {name: float(value) for name, value in re.findall(r"(class-aware PQ|mIoU|instances PQ) (\d+\.\d)", row)}
    results = json.loads(DEMO_RESULTS.read_text())
    measured = {"class-aware PQ": results["class-aware panoptic"]["All"]["pq"],
                "mIoU": results["semantic"]["miou"],
                "instances PQ": results["class_agnostic"]["LDMSeg (latent diffusion)"]["pq"]}
    assert shown == {name: round(100 * value, 1) for name, value in measured.items()}
    assert results["scenes"] == 50 and f"{results['scenes']} held-out" in row
    assert results["precision"] in row and results["machine"].split(",")[0].split("(")[-1] in row


def test_the_test_command_keeps_to_its_own_environment() -> None:
    """scripts/run_tests.sh installs into its own venv (not the README's .venv), which README names and git
    ignores; CI's VENV=.ci-venv still picks another."""
    root = README.parent
    script = (root / "scripts" / "run_tests.sh").read_text()
    default = re.search(r"^VENV=\$\{VENV:-([^}]+)\}$", script, re.M).group(1)
    assert default != ".venv" and default in script.split("set -euo")[0]  # its header says which
    assert f"`{default}`" in README.read_text().split("## Quickstart")[0]
    assert f"{default}/" in (root / ".gitignore").read_text().splitlines()
    assert "VENV=.ci-venv bash scripts/run_tests.sh" in (root / ".ci" / "run").read_text()

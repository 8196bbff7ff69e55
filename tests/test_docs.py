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
    assert len(list(Path("pred/overlays").glob("*.png"))) == 1  # a file
    assert len(list(Path("pred-all/overlays").glob("*.png"))) == 2  # a glob of two
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


BENCHMARKS = README.parent / "docs" / "benchmarks.md"
SOURCE_NOTE = re.compile(r"Source: `(bench/\w+\.py)` -> `(bench/results/\w+\.json)`\.")


def check_benchmark_sections(text: str, root: Path) -> list[str]:
    """What is wrong with a benchmarks page: every `<!-- NAME:begin -->` needs its `<!-- NAME:end -->` after it and,
    on the line right above it, a source note naming a script in bench/ that writes NAME with save_results (a literal
    "NAME", an f-string whose fixed start begins NAME, or a name from an argument such as --name) and
    bench/results/NAME.json, which must exist."""
    problems = []
    lines = text.splitlines()
    begins = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.fullmatch(r"<!-- (\w+):begin -->", line))]
    ends = re.findall(r"^<!-- (\w+):end -->$", text, re.M)
    names = [name for _, name in begins]
    problems += [f"{name}: more than one begin marker" for name in set(names) if names.count(name) > 1]
    problems += [f"{name}: an end marker without a begin" for name in ends if name not in names]
    for i, name in begins:
        if f"<!-- {name}:end -->" not in "\n".join(lines[i + 1:]):
            problems.append(f"{name}: no end marker after its begin")
        note = SOURCE_NOTE.fullmatch(lines[i - 1].strip()) if i else None
        if note is None:
            problems.append(f"{name}: no source note (Source: `bench/X.py` -> `bench/results/{name}.json`.) above it")
            continue
        script, results = note.groups()
        if results != f"bench/results/{name}.json" or not (root / results).exists():
            problems.append(f"{name}: its note names {results}, not an existing bench/results/{name}.json")
        code = (root / script).read_text() if (root / script).exists() else ""
        calls = re.findall(r"save_results\(\s*(f?)\"([^\"{]*)|save_results\(\s*([A-Za-z_][\w.]*)\s*,", code)
        writes = any((not f and literal == name) or (f and name.startswith(literal)) or variable
                     for f, literal, variable in calls)
        if not writes:
            problems.append(f"{name}: {script} does not exist or does not write it with save_results(")
    return problems


def test_benchmark_sections_name_their_script_and_results() -> None:
    """Every generated section of docs/benchmarks.md has both markers, a source note naming the bench/ script that
    writes it and its results file, and that file exists (placeholder sections such as one_step, predict_many and
    gpu_check are checked once they appear); and the check fails on a section without a note."""
    root = README.parent
    text = BENCHMARKS.read_text()
    assert "<!-- multitask:begin -->" in text and check_benchmark_sections(text, root) == []
    broken = text.replace("Source: `bench/multitask.py` -> `bench/results/multitask.json`.\n", "")
    assert check_benchmark_sections(broken, root) == ["multitask: no source note (Source: `bench/X.py` -> "
                                                      "`bench/results/multitask.json`.) above it"]
    wrong = text.replace("`bench/multitask.py` -> `bench/results/multitask.json`",
                         "`bench/precision.py` -> `bench/results/multitask.json`")
    assert check_benchmark_sections(wrong, root) == ["multitask: bench/precision.py does not exist or does not write "
                                                     "it with save_results("]
    assert check_benchmark_sections(text + "\n<!-- nowhere:begin -->\n", root)  # unsourced, unended


def test_quoted_benchmark_sections_exist() -> None:
    """Where README.md, docs/usage.md, docs/experiments.md or the code point to a docs/benchmarks.md section by its
    quoted title, a heading of docs/benchmarks.md holds that title."""
    root = README.parent
    headings = " | ".join(line for line in BENCHMARKS.read_text().splitlines() if line.startswith("#"))
    files = [README, USAGE, root / "docs" / "experiments.md", *sorted((root / "src").rglob("*.py"))]
    quoted = []
    for path in files:
        text = " ".join(path.read_text().split())  # titles broken across lines (and comment prefixes) join up
        text = text.replace(" # ", " ")
        quoted += [(path.name, title) for title in re.findall(r"docs/benchmarks\.md,? \(?\"([^\"]+)\"", text)]
    assert len(quoted) >= 7  # Start-up time, bf16 at inference, eager vs torch.compile, ...
    assert [(name, title) for name, title in quoted if title not in headings] == []

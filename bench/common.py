"""Helpers shared by the benchmark scripts: result files and the markdown table in docs/benchmarks.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ldmseg.data.formats import atomic_path, write_json
from ldmseg.machine import cpu_model, machine  # noqa: F401 - the benchmarks' machine line, shared with the demo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def bench_pipeline(model: str):
    """The pipeline `model` names (demo, a directory or a hub id), its progress bars off for benchmarking."""
    from ldmseg.commands.predict import load_pipeline

    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def child_json(code: str, args: list[str], src: Path, timeout: float = 3600, **env: str) -> dict:
    """Run `code` in a fresh interpreter importing ldmseg from `src` (this checkout's or an earlier one's) and
    return the JSON object its last stdout line prints, or {"error": its last stderr line}."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE", **env}
    res = subprocess.run([sys.executable, "-c", code, *args], env=full_env, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode:
        return {"error": (res.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def save_results(name: str, results: dict, markdown: str) -> None:
    """Write bench/results/NAME.json and replace the NAME section of docs/benchmarks.md."""
    write_json(RESULTS / f"{name}.json", json.loads(json.dumps(results, default=_plain)), indent=2)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nWritten by the scripts in `bench/`.\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with atomic_path(DOC) as tmp:
        tmp.write_text(text)


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def logged_curve(name: str, log: str | None, metric: str = "pq") -> dict[int, float]:
    """A validation metric per step, parsed from a training run's console log ('step N: pq X, ...' lines)
    and kept in bench/results/NAME.json (runs are not committed), or the kept copy."""
    path = RESULTS / f"{name}.json"
    if log:
        found = re.findall(rf"step (\d+): {metric} ([0-9.]+)", Path(log).read_text())
        save_curve(name, {int(k): float(v) for k, v in found})
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def save_curve(name: str, curve: dict[int, float]) -> None:
    write_json(RESULTS / f"{name}.json", curve, indent=2)


def curve_table(curve: dict[int, float]) -> list[str]:
    """A markdown table: one column per step, PQ below."""
    return ["| step | " + " | ".join(str(k) for k in curve) + " |", "|---" * (len(curve) + 1) + "|",
            "| PQ | " + " | ".join(f"{v:.1f}" for v in curve.values()) + " |"]


def new_plot(figsize: tuple[float, float] = (5, 3.2)):
    """(figure, axes) drawn off-screen (the benchmark machines have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def save_plot(fig, ax, path: Path, xlabel: str, ylabel: str, legend_size: int | None = None) -> None:
    """Label, legend and grid a benchmark figure, then write it as PNG atomically."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)

"""Stage-1 pilots (issue 15): validation PQ (argmax) against CPU-minutes for short training runs, one
line per lever, from the runs' console logs (kept in bench/results/ae_pilots.json: runs are not committed).

    python bench/ae_pilots.py --run "presence gate=runs/pilot-gate.log" --run "no gate=runs/pilot-base.log"

Minutes are the wall-clock of the whole run on the quiet 2-core CPU (training + its validations), read
from the progress bar's elapsed time at each validation.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import RESULTS, ROOT, machine, new_plot, save_plot, save_results

ELAPSED = re.compile(r"(\d+)/\d+ \[(?:(\d+):)?(\d+):(\d+)<")
VALIDATION = re.compile(r"step (\d+): pq ([0-9.]+)")


def minutes(match: re.Match) -> float:
    h, m, s = (int(g) if g else 0 for g in match.groups()[1:])
    return h * 60 + m + s / 60


def pilot_curve(log: Path) -> list[tuple[int, float, float]]:
    """(step, minutes, PQ) at each validation of a run's log."""
    text = log.read_text(errors="replace").replace("\r", "\n")
    curve, last = [], None
    for line in text.splitlines():
        if (m := ELAPSED.search(line)) is not None:
            last = minutes(m)
        if (v := VALIDATION.search(line)) is not None and last is not None:
            curve.append((int(v.group(1)), round(last, 2), float(v.group(2))))
    return curve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[], help="LABEL=LOG (repeatable); none: the kept results")
    ap.add_argument("--start", type=float, default=None, help="validation PQ of the starting weights (step 0)")
    args = ap.parse_args()
    path = RESULTS / "ae_pilots.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    runs = {label: pilot_curve(Path(log)) for label, log in (r.split("=", 1) for r in args.run)}
    runs = {**kept.get("runs", {}), **runs}
    start = args.start if args.start is not None else kept.get("start")
    fig, ax = new_plot()
    rows = ["| pilot | " + " | ".join(["step / min / PQ"] * max(len(c) for c in runs.values())) + " |",
            "|---" * (1 + max(len(c) for c in runs.values())) + "|"]
    for label, curve in runs.items():
        xs, ys = [0.0] + [c[1] for c in curve], [start] + [c[2] for c in curve]
        if start is None:
            xs, ys = xs[1:], ys[1:]
        ax.plot(xs, ys, marker="o", label=label)
        rows.append(f"| {label} | " + " | ".join(f"{s} / {m:.1f} / {p:.1f}" for s, m, p in curve) + " |")
    figure = ROOT / "docs" / "figures" / "ae_pilots.png"
    save_plot(fig, ax, figure, "CPU-minutes (2 cores, incl. validation)", "val PQ, argmax (48 scenes)", 7)
    md = ["## Stage 1 pilots: argmax PQ per CPU-minute", "",
          f"Validation PQ (argmax decoding, 48 held-out scenes coco / dense / default at 256^2) during short "
          f"fine-tunes of the shipped AE, against wall-clock minutes on the 2-core CPU. Step 0 = the shipped AE"
          f"{f' ({start:.1f})' if start is not None else ''}. {machine()}.", "",
          "![AE pilots](figures/ae_pilots.png)", "", *rows]
    save_results("ae_pilots", {"machine": machine(), "start": start, "runs": runs}, "\n".join(md))


if __name__ == "__main__":
    main()

"""Stage-1 pilots (issue 15): validation PQ (argmax) against CPU-minutes for short training runs, one
line per lever, from the runs' console logs (kept in bench/results/ae_pilots.json: runs are not committed).

    python bench/ae_pilots.py --run "presence gate=runs/pilot-gate.log" --run "no gate=runs/pilot-base.log"
    python bench/ae_pilots.py --curve "v2 run=ae_v2_curve:0.73"   # a kept step -> PQ curve at its s/step

Minutes are the wall-clock of the whole run on the quiet 2-core CPU (training + its validations), read
from the progress bar's elapsed time at each validation.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import RESULTS, ROOT, machine, new_plot, save_plot, save_results

RECIPE = ("Every pilot: `ldmseg train-ae --init-from demo --freeze-encoder true` (decoder only, so the latent space "
          "and the stage-2 model trained on it stay valid), the v2 recipe otherwise (crops of 128 px, 8 per mask, 4 "
          "masks of 256^2 / 512^2 per step, presets coco+dense+default, bf16 + channels_last, latent noise U(0, 0.2) x "
          "std), 1000 steps, warm-up 50. The presence gate (a 1x1 head on the decoder trunk at H/8 predicting which "
          "ids occur within each cell's 3 x 3 cells, trained by BCE, its log-sigmoid added to the pixel logits; "
          "commit 86fff05) gained nothing over the same fine-tune without it (35.6 vs 35.8 after 1000 steps) at 40 % "
          "more time per step, and was removed again: after 1000 steps its presence logits were rarely confident even "
          "for ids that are there (restricting argmax to ids it gives p > 0.5 in >= 3 cells: PQ 49.3 -> 12.9 on "
          "default scenes). The slot head (`--head slots --slots 2`, lr 5e-4, 3000 steps; the encoder of the shipped "
          "AE kept, the per-pixel head replaced by new slot and weight heads, so it starts far below the shipped AE): "
          "1.4-1.5 s/step (the mixture is evaluated densely at H/2), past the shipped AE after 1000 steps and +10 PQ "
          "(45.0 vs 34.9) after 3000 (76 CPU-minutes), flattening from step 2250.")
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


def kept_curve(spec: str) -> list[tuple[int, float, float]]:
    """(step, minutes, PQ) from a kept step -> PQ curve and its seconds per step ('NAME:S')."""
    name, seconds = spec.rsplit(":", 1)
    curve = json.loads((RESULTS / f"{name}.json").read_text())
    return [(int(k), round(int(k) * float(seconds) / 60, 2), float(v)) for k, v in curve.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[], help="LABEL=LOG (repeatable); none: the kept results")
    ap.add_argument("--curve", action="append", default=[],
                    help="LABEL=NAME:SECONDS_PER_STEP: bench/results/NAME.json (step -> PQ, step 0 its own start)")
    ap.add_argument("--start", type=float, default=None, help="validation PQ of the starting weights (step 0)")
    ap.add_argument("--fresh", action="append", default=[],
                    help="LABEL of a run whose decoder head starts new (no common step 0 with the shipped AE)")
    args = ap.parse_args()
    path = RESULTS / "ae_pilots.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    runs = {label: pilot_curve(Path(log)) for label, log in (r.split("=", 1) for r in args.run)}
    runs = {**kept.get("runs", {}), **runs, **{label: kept_curve(spec) for label, spec in
                                               (c.split("=", 1) for c in args.curve)}}
    start = args.start if args.start is not None else kept.get("start")
    fresh = sorted(set(kept.get("fresh", [])) | set(args.fresh))
    fig, ax = new_plot()
    rows = ["| pilot | " + " | ".join(["step / min / PQ"] * max(len(c) for c in runs.values())) + " |",
            "|---" * (1 + max(len(c) for c in runs.values())) + "|"]
    for label, curve in runs.items():
        own_start = curve and curve[0][0] == 0
        xs, ys = [0.0] + [c[1] for c in curve], [start] + [c[2] for c in curve]
        if start is None or own_start or label in fresh:
            xs, ys = xs[1:], ys[1:]
        ax.plot(xs, ys, marker="o", label=label)
        rows.append(f"| {label} | " + " | ".join(f"{s} / {m:.1f} / {p:.1f}" for s, m, p in curve) + " |")
    figure = ROOT / "docs" / "figures" / "ae_pilots.png"
    save_plot(fig, ax, figure, "CPU-minutes (2 cores, incl. validation)", "val PQ, argmax (48 scenes)", 7)
    md = ["## Stage 1 pilots: argmax PQ per CPU-minute", "",
          f"Validation PQ (argmax decoding, 48 held-out scenes coco / dense / default at 256^2) during short "
          f"fine-tunes of the shipped AE, against wall-clock minutes on the 2-core CPU (the v2 run: the whole AE "
          f"from the first demo AE, steps x its 0.73 s/step). Step 0 of the pilots = the shipped AE"
          f"{f' ({start:.1f})' if start is not None else ''}. {machine()}.", "",
          "![AE pilots](figures/ae_pilots.png)", "", *rows, "", RECIPE]
    save_results("ae_pilots", {"machine": machine(), "start": start, "fresh": fresh, "runs": runs}, "\n".join(md))


if __name__ == "__main__":
    main()

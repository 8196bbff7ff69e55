"""Table 3 of the paper on the embedded default: multi-task vs single-task models at equal training compute.

    python bench/table3.py --instances DIR --semantic DIR --depth DIR [--multi demo] [--num 100]
        [--steps multi=N,instances=N,semantic=N,depth=N] [--also LABEL=DIR ...] [--name table3]

scripts/table3.sh trains the three single-task models (each from the multi-task model's start, on as many
examples of its task as the multi-task training drew; with MULTI_STEPS the multi-task model too, at reduced
scale). All four models answer bench/multitask.py's fresh scenes with their serving defaults and the same
sampling seed. `--also` scores other multi-task models of the same budget beside them (e.g. another task
conditioning), as more columns. Writes bench/results/table3.json and the `table3` section of docs/benchmarks.md.

A single-task model left out (or `--multi kept`) takes its score from the kept results of the same budget (an earlier
run of this script: the same start, seeds and scenes, so the same models), marked "kept" in the table; another
`--name` writes its own results file and section, leaving the main table as it is.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import RESULTS, bench_pipeline, machine, save_results
from multitask import BENCH_SEED, evaluate, scenes, task_score

METRIC = {"instances": "class-agnostic PQ", "semantic": "mIoU", "depth": "RMSE"}
REDUCED = (" (reduced scale, MULTI_STEPS in scripts/table3.sh: trained from the same start as the four others;"
           " the shipped demo's multi-task training was 19769 steps)")


def shown(path: str) -> str:
    """A model path as the repository root sees it (the script runs in bench/)."""
    return path.removeprefix("../")


def earlier_budgets(steps: dict) -> list[dict]:
    """The kept results of earlier, smaller budgets (a longer run continues the same models), for the curve of
    each metric against training steps: the last results JSON's own budget joins its history if it differs."""
    path = RESULTS / "table3.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    history = old.get("history", [])
    if old.get("steps") and old["steps"] != steps:
        history.append({"steps": old["steps"], "tasks": {t: {k: r[k] for k in ("single", "multi")}
                                                         for t, r in old["tasks"].items()}})
    return history


def kept_scores(steps: dict) -> dict:
    """task -> {'single', 'multi'} scores kept in table3.json for exactly this budget (its own or its history's)."""
    path = RESULTS / "table3.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    entries = [*old.get("history", []), {"steps": old.get("steps"), "tasks": old.get("tasks", {})}]
    for entry in entries:
        if entry["steps"] == steps:
            return {t: {k: r[k] for k in ("single", "multi")} for t, r in entry["tasks"].items()}
    raise SystemExit(f"table3.py: no kept results for the budget {steps}: give every single-task model")


def history_rows(history: list[dict], steps: dict, tasks: dict) -> list[str]:
    """A markdown table: per training budget, each task's single-task / multi-task score."""
    rows = ["| steps: multi / instances / semantic / depth | instances PQ single / multi | "
            "semantic mIoU single / multi | depth RMSE single / multi |", "|---|---|---|---|"]
    for entry in [*history, {"steps": steps, "tasks": tasks}]:
        st, r = entry["steps"], entry["tasks"]
        rows.append(f"| {' / '.join(str(st.get(k, '?')) for k in ('multi', *METRIC))} | "
                    + " | ".join(f"{r[t]['single']:{'.4f' if t == 'depth' else '.1f'}} / "
                                 f"{r[t]['multi']:{'.4f' if t == 'depth' else '.1f'}}" for t in METRIC) + " |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    for task in METRIC:
        ap.add_argument(f"--{task}", help=f"the single-task {task} model (default: its kept score of this budget)")
    ap.add_argument("--multi", default="demo", help="the multi-task model, or 'kept' (its kept score)")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", default="", help="training steps of each model, e.g. multi=1800,instances=720")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                    help="another multi-task model of the same budget, scored beside the first")
    ap.add_argument("--name", default="table3", help="results file and docs section")
    args = ap.parse_args()
    steps = dict(item.split("=") for item in args.steps.split(",")) if args.steps else {}
    also = dict(item.split("=", 1) for item in args.also)
    needs_kept = args.multi == "kept" or any(getattr(args, task) is None for task in METRIC)
    kept = kept_scores(steps) if needs_kept else {}
    torch.set_num_threads(2)
    models = {"multi": args.multi, **{f"multi ({label})": path for label, path in also.items()}}
    pipes = {key: bench_pipeline(path) for key, path in models.items() if path != "kept"}
    if not pipes:
        raise SystemExit("table3.py: nothing to score (--multi kept and no --also)")
    data = scenes(BENCH_SEED, args.num, next(iter(pipes.values())).config.default_processing_resolution)

    def score(task: str, pipe) -> float:
        return task_score(task, data, evaluate(pipe, data, args.batch, task)[0])

    res: dict = {"machine": machine(), "num": args.num, "seed": BENCH_SEED, "multi": args.multi, "steps": steps,
                 "also": also, "tasks": {}}
    for task in METRIC:
        single = getattr(args, task)
        res["tasks"][task] = {"single_model": single or "kept",
                              "single": score(task, bench_pipeline(single)) if single else kept[task]["single"],
                              **{key: score(task, pipe) for key, pipe in pipes.items()}}
        if args.multi == "kept":
            res["tasks"][task]["multi"] = kept[task]["multi"]
        print(task, res["tasks"][task], flush=True)
    budget = (f" Training steps (batch 32): multi-task {steps['multi']}, "
              + ", ".join(f"{t} {steps[t]}" for t in METRIC if t in steps) + "." if "multi" in steps else "")
    lines = ["## Table 3: multi-task vs single-task at equal training compute", "",
             f"{args.num} fresh synthetic scenes (seed {BENCH_SEED}), serving defaults. Single-task models from "
             "scripts/table3.sh: each started where the multi-task model started and saw as many examples of its "
             f"task as the multi-task training drew for it.{budget} Multi-task model: "
             f"{'the kept one' if args.multi == 'kept' else f'`{shown(args.multi)}`'}"
             f"{REDUCED if 'multi' in steps and args.multi != 'demo' else ''}. {machine()}."
             + "".join(f" Multi-task ({label}): `{shown(path)}`, same budget." for label, path in also.items())
             + (" Scores marked * are kept from an earlier run of this script on the same budget and scenes (the same"
                " models: scripts/table3.sh trains each from the same start and seed)." if needs_kept else ""),
             "",
             "| task | metric | single-task | multi-task | difference |"
             + "".join(f" multi-task ({label}) | difference |" for label in also),
             "|---|---|---|---|---|" + "---|---|" * len(also)]
    for task, r in res["tasks"].items():
        fmt = ".4f" if task == "depth" else ".1f"
        star = {"single": "*" if r["single_model"] == "kept" else "", "multi": "*" if args.multi == "kept" else ""}
        lines.append(f"| {task} | {METRIC[task]} | {r['single']:{fmt}}{star['single']} | "
                     + " | ".join(f"{r[key]:{fmt}}{star.get(key, '')} | {r[key] - r['single']:+{fmt}}"
                                  for key in ("multi", *(f"multi ({label})" for label in also))) + " |")
    if args.name != "table3":
        lines[0] = f"## Table 3: multi-task vs single-task at equal training compute ({args.name})"
        save_results(args.name, res, "\n".join(lines))
        print("\n".join(lines))
        return
    res["history"] = earlier_budgets(steps)
    if res["history"]:
        lines += ["", "Each metric against training steps (the same runs continued with `--resume latest` to a "
                  "larger budget, same proportions; each budget's cosine schedule spans its own total):", "",
                  *history_rows(res["history"], steps, res["tasks"])]
    save_results("table3", res, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

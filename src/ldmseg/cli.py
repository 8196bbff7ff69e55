"""The `ldmseg` command: parses arguments and calls library functions, nothing else.

Imports are done inside the handlers so that light commands (evaluate, visualize) never
load torch.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ldmseg import checks
from ldmseg.cli_flags import (
    OneLineParser,
    Rename,
    RenamedFlag,
    RenamingParser,
    add_device,
    add_threads,
    alias,
)
from ldmseg.commands.data import add_data_commands
from ldmseg.commands.model_cli import EVALUATE_TITLES, IMAGES_HELP, add_model_commands
from ldmseg.data import outputs
from ldmseg.errors import LDMSegError, close_progress_bars
from ldmseg.tasks import task_spec


# The title line above each table evaluate prints: what was scored, and how.
def _cmd_evaluate(a: argparse.Namespace) -> None:
    from ldmseg.data.formats import write_json

    if a.out:
        outputs.check_outputs_apart(a.out, {"--gt-json": a.gt_json, "--gt-dir": a.gt_dir,
                                            "--pred-json": a.pred_json, "--pred-dir": a.pred_dir}, is_file=True)
    metric = task_spec(a.task).metric
    if metric == "miou":
        from ldmseg.metrics.semantic import evaluate_semantic_dirs, format_semantic, semantic_names

        checks.fits_classes(a.num_classes)
        results = evaluate_semantic_dirs(a.gt_dir, a.pred_dir, a.num_classes, a.ignore_label, a.classes)
        print(EVALUATE_TITLES["semantic"])
        print(format_semantic(results, semantic_names(a.pred_dir, a.classes)))
    elif metric == "rmse":
        from ldmseg.metrics.depth import evaluate_depth_dirs, format_depth

        results = evaluate_depth_dirs(a.gt_dir, a.pred_dir)
        print(EVALUATE_TITLES["depth"])
        print(format_depth(results))
    else:
        from ldmseg.metrics.panoptic import evaluate_files, format_table

        if not (a.gt_json and a.pred_json):
            raise LDMSegError(f"evaluate --task {a.task}: needs --gt-json and --pred-json (or --task semantic|depth)")
        agnostic = a.class_agnostic or not task_spec(a.task).class_aware
        results = evaluate_files(a.gt_json, a.gt_dir, a.pred_json, a.pred_dir, agnostic, a.workers,
                                 warn=lambda m: print(f"ldmseg: warning: {m}", file=sys.stderr))
        print(EVALUATE_TITLES["instances" if agnostic else "panoptic"])
        print(format_table(results))
    if a.out:
        write_json(a.out, results)


def _cmd_visualize(a: argparse.Namespace) -> None:
    from ldmseg.commands.visualize import visualize_maps, visualize_sets

    outputs.check_outputs_apart(a.out, {"--images": a.images, "--gt-json": a.gt_json, "--gt-dir": a.gt_dir,
                                        "--pred-json": a.pred_json, "--pred-dir": a.pred_dir})
    if "panoptic" not in task_spec(a.task).outputs:  # semantic or depth: PNG folders
        if a.gt_json or a.pred_json:
            raise LDMSegError(f"visualize --task {a.task}: draws PNG folders, give --gt-dir and/or --pred-dir "
                              "(--gt-json / --pred-json are COCO-panoptic, --task panoptic)")
        n = visualize_maps(a.task, a.images, a.gt_dir, a.pred_dir, a.out, a.num, a.classes)
    else:
        if a.classes:
            raise LDMSegError("visualize: --classes names a semantic label set, for --task semantic")
        n = visualize_sets(a.images, a.gt_json, a.gt_dir, a.out, a.pred_json, a.pred_dir, a.num)
    print(f"wrote {n} pictures to {a.out}")


def _cmd_demo(a: argparse.Namespace) -> None:
    from ldmseg.commands.demo import run_demo

    run_demo(Path(a.out), num=a.num, seed=a.seed, verbose=a.verbose, device=a.device)


def _training_config(cls: type, a: argparse.Namespace):
    """The config from flags (and --config), or with --resume the run's own saved one (training.config)."""
    from ldmseg.training.config import dataclass_from_args, explicit_fields, resumed_config

    explicit = explicit_fields(field_flags(a.argv), cls) | set(a.config_keys)
    cfg = resumed_config(dataclass_from_args(cls, a), explicit)
    outputs.check_output_place(cfg.out)
    checks.fits_memory(f"--batch-size {cfg.batch_size} at --resolution {cfg.size}", cfg.batch_size, cfg.size**2,
                       checks.TRAINING_BYTES_PER_PIXEL)
    return cfg


def _minutes(text: str) -> float:
    """--time-limit's seconds as the config's minutes (time_limit_minutes)."""
    return checks.non_negative_float(text) / 60


_minutes.__name__ = "seconds"  # argparse names the type in its errors

# Training flags made from config fields, under the name every command uses for the concept; the field's own flag
# name stays a hidden alias (cli_flags.RenamingParser). Config files keep the field names.
TRAINING_RENAMES = {
    "--size": Rename("--resolution", "square training size in px, a multiple of 8 (default: %(default)s)"),
    "--val-size": Rename("--val-resolution", "square size of the validation maps in px, a multiple of 8 (default: "
                         "%(default)s)"),
    "--num-workers": Rename("--workers", "data-loading worker processes; 0 = in the training process (default: "
                            "%(default)s)"),
    "--time-limit-minutes": Rename("--time-limit", "stop early (checkpoint + export) after this many seconds of "
                                   "wall time; 0 = no limit (default: 0)", _minutes),
}


@contextmanager
def _training_flag_names() -> Iterator[None]:
    """Training's errors name flags by their config fields (`--size 64 differs from this run's 32`): said under
    the names the command shows (`--resolution`)."""
    try:
        yield
    except LDMSegError as e:
        e.args = (RenamingParser(None, TRAINING_RENAMES).renamed_text(str(e)),)
        raise


def field_flags(argv: Sequence[str]) -> list[str]:
    """`argv` with the renamed training flags under their config fields' names (`--resolution=64` ->
    `--size=64`), so that training.config.explicit_fields sees which fields a command line sets."""
    fields = {r.new: old for old, r in TRAINING_RENAMES.items()}
    out = []
    for word in argv:
        name, sep, value = word.partition("=")
        out.append(fields[name] + sep + value if name in fields else word)
    return out


def _cmd_train_ae(a: argparse.Namespace) -> None:
    from ldmseg.training.autoencoder import train_autoencoder
    from ldmseg.training.config import AutoencoderConfig

    with _training_flag_names():
        train_autoencoder(_training_config(AutoencoderConfig, a))


def _cmd_reconstruct(a: argparse.Namespace) -> None:
    from ldmseg.commands.reconstruct import reconstruct_set

    if not (a.gt_json and a.gt_dir):
        raise LDMSegError("reconstruct: needs --gt-json and --gt-dir (the masks to encode and decode)")
    outputs.check_outputs_apart(a.out, {"--images": a.images, "--gt-json": a.gt_json, "--gt-dir": a.gt_dir,
                                        "--ae": a.ae})
    checks.fits_memory(f"--batch-size {a.batch_size} at {a.resolution}^2", a.batch_size, a.resolution**2,
                       checks.SAMPLING_BYTES_PER_PIXEL)
    tuned = {k: v for k, v in (("threshold", a.threshold), ("min_core_at_512", a.min_core)) if v is not None}
    reconstruct_set(a.ae, a.images, a.gt_json, a.gt_dir, a.out, a.resolution, a.batch_size,
                    latent_noise=a.latent_noise, min_area_at_512=a.min_area, seed=a.seed, verbose=a.verbose,
                    device=a.device, **tuned)


def _cmd_train(a: argparse.Namespace) -> None:
    from ldmseg.training.config import DiffusionConfig
    from ldmseg.training.diffusion import train_diffusion

    with _training_flag_names():
        train_diffusion(_training_config(DiffusionConfig, a))


def _cmd_distill(a: argparse.Namespace) -> None:
    if not a.init_from and not a.resume:
        raise LDMSegError("distill: give --model MODEL, the model to make one-step")
    if a.objective != "one-step":
        raise LDMSegError(f"distill: --objective {a.objective}: distill trains the one-step objective only")
    _cmd_train(a)


def _cmd_convert_original(a: argparse.Namespace) -> None:
    from ldmseg.commands.convert import convert_original

    what = convert_original(a.out, a.ldm, a.ae, a.stable_diffusion, a.weights)
    print(f"wrote {what} to {a.out}")


def _use_threads(args: argparse.Namespace) -> None:
    """Thread settings before any torch work: OpenMP threads sleep when idle instead of spinning (unless
    OMP_WAIT_POLICY is set): on a machine where another process holds a core, spinning threads made sampling
    15-17x slower; then --threads N."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if getattr(args, "threads", 0) and args.command not in ("train", "train-ae"):  # training: LoopConfig.threads
        import torch

        torch.set_num_threads(args.threads)


CLASSES_HELP = ("semantic: the GT's label convention: a classes JSON or 'camvid' (GT PNGs hold that set's raw label "
                "values, mapped to ldmseg's ids, its names shown), or 'ldmseg' (GT PNGs hold ldmseg's ids, unchecked) "
                "(default: ldmseg's ids, checked against the predictions' categories.json)")


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    from ldmseg.training.config import AutoencoderConfig, DiffusionConfig, add_dataclass_arguments

    p = OneLineParser(prog="ldmseg", description="Panoptic / semantic segmentation, depth and mask inpainting by "
                      "latent diffusion (LDMSeg). `ldmseg COMMAND --help` shows a command's flags; docs/usage.md "
                      "is the guide.")
    sub = p.add_subparsers(dest="command", required=True)

    add_data_commands(sub)

    e = sub.add_parser("evaluate", help="PQ/SQ/RQ of COCO-panoptic predictions (panopticapi rules); "
                                        "mIoU or depth errors of PNG folders with --task")
    e.add_argument("--task", default="panoptic", choices=["panoptic", "instances", "semantic", "depth"],
                   help="panoptic: COCO-panoptic JSON + PNGs, class-aware (default); instances: the same, "
                        "class-agnostic (= --class-agnostic); semantic: class-id PNGs (mIoU); depth: 16-bit depth "
                        "PNGs (RMSE, AbsRel, delta<1.25)")
    e.add_argument("--gt-json", help="GT COCO-panoptic JSON (needed for panoptic scoring; default: none)")
    e.add_argument("--gt-dir", required=True, help="GT PNG folder")
    e.add_argument("--pred-json", help="predicted COCO-panoptic JSON (needed for panoptic scoring; default: none)")
    e.add_argument("--pred-dir", required=True, help="predicted PNG folder (files named as the GT's)")
    e.add_argument("--num-classes", type=checks.positive, default=256,
                   help="semantic: class ids live in 0..C-1 (default 256)")
    e.add_argument("--ignore-label", type=checks.between(0, 65535, int), default=0,
                   help="semantic: GT label not scored (default 0, ldmseg's semantic PNGs; ADE20K raw: 0)")
    e.add_argument("--classes", default=None, help=CLASSES_HELP)
    e.add_argument("--class-agnostic", action="store_true", help="all categories as one thing class (Table 1; "
                                                                 "= --task instances)")
    e.add_argument("--out", help="write the results as JSON to this file (pq_compute-shaped; default: printed only)")
    alias(e, "--output", "--out")
    e.add_argument("--workers", type=checks.processes, default=os.cpu_count() or 1,
                   help="processes to spread images over (default: all cores, like panopticapi)")
    e.set_defaults(func=_cmd_evaluate)

    v = sub.add_parser("visualize", help="colour overlays and image / GT / prediction grids (GT, predictions "
                                          "or both)")
    v.add_argument("--task", default="panoptic", choices=["panoptic", "instances", "semantic", "depth"],
                   help="panoptic / instances: COCO-panoptic JSON + PNGs (default: panoptic); semantic: class-id "
                        "PNG folders, with a legend of the classes; depth: 16-bit depth PNG folders, with a colour "
                        "bar")
    v.add_argument("--images", required=True, help=IMAGES_HELP + "; the pictures of these images are drawn")
    v.add_argument("--gt-json", help="COCO-panoptic GT JSON (default: none, predictions alone)")
    v.add_argument("--gt-dir", help="its PNG folder; semantic / depth: the GT PNG folder (default: none)")
    v.add_argument("--pred-json", help="COCO-panoptic prediction JSON, e.g. predict's OUT/panoptic.json "
                                       "(default: none, GT alone)")
    v.add_argument("--pred-dir", help="its PNG folder, e.g. OUT/panoptic; semantic / depth: OUT/semantic or "
                                      "OUT/depth (default: none)")
    v.add_argument("--classes", default=None, help=CLASSES_HELP)
    v.add_argument("--out", required=True, help="output folder: one grid PNG per image (created)")
    v.add_argument("--num", type=checks.positive, default=None, help="at most this many pictures (default: all)")
    alias(v, "--limit", "--num", checks.positive)
    v.set_defaults(func=_cmd_visualize)

    d = sub.add_parser("demo", help="the main job on the embedded default: synthetic scenes end to end")
    add_device(d)
    d.add_argument("--out", default="ldmseg-demo", help="output folder (default: ldmseg-demo)")
    d.add_argument("--num", type=checks.positive, default=50, help="held-out scenes (default 50)")
    d.add_argument("--seed", type=checks.seed, default=12345, help="scene seed (default 12345)")
    d.add_argument("--verbose", action="store_true", help="also print the mask AE's latent statistics (default: "
                                                          "off; they are in OUT/ae_reconstruction/latent_stats.json)")
    add_threads(d)
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train-ae", help="train the stage-1 mask autoencoder")
    add_dataclass_arguments(RenamingParser(t, TRAINING_RENAMES), AutoencoderConfig)
    t.set_defaults(func=_cmd_train_ae)

    tr = sub.add_parser("train", help="train the stage-2 diffusion model (--config FILE.json for presets)")
    tr.add_argument("--config", help="JSON with DiffusionConfig fields, e.g. configs/coco_paper.json; flags given "
                    "override it (default: none)")
    add_dataclass_arguments(RenamingParser(tr, TRAINING_RENAMES), DiffusionConfig)
    if train_defaults:
        tr.set_defaults(**train_defaults)
    tr.set_defaults(func=_cmd_train)

    ds = sub.add_parser("distill", help="fine-tune a model into a one-step model: one UNet call per task and image "
                                        "(train with --objective one-step; docs/usage.md, 'One-step models')")
    add_dataclass_arguments(RenamingParser(ds, TRAINING_RENAMES), DiffusionConfig)
    ds.add_argument("--model", dest="init_from", default=argparse.SUPPRESS,
                    help="the model to distil: 'demo', 'camvid', a directory or a hub id (required; = --init-from)")
    ds.set_defaults(func=_cmd_distill, objective="one-step", out="runs/one-step", ae="")  # the model's own AEs

    add_model_commands(sub)

    c = sub.add_parser("convert-original", help="the authors' released checkpoints (ldmseg.pt, ae.pt) -> an ldmseg "
                                                "pipeline or mask AE directory (safetensors)")
    c.add_argument("--ldm", help="their LDM checkpoint (ldmseg.pt, ~3.3 GB); needs --stable-diffusion (default: none, "
                                 "--ae alone)")
    c.add_argument("--ae", help="their mask-AE checkpoint (ae.pt, ~23 MB): alone, a mask AE directory for "
                                "reconstruct / train --ae; with --ldm, checked to be the LDM's own (default: none)")
    c.add_argument("--stable-diffusion", help="SD directory or hub id giving the UNet config and the image encoder "
                                              "(theirs: CompVis/stable-diffusion-v1-4; required with --ldm)")
    c.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="the UNet's EMA copy where the file has one, or its raw weights (default: ema)")
    c.add_argument("--out", required=True, help="new output directory")
    c.set_defaults(func=_cmd_convert_original)

    r = sub.add_parser("reconstruct", help="encode + decode GT masks with a mask AE; write COCO-panoptic")
    r.add_argument("--ae", required=True, help="model directory or 'demo'")
    r.add_argument("--images", help=IMAGES_HELP + "; only their masks are reconstructed (default: every mask of "
                                                  "--gt-json)")
    r.add_argument("--gt-json", help="COCO-panoptic JSON of the masks (required)")
    r.add_argument("--gt-dir", help="their PNG folder (required)")
    alias(r, "--panoptic-json", "--gt-json")
    alias(r, "--panoptic-dir", "--gt-dir")
    r.add_argument("--out", required=True, help="output folder: panoptic.json, panoptic/, latent_stats.json")
    r.add_argument("--resolution", type=checks.resolution, default=512,
                   help="square processing size (default 512, the paper's)")
    alias(r, "--size", "--resolution", checks.resolution)
    r.add_argument("--batch-size", type=checks.positive, default=8, help="masks per batch (default 8)")
    r.add_argument("--latent-noise", type=checks.non_negative_float, default=0.0,
                   help="Gaussian noise x latent std added before decoding: robustness (default 0)")
    r.add_argument("--min-area", type=checks.non_negative_float, default=0.0,
                   help="segments smaller than this many px at 512^2 (scaled to the image) become VOID "
                        "(default 0)")
    r.add_argument("--seed", type=checks.seed, default=0, help="seed of the random id reassignment (default 0)")
    r.add_argument("--verbose", action="store_true", help="also print the per-channel latent mean / std (default: "
                                                          "off; they are in OUT/latent_stats.json)")
    r.add_argument("--threshold", type=checks.probability, default=None,
                   help="pixels whose top softmax probability is below this become VOID (0 = argmax; default 0.5, "
                        "tuned for the shipped AE)")
    r.add_argument("--min-core", type=checks.non_negative_float, default=None,
                   help="id pruning: ids that are the confident argmax at fewer px than this (at 512^2, scaled) "
                        "give their pixels to a neighbour; 0 = off (default 64, tuned for the shipped AE)")
    add_device(r)
    add_threads(r)
    r.set_defaults(func=_cmd_reconstruct)
    return p


def _config_defaults(argv: Sequence[str] | None) -> dict | None:
    """`--config FILE.json` supplies defaults that explicit flags still override."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return None
    from ldmseg.data.formats import read_json
    from ldmseg.training.config import DiffusionConfig, check_config_values

    data = read_json(known.config)
    if not isinstance(data, dict):
        raise LDMSegError(f"{known.config}: expected a JSON object of config fields")
    return check_config_values(DiffusionConfig, data, known.config)


# OS errors that the input or the machine causes, not the program: a path that is missing, unreadable, of the wrong
# kind or too long, a full or read-only disk. Printed as input errors; every other exception is a bug.
EXPECTED_FAILURES = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
EXPECTED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG})
EX_INPUT, EX_SOFTWARE = 2, 70  # exit codes: bad input (as argparse's), and an internal error (sysexits.h)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _is_expected(e: BaseException) -> bool:
    return isinstance(e, EXPECTED_FAILURES) or isinstance(e, OSError) and e.errno in EXPECTED_ERRNOS


class StoppedByLauncher(Exception):
    """SIGTERM in a multi-process run: `accelerate launch` (torchrun) stops the other processes when one fails."""


def _stop_quietly_when_the_launcher_does() -> None:
    """In a process of an `accelerate launch` run, turn the launcher's SIGTERM into one line (not a traceback)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and threading.current_thread() is threading.main_thread():
        def stop(signum: int, frame: object) -> None:
            raise StoppedByLauncher

        signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary. Bad input (LDMSegError, or a file the OS will not give) is one line naming it and exit 2;
    anything else is a bug in ldmseg, never dressed as an input error: one line asking for a report and exit 70.
    LDMSEG_DEBUG=1 shows the traceback of either kind of unexpected failure."""
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        RenamedFlag.warned.clear()  # each run says an old flag's new name once
        defaults = _config_defaults(argv)
        try:
            args = build_parser(defaults).parse_args(argv)
        except SystemExit as done:  # --help, or a flag error already printed on one line
            return int(done.code or 0)
        args.argv, args.config_keys = argv, list(defaults or {})
        _use_threads(args)
        _stop_quietly_when_the_launcher_does()
        args.func(args)
    except LDMSegError as e:
        close_progress_bars()
        print(f"ldmseg: error: {e}", file=sys.stderr)
        return EX_INPUT
    except KeyboardInterrupt:
        print("ldmseg: interrupted", file=sys.stderr)
        return 130
    except StoppedByLauncher:
        close_progress_bars()
        print("ldmseg: stopped: another process of this run ended first (the launcher's report below names its "
              "rank); every finished image is kept: run the same command again to continue", file=sys.stderr)
        return 143
    except BrokenPipeError:  # the reader of our output went away (`ldmseg evaluate ... | head`): not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush stays silent
        return 141
    except Exception as e:
        if os.environ.get("LDMSEG_DEBUG", "") not in ("", "0"):
            raise
        close_progress_bars()
        if _is_expected(e):
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            print(f"ldmseg: error: {where}{e.strerror or _first_line(e)}", file=sys.stderr)
            return EX_INPUT
        what = ": ".join(filter(None, (type(e).__name__, _first_line(e))))
        print(f"ldmseg: internal error: {what} - please report it; LDMSEG_DEBUG=1 shows the traceback",
              file=sys.stderr)
        return EX_SOFTWARE
    return 0


if __name__ == "__main__":
    sys.exit(main())

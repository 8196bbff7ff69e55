"""The `ldmseg` command: parses arguments and calls library functions, nothing else.

Imports are done inside the handlers so that light commands (evaluate, visualize) never
load torch.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ldmseg import checks
from ldmseg.cli_flags import (
    ENSEMBLE_HELP,
    MODEL_HELP,
    SCHEDULERS,
    OneLineParser,
    Rename,
    RenamedFlag,
    RenamingParser,
    add_device,
    add_precision,
    add_threads,
    alias,
)
from ldmseg.commands.data import add_data_commands
from ldmseg.data import outputs
from ldmseg.errors import LDMSegError, close_progress_bars
from ldmseg.tasks import TASKS, task_spec

# The title line above each table evaluate prints: what was scored, and how.
EVALUATE_TITLES = {
    "panoptic": "class-aware panoptic quality (--task panoptic): PQ / SQ / RQ per GT category, averaged, x100",
    "instances": "class-agnostic panoptic quality (--task instances): every category one thing class, PQ / SQ / RQ "
                 "x100",
    "semantic": "semantic segmentation (--task semantic): mIoU over the classes present, pixel accuracy, IoU per "
                "class, x100",
    "depth": "depth (--task depth): errors over the GT pixels that have a depth",
}


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
                    latent_noise=a.latent_noise, min_area_at_512=a.min_area, seed=a.seed, verbose=a.verbose, **tuned)


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


def _cmd_predict(a: argparse.Namespace) -> None:
    from ldmseg.commands.predict import predict_folder

    outputs.check_outputs_apart(a.out, {"--images": a.images, "--gt-json": a.gt_json, "--model": a.model})
    if a.evaluate and not a.gt_json:
        raise LDMSegError("predict --evaluate: give --gt-json (and --gt-dir unless it lies beside the JSON)")
    checks.fits_sampling(a.batch_size, a.ensemble_size, getattr(a, "resolution", None))
    out = predict_folder(a.model, a.images, a.out, a.gt_json, a.steps, a.scheduler, a.seed, a.batch_size,
                         a.resolution, a.ensemble_size, a.task, a.precision, a.preset, a.device)
    print(f"wrote predictions to {out}")
    from ldmseg.devices import process_group

    if a.evaluate and process_group()[0] == 0:
        _evaluate_predictions(a.gt_json, a.gt_dir or _gt_dir_of(a.gt_json), out)


def _evaluate_predictions(gt_json: str, gt_dir: str | Path, out: Path) -> None:
    """predict --evaluate: the PQ table of OUT against the GT set (class-aware or not as the task was)."""
    from ldmseg.data.formats import read_json
    from ldmseg.metrics.panoptic import evaluate_files, format_table

    task = task_spec(read_json(out / "run.json")["task"])
    if "panoptic" not in task.outputs:
        raise LDMSegError(f"predict --evaluate: scores panoptic outputs; task {task.name} has none (use evaluate "
                          f"--task {task.name})")
    results = evaluate_files(gt_json, gt_dir, out / "panoptic.json", out / "panoptic", not task.class_aware,
                             warn=lambda m: print(f"ldmseg: warning: {m}", file=sys.stderr))
    print(EVALUATE_TITLES[task.name])
    print(format_table(results))


def _gt_dir_of(gt_json: str) -> Path:
    """COCO's layout (panoptic_val2017.json beside panoptic_val2017/), else panoptic/ beside panoptic.json."""
    path = Path(gt_json)
    same = path.with_suffix("")
    return same if same.is_dir() else path.parent / "panoptic"


def _cmd_inpaint(a: argparse.Namespace) -> None:
    from ldmseg.commands import inpaint

    common = dict(num_inference_steps=a.steps, sampler=a.scheduler, seed=a.seed, mask_rule=a.mask_rule,
                  ensemble_size=a.ensemble_size, precision=a.precision, task=a.task, device=a.device)
    outputs.check_outputs_apart(a.out, {"--image": a.image, "--partial": a.partial, "--valid": a.valid,
                                        "--images": a.images, "--gt-json": a.gt_json, "--gt-dir": a.gt_dir,
                                        "--model": a.model})
    checks.fits_sampling(a.batch_size, a.ensemble_size, getattr(a, "resolution", None))
    if bool(a.image) == bool(a.images):
        raise LDMSegError("inpaint: give either --image with --partial, or --images with --gt-json and --gt-dir")
    if a.image:
        if not a.partial:
            raise LDMSegError("inpaint: --image needs --partial PARTIAL.png")
        ann = inpaint.inpaint_image(a.model, a.image, a.partial, a.out, a.valid, **common)
        print(f"wrote {a.out}: {len(ann['segments_info'])} segments, "
              f"{100 * ann['known_agreement']:.1f}% of given pixels kept by the model itself")
        return
    if not (a.gt_json and a.gt_dir):
        raise LDMSegError("inpaint: --images needs --gt-json and --gt-dir (the ground truth to hide)")
    hiding = {"drop_rate": a.drop_rate, "block_size": a.block_size, "mask_type": a.mask_type}
    stats = inpaint.inpaint_set(a.model, a.images, a.gt_json, a.gt_dir, a.out, hiding, batch_size=a.batch_size,
                                **common)
    print(f"wrote {a.out}: {stats['images']} images, {100 * stats['known_share']:.1f}% of pixels given, "
          f"{100 * stats['known_agreement']:.1f}% of them kept by the model itself")


def _cmd_app(a: argparse.Namespace) -> None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # before the model loads
        raise LDMSegError('the app needs Gradio: pip install "ldmseg[app]"')
    from ldmseg.commands.app import serve

    serve(a.model, a.host, a.port, a.steps, precision=a.precision, time_limit=a.time_limit, verbose=a.verbose,
          device=a.device)


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


IMAGES_HELP = "a folder, one image file, a quoted glob ('photos/*.jpg') or - (paths on stdin)"
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

    pr = sub.add_parser("predict", help="segment a folder of images; COCO-panoptic output + overlays")
    pr.add_argument("--model", default="demo", help=MODEL_HELP)
    pr.add_argument("--images", required=True, help=IMAGES_HELP + "; with --gt-json, the set's image folder")
    pr.add_argument("--gt-json", help="a COCO-panoptic GT JSON: keep its image_id / file_name, so that evaluate "
                                      "scores the output against it (default: none)")
    alias(pr, "--panoptic-json", "--gt-json")
    pr.add_argument("--evaluate", action="store_true",
                    help="with --gt-json: print the PQ table of the predictions at the end (default: off)")
    pr.add_argument("--gt-dir", help="the GT PNG folder for --evaluate (default: the folder beside --gt-json named "
                                     "like it, COCO's layout, or panoptic/ beside panoptic.json)")
    pr.add_argument("--out", required=True, help="output folder (created)")
    pr.add_argument("--steps", type=checks.sampling_steps, default=None,
                     help="sampling steps, 1-1000 (default: the model's)")
    pr.add_argument("--scheduler", default=None, choices=SCHEDULERS, help="sampler (default: the model's)")
    pr.add_argument("--seed", type=checks.seed, default=0, help="sampling seed (default 0)")
    pr.add_argument("--batch-size", type=checks.positive, default=4, help="images per batch (default 4)")
    pr.add_argument("--resolution", type=checks.resolution, default=None,
                    help="processing resolution (default: the model's)")
    pr.add_argument("--ensemble-size", type=checks.positive, default=None, help=ENSEMBLE_HELP)
    pr.add_argument("--task", default=None, choices=list(TASKS),
                    help="what to predict (default: panoptic where the model has instances + semantic, else its "
                         "task); semantic -> OUT/semantic/*.png, depth -> OUT/depth/*.png")
    pr.add_argument("--preset", default=None,
                    help="a named setting of the model under the flags given (the converted paper model: fast = "
                         "20 steps, bf16 where the hardware has it; default: none, the model's own defaults)")
    add_threads(pr)
    add_precision(pr)
    pr.set_defaults(func=_cmd_predict)

    ip = sub.add_parser("inpaint", help="complete a partial panoptic mask (one image, or a COCO set with "
                                        "parts of the GT hidden)")
    ip.add_argument("--model", default="demo", help=MODEL_HELP)
    ip.add_argument("--task", default=None, choices=[t for t in TASKS if task_spec(t).inpaints],
                    help="what to complete: instances (class-agnostic) or panoptic (class-aware); the given ids keep "
                         "their numbers in both (default: the model's task)")
    ip.add_argument("--out", required=True, help="output folder (created)")
    ip.add_argument("--image", help="one image ... (default: none; or give --images)")
    ip.add_argument("--partial", help="... and its partial mask: COCO-RGB ids, 0 = unknown unless --valid (default: "
                    "none)")
    ip.add_argument("--valid", help="mask of the given pixels, non-zero = given (default: every non-zero id of "
                    "--partial)")
    ip.add_argument("--images", help="or a COCO-panoptic set: image folder ... (default: none)")
    ip.add_argument("--gt-json", help="... its panoptic JSON ... (default: none)")
    ip.add_argument("--gt-dir", help="... and PNG folder; parts of each GT are hidden, then completed (default: "
                    "none)")
    alias(ip, "--panoptic-json", "--gt-json")
    alias(ip, "--panoptic-dir", "--gt-dir")
    ip.add_argument("--mask-type", default="blocks", choices=["blocks", "beit", "strokes"],
                    help="how parts of the GT are hidden (default: blocks)")
    ip.add_argument("--drop-rate", type=checks.between(0.0, 1.0, open_high=True), default=0.5,
                    help="share of the image hidden (default 0.5)")
    ip.add_argument("--block-size", type=checks.positive, default=4,
                    help="block size in px at the processing resolution (default 4)")
    ip.add_argument("--batch-size", type=checks.positive, default=4, help="images per batch (default 4)")
    ip.add_argument("--steps", type=checks.sampling_steps, default=None,
                     help="sampling steps, 1-1000 (default: the model's)")
    ip.add_argument("--scheduler", default=None, choices=SCHEDULERS, help="sampler (default: the model's)")
    ip.add_argument("--mask-rule", default="nearest", choices=["nearest", "any", "all"],
                    help="which latent cells count as known: nearest, any or all of their pixels given "
                         "(default: nearest)")
    ip.add_argument("--seed", type=checks.seed, default=0, help="sampling seed (default 0)")
    ip.add_argument("--ensemble-size", type=checks.positive, default=None, help=ENSEMBLE_HELP)
    add_threads(ip)
    add_precision(ip)
    ip.set_defaults(func=_cmd_inpaint)

    ap_ = sub.add_parser("app", help="interactive page: segment an image, complete brush strokes")
    ap_.add_argument("--model", default="demo", help=MODEL_HELP)
    ap_.add_argument("--host", default="127.0.0.1",
                     help="address to bind; 0.0.0.0 exposes it to the network (default: 127.0.0.1)")
    ap_.add_argument("--port", type=checks.port, default=7860, help="port (default 7860)")
    ap_.add_argument("--steps", type=checks.sampling_steps, default=None,
                     help="sampling steps, 1-1000 (default: the model's)")
    ap_.add_argument("--time-limit", type=checks.positive_float, default=120.0,
                     help="seconds one request may run before it is stopped (default 120)")
    ap_.add_argument("--verbose", action="store_true", help="print Gradio's own start-up lines (default: off, "
                                                            "only the page's address)")
    add_threads(ap_)
    add_precision(ap_)
    ap_.set_defaults(func=_cmd_app)

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
        args.func(args)
    except LDMSegError as e:
        close_progress_bars()
        print(f"ldmseg: error: {e}", file=sys.stderr)
        return EX_INPUT
    except KeyboardInterrupt:
        print("ldmseg: interrupted", file=sys.stderr)
        return 130
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

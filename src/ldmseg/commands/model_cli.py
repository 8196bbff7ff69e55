"""The `ldmseg` commands that serve a model, as flags and runners: predict, inpaint and the app (the parser tree's
other branches live in cli.py and commands/data.py). Runners parse nothing: they call the command modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldmseg import checks
from ldmseg.cli_flags import ENSEMBLE_HELP, MODEL_HELP, SCHEDULERS, add_precision, add_threads, alias
from ldmseg.data import outputs
from ldmseg.errors import LDMSegError
from ldmseg.tasks import TASKS, task_spec

IMAGES_HELP = "a folder, one image file, a quoted glob ('photos/*.jpg') or - (paths on stdin)"
# inpaint --images: how parts of each GT map are hidden. The flags default to None so that one given with --image
# (which hides nothing: --partial says what is given) is refused instead of ignored.
HIDING = {"drop_rate": 0.5, "block_size": 4, "mask_type": "blocks"}
HIDING_FLAGS = {"drop_rate": "--drop-rate", "block_size": "--block-size", "mask_type": "--mask-type"}

EVALUATE_TITLES = {
    "panoptic": "class-aware panoptic quality (--task panoptic): PQ / SQ / RQ per GT category, averaged, x100",
    "instances": "class-agnostic panoptic quality (--task instances): every category one thing class, PQ / SQ / RQ "
                 "x100",
    "semantic": "semantic segmentation (--task semantic): mIoU over the classes present, pixel accuracy, IoU per "
                "class, x100",
    "depth": "depth (--task depth): errors over the GT pixels that have a depth",
}



def add_model_commands(sub) -> None:
    """The predict, inpaint and app sub-commands of the `ldmseg` parser."""
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
    pr.set_defaults(func=cmd_predict)

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
    ip.add_argument("--mask-type", default=None, choices=["blocks", "beit", "strokes"],
                    help=f"with --images: how parts of the GT are hidden (default: {HIDING['mask_type']})")
    ip.add_argument("--drop-rate", type=checks.between(0.0, 1.0, open_high=True), default=None,
                    help=f"with --images: share of the image hidden (default {HIDING['drop_rate']})")
    ip.add_argument("--block-size", type=checks.positive, default=None,
                    help=f"with --images: block size in px at the processing resolution (default "
                         f"{HIDING['block_size']})")
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
    ip.set_defaults(func=cmd_inpaint)

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
    ap_.set_defaults(func=cmd_app)


def cmd_predict(a: argparse.Namespace) -> None:
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
        evaluate_predictions(a.gt_json, a.gt_dir or gt_dir_of(a.gt_json), out)


def evaluate_predictions(gt_json: str, gt_dir: str | Path, out: Path) -> None:
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


def gt_dir_of(gt_json: str) -> Path:
    """COCO's layout (panoptic_val2017.json beside panoptic_val2017/), else panoptic/ beside panoptic.json."""
    path = Path(gt_json)
    same = path.with_suffix("")
    return same if same.is_dir() else path.parent / "panoptic"


def cmd_inpaint(a: argparse.Namespace) -> None:
    from ldmseg.commands import inpaint

    common = dict(num_inference_steps=a.steps, sampler=a.scheduler, seed=a.seed, mask_rule=a.mask_rule,
                  ensemble_size=a.ensemble_size, precision=a.precision, task=a.task, device=a.device)
    outputs.check_outputs_apart(a.out, {"--image": a.image, "--partial": a.partial, "--valid": a.valid,
                                        "--images": a.images, "--gt-json": a.gt_json, "--gt-dir": a.gt_dir,
                                        "--model": a.model})
    checks.fits_sampling(a.batch_size, a.ensemble_size, getattr(a, "resolution", None))
    if bool(a.image) == bool(a.images):
        raise LDMSegError("inpaint: give either --image with --partial, or --images with --gt-json and --gt-dir")
    given = {flag: getattr(a, key) for key, flag in HIDING_FLAGS.items() if getattr(a, key) is not None}
    if a.image:
        if not a.partial:
            raise LDMSegError("inpaint: --image needs --partial PARTIAL.png")
        if given:
            raise LDMSegError(f"inpaint: {next(iter(given))} hides parts of a GT set (--images); with --image, "
                              "--partial (and --valid) say what is given")
        ann = inpaint.inpaint_image(a.model, a.image, a.partial, a.out, a.valid, **common)
        print(f"wrote {a.out}: {len(ann['segments_info'])} segments, "
              f"{100 * ann['known_agreement']:.1f}% of given pixels kept by the model itself")
        return
    if not (a.gt_json and a.gt_dir):
        raise LDMSegError("inpaint: --images needs --gt-json and --gt-dir (the ground truth to hide)")
    hiding = {key: HIDING[key] if getattr(a, key) is None else getattr(a, key) for key in HIDING}
    stats = inpaint.inpaint_set(a.model, a.images, a.gt_json, a.gt_dir, a.out, hiding, batch_size=a.batch_size,
                                **common)
    print(f"wrote {a.out}: {stats['images']} images, {100 * stats['known_share']:.1f}% of pixels given, "
          f"{100 * stats['known_agreement']:.1f}% of them kept by the model itself")


def cmd_app(a: argparse.Namespace) -> None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # before the model loads
        raise LDMSegError('the app needs Gradio: pip install "ldmseg[app]"')
    from ldmseg.commands.app import serve

    serve(a.model, a.host, a.port, a.steps, precision=a.precision, time_limit=a.time_limit, verbose=a.verbose,
          device=a.device)

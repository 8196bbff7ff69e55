"""CamVid val (101 road photos, 480x360, 11 classes, Unlabelled ignored): the shipped `camvid` model (latent
diffusion, semantic task) beside the discriminative baseline trained for the same CPU time (the same networks
predicting the label latents in one step, cross-entropy through the same AE decoder), and the semantic AE's own
ceiling (GT labels encoded and decoded at the processing resolution). Scored at the labels' full size: per-class
IoU, mIoU, pixel accuracy, seconds per image.

    python bench/camvid.py --data ../shared/data/camvid --model camvid-diffusion --direct runs/camvid-direct/model \
        --settings 2x1 4x1 8x1 1x4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import ROOT, logged_curve, machine, new_plot, save_plot, save_results

from ldmseg.data import formats
from ldmseg.data.classes import load_class_list
from ldmseg.data.datasets import SemanticFolderDataset
from ldmseg.data.transforms import resize_labels
from ldmseg.metrics.semantic import SemanticEvaluator


def val_set(root: str) -> SemanticFolderDataset:
    from pathlib import Path

    return SemanticFolderDataset(Path(root) / "val", Path(root) / "valannot", load_class_list("camvid"))


def score(predict, data: SemanticFolderDataset, num_classes: int, batch: int = 4) -> dict:
    evaluator = SemanticEvaluator(num_classes + 1, ignore_label=0)
    seconds = 0.0
    for start in range(0, len(data), batch):
        names = data.files[start:start + batch]
        images = [formats.read_rgb(data.image_file(n)) for n in names]
        t = time.perf_counter()
        preds = predict(images)
        seconds += time.perf_counter() - t
        for name, pred in zip(names, preds, strict=True):
            evaluator.process(data.semantic(name), pred.astype(np.int64))
    res = evaluator.evaluate()
    return {"miou": 100 * res["miou"], "pixel_accuracy": 100 * res["pixel_accuracy"],
            "per_class_iou": [100 * v for v in res["per_class_iou"][1:]], "seconds_per_image": seconds / len(data)}


def pipeline_scores(model: str, data, num_classes: int, steps: int | None, ensemble: int | None) -> dict:
    from ldmseg.commands.predict import load_pipeline

    pipe = load_pipeline(model, announce=False)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)

    def predict(images):
        return pipe(images, task="semantic", num_inference_steps=steps, ensemble_size=ensemble, generator=gen).semantic

    out = score(predict, data, num_classes)
    out.update(steps=steps or pipe.default_steps("semantic"), ensemble=ensemble or pipe.config.default_ensemble_size,
               resolution=pipe.config.default_processing_resolution)
    return out


@torch.no_grad()
def ae_ceiling(model: str, data, num_classes: int) -> dict:
    """GT class maps through the model's semantic AE at its processing resolution, upsampled to full size."""
    from ldmseg.commands.predict import load_pipeline

    pipe = load_pipeline(model, announce=False)
    ae, res = pipe.semantic_autoencoder, pipe.config.default_processing_resolution
    evaluator = SemanticEvaluator(num_classes + 1, ignore_label=0)
    for name in data.files:
        gt = data.semantic(name)
        small = torch.from_numpy(resize_labels(gt, (res, res)).astype(np.int64))[None]
        decoded = ae.decode(ae.encode_ids(small), size=(res, res))[0, : num_classes + 1]
        evaluator.process(gt, resize_labels(decoded.argmax(0).numpy(), gt.shape).astype(np.int64))
    res_ = evaluator.evaluate()
    return {"miou": 100 * res_["miou"], "pixel_accuracy": 100 * res_["pixel_accuracy"],
            "per_class_iou": [100 * v for v in res_["per_class_iou"][1:]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="the CamVid folder (val/, valannot/)")
    ap.add_argument("--model", default="camvid-diffusion")
    ap.add_argument("--direct", default=None, help="the discriminative baseline's pipeline directory")
    ap.add_argument("--settings", nargs="*", default=[],
                    help="extra settings to score the model at, STEPSxSAMPLES each (e.g. 4x1 1x4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="camvid")
    ap.add_argument("--log", default=None, help="console log of the diffusion run (validation lines: the curve)")
    ap.add_argument("--direct-log", default=None, help="console log of the baseline's run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = val_set(args.data)
    classes = data.classes.names
    rows = {"LDMSeg, served defaults": pipeline_scores(args.model, data, len(classes), None, None)}
    for setting in args.settings:
        steps, samples = (int(v) for v in setting.split("x"))
        label = f"LDMSeg, {steps} step{'s' * (steps > 1)}, " + ("one sample" if samples == 1 else
                                                                 f"ensemble of {samples}")
        rows[label] = pipeline_scores(args.model, data, len(classes), steps, samples)
    if args.direct:
        rows["discriminative baseline (same networks, CE, 1 step)"] = pipeline_scores(args.direct, data,
                                                                                     len(classes), None, None)
    rows["semantic AE ceiling (GT encoded + decoded)"] = ae_ceiling(args.model, data, len(classes))
    curves = {"LDMSeg (diffusion)": logged_curve(f"{args.name}_curve_ldmseg", args.log, "miou"),
              "discriminative baseline": logged_curve(f"{args.name}_curve_direct", args.direct_log, "miou")}
    plot_curves(curves, ROOT / "docs" / "figures" / f"{args.name}_curve.png")
    results = {"machine": machine(), "threads": args.threads, "classes": list(classes), "rows": rows,
               "curves": curves, "figure": f"{args.name}_curve.png"}
    save_results(args.name, results, table(results))


def plot_curves(curves: dict[str, dict[int, float]], path) -> None:
    fig, ax = new_plot()
    for label, curve in curves.items():
        if curve:
            ax.plot(list(curve), list(curve.values()), marker="o", label=label)
    save_plot(fig, ax, path, "training step (batch 8)", "val mIoU (24 images, during training)")


def table(r: dict) -> str:
    names = r["classes"]
    lines = [f"## CamVid val: the diffusion model, `camvid-diffusion` ({r['machine']}, {r['threads']} threads)", "",
             "`bench/camvid.py`: the 101 val photos at their 480x360 labels, 11 classes, Unlabelled ignored; "
             "seconds per image in batches of 4.", "",
             "| | mIoU | pixel acc. | s / image | steps x samples | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for label, row in r["rows"].items():
        per = " | ".join(f"{v:.1f}" if v == v else "-" for v in row["per_class_iou"])
        timing = f"{row['seconds_per_image']:.2f}" if "seconds_per_image" in row else "-"
        runs = f"{row['steps']} x {row['ensemble']}" if "steps" in row else "-"
        lines.append(f"| {label} | {row['miou']:.1f} | {row['pixel_accuracy']:.1f} | {timing} | {runs} | {per} |")
    for label, curve in r.get("curves", {}).items():
        if curve:
            lines += ["", f"{label}, validation during training (first 24 val images):", "",
                      "| step | " + " | ".join(map(str, curve)) + " |", "|---" * (len(curve) + 1) + "|",
                      "| mIoU | " + " | ".join(f"{v:.1f}" for v in curve.values()) + " |"]
    lines += ["", "![CamVid validation mIoU during training](figures/" + r.get("figure", "camvid_curve.png") + ")"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

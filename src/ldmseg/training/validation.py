"""Validation shared by both stages: a metric of some predictor over a dataset, with a picture
(class-agnostic PQ for instances, mIoU for semantic maps, RMSE for depth), and the metric of a pipeline's samples
for a task (its spec's metric)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ldmseg.metrics.depth import DepthEvaluator
from ldmseg.metrics.panoptic import PanopticEvaluator, segments_from_ids
from ldmseg.metrics.semantic import SemanticEvaluator
from ldmseg.tasks import task_spec
from ldmseg.viz import colorize, colorize_depth, grid

if TYPE_CHECKING:
    from ldmseg.pipeline import LDMSegPipeline

Prediction = tuple[np.ndarray, list[dict]]
LogImage = Callable[[str, np.ndarray, int], None]


def item_image(item: dict[str, torch.Tensor]) -> np.ndarray:
    return ((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


@torch.no_grad()
def agnostic_pq(dataset: Dataset, predict: Callable[[list[dict]], list[Prediction]], batch_size: int = 16,
                show_image: bool = False, tag: str = "val/predictions", step: int = 0,
                log_image: LogImage | None = None) -> dict[str, float]:
    """Run `predict` over the dataset in batches; PQ/SQ/RQ x100 against each item's `ids`."""
    ev = PanopticEvaluator([], class_agnostic=True)
    shown = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        for item, (pred, segs) in zip(items, predict(items), strict=True):
            gt = item["ids"].numpy()
            ev.process(gt, segments_from_ids(gt), pred, segs)
            if len(shown) < 4:
                panels = [item_image(item)] if show_image else []
                shown.append(grid([*panels, colorize(gt), colorize(pred)]))
    res = ev.evaluate()["All"]
    if log_image is not None and shown:
        log_image(tag, np.concatenate(shown, 0), step)
    return {"pq": 100 * res["pq"], "sq": 100 * res["sq"], "rq": 100 * res["rq"]}


def _score_maps(dataset: Dataset, predict: Callable[[list[dict]], list[np.ndarray]], evaluator, key: str,
                colour: Callable[[np.ndarray], np.ndarray], batch_size: int, show_image: bool, step: int,
                log_image: LogImage | None, tag: str) -> dict:
    """Feed each item's `key` map and its prediction to `evaluator` (process(gt, pred)); log a picture of the
    first four; return evaluator.evaluate()."""
    shown = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        for item, pred in zip(items, predict(items), strict=True):
            gt = item[key].numpy()
            evaluator.process(gt, pred)
            if len(shown) < 4:
                panels = [item_image(item)] if show_image else []
                shown.append(grid([*panels, colour(gt), colour(np.asarray(pred))]))
    if log_image is not None and shown:
        log_image(tag, np.concatenate(shown, 0), step)
    return evaluator.evaluate()


@torch.no_grad()
def semantic_scores(dataset: Dataset, predict: Callable[[list[dict]], list[np.ndarray]], num_labels: int,
                    batch_size: int = 16, key: str = "semantic", show_image: bool = False, step: int = 0,
                    log_image: LogImage | None = None, tag: str = "val/semantic") -> dict[str, float]:
    """mIoU and pixel accuracy x100 of `predict` against each item's `key` map (label 0 ignored)."""
    res = _score_maps(dataset, predict, SemanticEvaluator(num_labels, ignore_label=0), key, colorize, batch_size,
                      show_image, step, log_image, tag)
    return {"miou": 100 * res["miou"], "pixel_accuracy": 100 * res["pixel_accuracy"]}


@torch.no_grad()
def depth_scores(dataset: Dataset, predict: Callable[[list[dict]], list[np.ndarray]], batch_size: int = 16,
                 show_image: bool = False, step: int = 0, log_image: LogImage | None = None,
                 tag: str = "val/depth") -> dict[str, float]:
    """RMSE, AbsRel and delta < 1.25 of `predict` against each item's `depth`."""
    res = _score_maps(dataset, predict, DepthEvaluator(), "depth", colorize_depth, batch_size, show_image, step,
                      log_image, tag)
    return {"rmse": res["rmse"], "absrel": res["absrel"], "delta1": 100 * res["delta1"]}


def sampled_pq(pipe: LDMSegPipeline, dataset, steps: int, batch_size: int = 8, seed: int = 0, step: int = 0,
               log_image: LogImage | None = None, min_area: int | None = None, ensemble_size: int = 1
               ) -> dict[str, float]:
    """Class-agnostic PQ of pipeline samples on a dataset of (image, ids) items (one sample per image
    unless `ensemble_size` says otherwise, whatever the pipeline's default)."""
    gen = torch.Generator().manual_seed(seed)

    def predict(items: list[dict]) -> list:
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, min_area=min_area,
                   ensemble_size=ensemble_size, task="instances")
        return list(zip(out.panoptic, out.segments_info, strict=True))

    return agnostic_pq(dataset, predict, batch_size, show_image=True, tag="val/samples", step=step,
                       log_image=log_image)


def sampled_metrics(pipe: LDMSegPipeline, dataset, task: str, steps: int, batch_size: int = 8, seed: int = 0,
                    step: int = 0, log_image: LogImage | None = None, ensemble_size: int = 1) -> dict[str, float]:
    """The task's metric of pipeline samples: PQ/SQ/RQ (instances), mIoU (semantic), RMSE/AbsRel/delta1 (depth)."""
    spec = task_spec(task)
    if spec.metric == "pq":
        return sampled_pq(pipe, dataset, steps, batch_size, seed, step, log_image, ensemble_size=ensemble_size)
    gen = torch.Generator().manual_seed(seed)

    def predict(items: list[dict]) -> list[np.ndarray]:
        out = pipe([it["image"] for it in items], num_inference_steps=steps, generator=gen, task=task,
                   ensemble_size=ensemble_size)
        return out[spec.outputs[0]]

    if spec.metric == "miou":
        return semantic_scores(dataset, predict, pipe.semantic_autoencoder.num_ids, batch_size, show_image=True,
                               step=step, log_image=log_image)
    return depth_scores(dataset, predict, batch_size, show_image=True, step=step, log_image=log_image)

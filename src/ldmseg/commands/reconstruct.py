"""`ldmseg reconstruct`: GT masks through the mask AE and back, written as COCO-panoptic predictions.

Each GT id map gets fresh random ids (as in training), is squashed to S x S, encoded, decoded,
brought back to the original size, post-processed and written with the GT's image_id and
file_name, so `ldmseg evaluate` (or panopticapi) scores reconstruction directly. Latent
statistics (per-channel mean / std) are saved (and printed with verbose): they set stage 2's scale factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ldmseg.data import coco_panoptic, formats, outputs, transforms
from ldmseg.devices import resolve_device
from ldmseg.diffusion.postprocess import logits_to_panoptic, majority_categories, scaled_area
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.models.mask_autoencoder import add_latent_noise, resize_distribution
from ldmseg.weights import resolve_model_path

# The shipped (slot-head) AE's decoding post-processing, chosen by scripts/tune_ae_postprocess.py on tuning scenes
# encoded at 512^2 and confirmed with real COCO masks beside them: a low pruning floor, because the slot head leaves
# few boundary fragments to prune.
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_CORE_AT_512 = 64.0


class LatentStats:
    """Running per-channel mean / std of latents."""

    def __init__(self) -> None:
        self.n, self.sum, self.sq = 0, 0.0, 0.0

    def update(self, z: torch.Tensor) -> None:
        z = z.double().transpose(0, 1).flatten(1)
        self.n += z.shape[1]
        self.sum = self.sum + z.sum(1)
        self.sq = self.sq + (z**2).sum(1)

    def result(self) -> dict:
        mean = self.sum / self.n
        std = (self.sq / self.n - mean**2).clamp_min(0).sqrt()
        overall = float(((self.sq.sum() / (self.n * len(mean))) - (self.sum.sum() / (self.n * len(mean))) ** 2)
                        ** 0.5)
        return {"mean": mean.tolist(), "std": std.tolist(), "std_all": overall,
                "suggested_scale_factor": 1.0 / overall if overall > 0 else 1.0}


@torch.no_grad()
def reconstruct_set(ae_path: str, images: str | None, panoptic_json: str, panoptic_dir: str, out: str,
                    size: int = 512, batch_size: int = 8, latent_noise: float = 0.0, min_area_at_512: float = 0.0,
                    seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
                    min_core_at_512: float = DEFAULT_MIN_CORE_AT_512, verbose: bool = False,
                    device: str | None = None) -> dict:
    """Reconstruct the GT masks of `images` (a folder or None: all; one file, a glob or '-': theirs alone,
    visualize.ImageSource); write OUT/panoptic.json, OUT/panoptic/*.png and OUT/latent_stats.json, and with
    `verbose` print the latent statistics. `device`: where the AE runs ('auto': a GPU where there is one); the
    results do not depend on it beyond float rounding (the ids' reassignment and the noise are drawn on the CPU)."""
    from ldmseg.commands.visualize import ImageSource

    where = resolve_device(device)
    ae = load_mask_autoencoder(resolve_model_path(ae_path, "mask_autoencoder")).to(where)
    gt = coco_panoptic.load_panoptic_json(panoptic_json)
    records = gt.records
    if images:
        records = ImageSource(images).select(records, lambda r: (r.image_file, r.png_file))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    stats = LatentStats()
    out_dir = Path(out)
    annotations, log = [], outputs.SkipLog()
    for start in tqdm(range(0, len(records), batch_size), desc="reconstructing", unit="batch"):
        read = [(r, log.attempt(r.png_file, lambda r=r: coco_panoptic.read_panoptic_ids(panoptic_dir, r)))
                for r in records[start:start + batch_size]]
        chunk = [r for r, ids in read if ids is not None]
        originals = [ids.astype(np.int64) for _, ids in read if ids is not None]
        if not chunk:
            continue
        batch = []
        for ids in originals:
            ids = transforms.keep_largest(ids, ae.num_ids - 1)
            ids = transforms.reassign_ids(ids, ae.num_ids, rng)
            batch.append(torch.from_numpy(transforms.resize_labels(ids, (size, size))))
        z = ae.encode_ids(torch.stack(batch).to(where)).cpu()
        stats.update(z)
        z = add_latent_noise(z, latent_noise, gen, per_sample_random=False)
        logits = ae.decode(z.to(where)).cpu()  # at H/2, resampled once below, straight to each mask's own size
        for rec, gt_ids, lg in zip(chunk, originals, logits, strict=True):
            full = resize_distribution(lg[None], gt_ids.shape)
            min_area, min_core = (scaled_area(a, *gt_ids.shape) for a in (min_area_at_512, min_core_at_512))
            (pred, segments), = logits_to_panoptic(full, threshold, min_area, min_core)
            majority_categories(pred, segments, gt_ids, rec.segments)
            formats.write_panoptic_png(out_dir / "panoptic" / rec.png_file, pred)
            annotations.append({"image_id": rec.image_id, "file_name": rec.png_file, "segments_info": segments})
            log.succeeded()
    if not log.done:
        log.finish(out_dir)
    latent = stats.result()
    formats.write_json(out_dir / "latent_stats.json", latent)
    formats.write_json(out_dir / "panoptic.json", {"annotations": annotations,
                                                   "categories": list(gt.categories.values())})
    if verbose:
        print("latent mean per channel:", " ".join(f"{m:+.3f}" for m in latent["mean"]))
        print("latent std  per channel:", " ".join(f"{s:.3f}" for s in latent["std"]),
              f"(overall {latent['std_all']:.3f}; scale factor 1/std = {latent['suggested_scale_factor']:.4f})")
    log.finish(out_dir)
    return latent

"""One-step fine-tuning (E2E-FT, "Fine-tuning image-conditional diffusion models is easier than you think",
2024): the denoiser sees the *mean* of the last timestep's noise (zeros) at t = T - 1 and is trained to give the
clean latents in that one call, with each task's own loss through its frozen stage-1 decoder instead of the
denoising MSE. Served with `initial_noise="zeros"`, one step and `final_x0`: one deterministic UNet call per task.

Instance ids are arbitrary (training draws random ids, every noise sample picks its own), so a deterministic
model regressed to random ids learns their average: no mask at all. The instance loss is therefore
permutation-invariant: each GT segment is matched to the decoder's id channel that already covers it best
(Hungarian matching on cross-entropy + Dice cost, as set-prediction segmenters match queries), and the
cross-entropy and Dice losses are taken under that matching. The model picks its own ids; the loss only asks
that each segment gets one id of its own. The alternative it was measured against (`instance_ids="canonical"`,
docs/benchmarks.md "One-step models") fixes the ids instead: segments numbered 1..K in the raster order of their
first pixel, so the target is a function of the image.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ldmseg.diffusion.objective import denoiser_input
from ldmseg.models.depth_autoencoder import depth_autoencoder_loss

MATCH_COST_INFINITY = 1e6  # channel 0 is VOID: never a segment's id


def one_step_latents(denoise, z_img: torch.Tensor, latent_channels: int, self_condition: bool,
                     num_timesteps: int = 1000) -> torch.Tensor:
    """The model's x0 from zeros at the last timestep: what a one-step pipeline with zeros initial noise serves."""
    b, _, h, w = z_img.shape
    zeros = z_img.new_zeros((b, latent_channels, h, w))
    t = torch.full((b,), num_timesteps - 1, device=z_img.device, dtype=torch.long)
    return denoise(denoiser_input(zeros, z_img, None, self_condition), t)


def matched_targets(log_probs: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    """Per image, the GT segments matched one-to-one to id channels (Hungarian on CE + Dice cost).

    log_probs [B, N, H, W], ids [B, H, W] (0 = VOID) -> (target ids [B, H, W]: each segment's pixels carry its
    matched channel, VOID stays 0; per image the (segment masks [K, H*W], matched channels [K]) pairs)."""
    target = torch.zeros_like(ids)
    pairs = []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            segs = ids[b].unique()
            segs = segs[segs != 0]
            if len(segs) == 0:
                pairs.append((None, None))
                continue
            masks = (ids[b].flatten()[None] == segs[:, None]).float()  # [K, HW]
            lp = log_probs[b].flatten(1).float()  # [N, HW]
            cost = _match_cost(masks, lp)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            lut = torch.zeros(int(ids[b].max()) + 1, dtype=ids.dtype, device=ids.device)
            lut[segs[rows]] = torch.as_tensor(cols, dtype=ids.dtype, device=ids.device)
            target[b] = lut[ids[b]]
            pairs.append((masks[rows], torch.as_tensor(cols, device=ids.device)))
    return target, pairs


def canonical_targets(ids: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    """Per image, segments renumbered 1..K in the raster order of their first pixel (VOID stays 0): ids that are a
    function of the image. Same outputs as matched_targets."""
    target = torch.zeros_like(ids)
    pairs = []
    for b in range(ids.shape[0]):
        flat = ids[b].flatten()
        segs = flat[flat != 0].unique()
        if len(segs) == 0:
            pairs.append((None, None))
            continue
        first = torch.stack([(flat == s).nonzero()[0, 0] for s in segs])
        ordered = segs[first.argsort()]
        channels = torch.arange(1, len(ordered) + 1, dtype=ids.dtype, device=ids.device)
        lut = torch.zeros(int(ids[b].max()) + 1, dtype=ids.dtype, device=ids.device)
        lut[ordered] = channels
        target[b] = lut[ids[b]]
        pairs.append(((flat[None] == ordered[:, None]).float(), channels))
    return target, pairs


def _match_cost(masks: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """[K, N] cost of giving segment k the id n: mean CE over its pixels + soft Dice loss."""
    area = masks.sum(1, keepdim=True)
    ce = -(masks @ log_probs.T) / area
    probs = log_probs.exp()
    dice = 1 - (2 * (masks @ probs.T) + 1) / (area + probs.sum(1)[None] + 1)
    cost = ce + dice
    cost[:, 0] = MATCH_COST_INFINITY
    return cost


def matched_dice(log_probs: torch.Tensor, pairs: list[tuple]) -> torch.Tensor:
    """Mean soft Dice loss of every matched (segment, channel) pair of the batch."""
    losses = []
    for b, (masks, channels) in enumerate(pairs):
        if masks is None:
            continue
        probs = log_probs[b].flatten(1).float().exp()[channels]  # [K, HW]
        dice = 1 - (2 * (probs * masks).sum(1) + 1) / (probs.sum(1) + masks.sum(1) + 1)
        losses.append(dice)
    return torch.cat(losses).mean() if losses else log_probs.sum() * 0


def instance_loss(decoded: torch.Tensor, ids: torch.Tensor, canonical: bool = False
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Permutation-invariant instance loss: CE + Dice under the Hungarian matching of segments to ids (or, with
    `canonical`, under the canonical numbering)."""
    log_probs = decoded.float().log_softmax(1)
    target, pairs = canonical_targets(ids) if canonical else matched_targets(log_probs, ids)
    if not bool((target != 0).any()):
        return decoded.sum() * 0, {}
    ce = F.nll_loss(log_probs, target.long(), ignore_index=0)
    dice = matched_dice(log_probs, pairs)
    return ce + dice, {"ce/instances": ce.item(), "dice/instances": dice.item()}


def semantic_loss(decoded: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over labelled pixels (0 = ignore)."""
    if not bool((labels != 0).any()):
        return decoded.sum() * 0, {}
    loss = F.nll_loss(decoded.float().log_softmax(1), labels.long(), ignore_index=0)
    return loss, {}


def depth_loss(decoded: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The depth AE's own loss (L1 + gradient L1: sharp occlusion edges) on the decoded depth."""
    loss, logs = depth_autoencoder_loss(decoded, depth.float())
    return loss, {f"{k}/depth": v for k, v in logs.items()}


LOSSES = {"instances": ("ids", instance_loss), "semantic": ("semantic", semantic_loss), "depth": ("depth", depth_loss)}


class OneStepObjective:
    """The one-step training loss for any mix of tasks: one deterministic call per example (its task's embedding),
    its x0 decoded by the task's frozen AE at the label size, the task's loss there. `attach` gives it the AEs and
    latent scales once the trainer has them."""

    def __init__(self, self_condition: bool, num_timesteps: int = 1000, instance_ids: str = "matched"):
        self.self_condition, self.num_timesteps = self_condition, num_timesteps
        canonical = instance_ids == "canonical"  # the measured alternative to matching (module docstring)
        self.losses = {**LOSSES, "instances": ("ids", partial(instance_loss, canonical=canonical))}
        self.autoencoders: dict[str, torch.nn.Module] = {}
        self.scales: dict[str, float] = {}

    def attach(self, autoencoders: dict[str, torch.nn.Module], scales: dict[str, float]) -> OneStepObjective:
        self.autoencoders, self.scales = autoencoders, scales
        return self

    def __call__(self, denoise, z0: torch.Tensor, z_img: torch.Tensor, valid: torch.Tensor | None = None,
                 groups: dict[str, torch.Tensor] | None = None, sample_weights: torch.Tensor | None = None,
                 labels: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """labels: the batch's target maps by key (ids, semantic, depth); groups: each task's [B] example mask
        (None: every example is of the one task)."""
        if labels is None:
            raise ValueError("the one-step objective needs the target maps")
        x0 = one_step_latents(denoise, z_img, z0.shape[1], self.self_condition, self.num_timesteps)
        groups = groups or {next(iter(self.autoencoders)): torch.ones(len(z0), dtype=torch.bool, device=z0.device)}
        total, logs = x0.sum() * 0, {}
        for task, sel in groups.items():
            if not bool(sel.any()):
                continue
            key, loss_fn = self.losses[task]
            target = labels[key][sel]
            decoded = self.autoencoders[task].decode(x0[sel].float() / self.scales[task], size=tuple(target.shape[-2:]))
            loss, extra = loss_fn(decoded, target)
            share = float(sel.float().mean())
            total = total + share * loss
            logs.update(extra)
            logs[f"loss/{task}"] = float(loss.detach())
        return total, logs


"""The trainable part of stage 2 and how it is built: a new model (UNet preset or Stable Diffusion's UNet, the
image encoder, the tasks' embeddings and conditioning) or one from a saved pipeline being fine-tuned."""

from __future__ import annotations

import torch
from torch import nn

from ldmseg.diffusion.objective import DiffusionObjective, DirectObjective
from ldmseg.diffusion.one_step import OneStepObjective
from ldmseg.errors import LDMSegError
from ldmseg.models.denoiser import (
    TaskEmbeddings,
    add_task_heads,
    add_task_time_embedding,
    build_unet,
    bypass_cross_attention,
    load_pretrained_unet,
    task_prediction,
    widen_conv_in,
)
from ldmseg.models.image_encoder import LearnedImageEncoder, SDVAEImageEncoder, ViTImageEncoder
from ldmseg.training.config import DiffusionConfig


def build_image_encoder(cfg: DiffusionConfig, factor: int) -> nn.Module:
    if cfg.image_encoder == "sd-vae":
        if not cfg.pretrained_vae:
            raise LDMSegError("--image-encoder sd-vae needs --pretrained-vae DIR|HUB_ID")
        return SDVAEImageEncoder.from_sd_vae(cfg.pretrained_vae)
    if cfg.image_encoder == "vit":
        if not cfg.pretrained_vit:
            raise LDMSegError("--image-encoder vit needs --pretrained-vit DIR|HUB_ID of a transformers ViT")
        return ViTImageEncoder.from_vit(cfg.pretrained_vit, cfg.image_channels, factor)
    if cfg.image_encoder != "learned":
        raise LDMSegError(f"unknown --image-encoder {cfg.image_encoder!r} (learned | sd-vae | vit)")
    return LearnedImageEncoder(cfg.image_channels, factor, tuple(cfg.image_encoder_channels))


class Denoiser(nn.Module):
    """The trainable part of stage 2 (UNet, image encoder, task tokens); forward = the training loss,
    so that DDP sees one forward per step.

    With `task_balance` > 0 (several tasks), each example's loss is divided by its task's running mean loss (an
    EMA of that momentum, kept as a buffer so that checkpoints resume it exactly): every task then trains at one
    loss scale, instead of the task with the largest (noisiest) loss filling Adam's second moments. The tasks'
    shares of examples are unchanged, so the compute per task is too. Measured in Table 3 (docs/experiments.md): on
    the synthetic scenes semantic has the largest loss and depth the smallest, so it weights depth up, and it scored
    below plain multi-task training; it is not the default."""

    def __init__(self, unet: nn.Module, image_encoder: nn.Module, task_embeddings: TaskEmbeddings,
                 objective: DiffusionObjective, latent_channels: int, task_balance: float = 0.0):
        super().__init__()
        self.unet, self.image_encoder, self.task_embeddings = unet, image_encoder, task_embeddings
        self.objective, self.latent_channels = objective, latent_channels
        self.task_balance = task_balance if len(task_embeddings.tasks) > 1 else 0.0
        if self.task_balance:
            self.register_buffer("task_loss_mean", torch.zeros(len(task_embeddings.tasks)))

    def forward(self, images: torch.Tensor, z0: torch.Tensor, valid: torch.Tensor, tasks: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """tasks: [B] index of each example's task embedding (its target latent is z0's row); labels: the label
        map (direct objective) or the target maps by key (one-step objective)."""
        z_img = self.image_encoder.encode(images)
        tokens = self.task_embeddings(tasks)
        names = self.task_embeddings.tasks
        one_step = isinstance(self.objective, OneStepObjective)
        groups = {name: tasks == k for k, name in enumerate(names)} if len(names) > 1 or one_step else None
        denoise = lambda x, t: task_prediction(self.unet, x, t, tokens, tasks, self.latent_channels)  # noqa: E731
        extra = {"labels": labels} if isinstance(self.objective, (DirectObjective, OneStepObjective)) else {}
        loss, logs = self.objective(denoise, z0, z_img, valid, groups, self.balance_weights(tasks), **extra)
        if self.task_balance and self.training:
            self.update_task_loss_mean(logs)
        return loss, logs

    def balance_weights(self, tasks: torch.Tensor) -> torch.Tensor | None:
        """[B] factors mean(batch's running means) / its task's running mean; None until every task has one."""
        if not self.task_balance or not bool((self.task_loss_mean > 0).all()):
            return None
        per_example = self.task_loss_mean.to(tasks.device)[tasks]
        return per_example.mean() / per_example

    @torch.no_grad()
    def update_task_loss_mean(self, logs: dict[str, float]) -> None:
        """Fold the batch's per-task mean losses (the objective's `loss/<task>` logs) into the running means."""
        names = self.task_embeddings.tasks
        for k, name in enumerate(names):
            seen = logs.get(f"loss/{name}")
            if seen is None or not seen > 0:
                continue
            old = float(self.task_loss_mean[k])
            self.task_loss_mean[k] = seen if old == 0 else self.task_balance * old + (1 - self.task_balance) * seen
        logs.update({f"balance/{name}": float(self.task_loss_mean[k]) for k, name in enumerate(names)})




def new_denoiser(cfg: DiffusionConfig, tasks: tuple[str, ...], objective, d: int, factor: int) -> Denoiser:
    """A new stage-2 model for `tasks`: the UNet of cfg.unet (or SD's), its conditioning, the image encoder."""
    image_encoder = build_image_encoder(cfg, factor)
    in_channels = d + image_encoder.out_channels + (d if objective.self_condition else 0)
    if cfg.pretrained_unet:
        unet = load_pretrained_unet(cfg.pretrained_unet, in_channels)
    else:
        unet = build_unet(cfg.unet, in_channels, d, cfg.size // factor)
    if unet.config.out_channels != d:
        raise LDMSegError(f"the UNet predicts {unet.config.out_channels} channels, the AEs have {d}")
    if cfg.conditioning == "none":
        if len(tasks) > 1:
            raise LDMSegError("--conditioning none bypasses the task embeddings: it needs a single task")
        bypass_cross_attention(unet)
    elif cfg.conditioning == "task-embedding+time":
        add_task_time_embedding(unet, len(tasks))
    elif cfg.conditioning != "task-embedding":
        raise LDMSegError(f"unknown --conditioning {cfg.conditioning!r} (task-embedding | task-embedding+time "
                          "| none)")
    if cfg.task_heads:
        add_task_heads(unet, len(tasks), d)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    tokens = TaskEmbeddings(tasks, cfg.task_tokens, unet.config.cross_attention_dim)
    return Denoiser(unet, image_encoder, tokens, objective, d, cfg.task_balance)

def denoiser_from_pipeline(pipe, cfg: DiffusionConfig, tasks: tuple[str, ...], objective) -> Denoiser:
    """The trainable parts of a saved pipeline (fine-tuning), with an embedding added for each new task."""
    if pipe.config.self_condition and not objective.self_condition:
        raise LDMSegError(f"{cfg.init_from}: this model is self-conditioned; fine-tune it with "
                          "--self-condition-prob > 0")
    if objective.self_condition and not pipe.config.self_condition:
        # the self-conditioning estimate is conv_in's last input: zero kernels leave the model unchanged at step 0
        widen_conv_in(pipe.unet, pipe.unet.config.in_channels + pipe.latent_channels)
    tokens = pipe.task_embeddings.with_tasks(tasks)
    if cfg.conditioning == "task-embedding+time" or pipe.unet.class_embedding is not None:
        add_task_time_embedding(pipe.unet, len(tokens.tasks))  # a new task's (or path's) vectors start at 0
    d = pipe.latent_channels
    if cfg.task_heads or pipe.unet.config.out_channels > d:
        add_task_heads(pipe.unet, len(tokens.tasks), d)  # a new task's (or the first) heads copy head 0
    return Denoiser(pipe.unet, pipe.image_encoder, tokens, objective, d, cfg.task_balance)


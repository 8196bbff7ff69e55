"""h: the denoising UNet (diffusers `UNet2DConditionModel`) and its task embeddings.

Input channels are [noisy mask latent, image latent, (self-conditioning x0)]. From SD weights,
conv_in is widened: the mask-latent channels keep the pretrained kernels, the new ones start
at zero, so at step 0 the model computes exactly what the pretrained UNet computed.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from ldmseg.errors import LDMSegError
from ldmseg.tasks import trained_task_names

PRESETS: dict[str, dict] = {
    "tiny": {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "cross_attention_dim": 32,
             "attention_head_dim": 8, "norm_num_groups": 8},
    "base": {"block_out_channels": (64, 128, 128), "layers_per_block": 1, "cross_attention_dim": 64,
             "attention_head_dim": 16, "norm_num_groups": 16},
    "small": {"block_out_channels": (64, 128, 192), "layers_per_block": 2, "cross_attention_dim": 128,
              "attention_head_dim": 16, "norm_num_groups": 16},
    "sd15": {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "cross_attention_dim": 768,
             "attention_head_dim": 8, "norm_num_groups": 32},
}


def build_unet(preset: str, in_channels: int, out_channels: int, sample_size: int) -> UNet2DConditionModel:
    """A randomly initialised UNet of a preset shape ('sd15' is Stable Diffusion 1.5's)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset])
    depth = len(cfg["block_out_channels"])
    down = ["CrossAttnDownBlock2D"] * (depth - 1) + ["DownBlock2D"]
    up = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (depth - 1)
    if preset != "sd15":  # small models: no attention at the highest resolution
        down[0], up[-1] = "DownBlock2D", "UpBlock2D"
    return UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
                                down_block_types=tuple(down), up_block_types=tuple(up), **cfg)


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """Give conv_in `in_channels` inputs: old kernels for the first channels, zeros for the new."""
    old = unet.conv_in
    if in_channels < old.in_channels:
        raise ValueError(f"cannot narrow conv_in from {old.in_channels} to {in_channels} channels")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def load_pretrained_unet(pretrained: str, in_channels: int) -> UNet2DConditionModel:
    """An SD UNet (UNet directory, SD pipeline directory or hub id), conv_in widened to `in_channels`."""
    from ldmseg.models.image_encoder import sd_subfolder

    unet = UNet2DConditionModel.from_pretrained(pretrained, subfolder=sd_subfolder(pretrained, "unet"))
    return widen_conv_in(unet, in_channels)


def add_task_time_embedding(unet: UNet2DConditionModel, num_tasks: int) -> UNet2DConditionModel:
    """One learnable vector per task added to the UNet's timestep embedding (diffusers' class embedding), so
    the task reaches every ResNet block at every resolution, not only the few cross-attention layers.

    Rows are indexed like the task embeddings; trained rows are kept and new ones start at zero, so a trained
    model computes exactly what it computed before (fine-tuning a model into more tasks, or into this path).
    """
    old = unet.class_embedding
    if old is not None and not isinstance(old, nn.Embedding):
        raise LDMSegError(f"the UNet's class embedding is a {type(old).__name__}, not one vector per task")
    kept = 0 if old is None else old.num_embeddings
    if num_tasks < kept:
        raise LDMSegError(f"the UNet has task vectors for {kept} tasks, cannot shrink them to {num_tasks}")
    dim = unet.time_embedding.linear_2.out_features
    new = nn.Embedding(num_tasks, dim).to(unet.time_embedding.linear_2.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        if old is not None:
            new.weight[:kept] = old.weight
    unet.class_embedding = new
    unet.register_to_config(num_class_embeds=num_tasks)
    return unet


def add_task_heads(unet: UNet2DConditionModel, num_tasks: int, latent_channels: int) -> UNet2DConditionModel:
    """One output conv per task: conv_out predicts `num_tasks` x `latent_channels` channels and `task_prediction` reads
    each example's own group. The tasks' latents come from different AEs, so a shared head must map one feature
    map onto several latent spaces; a head per task takes that off the shared trunk.

    Trained heads are kept; a new head starts as a copy of the first, so a trained model computes exactly what
    it computed before (fine-tuning into heads, or into more tasks)."""
    old, d = unet.conv_out, latent_channels
    kept = old.out_channels // d
    if old.out_channels % d:
        raise LDMSegError(f"the UNet predicts {old.out_channels} channels, not a multiple of the AEs' {d}")
    if num_tasks < kept:
        raise LDMSegError(f"the UNet has output heads for {kept} tasks, cannot shrink them to {num_tasks}")
    new = nn.Conv2d(old.in_channels, num_tasks * d, old.kernel_size, old.stride, old.padding)
    new.to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(torch.cat([old.weight] + [old.weight[:d]] * (num_tasks - kept)))
        new.bias.copy_(torch.cat([old.bias] + [old.bias[:d]] * (num_tasks - kept)))
    unet.conv_out = new
    unet.register_to_config(out_channels=num_tasks * d)
    return unet


def task_prediction(unet: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
            task_index: torch.Tensor, latent_channels: int) -> torch.Tensor:
    """The UNet's prediction [B, latent_channels, h, w] for each example's task ([B] index): the task tokens go to
    cross-attention, and the index to the timestep path (`add_task_time_embedding`) and the output heads
    (`add_task_heads`) where the UNet has them."""
    keywords = {"encoder_hidden_states": tokens}
    if unet.class_embedding is not None:
        keywords["class_labels"] = task_index
    out = unet(x, t, **keywords).sample
    if out.shape[1] == latent_channels:
        return out
    heads = out.unflatten(1, (-1, latent_channels))
    return heads[torch.arange(out.shape[0], device=out.device), task_index.to(out.device)]


def bypass_cross_attention(unet: UNet2DConditionModel) -> None:
    """Class-agnostic mode of the authors' code: cross-attention contributes nothing.

    The output projection of every attn2 is zeroed and frozen, which is exactly a bypass
    (the block adds attn2's output to a residual) and still saves and loads as a plain UNet.
    """
    for module in unet.modules():
        if isinstance(module, BasicTransformerBlock) and module.attn2 is not None:
            proj = module.attn2.to_out[0]
            with torch.no_grad():
                proj.weight.zero_()
                if proj.bias is not None:
                    proj.bias.zero_()
            module.attn2.requires_grad_(False)


class TaskEmbeddings(ModelMixin, ConfigMixin):
    """One learnable sequence of tokens per task (paper §3.2), fed to the UNet's cross-attention.

    `tasks` names the tokens in order (ldmseg.tasks); a single-token model saved before multi-task
    support calls its token 'panoptic' and is read as 'instances'.
    """

    @register_to_config
    def __init__(self, tasks: tuple[str, ...] = ("instances",), num_tokens: int = 1, dim: int = 32):
        super().__init__()
        self.embeddings = nn.Parameter(torch.randn(len(tasks), num_tokens, dim) * 0.02)

    @property
    def tasks(self) -> tuple[str, ...]:
        return trained_task_names(self.config.tasks)

    def index(self, task: str) -> int:
        if task not in self.tasks:
            raise LDMSegError(f"this model has no {task!r} embedding; it was trained for {', '.join(self.tasks)}")
        return self.tasks.index(task)

    def forward(self, task: str | torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Tokens [B, T, dim] of one task for a batch, or of one task index per example ([B] int tensor)."""
        if isinstance(task, torch.Tensor):
            return self.embeddings[task.to(self.embeddings.device)]
        return self.embeddings[self.index(task)].unsqueeze(0).expand(batch_size, -1, -1)

    def with_tasks(self, tasks: tuple[str, ...]) -> TaskEmbeddings:
        """These embeddings plus a new, freshly initialised one for each task of `tasks` they lack (fine-tuning
        a model into more tasks: the trained tokens are kept as they are)."""
        new = [t for t in tasks if t not in self.tasks]
        if not new:
            return self
        grown = TaskEmbeddings((*self.tasks, *new), self.config.num_tokens, self.config.dim)
        with torch.no_grad():
            grown.embeddings[: len(self.tasks)] = self.embeddings
        return grown

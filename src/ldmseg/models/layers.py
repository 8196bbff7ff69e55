"""Building blocks shared by the package's models."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels at every pixel (as in SAM / the authors' decoder).

    Runs torch's fused layer_norm kernel on an NHWC view: for a channels_last tensor the permute
    is free, and the kernel is one pass instead of the five elementwise ops of a hand-written norm
    (x1.4 on the AE step here, identical results to float rounding).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """The scaled-dot-product attention kernel for training the UNet. On CPUs the math kernel: the flash
    kernel's backward measured ~40 ms per call on this 2-core CPU (a fifth of a stage-2 training step in
    bf16), the math kernel makes the whole step ~1.25x faster. Elsewhere torch's own choice. Inference keeps
    torch's choice everywhere (flash is as fast or faster without a backward)."""
    return sdpa_kernel([SDPBackend.MATH]) if device.type == "cpu" else contextlib.nullcontext()


def native_bf16(device: torch.device) -> bool:
    """Whether this device computes bf16 natively (where autocast pays): a CUDA GPU that supports it, or a CPU
    with AMX or AVX512-BF16 (Linux cpuinfo flags). Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """The same tensors under the same names (b's cast to a's dtypes): e.g. an AE checked to be a model's own."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].dtype)) for k in sa)

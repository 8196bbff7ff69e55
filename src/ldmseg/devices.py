"""Where a model runs and with which randomness: the `--device` names (auto, cpu, cuda, cuda:N, mps) checked
against what this machine has, and per-image generators seeded from the run's seed and the image's own key, so
an image's prediction depends on neither its batch, nor its place in the run, nor the number of processes."""

from __future__ import annotations

import hashlib
import os

import torch

from ldmseg.errors import LDMSegError


def available_devices() -> list[str]:
    """The device names this machine can run on, the CPU first."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def process_group() -> tuple[int, int]:
    """(rank, number of processes) of a run started by `accelerate launch` or torchrun (their RANK / WORLD_SIZE),
    else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def distributed_state():
    """accelerate's state of a multi-process run: torch.distributed over NCCL on GPUs, over gloo on a machine
    without CUDA (launched with `accelerate launch --multi_gpu`, which there starts CPU processes)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def wait_for_everyone() -> None:
    """A barrier across the run's processes."""
    if process_group()[1] > 1:
        distributed_state().wait_for_everyone()


def resolve_device(name: str | torch.device | None) -> torch.device:
    """'auto' (or None): the accelerator where one is present (CUDA, then Apple's MPS; in a multi-process run this
    process's own GPU), else the CPU; any other name must be one this machine has (one line naming what was asked
    and what there is)."""
    have = available_devices()
    if (name is None or str(name) == "auto") and process_group()[1] > 1:
        return distributed_state().device
    if name is None or str(name) == "auto":
        return torch.device(next((d for d in ("cuda", "mps") if d in have), "cpu"))
    text = str(name)
    if text not in have:
        raise LDMSegError(f"device {text}: not available on this machine (available: {', '.join(have)})")
    return torch.device(text)


def image_seed(seed: int, key: object) -> int:
    """A 63-bit seed from the run's seed and an image's key (its file name or image_id): stable across runs,
    Python versions and processes (hashlib, not hash())."""
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_generators(seed: int, keys: list[object]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by `image_seed` (the pipeline draws each image's noise from its own)."""
    return [torch.Generator().manual_seed(image_seed(seed, key)) for key in keys]

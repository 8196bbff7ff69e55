"""Training checkpoints as safetensors + JSON (never pickle).

Why not `accelerate.save_state`: it pickles the optimizer, scheduler and RNG states, and
loading a pickle runs code. Here tensors go to safetensors files and everything else to JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ldmseg.errors import LDMSegError


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a key into `tensors`."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_tree(path: Path, name: str, obj: Any) -> None:
    """Any nest of dicts / lists / tensors / JSON scalars -> name.safetensors + name.json."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(obj, name, tensors)
    save_file(tensors, str(path / f"{name}.safetensors"))
    (path / f"{name}.json").write_text(json.dumps(skeleton))


def load_tree(path: Path, name: str) -> Any:
    try:
        tensors = load_file(str(path / f"{name}.safetensors"))
        skeleton = json.loads((path / f"{name}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError) as e:
        raise LDMSegError(f"{path}: broken checkpoint ({e})") from None
    return _join(skeleton, tensors)


def write_checkpoint(directory: Path, parts: dict[str, Any]) -> Path:
    """Write all parts into a temp dir, then rename it to `directory` (atomic)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, obj in parts.items():
        save_tree(tmp, name, obj)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints only (step_<digits>), oldest first; half-written .tmp / .rng folders are skipped."""
    return sorted(p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit())


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def resolve_resume(resume: str, root: Path) -> Path | None:
    """'' -> None; 'latest' -> newest checkpoint under root (None if there is none); else the path."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_dir():
        raise LDMSegError(f"{path}: checkpoint directory not found")
    return path

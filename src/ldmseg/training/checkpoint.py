"""Training checkpoints as safetensors + JSON (never pickle).

Why not `accelerate.save_state`: it pickles the optimizer, scheduler and RNG states, and
loading a pickle runs code. Here tensors go to safetensors files and everything else to JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ldmseg.data import formats
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
    formats.usual_permissions(path / f"{name}.safetensors")
    (path / f"{name}.json").write_text(json.dumps(skeleton))


def load_tree(path: Path, name: str) -> Any:
    try:
        tensors = load_file(str(path / f"{name}.safetensors"))
        skeleton = json.loads((path / f"{name}.json").read_text())
        return _join(skeleton, tensors)
    except (OSError, ValueError, SafetensorError, KeyError, TypeError, RecursionError) as e:  # unreadable, not ours
        raise LDMSegError(f"{path}: broken checkpoint ({name}: {str(e).splitlines()[0] if str(e) else e!r})") from None


@dataclass(frozen=True)
class RunShape:
    """What a checkpoint must hold to fit the run resuming from it: the model's tensor shapes by name, the number
    of parameters in each optimizer group, the keys of the LR schedule's state, the EMA's tensor count (None: no
    EMA)."""

    model: dict[str, tuple[int, ...]]
    groups: list[int]
    scheduler_keys: frozenset[str]
    ema_params: int | None


def check_parts(path: Path, parts: dict[str, Any], run: RunShape) -> None:
    """A read checkpoint fits `run` before any part of it is applied: one line naming the part and what it should
    hold (a file damaged or edited by hand, or a checkpoint of another run), never a crash half-way through."""
    state, rng = parts["state"], parts[next(k for k in parts if k.startswith("rng"))]
    if not (isinstance(state, dict) and _is_count(state.get("step")) and isinstance(state.get("scheduler"), dict)
            and set(state["scheduler"]) == run.scheduler_keys):
        raise _broken(path, "state", "{'step': an integer >= 0, 'scheduler': this run's LR schedule state}")
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8):
        raise _broken(path, "rng", "{'torch': the RNG state, a uint8 tensor}")
    wrong = _differing_tensor(parts["model"], run.model)
    if wrong is not None:
        raise _broken(path, "model", f"this run's model tensors, by name and shape (tensor {wrong!r} differs)")
    if _group_sizes(parts["optimizer"]) != run.groups:
        raise _broken(path, "optimizer", f"this run's optimizer state ({len(run.groups)} parameter group(s) of "
                      f"{', '.join(map(str, run.groups))} parameters)")
    ema = parts.get("ema")
    if run.ema_params is not None and not (isinstance(ema, dict) and isinstance(ema.get("shadow_params"), list)
                                           and len(ema["shadow_params"]) == run.ema_params):
        raise _broken(path, "ema", f"{{'shadow_params': {run.ema_params} tensors, ...}}")


def _differing_tensor(model: object, expected: dict[str, tuple[int, ...]]) -> str | None:
    """The first name whose tensor is missing, extra, not a tensor or of another shape; None when all match."""
    if not isinstance(model, dict):
        return "(all)"
    names = sorted(set(model) | set(expected), key=str)
    return next((k for k in names if not isinstance(model.get(k), torch.Tensor)
                 or tuple(model[k].shape) != expected.get(k)), None)


def _group_sizes(optimizer: object) -> list[int] | None:
    """The parameter count of each group of an optimizer's state dict; None when it is not one."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        return None
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups):
        return None
    return [len(g["params"]) for g in groups]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _broken(path: Path, part: str, expected: str) -> LDMSegError:
    return LDMSegError(f"{path}: broken checkpoint ({part}: expected {expected})")


def write_checkpoint(directory: Path, parts: dict[str, Any], extra_files: list[Path] = ()) -> Path:
    """Write all parts (and move `extra_files`, e.g. each process's RNG state, in) into a temp dir, then rename
    it to `directory`: a checkpoint appears whole, RNG included, or not at all."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, obj in parts.items():
        save_tree(tmp, name, obj)
    for f in extra_files:
        os.replace(f, tmp / f.name)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def remove_leftovers(root: Path) -> None:
    """Half-written checkpoint folders (.tmp, .rng) a killed run left behind."""
    for p in root.glob("step_*"):
        if p.is_dir() and not p.name[5:].isdigit():
            shutil.rmtree(p, ignore_errors=True)


def replace_directory(tmp: Path, target: Path) -> None:
    """Put a finished folder in place of `target` (an export appears whole or not at all), its files readable as
    any other output (save_pretrained's safetensors are written 0600)."""
    formats.usual_permissions(tmp)
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints only (step_<digits>), oldest first; half-written .tmp / .rng folders are skipped."""
    return sorted(p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit())


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def resume_candidates(resume: str, root: Path) -> list[Path]:
    """'' -> []; 'latest' -> the complete checkpoints under root, newest first (the loop falls back to the next
    when one is corrupt); else that one path."""
    if not resume:
        return []
    if resume == "latest":
        return list_checkpoints(root)[::-1]
    path = Path(resume)
    if not path.is_dir():
        raise LDMSegError(f"{path}: checkpoint directory not found")
    return [path]

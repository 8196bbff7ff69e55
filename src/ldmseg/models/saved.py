"""Checks of a saved model directory before anything loads it: every component present, every config a JSON object
of the class the index names with values of the types its constructor takes, every weights file a readable
safetensors file. diffusers would fail later on most of these, with a traceback or a message that names neither
the file nor the key (a wrong type in a config often loads silently), so a broken directory is one line here."""

from __future__ import annotations

import importlib
import inspect
import math
import types
import typing
from pathlib import Path
from typing import Any

from ldmseg.errors import LDMSegError

WEIGHTS = "diffusion_pytorch_model.safetensors"
LIBRARIES = ("diffusers", "ldmseg.")  # where a component's class may come from: never an arbitrary module


def check_pipeline_dir(path: Path, pipeline_cls: type) -> None:
    """An LDMSegPipeline directory: model_index.json names `pipeline_cls`, its settings have the right types, and
    each component it lists is a whole, loadable folder."""
    index_file = path / "model_index.json"
    index = _json_object(index_file)
    if index.get("_class_name") != pipeline_cls.__name__:
        raise LDMSegError(f"{index_file}: not an ldmseg pipeline (class {index.get('_class_name')!r})")
    check_values(index_file, index, pipeline_cls, finite=True)
    _check_categories(index_file, index.get("categories"))
    params = inspect.signature(pipeline_cls.__init__).parameters
    # components are the constructor's unannotated arguments (settings are annotated), required without default
    components = [n for n, p in params.items() if n != "self" and p.annotation is inspect.Parameter.empty]
    optional = set(getattr(pipeline_cls, "_optional_components", ()))
    required = [n for n in components if params[n].default is inspect.Parameter.empty and n not in optional]
    for name in required:
        if name not in index:
            raise LDMSegError(f"{index_file}: no {name!r} component")
    for name in components:
        entry = index.get(name, [None, None])
        if entry in ([None, None], None) and name not in required:
            continue
        pair = isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)
        if not (pair and entry[0].startswith(LIBRARIES)):
            raise LDMSegError(f"{index_file}: component {name!r} must be [library, class] of diffusers or ldmseg, "
                              f"got {entry!r}")
        check_component_dir(path / name, _component_class(index_file, name, entry))


def check_component_dir(folder: Path, cls: type) -> None:
    """A component folder: its config (config.json, or scheduler_config.json) names `cls` and fits its
    constructor; a model's weights file is there and its header reads."""
    if not folder.is_dir():
        raise LDMSegError(f"{folder}: component folder missing")
    scheduler = not hasattr(cls, "from_pretrained") or hasattr(cls, "compatibles")
    config_file = folder / ("scheduler_config.json" if scheduler else "config.json")
    config = _json_object(config_file)
    if config.get("_class_name") not in (None, cls.__name__):
        raise LDMSegError(f"{config_file}: class {config.get('_class_name')!r}, expected {cls.__name__}")
    check_values(config_file, config, cls)
    if not scheduler:
        check_weights(folder / WEIGHTS)


def check_weights(file: Path) -> None:
    """The safetensors header reads (a truncated or empty file fails here, naming itself)."""
    from safetensors import safe_open

    if not file.is_file():
        raise LDMSegError(f"{file}: weights file missing")
    try:
        with safe_open(str(file), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise LDMSegError(f"{file}: not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None


def check_values(config_file: Path, config: dict, cls: type, finite: bool = False) -> None:
    """Each config value that `cls.__init__` annotates with a plain type has that type (and, with `finite`, no
    NaN or infinite float: the pipeline's own settings; a scheduler may hold -inf on purpose)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations (a library's): nothing to check against
        return
    for key, value in config.items():
        allowed = _allowed_types(hints.get(key)) if not key.startswith("_") else None
        if allowed is not None and not _is_instance(value, allowed, finite):
            names = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in allowed}))
            raise LDMSegError(f"{config_file}: {key!r} must be {names}, got {value!r}")


def _allowed_types(hint: Any) -> tuple[type, ...] | None:
    """The JSON types a constructor annotation admits, or None where it is not a plain one."""
    if hint in (int, float, bool, str, type(None)):
        return (hint,)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed_types(arg) for arg in typing.get_args(hint)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)
    if hint in (list, tuple) or origin in (list, tuple):
        return (list, tuple)
    if hint is dict or origin is dict:
        return (dict,)
    return None


def _is_instance(value: Any, allowed: tuple[type, ...], finite: bool) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    if isinstance(value, float):
        return float in allowed and (math.isfinite(value) or not finite)
    return isinstance(value, tuple(t for t in allowed if t not in (int, float, bool)))


def _check_categories(index_file: Path, categories: Any) -> None:
    for c in categories or []:
        if not (isinstance(c, dict) and type(c.get("id")) is int and isinstance(c.get("name"), str)):
            raise LDMSegError(f"{index_file}: each category needs an integer 'id' and a 'name', got {str(c)[:80]}")


def _component_class(index_file: Path, name: str, entry: list[str]) -> type:
    try:
        cls = getattr(importlib.import_module(entry[0]), entry[1])
    except (ImportError, AttributeError):
        raise LDMSegError(f"{index_file}: component {name!r}: no class {entry[1]} in {entry[0]}") from None
    if not isinstance(cls, type):
        raise LDMSegError(f"{index_file}: component {name!r}: {entry[0]}.{entry[1]} is not a class")
    return cls


def _json_object(file: Path) -> dict:
    from ldmseg.data.formats import read_json

    data = read_json(file)
    if not isinstance(data, dict):
        raise LDMSegError(f"{file}: must be a JSON object")
    return data

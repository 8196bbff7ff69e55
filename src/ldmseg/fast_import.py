"""Start-up time: diffusers' model subpackages are registered unloaded, so that importing the two classes ldmseg
uses (AutoencoderKL, UNet2DConditionModel) no longer executes their packages' `__init__`, which imports every
model diffusers has (40 autoencoders, 20 UNets, 100 transformers: about 1-2.5 s of a 4-7 s start on a 2-core CPU,
bench/import_time.py).

Written by hand because neither diffusers nor Python offers it: diffusers' lazy loading stops at
`diffusers.models`, and its subpackages import eagerly. The stand-in is transparent: the first attribute anyone
asks of it (`from diffusers.models.unets import UNet2DModel`, `diffusers.models.autoencoders.VQModel`, `dir()`)
runs the real `__init__` in place, so every name is there as before. Nothing happens if diffusers is already
imported, is missing, or lays its files out differently, or with LDMSEG_EAGER_IMPORTS=1 (the escape hatch).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

DEFERRED = ("models.autoencoders", "models.unets", "models.transformers")


def _load_on_first_use(module: ModuleType) -> None:
    """Give `module` PEP-562 hooks that execute its real `__init__` the first time a name is missing or listed."""

    def load() -> None:
        if module.__dict__.pop("__getattr__", None) is not None:
            module.__dict__.pop("__dir__", None)
            module.__spec__.loader.exec_module(module)

    def __getattr__(name: str) -> Any:
        load()
        return getattr(module, name)

    def __dir__() -> list[str]:
        load()
        return sorted(module.__dict__)

    module.__getattr__ = __getattr__
    module.__dir__ = __dir__


def defer_diffusers_model_packages() -> list[str]:
    """Register diffusers' heavy model subpackages as stand-ins that load on first use; returns their names."""
    if os.environ.get("LDMSEG_EAGER_IMPORTS", "") not in ("", "0"):
        return []
    if any(name == "diffusers" or name.startswith("diffusers.") for name in sys.modules):
        return []  # diffusers is (partly) imported already: leave its modules exactly as they are
    try:
        spec = importlib.util.find_spec("diffusers")  # finds the files; imports nothing
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    deferred = []
    for sub in DEFERRED:
        init = root.joinpath(*sub.split("."), "__init__.py")
        if not init.is_file():
            continue
        name = f"diffusers.{sub}"
        sub_spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        if sub_spec is None or sub_spec.loader is None:
            continue
        module = importlib.util.module_from_spec(sub_spec)
        _load_on_first_use(module)
        sys.modules[name] = module
        deferred.append(name)
    return deferred

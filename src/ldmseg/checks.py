"""Validation at the door: the value checks every command-line flag and config field goes through.

Each check is an argparse `type` (a bad value becomes `argument --flag: ...`, one line, exit 2) and is
also applied to config-file values by `training.config`. One module owns them so that commands do not
re-invent range checks. No torch import here.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

Check = Callable[[str], object]

TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _number(kind: type, text: str | float | int) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        wanted = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if kind is int and isinstance(text, float) and not float(text).is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return value


def at_least(minimum: float, kind: type = int) -> Check:
    """kind(text) >= minimum (floats also finite)."""
    def check(text: str):
        value = _number(kind, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    check.__name__ = kind.__name__
    return check


def between(low: float, high: float, kind: type = float, open_high: bool = False) -> Check:
    """low <= kind(text) <= high (or < high)."""
    def check(text: str):
        value = _number(kind, text)
        if value < low or value > high or (open_high and value == high):
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}{')' if open_high else ']'}, got {value}")
        return value
    check.__name__ = kind.__name__
    return check


def greater_than(minimum: float) -> Check:
    """A finite float > minimum (learning rates, temperatures)."""
    def check(text: str):
        value = _number(float, text)
        if value <= minimum:
            raise argparse.ArgumentTypeError(f"must be > {minimum}, got {value}")
        return value
    check.__name__ = "float"
    return check


def multiple_of(factor: int) -> Check:
    """A positive int divisible by `factor` (image sizes that go through a /factor encoder)."""
    def check(text: str):
        value = _number(int, text)
        if value < factor or value % factor:
            raise argparse.ArgumentTypeError(f"must be a positive multiple of {factor}, got {value}")
        return value
    check.__name__ = "int"
    return check


def strict_bool(text: str | bool) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case); any other word is an error, not False."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


strict_bool.__name__ = "bool"

positive = at_least(1)
non_negative = at_least(0)
non_negative_float = at_least(0.0, float)
positive_float = greater_than(0.0)
probability = between(0.0, 1.0)
port = between(1, 65535, int)
sampling_steps = between(1, 1000, int)  # at most the schedule's 1000 training timesteps
seed = between(0, 2**63 - 1, int)  # what torch and numpy generators take


def threads(text: str) -> int:
    """0 (torch's default) up to the machine's cores: more threads than cores only slow torch down (and a huge
    count exhausts the process limit)."""
    import os

    return between(0, os.cpu_count() or 1, int)(text)


threads.__name__ = "int"


def workers(text: str) -> int:
    """Data-loading worker processes, 0 (in the training process) or more, lowered to the machine's cores with a
    note: each is a process with its own copy of the dataset, and more than cores only compete for them (a config
    written for a larger machine, e.g. configs/coco_paper.json's 8, still runs here)."""
    import os
    import sys

    value, cores = non_negative(text), os.cpu_count() or 1
    if value > cores:
        print(f"ldmseg: note: {value} data-loading workers asked for, this machine has {cores} cores: using {cores}",
              file=sys.stderr)
        return cores
    return value


workers.__name__ = "int"
MAX_GRAD_ACCUM = 1024  # micro-batches per optimiser step: x1024 of any batch that fits is past every recipe
MAX_VAL_NUM = 100_000  # validation samples: 20x COCO's val2017; synthetic scenes are generated, one at a time
grad_accum = between(1, MAX_GRAD_ACCUM, int)
val_num = between(1, MAX_VAL_NUM, int)


def processes(text: str) -> int:
    """1 up to 4x the machine's cores: a larger pool of worker processes only costs memory (and a huge one exhausts
    the process limit)."""
    import os

    return between(1, 4 * (os.cpu_count() or 1), int)(text)


processes.__name__ = "int"
resolution = multiple_of(8)


def argument(name: str, value: object, check: Check) -> object:
    """A Python-API argument through the same check as its CLI flag: a bad value is one LDMSegError line."""
    from ldmseg.errors import LDMSegError

    try:
        return check(value)
    except argparse.ArgumentTypeError as e:
        raise LDMSegError(f"{name}: {e}") from None


# Bytes per pixel of one sample in flight, a low estimate of the largest buffers: refuse only requests that cannot
# fit, before anything loads (a real run needs more).
SAMPLING_BYTES_PER_PIXEL = 128 * 4  # the mask AE's decoded logits: one float per id and pixel
TRAINING_BYTES_PER_PIXEL = 256 * 4  # activations and their gradients in the first stages of a UNet / AE
DISK_BYTES_PER_PIXEL = 2  # a synthetic scene's PNGs (image, ids, classes, depth), compressed


def machine_memory() -> int:
    """Physical memory in bytes (0 where the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def fits_memory(what: str, samples: int, pixels: int, bytes_per_pixel: int,
                advice: str = "ask for fewer or smaller samples") -> None:
    """One line ("needs ~N GB, this machine has M; `advice`") when `samples` x `pixels` cannot fit in this
    machine's memory."""
    from ldmseg.errors import LDMSegError

    need, have = samples * pixels * bytes_per_pixel, machine_memory()
    if have and need > have:
        raise LDMSegError(f"{what} needs ~{need / 1e9:,.0f} GB of memory, this machine has {have / 1e9:.0f} GB; "
                          f"{advice}")


CONFUSION_BYTES = 8  # one int64 count per (GT class, predicted class) pair: semantic scoring's confusion matrix


def fits_classes(num_classes: int) -> None:
    """--num-classes C: semantic scoring counts a C x C confusion matrix, which must fit in memory (label PNGs hold
    at most 65536 classes; a larger C only allocates)."""
    fits_memory(f"--num-classes {num_classes} (a {num_classes} x {num_classes} confusion matrix)", num_classes,
                num_classes, CONFUSION_BYTES, "label PNGs hold class ids below 65536: name the classes your data has")


def fits_sampling(batch_size: int, ensemble_size: int | None, resolution: int | None) -> None:
    """Batch x ensemble samples at the resolution (512 where the model decides) must fit in memory."""
    res, k = resolution or 512, ensemble_size or 1
    fits_memory(f"--batch-size {batch_size} x --ensemble-size {k} at {res}^2", batch_size * k, res**2,
                SAMPLING_BYTES_PER_PIXEL)


def fits_disk(what: str, folder: str, pixels: int) -> None:
    """One line naming `folder` when writing `pixels` output pixels cannot fit on the disk that holds it."""
    import shutil
    from pathlib import Path

    from ldmseg.errors import LDMSegError

    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free, need = shutil.disk_usage(existing).free, pixels * DISK_BYTES_PER_PIXEL
    if need > free:
        raise LDMSegError(f"{folder}: {what} needs ~{need / 1e9:,.1f} GB of disk, {existing} has {free / 1e9:.1f} GB "
                          "free")

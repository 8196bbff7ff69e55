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
resolution = multiple_of(8)


def argument(name: str, value: object, check: Check) -> object:
    """A Python-API argument through the same check as its CLI flag: a bad value is one LDMSegError line."""
    from ldmseg.errors import LDMSegError

    try:
        return check(value)
    except argparse.ArgumentTypeError as e:
        raise LDMSegError(f"{name}: {e}") from None

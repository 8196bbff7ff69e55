"""Class lists of semantic label sets (CamVid, your own): names, the label value of the first class, the ignored
value and a palette, read from a small JSON file (`classes.json`) or a built-in name.

ldmseg's semantic convention is 0 = ignore and classes 1..C; `ClassList.to_semantic` maps a label PNG's values
into it, so every reader, AE and metric downstream sees one convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ldmseg.data.formats import read_json
from ldmseg.errors import LDMSegError

BUILT_IN = ("camvid",)


@dataclass(frozen=True)
class ClassList:
    """C classes: label value `first_value + k` is class k (names[k]); `ignore` is unlabelled."""

    names: tuple[str, ...]
    first_value: int = 0
    ignore: int = 255
    palette: tuple[tuple[int, int, int], ...] = ()
    title: str = ""

    def to_semantic(self, labels: np.ndarray, source: str | Path) -> np.ndarray:
        """Label values -> class ids 1..C, ignore -> 0; any other value is an error naming `source`."""
        labels = labels.astype(np.int64)
        ids = labels - self.first_value + 1
        ignored = labels == self.ignore
        bad = ~ignored & ((ids < 1) | (ids > len(self.names)))
        if bad.any():
            value = int(labels[bad][0])
            raise LDMSegError(f"{source}: label value {value} is neither a class ({self.first_value}.."
                              f"{self.first_value + len(self.names) - 1}) nor the ignore value {self.ignore}")
        ids[ignored] = 0
        return ids

    def categories(self) -> list[dict]:
        """ldmseg's category records: ids 1..C, names, colours, all stuff (a semantic set has no instances)."""
        out = []
        for k, name in enumerate(self.names):
            record = {"id": k + 1, "name": name, "isthing": 0}
            if self.palette:
                record["color"] = list(self.palette[k])
            out.append(record)
        return out


def load_class_list(spec: str | Path) -> ClassList:
    """A classes JSON file ({"classes": [...], "first_value", "ignore", "palette", "name"}) or a built-in name."""
    text = str(spec)
    if text.lower() in BUILT_IN:
        data = read_json(resources.files("ldmseg") / "configs" / f"{text.lower()}.json")
    else:
        data = read_json(text)
    return _parse(data, text)


def _parse(data: object, source: str) -> ClassList:
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise LDMSegError(f"{source}: expected a JSON object with a non-empty 'classes' list of names")
    names = data["classes"]
    if not all(isinstance(n, str) and n for n in names):
        raise LDMSegError(f"{source}: 'classes' must be a list of non-empty names")
    ints = {}
    for key, default in (("first_value", 0), ("ignore", 255)):
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**16:
            raise LDMSegError(f"{source}: {key!r} must be an integer label value in 0..65535, got {value!r}")
        ints[key] = value
    if ints["first_value"] <= ints["ignore"] < ints["first_value"] + len(names):
        raise LDMSegError(f"{source}: the ignore value {ints['ignore']} is also a class value")
    palette = data.get("palette", [])
    ok = isinstance(palette, list) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)
    if not ok or palette and len(palette) != len(names):
        raise LDMSegError(f"{source}: 'palette' must hold one [r, g, b] (0..255) per class")
    title = data.get("name", "")
    if not isinstance(title, str):
        raise LDMSegError(f"{source}: 'name' must be a string")
    return ClassList(tuple(names), ints["first_value"], ints["ignore"], tuple(tuple(c) for c in palette), title)

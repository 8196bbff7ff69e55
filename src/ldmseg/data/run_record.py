"""What a batch job has finished, kept as it goes, so that running the same command again on the same --out
continues where a killed run stopped.

OUT/run.json holds the settings that decide the results (model, task, steps, seed, ...), written with the first
finished image: a run on an --out made with other settings is refused in one line. OUT/records.jsonl gets one
JSON line per finished image, appended (and flushed to disk) only after every file of that image is written, so a
record means a complete image: a kill at any moment loses at most the images in flight. A torn last line (a kill
mid-append) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ldmseg.data.formats import read_json, write_json
from ldmseg.errors import LDMSegError

SETTINGS_FILE, RECORDS_FILE = "run.json", "records.jsonl"  # several processes: records.rank<R>.jsonl each


class RunRecord:
    """The finished images of a run in `out`, by key (an image's id or file stem)."""

    def __init__(self, out: Path, settings: dict[str, Any], rank: int = 0, world: int = 1):
        self.out, self.settings = Path(out), json.loads(json.dumps(settings))
        self.path = self.out / (RECORDS_FILE if world == 1 else f"records.rank{rank}.jsonl")
        self.done: dict[str, dict] = {}
        saved = self.out / SETTINGS_FILE
        self.settings_saved = saved.exists()
        if saved.exists():
            before = read_json(saved)
            changed = sorted(k for k in set(before) | set(self.settings) if before.get(k) != self.settings.get(k))
            if changed:
                name = changed[0]
                raise LDMSegError(f"{self.out}: made by a run with {name} = {before.get(name)!r}, this run has "
                                  f"{self.settings.get(name)!r}; continue it with the same settings, or give a new "
                                  "--out")
            self.done = self.read()

    def read(self) -> dict[str, dict]:
        """Every finished image, from the records of all processes (of this and earlier runs)."""
        done = {}
        for path in sorted(self.out.glob("records*.jsonl")):
            done.update(self._read(path))
        return done

    def _read(self, path: Path) -> dict[str, dict]:
        done = {}
        text = path.read_text()
        if text and not text.endswith("\n") and path == self.path:  # a kill mid-append: drop the torn tail
            text = text[:text.rfind("\n") + 1]
            path.write_text(text)
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a torn last line: that image is done again
                continue
            if isinstance(record, dict) and "key" in record:
                done[str(record["key"])] = record
        return done

    def add(self, key: object, record: dict[str, Any]) -> None:
        """Note one finished image (after its files are written). The settings file comes with the first: a run
        that stops before any image is done (a bad flag found at its first batch) leaves no output behind."""
        if not self.settings_saved:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / SETTINGS_FILE, self.settings, indent=1)
            self.settings_saved = True
        entry = {"key": str(key), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[str(key)] = entry

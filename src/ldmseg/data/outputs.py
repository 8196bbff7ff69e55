"""Where outputs may go (inside --out, never over an input, never onto a device) and how batch jobs go on past
unreadable inputs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ldmseg.data.formats import write_json
from ldmseg.errors import LDMSegError, SkippedInputs


def is_plain_name(name: object) -> bool:
    """A file name from an input file that is safe to join to a folder: relative, no '..', no drive, non-empty."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return False
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts and not name.startswith(("/", "\\"))


def check_output_place(out: str | Path, is_file: bool = False) -> None:
    """Refuse, before any work, an output folder (or file) that cannot be one: an existing file where a folder
    is meant (or a folder or device where a file is), or a path below a file."""
    path = Path(out)
    if path.exists() and (not path.is_file() if is_file else not path.is_dir()):
        raise LDMSegError(f"{out}: exists and is not a {'regular file' if is_file else 'folder'}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LDMSegError(f"{out}: {parent} is a file, not a folder")
            break


def check_outputs_apart(out: str | Path, inputs: dict[str, str | Path | None], is_file: bool = False) -> None:
    """Refuse, before any work, an output that is, contains or lies inside one of the inputs (by flag name), so
    that no command ever overwrites what it reads, or that cannot be written where it is (check_output_place)."""
    target = Path(out).resolve()
    for flag, item in inputs.items():
        if not item or not Path(item).exists():  # a model name, a glob, stdin: nothing on disk to protect here
            continue
        source = Path(item).resolve()
        if target == source or target.is_relative_to(source) or source.is_relative_to(target):
            raise LDMSegError(f"{out}: the output would overlap the input {flag} {item}; choose another output")
    check_output_place(out, is_file)


class SkipLog:
    """Batch jobs go on past unreadable inputs: `attempt` runs a read, and on an LDMSegError remembers the input
    and names it on stderr (once some output exists: until then a job with nothing readable stays one plain
    error); `finish` writes OUT/skipped.json and raises SkippedInputs (exit 2) if any was skipped, after the good
    outputs are complete."""

    def __init__(self) -> None:
        self.skipped: list[dict] = []
        self.done = 0
        self._pending: list[str] = []

    def attempt(self, name: str, read: Callable[[], Any]) -> Any | None:
        try:
            return read()
        except LDMSegError as e:
            self.skipped.append({"input": name, "error": str(e)})
            self._pending.append(f"ldmseg: skipping {e}")
            if self.done:
                self._flush()
            return None

    def succeeded(self) -> None:
        self.done += 1
        self._flush()

    def _flush(self) -> None:
        for line in self._pending:
            print(line, file=sys.stderr)
        self._pending = []

    def finish(self, out: Path) -> None:
        if not self.skipped:
            return
        if not self.done:
            raise LDMSegError(f"no readable input: {self.skipped[0]['error']}"
                              + (f" (and {len(self.skipped) - 1} more)" if len(self.skipped) > 1 else ""))
        write_json(out / "skipped.json", self.skipped, indent=2)
        names = ", ".join(Path(s["input"]).name for s in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
        raise SkippedInputs(f"wrote {self.done} outputs to {out}; skipped {len(self.skipped)} unreadable input(s), "
                            f"listed in {out / 'skipped.json'}: {names}")

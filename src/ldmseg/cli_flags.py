"""The flags several `ldmseg` commands share, and argparse's behaviour for all of them: errors on one line (exit
code 2), old flag names kept as hidden aliases that say the new name once."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ldmseg import checks


class RenamedFlag(argparse.Action):
    """An old flag name kept working (hidden from --help): it sets the new flag's value and says the new name once
    per run."""

    warned: set[str] = set()

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string not in self.warned:
            self.warned.add(option_string)
            print(f"ldmseg: warning: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def alias(parser: Any, old: str, new: str, kind: Callable[[str], Any] | None = None, dest: str | None = None) -> None:
    """`old` kept as a hidden name of `new` (RenamedFlag) on a parser or argument group; `dest` where the value lives
    under another name than the new flag's (a training config field)."""
    parser.add_argument(old, dest=dest or new[2:].replace("-", "_"), action=RenamedFlag, new=new, type=kind,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


@dataclass(frozen=True)
class Rename:
    """A flag's new name; `help` and `kind` replace its help and type where the new name means another unit (the
    old name keeps its own type)."""

    new: str
    help: str | None = None
    kind: Callable[[str], Any] | None = None


class RenamingParser:
    """A parser (or argument group) whose `add_argument` gives each flag of `renames` its new name, the value still
    landing in the old flag's dest, and keeps the old name as a hidden alias; help texts name the new flags. For
    flags made from config fields (training.config.add_dataclass_arguments), whose names are the fields'."""

    def __init__(self, target: Any, renames: dict[str, Rename]):
        self._target, self._renames = target, renames

    def add_argument_group(self, *args, **kwargs) -> RenamingParser:
        return RenamingParser(self._target.add_argument_group(*args, **kwargs), self._renames)

    def add_argument(self, *names: str, **kwargs) -> argparse.Action:
        if kwargs.get("help"):
            kwargs["help"] = self.renamed_text(kwargs["help"])
        rename = self._renames.get(names[0]) if len(names) == 1 else None
        if rename is None:
            return self._target.add_argument(*names, **kwargs)
        old, old_kind = names[0], kwargs.get("type")
        dest = kwargs.pop("dest", None) or old[2:].replace("-", "_")
        kwargs["type"] = rename.kind or old_kind
        kwargs["help"] = rename.help or kwargs.get("help")
        kwargs["metavar"] = kwargs.get("metavar") or rename.new[2:].upper().replace("-", "_")
        action = self._target.add_argument(rename.new, dest=dest, **kwargs)
        alias(self._target, old, rename.new, old_kind, dest)
        return action

    def renamed_text(self, text: str) -> str:
        """`text` (a help line, an error) with every old flag name replaced by its new one."""
        for old, rename in self._renames.items():
            text = re.sub(rf"(?<![\w-]){re.escape(old)}\b(?!-)", rename.new, text)
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


MODEL_HELP = ("a shipped model (demo, demo-one-step, camvid, camvid-diffusion), a pipeline directory or a hub id "
              "(default: demo)")
SCHEDULERS = ["ddim", "dpm++", "unipc", "euler", "ddpm"]
THREADS_HELP = "torch CPU threads (default: torch's, one per core)"


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=checks.threads, default=0, help=THREADS_HELP)


def add_precision(parser: argparse.ArgumentParser) -> None:
    """--precision and --device: how and where a command runs its model."""
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16", "auto"],
                        help="network arithmetic: bf16 autocast, fp16 (GPUs), fp32, or auto = bf16 where the "
                             "hardware has it natively, else fp32 (default: the model's; the demo's is auto)")
    add_device(parser)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="where the model runs: auto (a GPU where there is one, else the CPU), cpu, cuda, cuda:N "
                             "or mps (default: auto)")


ENSEMBLE_HELP = ("samples per image; the one the others agree with most is kept "
                 "(default: the model's; K samples cost K times one)")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (`ldmseg predict: error: argument --task: invalid choice ...`) and
    exit code 2, like every other ldmseg error; `--help` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

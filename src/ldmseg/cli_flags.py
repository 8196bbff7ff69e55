"""The flags several `ldmseg` commands share, and argparse's behaviour for all of them: errors on one line (exit
code 2), old flag names kept as hidden aliases that say the new name once."""

from __future__ import annotations

import argparse
import sys

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


def alias(parser: argparse.ArgumentParser, old: str, new: str, kind=None) -> None:
    parser.add_argument(old, dest=new[2:].replace("-", "_"), action=RenamedFlag, new=new, type=kind,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


MODEL_HELP = "a shipped model (demo, camvid), a pipeline directory or a hub id (default: demo)"
SCHEDULERS = ["ddim", "dpm++", "unipc", "euler", "ddpm"]
THREADS_HELP = "torch CPU threads (default: torch's, one per core)"


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=checks.threads, default=0, help=THREADS_HELP)


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "auto"],
                        help="network arithmetic: bf16 autocast, fp32, or auto = bf16 where the hardware has it "
                             "(default: the model's; the demo's is auto)")


ENSEMBLE_HELP = ("samples per image; the one the others agree with most is kept "
                 "(default: the model's; K samples cost K times one)")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (`ldmseg predict: error: argument --task: invalid choice ...`) and
    exit code 2, like every other ldmseg error; `--help` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

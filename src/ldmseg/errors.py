"""One exception type for every user-facing problem, so the CLI can print one line and exit 2."""


class LDMSegError(Exception):
    """Bad input or configuration; the message names the file and the problem."""


class SkippedInputs(LDMSegError):
    """A batch job finished its good inputs and skipped unreadable ones (listed in OUT/skipped.json)."""


def close_progress_bars() -> None:
    """Close the bars a failure left open, so that the error line stands on its own line after them."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()

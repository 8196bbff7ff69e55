"""The machine a result was measured on, in words: timings and bf16 results differ between the CPUs sessions get."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def machine() -> str:
    """CPU model (with whether it computes bf16 natively), cores and Python version."""
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, with whether it computes bf16 natively ('' where unknown)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    bf16 = flags is not None and ("amx_bf16" in flags.group(1).split() or "avx512_bf16" in flags.group(1).split())
    return f"({name.group(1).strip() if name else 'unknown CPU'}, {'native' if bf16 else 'no native'} bf16)"

"""Memory a run will take, estimated from its configuration and checked before it starts.

A size typed one zero too many (``-p n_train 1000000000``) should not end 46 seconds in with numpy's
``MemoryError`` and no word of which parameter: the stage estimates what its largest allocation needs from the
configuration and ``check_memory`` compares it with what the machine has available now.
"""
from __future__ import annotations

import os

from .errors import ResourceError

GIB = 1024 ** 3


def available_bytes() -> int | None:
    """Memory available to a new allocation now (Linux: ``MemAvailable``); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, what: str, fix: str) -> None:
    """Raise ``ResourceError`` when ``need`` bytes (``what`` takes them) exceed the memory available; ``fix`` says
    what to type instead. Unknown available memory passes: the estimate is a guard, not a promise."""
    have = available_bytes()
    if have is not None and need > have:
        raise ResourceError(f"{what} would take about {need / GIB:.1f} GiB of memory, and this machine has "
                            f"{have / GIB:.1f} GiB available: {fix}")

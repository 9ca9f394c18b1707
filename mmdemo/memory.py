"""Handing freed memory back to the operating system after a heavy request.

An explanation allocates a few hundred MB of short-lived tensors (Integrated Gradients: a batch of interpolated
images with gradients through the image encoder). glibc's allocator keeps what is freed in per-thread arenas for
reuse, and Gradio serves requests from a pool of threads, so the process's resident memory climbs with every
thread that ran one, although nothing is still in use. `malloc_trim(0)` returns those free pages; it costs a few
milliseconds. Elsewhere than glibc (macOS, musl) it is a no-op. `python benchmarks/bench_memory.py` (with and
without `--no-trim`) measures what it changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

TRIM = True  # benchmarks/bench_memory.py --no-trim switches it off to measure the difference


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_LIBC_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Return the allocator's free memory to the OS (glibc), else do nothing."""
    if TRIM and _LIBC_MALLOC_TRIM is not None:
        _LIBC_MALLOC_TRIM(0)

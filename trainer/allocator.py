"""glibc's allocator during the training loop: large blocks mapped, so a CPU training step does not fragment.

A training step on the CPU frees and allocates activation tensors of a few MB whose size changes with every
mini-batch's padded length. glibc serves blocks above its mmap threshold with ``mmap`` and returns them on
free, but it *raises* that threshold (up to 32 MB) after the first such free; from then on those tensors come
from the heap, where blocks of ever-changing sizes fragment it and resident memory climbs from one mini-batch
to the next (pretraining step 2 measured 4.09 → 5.17 → 5.76 GB). With the threshold fixed at 1 MB each step
stays flat and both trainers peak ~1 GB lower (bench/README.md §2f, "Trainer memory").

Setting the threshold switches glibc's adaptation off for the rest of the process, so ``large_blocks_mapped``
holds it only around the training loop and afterwards sets the thresholds to what the adaptation would have
reached (32 MB mmap, 64 MB trim): the gate's numpy work after training runs as in a process that never trained.
Elsewhere (not glibc, a GPU) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["large_blocks_mapped"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_TRAINING_MMAP_THRESHOLD = 1 << 20
# What glibc's dynamic thresholds reach after large frees (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, and trim at
# twice the mmap threshold): the values a process that never trained works with.
_AFTER_MMAP_THRESHOLD = 32 << 20
_AFTER_TRIM_THRESHOLD = 64 << 20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - musl and other libcs have no mallopt
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def large_blocks_mapped(active: bool = True) -> Iterator[None]:
    """Serve blocks of 1 MB and more with ``mmap`` while the body runs (the training loop on a CPU)."""
    libc = _libc() if active else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _TRAINING_MMAP_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM_THRESHOLD)

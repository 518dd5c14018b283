"""One shared Kiwi analyser for the process.

Kiwi takes ~1.5 s and ~150 MB to load, and both the chunker (sentence boundaries) and the lexical encoder
(morphemes) need it, so it is built once, lazily, and shared. Kiwi's own worker threads parallelise batch
calls; the lock only guards construction.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiwipiepy import Kiwi

_lock = threading.Lock()
_workers: int | None = None


def configure(workers: int | None) -> None:
    """Set Kiwi's worker threads (``Settings.kiwi_workers``) before the analyser is first built.

    ``Kret`` calls this with its settings, so the value comes from ``KRET_KIWI_WORKERS`` / kret.toml like
    every other knob. Once built, the shared analyser keeps its workers for the life of the process;
    ``None`` (the setting's default) leaves an earlier explicit choice in force.
    """
    global _workers
    if workers is not None:
        _workers = workers


@lru_cache(maxsize=1)
def _build() -> Kiwi:
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=_workers or min(4, os.cpu_count() or 1))


def get_kiwi() -> Kiwi:
    with _lock:
        return _build()


def release_kiwi() -> None:
    """Forget the shared analyser (~0.5 GB resident after its first analysis); the next use builds it again.

    For a process that is done with Korean analysis for a long while — fine-tuning after mining holds it
    through hours of training otherwise. Objects already holding the analyser keep theirs alive.
    """
    with _lock:
        _build.cache_clear()

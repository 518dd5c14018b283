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


@lru_cache(maxsize=1)
def _build() -> Kiwi:
    from kiwipiepy import Kiwi

    workers = int(os.environ.get("KRET_KIWI_WORKERS", "0")) or min(4, os.cpu_count() or 1)
    return Kiwi(num_workers=workers)


def get_kiwi() -> Kiwi:
    with _lock:
        return _build()

"""Free-space checks before Qdrant Edge writes: a full disk must be one clear line, never a SIGBUS.

Why a check is needed at all: Qdrant Edge memory-maps *sparse* pre-allocated files (WAL segments, payload
and sparse-vector pages) and writes into them through the mapping. On a full filesystem the kernel cannot
back a page on first touch and delivers SIGBUS: the process dies with exit 135, no message, and whatever
version it was building stays behind as an orphan. Nothing in Python can catch that, so kret refuses
*before* Edge gets there.

What Edge pre-allocates (measured with qdrant-edge-py on this machine, ``bench/reliability.py --measure``):
a bare new shard is 133 MiB of apparent size but ~1 MiB allocated — two 32 MiB WAL segments (``wal/open-1``,
``open-2``), two 32 MiB pages (``payload_storage/page_0.dat``, ``vector_storage-lex/store/page_0.dat``) and
1 MiB trackers/flags. A kret version (six payload indexes, the manifest point, hence the first 32 MiB dense
vector chunk ``chunk_0.mmap`` and 2-4 MiB index pages) is 207.5 MiB apparent, 0.3 MiB allocated, for 384-
and 32-dim vectors alike. Every byte of those files that is not yet backed can become a SIGBUS, so the
checks count it as needed.

Opening an existing shard on a full disk is a SIGBUS too (measured: ``kret index`` into a collection on a
full tmpfs, and a reader opening it, both died on load), so opening is checked as well.

The rule (``required_*``; the numbers are deliberately conservative, a refusal costs a re-run while a
SIGBUS costs the run and leaves an orphan):
- new version: the shard's pre-allocation + ``HEADROOM``;
- opening a shard: its not-yet-backed bytes + one WAL segment (32 MiB);
- write batch: the shard's not-yet-backed bytes + ``BATCH_FACTOR`` x the batch's estimated size (the WAL
  record, then the same data in segment storage, plus slack) + ``HEADROOM`` (Edge may map a fresh 32 MiB
  WAL segment and a fresh storage page during the write);
- finalize (the optimizer rewrites segments into new ones): not-yet-backed + allocated bytes + HEADROOM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from kret.engine.types import StoredPoint
from kret.errors import DiskSpaceError

MiB = 1 << 20
SHARD_PREALLOC_BYTES = 208 * MiB
HEADROOM_BYTES = 64 * MiB
WAL_SEGMENT_BYTES = 32 * MiB
BATCH_FACTOR = 3


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def shard_usage(path: Path) -> tuple[int, int]:
    """(allocated, not yet backed) bytes of a shard folder: apparent size minus blocks, per file."""
    allocated = unbacked = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue  # a file the optimizer just replaced
            blocks = st.st_blocks * 512
            allocated += blocks
            unbacked += max(st.st_size - blocks, 0)
    return allocated, unbacked


def batch_bytes(points: Iterable[StoredPoint]) -> int:
    """Estimated bytes one write of these points lands on disk once (vectors, sparse pairs, JSON payload)."""
    total = 0
    for p in points:
        total += 64  # id, offsets, bookkeeping
        if p.dense is not None:
            total += 4 * len(p.dense)
        if p.sparse is not None:
            total += 8 * len(p.sparse)
        total += len(json.dumps(p.payload, ensure_ascii=False, default=str).encode("utf-8"))
    return total


def required_for_new_version() -> int:
    return SHARD_PREALLOC_BYTES + HEADROOM_BYTES


def required_for_open(unbacked: int) -> int:
    """Loading a shard may touch any mapped page and replay the WAL into a fresh segment file."""
    return unbacked + WAL_SEGMENT_BYTES


def required_for_batch(unbacked: int, batch: int) -> int:
    return unbacked + BATCH_FACTOR * batch + HEADROOM_BYTES


def required_for_finalize(allocated: int, unbacked: int) -> int:
    return unbacked + allocated + HEADROOM_BYTES


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"


NOTHING_CHANGED = "nothing was changed"


def ensure_free(
    path: Path, needed: int, what: str, *, free: int | None = None, outcome: str = NOTHING_CHANGED
) -> None:
    """Raise a one-line ``DiskSpaceError`` when the filesystem at ``path`` has less than ``needed`` free;
    ``outcome`` tells the user what state the refusal leaves behind."""
    available = free_bytes(path) if free is None else free
    if available < needed:
        raise DiskSpaceError(
            f"not enough free disk space to {what}: {_mib(available)} free at {path}, {_mib(needed)} needed "
            f"(Qdrant Edge pre-allocates its files); {outcome} — free some space "
            "(`kret gc` removes old and orphan versions) and run the command again"
        )

"""Writer leases kept on a Qdrant server: one kret writer per collection across machines.

Why: the lock files of ``engine.locks`` serialise the kret processes of one machine, but ``flock`` does not
reach other machines. Two machines sharing a server could index into the same live version at once, and
``kret gc`` on one could delete the version a ``kret reindex`` on another was still building. A lease on the
server closes both: ``kret index``/``reindex``/``rm`` hold the collection's writer lease for their whole run
(a writer on another machine gets "in use", exit 6), and dropping a version is refused while another machine
holds the lease (gc skips the collection and says so).

Protocol, one point per lease in the collection ``<prefix>-leases`` (made on first use): the payload names
the owner (host, pid, a random id) and when the lease expires. Taking it is one conditional upsert (Qdrant
>= 1.16 ``update_filter``): the point is written when it is absent, expired or already ours, and left alone
when another owner's lease is live; reading it back tells who holds it. The server applies the condition
and the write as one step, so two machines cannot both succeed. A holder renews its lease every third of
the time to live from a daemon thread; a holder that dies (``kill -9``, a lost machine) stops renewing and
its lease expires after ``LEASE_TTL_S``, so a crash blocks the collection for at most that long. Expiry is
compared with the taker's clock: machines whose clocks disagree by more than a few seconds shorten or
lengthen that wait (keep them NTP-synced; docs/deployment.md).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kret.errors import IndexInUseError

#: Seconds a lease lives without renewal: how long a crashed writer blocks its collection.
LEASE_TTL_S = 60.0


class ServerLeases:
    """Leases of one backend (one server and prefix), taken and renewed by this process."""

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        call: Callable[[Callable[[Any], Any]], Any] | None = None,
    ) -> None:
        self.client = client
        # How requests are made: the backend passes its own wrapper, which turns client errors into kret's.
        self.call = call or (lambda fn: fn(client))
        self.collection = collection
        self.ttl_s = ttl_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._ready = False

    # the lease collection -----------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._ready:
            return
        from qdrant_client import models

        exists = lambda: self.call(lambda c: c.collection_exists(self.collection))  # noqa: E731
        if not exists():
            try:
                # A one-dimensional vector: every Qdrant version accepts it; leases are found by id only.
                self.call(
                    lambda c: c.create_collection(
                        self.collection,
                        vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT),
                    )
                )
            except Exception:
                if not exists():  # not just another creator first
                    raise
        self._ready = True

    @staticmethod
    def _id(key: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kret-lease:{key}"))

    def _write(self, key: str, *, take: bool) -> None:
        """Write our lease on ``key`` if it is ours, or (``take``) absent or expired; otherwise nothing."""
        from qdrant_client import models

        now = self.clock()
        ours = models.FieldCondition(key="owner", match=models.MatchValue(value=self.owner))
        expired = models.FieldCondition(key="expires", range=models.Range(lt=now))
        point = models.PointStruct(
            id=self._id(key),
            vector=[1.0],
            payload={"key": key, "owner": self.owner, "taken": now, "expires": now + self.ttl_s},
        )
        self.call(
            lambda c: c.upsert(
                self.collection,
                points=[point],
                update_filter=models.Filter(should=[ours, expired] if take else [ours]),
                update_mode=None if take else models.UpdateMode.UPDATE_ONLY,
            )
        )

    def holder(self, key: str) -> dict[str, Any] | None:
        """The live lease on ``key`` (its payload), ours or another's; None when nobody holds it."""
        self._ensure()
        found = self.call(lambda c: c.retrieve(self.collection, [self._id(key)], with_payload=True))
        if not found or found[0].payload is None or found[0].payload.get("expires", 0) < self.clock():
            return None
        return dict(found[0].payload)

    def held_elsewhere(self, key: str) -> dict[str, Any] | None:
        """Another owner's live lease on ``key``, or None."""
        lease = self.holder(key)
        return lease if lease is not None and lease.get("owner") != self.owner else None

    def acquire(self, key: str) -> dict[str, Any] | None:
        """Take the lease: None when it is ours now, else the live lease of its holder."""
        self._ensure()
        self._write(key, take=True)
        lease = self.holder(key)
        return None if lease is not None and lease.get("owner") == self.owner else lease

    def renew(self, key: str) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and another owner took it)."""
        self._write(key, take=False)
        lease = self.holder(key)
        return lease is not None and lease.get("owner") == self.owner

    def release(self, key: str) -> None:
        from qdrant_client import models

        mine = models.Filter(
            must=[
                models.HasIdCondition(has_id=[self._id(key)]),
                models.FieldCondition(key="owner", match=models.MatchValue(value=self.owner)),
            ]
        )
        self.call(lambda c: c.delete(self.collection, points_selector=models.FilterSelector(filter=mine)))

    @contextmanager
    def held(self, key: str, busy: str) -> Iterator[None]:
        """Hold ``key`` for the block, renewed in the background; IndexInUseError(``busy`` + who) when another
        owner holds it, and at the end when another owner took it over meanwhile (a renewal came too late)."""
        other = self.acquire(key)
        if other is not None:
            raise IndexInUseError(f"{busy} ({describe(other, self.clock())})")
        stop = threading.Event()
        lost: list[dict[str, Any] | None] = []

        def renew() -> None:
            while not stop.wait(self.ttl_s / 3):
                try:
                    if not self.renew(key):
                        lost.append(self.holder(key))
                        return
                except Exception:  # a failed renewal is retried; the lease lives ttl_s from the last success
                    continue

        thread = threading.Thread(target=renew, name=f"kret-lease-{key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            if lost:
                raise IndexInUseError(
                    f"the lease on {key!r} expired during this run and another owner took it "
                    f"({describe(lost[0], self.clock())}): writes of both may be interleaved"
                )
            self.release(key)


def describe(lease: dict[str, Any] | None, now: float) -> str:
    if lease is None:
        return "nobody now"
    owner = str(lease.get("owner", "?"))
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return f"held by {host} pid {pid}, expires in {max(0.0, lease.get('expires', now) - now):.0f} s"


__all__ = ["LEASE_TTL_S", "ServerLeases"]

"""File locks under KRET_HOME: the protocol that keeps kret processes from interleaving destructively.

Qdrant Edge locks one shard (its WAL folder) against a second opener, but nothing covered what happens
*between* shards: two ``kret index`` runs both seeing "no collection yet" and each creating a version (one
run's documents ended up in an orphan), or ``kret gc`` deleting the version a ``kret reindex`` was still
building. Three kinds of lock close those gaps, all ``flock`` locks in ``<collections>/.locks/`` (a folder
that is never deleted, so nobody can lock a file another process is about to unlink):

``<name>.lock``     *mutation* lock, held for milliseconds to seconds: picking a version number and creating
                    its folder, switching ``CURRENT``, deciding and removing versions in gc, dropping.
                    Waiters block (bounded by ``MUTATION_WAIT_S``) and then re-check what they saw.
``<name>.writer``   *writer* lock, held for a whole ``index`` / ``reindex`` / ``rm``: a second writer gets
                    "in use" (exit 6) at once, so a reindex never switches away from a version an index run
                    is still adding documents to.
``<name>@<v>.build`` *build* lock, held by the process building a version until it is live or dropped;
                    gc skips a version whose build lock is held (``is_held``).

The kernel drops every lock when its process dies (``kill -9`` included), so there are no stale locks to
clean: a version left by a crash is an orphan that gc may remove.

``CollectionLocks`` is the protocol for one backend. Qdrant Edge keeps its lock files next to the shards; a
Qdrant server's backend keeps them under ``KRET_HOME/locks/<server>``, so the kret processes of one machine
that share a server follow the same protocol. ``flock`` does not reach other machines: there, writers also
hold a lease on the server (``engine.server_lease``), and the server's own atomic steps (creating a
collection fails when it exists; the alias switch is one request) do the rest, see docs/deployment.md.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kret.errors import IndexInUseError

MUTATION_WAIT_S = 30.0
_POLL_S = 0.05


class FileLock:
    """An exclusive ``flock`` on one file, re-entrant within a process (nested ``with`` is a no-op), so a
    backend method that locks can call another that locks the same name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait_s: float, busy: str) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; ``busy`` is the IndexInUseError message."""
        got = self._thread_lock.acquire(timeout=wait_s) if wait_s > 0 else self._thread_lock.acquire(False)
        if not got:
            raise IndexInUseError(busy)
        if self._depth:
            self._depth += 1
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except BaseException:
            self._thread_lock.release()
            raise
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    self._thread_lock.release()
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    self._thread_lock.release()
                    raise IndexInUseError(busy) from None
                time.sleep(_POLL_S)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._thread_lock.release()


class CollectionLocks:
    """The mutation, writer and build locks of one backend's collections, as files in ``folder``.

    Names must be checked by the caller (``names.check_collection_name``) before they reach a path here.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks: dict[str, FileLock] = {}
        # Versions this process is building (created, not yet live): their build locks, held until
        # ``end_build``.
        self._building: dict[tuple[str, str], FileLock] = {}

    def _lock(self, filename: str) -> FileLock:
        lock = self._locks.get(filename)
        if lock is None:
            lock = self._locks[filename] = FileLock(self.folder / filename)
        return lock

    def _build_path(self, name: str, version: str) -> Path:
        return self.folder / f"{name}@{version}.build"

    @contextmanager
    def mutation(self, name: str) -> Iterator[None]:
        lock = self._lock(f"{name}.lock")
        lock.acquire(
            wait_s=MUTATION_WAIT_S,
            busy=f"collection {name!r} is being changed by another kret process (waited {MUTATION_WAIT_S:.0f}s)",
        )
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def writer(self, name: str) -> Iterator[None]:
        lock = self._lock(f"{name}.writer")
        lock.acquire(
            wait_s=0,
            busy=f"collection {name!r} is in use by another kret process (index, reindex or rm); wait for "
            "it to finish",
        )
        try:
            yield
        finally:
            lock.release()

    def begin_build(self, name: str, version: str) -> None:
        """Mark ``version`` as being built by this process (call under the mutation lock)."""
        lock = FileLock(self._build_path(name, version))
        lock.acquire(wait_s=0, busy=f"version {version} of {name!r} is being built by another process")
        self._building[(name, version)] = lock

    def end_build(self, name: str, version: str) -> None:
        """The build of ``version`` is over (it went live or was dropped); a no-op for another's build."""
        lock = self._building.pop((name, version), None)
        if lock is not None:
            self._build_path(name, version).unlink(missing_ok=True)
            lock.release()

    def building_here(self, name: str, version: str) -> bool:
        return (name, version) in self._building

    def building_elsewhere(self, name: str, version: str) -> bool:
        return not self.building_here(name, version) and is_held(self._build_path(name, version))

    def refuse_if_built_elsewhere(self, name: str, version: str) -> None:
        """Raise "in use" when another live process is building ``version`` (before dropping it)."""
        if self.building_elsewhere(name, version):
            raise IndexInUseError(f"version {version} of {name!r} is being built by another kret process")

    def is_building(self, name: str, version: str) -> bool:
        return self.building_here(name, version) or is_held(self._build_path(name, version))

    def versions_building(self, name: str) -> list[str]:
        """Versions of ``name`` that a live process (this one included) is building."""
        found = (p.name[len(name) + 1 : -len(".build")] for p in self.folder.glob(f"{name}@v*.build"))
        return sorted(v for v in found if self.is_building(name, v))

    def forget_build(self, name: str, version: str) -> None:
        """Remove a dead build's lock file (its version was dropped); ours are released, not forgotten."""
        if self.building_here(name, version):
            self.end_build(name, version)
        else:
            self._build_path(name, version).unlink(missing_ok=True)


def is_held(path: Path) -> bool:
    """Whether another open file description holds ``path`` locked right now (a build in progress).

    Opens without creating: no lock file means nobody is building. Taking and at once dropping the lock is
    the only portable probe; the caller holds the mutation lock, so no new builder can start meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    return _probe_and_close(fd)


def folder_in_use(path: Path) -> bool:
    """Whether a process holds Qdrant Edge's own lock on a shard's ``wal`` folder (the shard is open).

    Edge takes an exclusive ``flock`` on the WAL directory while a shard is open; probing the same lock
    tells gc and ``rm`` not to delete files another process has memory-mapped.
    """
    wal = path / "wal"
    try:
        fd = os.open(wal, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return _probe_and_close(fd)


def _probe_and_close(fd: int) -> bool:
    """Whether another process holds an exclusive flock on ``fd``'s file; closes ``fd`` (dropping our probe)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False

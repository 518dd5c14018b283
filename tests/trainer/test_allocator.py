"""The training loop's allocator setting is scoped: set on entry, glibc's adapted values restored on exit."""

from __future__ import annotations

import pytest

from kret.trainer import allocator


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_threshold_is_set_for_the_body_and_restored_after(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    with allocator.large_blocks_mapped():
        assert libc.calls == [(allocator._M_MMAP_THRESHOLD, 1 << 20)]
    assert libc.calls[1:] == [
        (allocator._M_MMAP_THRESHOLD, 32 << 20),
        (allocator._M_TRIM_THRESHOLD, 64 << 20),
    ]


def test_restored_when_training_fails(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    with pytest.raises(RuntimeError), allocator.large_blocks_mapped():
        raise RuntimeError("out of memory")
    assert len(libc.calls) == 3


def test_inactive_on_a_gpu_or_without_glibc(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    with allocator.large_blocks_mapped(active=False):
        pass
    assert libc.calls == []
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    with allocator.large_blocks_mapped():  # no mallopt here (macOS, musl): training runs as before
        pass


def test_real_libc_accepts_the_settings():
    """On this Linux/glibc machine the real calls succeed (mallopt returns 1), so the setting takes effect."""
    libc = allocator._libc()
    if libc is None:
        pytest.skip("not glibc")
    assert libc.mallopt(allocator._M_MMAP_THRESHOLD, 32 << 20) == 1

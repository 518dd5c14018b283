"""Token-budget batches across documents: the order in which an indexing run embeds its chunks.

Why: an encoder pads every text of a forward pass to the longest one, so a batch that mixes a 20-token
chunk with a 500-token one pays 500 tokens for both. Sorting only inside each model call (what
sentence-transformers does) leaves most of that waste when the calls are cut in document order. Here all
chunks of a run (or of a memory-bounded wave, or of one part of a large document) are sorted by token
length first, then cut into batches whose *padded* size — number of texts × longest text — stays within a
token budget, so short chunks travel in large batches and long ones in small batches of about the same
cost.

Sorting breaks the document order, so a document is only complete once its last chunk has been embedded,
possibly many batches after its first. :class:`Completion` tracks that: the caller writes a document (its
chunks and its marker in one operation) when, and only when, all of its chunks have vectors. Documents
therefore complete out of order, which the store protocol allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def token_batches(lengths: Sequence[int], budget: int, *, max_len: int | None = None) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length (ties keep their order), cut so that
    ``len(batch) × longest ≤ budget``. A text longer than the budget gets a batch of its own.

    ``max_len`` caps a length at what the model will see (it truncates past its window), so an over-long
    text does not shrink its batch for tokens that are never computed.
    """
    if budget < 1:
        raise ValueError(f"token budget must be >= 1, got {budget}")
    cap = max_len if max_len is not None else None
    eff = [max(1, min(n, cap) if cap is not None else n) for n in lengths]
    order = sorted(range(len(eff)), key=lambda i: eff[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending: the text being added is the longest of the batch so far.
        if current and (len(current) + 1) * eff[i] > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: Sequence[int], batches: Iterable[Sequence[int]]) -> int:
    """Tokens an encoder computes for these batches when it pads each one to its longest text."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if b)


class Completion:
    """Counts down each owner's (document's) outstanding chunks; reports owners as they complete."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self._left = list(sizes)

    def done(self, owners: Iterable[int]) -> list[int]:
        """Mark one chunk of each listed owner as embedded (an owner may repeat); return the owners that
        just became complete, in the order they did."""
        finished = []
        for o in owners:
            self._left[o] -= 1
            if self._left[o] == 0:
                finished.append(o)
            elif self._left[o] < 0:
                raise ValueError(f"owner {o} completed more chunks than it has")
        return finished

    def empty(self) -> list[int]:
        """Owners with no chunks at all (complete before any batch runs)."""
        return [o for o, n in enumerate(self._left) if n == 0]

"""Kiwi BM25 term vectors for Qdrant's sparse vector ``lex``.

Why split BM25 between client and Qdrant: the IDF part depends on the whole collection, which grows and
shrinks with every ingest, so it is left to Qdrant's IDF modifier and computed at query time from the live
index. The term-frequency part (saturation ``k1`` and length normalisation ``b``) only needs the document
and the average document length, so it is computed here and stored as the vector's values. The query
vector carries how often each term occurs in the query. Score of a document, as Qdrant returns it::

    score(q, d) = Σ_t  qtf(t) · idf(t) · tf(t,d) / (tf(t,d) + k1·(1 − b + b·dl/avgdl))

This is Lucene's BM25 without the constant factor ``(k1 + 1)``, exactly what ``bm25s`` computes with
``method="lucene"`` (same scores, not just the same ranking). ``bm25s`` adds a query term's score once
per occurrence, so a term written twice in the query weighs twice: ``qtf`` reproduces that.

IDF as Qdrant Edge 0.9.0 computes it (measured against brute force, equal to float32 precision; pinned by
``tests/engine/test_sparse.py``)::

    idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))

the same formula as ``bm25s``/Lucene, where

- ``N`` = number of points that have a **non-empty** ``lex`` vector. Points without the sparse vector, or
  with an empty one, are not counted (``bm25s`` counts every document, also ones without terms: a small
  difference that appears only when some chunks have no content morphemes).
- ``n(t)`` = number of those points whose vector has the term id ``t``.
- Upserts count at once. Deleted points keep counting in ``N`` and ``n(t)`` until their segment is
  rebuilt: ``optimize()`` when the segment has enough deletions to be vacuumed (37 % did it in the
  experiment, a handful did not), or reopening the shard. After that the statistics are exact again.
- A query vector with a repeated index is summed; :meth:`KiwiBM25Encoder.encode_query` merges repeats
  itself so as not to depend on that.

Term ids: the first 4 bytes of BLAKE2b of the UTF-8 term, big-endian, masked to 31 bits. Stable across
processes, platforms and Python versions (unlike ``hash()``, which is salted per process), inside
Qdrant's ``u32`` index space and non-negative for any signed 32-bit consumer. Two terms share an id with
probability 2⁻³¹ per pair, so a vocabulary of V terms has about V²/2³² colliding pairs: ~0.25 at 32k
terms, ~7.6 at 180k, ~230 at 1M. Measured on 20 % of ``shared/data/kowiki`` (40 of 200 files, 129,788
paragraphs, 16.2 M characters): 180,314 distinct terms, 9 colliding pairs (7.6 expected), e.g.
금메달/칠백육십칠, 복산동/황부섭정왕; the benchmark corpora (18–20k terms each) have none. A collision
merges two terms into one dimension, which mostly means one of them (usually a rare one) gets the other's
matches; with a handful of pairs in a wiki-sized vocabulary the effect on ranking is negligible. Terms are
merged by id before term frequencies are counted, so a vector and Qdrant's ``n(t)`` agree even then.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from kret.engine.types import SparseVec
from kret.korean import get_kiwi

if TYPE_CHECKING:
    from kiwipiepy import Token

#: Tag prefixes of the reference "bm25-kiwi" system: nouns, verb/adjective stems, roots, foreign words,
#: numbers, hanja and general adverbs. Prefix matching also keeps Kiwi's irregular-stem tags (``VV-I``…).
CONTENT_TAGS: tuple[str, ...] = ("NN", "VV", "VA", "XR", "SL", "SN", "SH", "MAG")

_ID_MASK = 0x7FFFFFFF


def term_id(term: str) -> int:
    """Stable 31-bit id of a term (see the module docstring for the collision rate)."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


class KiwiBM25Encoder:
    """Turns text into Kiwi content-morpheme terms and terms into BM25 term-frequency vectors.

    ``k1`` and ``b`` are baked into the stored document values, so changing them (or the tag prefixes)
    needs a reindex: keep them in the collection manifest.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, tag_prefixes: Iterable[str] = CONTENT_TAGS) -> None:
        if k1 < 0:
            raise ValueError(f"k1 must be >= 0, got {k1}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {b}")
        self.k1 = float(k1)
        self.b = float(b)
        # str.startswith takes a tuple: one C call per token instead of a Python loop.
        self.tag_prefixes: tuple[str, ...] = tuple(tag_prefixes)
        if not self.tag_prefixes:
            raise ValueError("tag_prefixes must not be empty")

    def _keep(self, tokens: Iterable[Token]) -> list[str]:
        prefixes = self.tag_prefixes
        return [t.form.lower() for t in tokens if t.tag.startswith(prefixes)]

    def terms(self, text: str) -> list[str]:
        """Content morphemes of ``text``, lower-cased, in order, repeats kept (they are the tf)."""
        if not text or text.isspace():
            return []
        return self._keep(get_kiwi().tokenize(text))

    def terms_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Like :meth:`terms` for many texts; Kiwi spreads a list over its worker threads."""
        if not texts:
            return []
        return [self._keep(tokens) for tokens in get_kiwi().tokenize(list(texts))]

    def encode_documents(self, term_lists: Sequence[list[str]], avgdl: float) -> list[SparseVec]:
        """BM25 tf parts of documents; ``avgdl`` is the mean term count over the whole collection.

        The collection's ``avgdl`` rather than the batch's keeps an incremental ingest consistent with a
        full one; it drifts as the collection changes, which only a reindex corrects (as in any BM25
        index that stores impacts).
        """
        out: list[SparseVec] = []
        k1, b = self.k1, self.b
        for terms in term_lists:
            if not terms:
                out.append(SparseVec(indices=[], values=[]))
                continue
            if avgdl <= 0:
                raise ValueError(f"avgdl must be > 0 for documents with terms, got {avgdl}")
            norm = k1 * (1.0 - b + b * len(terms) / avgdl)
            counts = Counter(term_id(t) for t in terms)
            indices = sorted(counts)
            out.append(SparseVec(indices=indices, values=[counts[i] / (counts[i] + norm) for i in indices]))
        return out

    def encode_query_terms(self, terms: Sequence[str]) -> SparseVec:
        """Query vector from already tokenised terms: value = occurrences of the term in the query."""
        counts = Counter(term_id(t) for t in terms)
        indices = sorted(counts)
        return SparseVec(indices=indices, values=[float(counts[i]) for i in indices])

    def encode_query(self, text: str) -> SparseVec:
        """Query vector of ``text``; empty when the query has no content morphemes (skip the branch)."""
        return self.encode_query_terms(self.terms(text))

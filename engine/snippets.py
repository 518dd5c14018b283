"""Snippets that show why a hit matched: the best sentence(s) of a chunk, with the query's terms marked.

A search result is a whole chunk (up to ~500 model tokens); a reader wants the one or two sentences that made
it a hit. This module picks them and reports where the query's terms occur, as character offsets, so any
front end (the terminal table, ``--json``, the Python API, a web page) can mark them its own way.

**Matching uses the sparse branch's own terms.** The query goes through
:meth:`KiwiBM25Encoder.terms` (Kiwi content morphemes, lower-cased, the tags in ``encoder.tag_prefixes``),
and the chunk is analysed by the same shared Kiwi with the same tag filter. A token of the chunk is a match
when its lower-cased form is one of the query's terms. So ``세종대왕이`` in the text matches ``세종대왕`` in the
query (Kiwi splits both into ``세종``/``대왕`` + the particle), and ``만들었다`` matches ``만들다``, while the
particle ``이`` or the ending ``었다`` never match anything: exactly the evidence BM25 scored. The marked span
is the matched morpheme (``세종대왕`` of ``세종대왕이``, ``만들`` of ``만들었다``), not the whole word: it shows
which part of the word carried the match. Adjacent matched morphemes (``세종`` + ``대왕``) are merged into one
span. Kiwi analyses in context, so a compound can split differently in the query and in a long text (``세종대왕``
as ``세종``/``대왕`` in one, as one proper noun in the other); BM25 then does not match it either, and the
highlight does not claim it did: it shows what the sparse branch saw, no more.

**Which sentences.** The chunk is split into sentences with Kiwi (one analysis gives sentences and tokens).
Each sentence is scored by (number of *distinct* query terms it contains, total matches, earlier first); the
best one is taken, then the next best ones while they add a query term not yet shown and fit the character
budget. The chosen sentences are printed in text order, with ``…`` wherever text is left out (between
non-adjacent sentences, before the first if it is not the chunk's start, after the last if it is not the end).
A sentence longer than the budget is cut to a window around its densest run of matches, cut at spaces, with
``…`` on the cut sides.

**Hits with no term match** (found by the dense branch alone): there is nothing lexical to point at, so the
sentence is chosen by character-bigram overlap with the query (the share of the query's Hangul/Latin/digit
bigrams that occur in the sentence; it catches partial words that Kiwi splits differently, e.g. a compound
noun against its parts) and, when no bigram is shared either, the chunk's first sentence (a chunk begins at a
sentence boundary, and its opening usually states its topic). We do not embed each sentence to find the one
closest to the query: that is one more model call per hit over every sentence (k × ~5-15 sentences per query,
several times the cost of the search itself on a CPU), and e5's vectors of short fragments do not say more
about *why* the chunk-level vector matched than the lexical rule does. ``Snippet.basis`` says which rule chose
the snippet: ``"terms"``, ``"overlap"`` or ``"lead"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kret.korean import get_kiwi

if TYPE_CHECKING:
    from kret.engine.sparse import KiwiBM25Encoder

ELLIPSIS = "…"
DEFAULT_MAX_CHARS = 240

Span = tuple[int, int]  # [start, end) character offsets

_BIGRAM_CHARS = re.compile(r"[0-9A-Za-z\uac00-\ud7a3\u3131-\u318e]+")


@dataclass
class Snippet:
    """The part of a chunk worth showing, with the query's matched terms located.

    ``text`` is what to print (``…`` where the chunk was cut); ``spans`` are the matches as offsets into
    ``text``; ``highlights`` are *all* matches as offsets into the full chunk text (``--json`` and ``--full``
    use these); ``segments`` are the ranges of the full text that ``text`` shows.
    """

    text: str
    spans: list[Span] = field(default_factory=list)
    highlights: list[Span] = field(default_factory=list)
    segments: list[Span] = field(default_factory=list)
    matched_terms: list[str] = field(default_factory=list)
    basis: str = "lead"  # "terms" | "overlap" | "lead" | "empty"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "spans": [list(s) for s in self.spans],
            "basis": self.basis,
            "matched_terms": self.matched_terms,
        }


@dataclass
class _Sentence:
    start: int
    end: int
    matches: list[tuple[Span, str]]  # (span in the full text, term)


class SnippetMaker:
    """Builds snippets for many hits of one query; the query is analysed once.

    ``encoder`` is the collection's lexical encoder (``Searcher.encoder``), so the terms are the sparse
    branch's own. Without one, a default :class:`KiwiBM25Encoder` is used (same tags as every collection
    kret builds today).
    """

    def __init__(
        self, query: str, encoder: KiwiBM25Encoder | None = None, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        if encoder is None:
            from kret.engine.sparse import KiwiBM25Encoder

            encoder = KiwiBM25Encoder()
        self.query = query
        self.encoder = encoder
        self.max_chars = max(int(max_chars), 20)
        self.terms: list[str] = list(dict.fromkeys(encoder.terms(query)))  # distinct, in query order
        self._term_set = set(self.terms)
        self._query_bigrams = _bigrams(query)

    # analysis -----------------------------------------------------------------------------------------
    def _sentences(self, text: str, analysed: Sequence[Any] | None = None) -> list[_Sentence]:
        """Kiwi sentences of ``text`` with the query's matches; ``analysed`` is Kiwi's
        ``split_into_sents(text, return_tokens=True)`` output when the caller already has it (a batch)."""
        prefixes = self.encoder.tag_prefixes
        if analysed is None:
            analysed = get_kiwi().split_into_sents(text, return_tokens=True)
        sents: list[_Sentence] = []
        for s in analysed:
            matches = [
                ((t.start, t.start + t.len), t.form.lower())
                for t in (s.tokens or [])
                if t.tag.startswith(prefixes) and t.form.lower() in self._term_set
            ]
            sents.append(_Sentence(s.start, s.end, matches))
        if not sents and text.strip():
            sents.append(_Sentence(0, len(text), []))
        return sents

    def highlights(self, text: str) -> list[Span]:
        """Every match of a query term in ``text`` (merged when adjacent), as offsets into ``text``."""
        return _merge([span for s in self._sentences(text) for span, _ in s.matches], text)

    # selection ----------------------------------------------------------------------------------------
    def make(self, text: str, analysed: Sequence[Any] | None = None) -> Snippet:
        """The snippet of one chunk text (see the module docstring for the rules)."""
        if not text or not text.strip():
            return Snippet(text="", basis="empty")
        sents = self._sentences(text, analysed)
        all_spans = _merge([span for s in sents for span, _ in s.matches], text)
        matched = [t for t in self.terms if any(term == t for s in sents for _, term in s.matches)]
        if matched:
            chosen = self._by_terms(sents)
            basis = "terms"
        else:
            chosen, basis = self._by_overlap(text, sents)
        return self._render(text, sents, chosen, all_spans, matched, basis)

    def make_many(self, texts: Sequence[str]) -> list[Snippet]:
        """Snippets of many texts (a result list). Kiwi analyses them as one batch, spread over its worker
        threads: the analysis is nearly all of a snippet's cost (~10-15 ms of CPU per 500-character chunk)."""
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        analysed: dict[int, Any] = {}
        if todo:
            batch = get_kiwi().split_into_sents([texts[i] for i in todo], return_tokens=True)
            analysed = dict(zip(todo, (list(a) for a in batch), strict=True))
        return [self.make(t, analysed.get(i)) for i, t in enumerate(texts)]

    def _by_terms(self, sents: list[_Sentence]) -> list[int]:
        def key(i: int) -> tuple[int, int, int]:
            s = sents[i]
            return (-len({term for _, term in s.matches}), -len(s.matches), i)

        order = sorted(range(len(sents)), key=key)
        chosen = [order[0]]
        shown = {term for _, term in sents[order[0]].matches}
        used = _length(sents[order[0]])
        for i in order[1:]:
            s = sents[i]
            new = {term for _, term in s.matches} - shown
            if not new:
                continue
            if used + _length(s) + 2 > self.max_chars:
                continue
            chosen.append(i)
            shown |= new
            used += _length(s) + 2
        return sorted(chosen)

    def _by_overlap(self, text: str, sents: list[_Sentence]) -> tuple[list[int], str]:
        if self._query_bigrams:
            scores = [
                len(self._query_bigrams & _bigrams(text[s.start : s.end])) / len(self._query_bigrams)
                for s in sents
            ]
            best = max(range(len(sents)), key=lambda i: (scores[i], -i))
            if scores[best] > 0:
                return [best], "overlap"
        return [0], "lead"

    # rendering ----------------------------------------------------------------------------------------
    def _render(
        self,
        text: str,
        sents: list[_Sentence],
        chosen: list[int],
        all_spans: list[Span],
        matched: list[str],
        basis: str,
    ) -> Snippet:
        budget = self.max_chars
        segments: list[Span] = []
        for i in chosen:
            s = sents[i]
            start, end = _strip(text, s.start, s.end)
            if end - start > budget:
                start, end = _window(text, start, end, [sp for sp, _ in s.matches], budget)
            segments.append((start, end))
            budget = max(budget - (end - start) - 2, 0)
        # Join segments, with an ellipsis wherever the full text has something between (or around) them.
        parts: list[str] = []
        spans: list[Span] = []
        pos = 0
        prev_end = 0
        for n, (start, end) in enumerate(segments):
            gap = text[prev_end:start] if n or start else ""
            if n == 0 and gap.strip():
                parts.append(ELLIPSIS + " ")
            elif n > 0:
                parts.append(" " + ELLIPSIS + " " if gap.strip() else " ")
            pos = sum(len(p) for p in parts)
            parts.append(text[start:end])
            for a, b in all_spans:
                if a >= start and b <= end:
                    spans.append((pos + a - start, pos + b - start))
            prev_end = end
        if text[prev_end:].strip():
            parts.append(" " + ELLIPSIS)
        return Snippet(
            text="".join(parts),
            spans=spans,
            highlights=all_spans,
            segments=segments,
            matched_terms=matched,
            basis=basis,
        )


def make_snippet(
    query: str, text: str, encoder: KiwiBM25Encoder | None = None, max_chars: int = DEFAULT_MAX_CHARS
) -> Snippet:
    """One-off convenience: the snippet of ``text`` for ``query`` (use :class:`SnippetMaker` for many)."""
    return SnippetMaker(query, encoder, max_chars).make(text)


def _length(s: _Sentence) -> int:
    return s.end - s.start


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _merge(spans: list[Span], text: str) -> list[Span]:
    """Sorted spans, with touching ones (``세종``+``대왕``) merged; a gap of spaces keeps them apart."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _window(text: str, start: int, end: int, matches: list[Span], budget: int) -> Span:
    """A ``budget``-character window of ``text[start:end]`` holding as many matches as possible, cut at
    spaces where there is one near the edge (a Korean word cut in half reads as a different word)."""
    if matches:
        best_lo, best_n = matches[0][0], 0
        for a, _ in matches:
            n = sum(1 for x, y in matches if x >= a and y <= a + budget)
            if n > best_n:
                best_lo, best_n = a, n
        # Centre the covered run of matches in the window.
        covered = [y for x, y in matches if x >= best_lo and y <= best_lo + budget]
        run_end = max(covered) if covered else best_lo
        lo = best_lo - max((budget - (run_end - best_lo)) // 2, 0)
    else:
        lo = start
    lo = min(max(lo, start), max(end - budget, start))
    hi = min(lo + budget, end)
    if lo > start:
        sp = text.find(" ", lo, min(lo + 15, hi))
        if sp != -1:
            lo = sp + 1
    if hi < end:
        sp = text.rfind(" ", max(hi - 15, lo), hi)
        if sp != -1:
            hi = sp
    return _strip(text, lo, hi)


def _bigrams(text: str) -> set[str]:
    out: set[str] = set()
    for run in _BIGRAM_CHARS.findall(text.lower()):
        out.update(run[i : i + 2] for i in range(len(run) - 1))
    return out

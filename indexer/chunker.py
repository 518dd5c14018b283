"""Korean-aware chunking, measured in the embedding model's own tokens.

Why this shape: a chunk must fit the model's window (tokens past it are silently dropped by the encoder), and
it should end at a sentence boundary (Kiwi knows Korean sentence endings such as ``-다.`` / ``-요`` without
relying on punctuation). Sections are never mixed: a markdown-style heading line (``# …``, which the loaders
produce for md, html and docx) closes the current chunk and becomes the ``heading`` of the chunks after it.
Work is skipped where it is not needed: a section that fits is one chunk without sentence splitting, and only
paragraphs that are too long are split into sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kret.indexer.document import Chunk, Document

CountTokens = Callable[[Sequence[str]], list[int]]
TokenOffsets = Callable[[str], list[tuple[int, int]]]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MIN_BUDGET = 32


@dataclass(frozen=True)
class ChunkingParams:
    """Recorded in each collection's manifest: chunks from other parameters are not comparable."""

    chunk_tokens: int
    overlap_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {"chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens}


@dataclass
class _Piece:
    text: str
    start: int
    end: int
    tokens: int


@dataclass
class _Section:
    heading: str
    pieces: list[tuple[str, int, int]]  # paragraph text with its char span in the document


def _sections(text: str) -> list[_Section]:
    sections: list[_Section] = [_Section("", [])]
    pos = 0
    para_lines: list[str] = []
    para_start = 0

    def flush_para(end: int) -> None:
        if para_lines:
            body = "\n".join(para_lines).strip()
            if body:
                sections[-1].pieces.append((body, para_start, end))
            para_lines.clear()

    for line in text.split("\n"):
        line_end = pos + len(line)
        m = _HEADING.match(line)
        if m:
            flush_para(pos)
            sections.append(_Section(m.group(2).strip(), []))
        elif not line.strip():
            flush_para(pos)
        else:
            if not para_lines:
                para_start = pos
            para_lines.append(line)
        pos = line_end + 1
    flush_para(len(text))
    return [s for s in sections if s.pieces]


def _join(group: list[_Piece]) -> str:
    """Sentences of one paragraph rejoin with a space, paragraphs with a newline."""
    out = group[0].text
    for prev, cur in zip(group, group[1:], strict=False):
        out += (" " if 0 <= cur.start - prev.end <= 2 else "\n") + cur.text
    return out


class Chunker:
    """Cuts documents into chunks of at most ``chunk_tokens`` model tokens with ``overlap_tokens`` overlap."""

    def __init__(
        self,
        count_tokens: CountTokens,
        params: ChunkingParams,
        token_offsets: TokenOffsets | None = None,
    ) -> None:
        if params.overlap_tokens >= params.chunk_tokens:
            from kret.errors import ConfigError

            raise ConfigError(
                f"chunk overlap ({params.overlap_tokens}) must be smaller than the chunk size ({params.chunk_tokens})"
            )
        self.count_tokens = count_tokens
        self.params = params
        self.token_offsets = token_offsets

    # sentence splitting -------------------------------------------------------------------------------
    def _sentences(self, text: str, start: int) -> list[tuple[str, int, int]]:
        from kret.korean import get_kiwi

        out = []
        for sent in get_kiwi().split_into_sents(text):
            s_text = text[sent.start : sent.end].strip()
            if s_text:
                out.append((s_text, start + sent.start, start + sent.end))
        return out or [(text, start, start + len(text))]

    def _hard_split(self, piece: _Piece, budget: int) -> list[_Piece]:
        """A single sentence longer than the window: cut it at token boundaries."""
        if self.token_offsets is None:
            step = max(1, len(piece.text) * budget // max(piece.tokens, 1))
            spans = [(i, min(i + step, len(piece.text))) for i in range(0, len(piece.text), step)]
        else:
            offs = self.token_offsets(piece.text)
            starts = list(range(0, len(offs), budget))
            spans = []
            for n, i in enumerate(starts):
                # End where the next window starts: a bare "▁" token's span can reach into the next
                # character, which would then appear in both chunks.
                end = offs[starts[n + 1]][0] if n + 1 < len(starts) else offs[-1][1]
                spans.append((offs[i][0], end))
        out = []
        for a, b in spans:
            part = piece.text[a:b].strip()
            if part:
                out.append(_Piece(part, piece.start + a, piece.start + b, 0))
        counts = self.count_tokens([p.text for p in out])
        for p, n in zip(out, counts, strict=True):
            p.tokens = n
        return out

    def _units(self, section: _Section, budget: int) -> list[_Piece]:
        """Paragraphs that fit as they are; longer ones as sentences; over-long sentences hard-cut."""
        paras = [_Piece(t, a, b, 0) for t, a, b in section.pieces]
        for p, n in zip(paras, self.count_tokens([p.text for p in paras]), strict=True):
            p.tokens = n
        units: list[_Piece] = []
        for p in paras:
            if p.tokens <= budget:
                units.append(p)
                continue
            sents = [_Piece(t, a, b, 0) for t, a, b in self._sentences(p.text, p.start)]
            for s, n in zip(sents, self.count_tokens([s.text for s in sents]), strict=True):
                s.tokens = n
            for s in sents:
                units.extend(self._hard_split(s, budget) if s.tokens > budget else [s])
        return units

    # packing --------------------------------------------------------------------------------------------
    def _pack(self, units: list[_Piece], budget: int) -> list[list[_Piece]]:
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        size = 0
        for u in units:
            joiner = 1 if current else 0  # the newline between units costs about one token
            if current and size + joiner + u.tokens > budget:
                groups.append(current)
                # overlap: trailing units of the previous chunk, never all of it
                carry: list[_Piece] = []
                carried = 0
                for prev in reversed(current[1:] if len(current) > 1 else []):
                    if carried + prev.tokens > self.params.overlap_tokens:
                        break
                    carry.insert(0, prev)
                    carried += prev.tokens + 1
                current = [*carry, u]
                size = sum(p.tokens for p in current) + len(current) - 1
                if size > budget:  # the carried overlap plus u does not fit: drop the overlap
                    current, size = [u], u.tokens
            else:
                current.append(u)
                size += joiner + u.tokens
        if current:
            groups.append(current)
        return groups

    def budget_for(self, title: str, heading: str) -> int:
        """Tokens left for text once the title/heading that is embedded with it are counted."""
        head = " ".join(p for p in (title, heading) if p)
        head_tokens = self.count_tokens([head])[0] + 1 if head else 0
        return max(_MIN_BUDGET, self.params.chunk_tokens - head_tokens)

    def chunk(self, doc: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in _sections(doc.text):
            budget = self.budget_for(doc.title, section.heading)
            whole = "\n\n".join(t for t, _, _ in section.pieces)
            if self.count_tokens([whole])[0] <= budget:
                groups = [[_Piece(whole, section.pieces[0][1], section.pieces[-1][2], 0)]]
            else:
                groups = self._pack(self._units(section, budget), budget)
            for group in groups:
                text = _join(group)
                chunks.append(
                    Chunk(
                        doc_id=doc.doc_id,
                        chunk_index=len(chunks),
                        text=text,
                        title=doc.title,
                        heading=section.heading,
                        start_char=group[0].start,
                        end_char=group[-1].end,
                    )
                )
        return chunks

"""Korean-aware chunking, measured in the embedding model's own tokens.

Why this shape: a chunk must fit the model's window (tokens past it are silently dropped by the encoder), and
it should end at a sentence boundary (Kiwi knows Korean sentence endings such as ``-다.`` / ``-요`` without
relying on punctuation). Sections are never mixed: a markdown-style heading line (``# …``, which the loaders
produce for md, html and docx) closes the current chunk and becomes the ``heading`` of the chunks after it.
Work is skipped where it is not needed: a section that fits is one chunk without sentence splitting, and only
paragraphs that are too long are split into sentences.

Memory is bounded by the chunk, not the document (:meth:`Chunker.iter_chunks`): the text is walked line by
line, a section is packed as its paragraphs arrive, and a paragraph longer than ``MAX_SLICE_CHARS`` (a 50 MB
text file without blank lines is one paragraph) is handed on in slices cut at line ends, else at a space, so
neither Kiwi's sentence splitter nor the tokenizer ever sees more than one slice at a time. For paragraphs
under that size the chunks are exactly what whole-document chunking gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from kret.indexer.document import Chunk, Document

CountTokens = Callable[[Sequence[str]], list[int]]
TokenOffsets = Callable[[str], list[tuple[int, int]]]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MIN_BUDGET = 32
#: Paragraphs longer than this are cut into slices before sentence splitting and token counting. Large
#: enough that real paragraphs are never cut; small enough that Kiwi and the tokenizer stay in megabytes.
MAX_SLICE_CHARS = 65_536
# A section whose paragraphs add up to more than this many times the budget cannot be one chunk: tokenizers
# split at whitespace, so the joined text has about the sum of its paragraphs' tokens. Below it, the exact
# whole-section count decides, as before.
_FIT_FACTOR = 4
# Paragraphs counted per tokenizer call.
_COUNT_BATCH = 64


@dataclass(frozen=True)
class ChunkingParams:
    """Recorded in each collection's manifest: chunks from other parameters are not comparable."""

    chunk_tokens: int
    overlap_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {"chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens}


@dataclass(frozen=True)
class PartCursor:
    """Where a large document's next part starts: the character offset (a restartable block boundary), the
    index of its first chunk and the section heading in effect there. Stored on the pending marker."""

    next_char: int = 0
    index: int = 0
    heading: str = ""


@dataclass
class ChunkPart:
    """One part of a large document: its chunks, and the cursor of the part after it (``next_char`` equal to
    the text's length after the last part)."""

    chunks: list[Chunk]
    cursor: PartCursor


@dataclass
class _Piece:
    text: str
    start: int
    end: int
    tokens: int


def _cuts(text: str, limit: int) -> list[tuple[int, int]]:
    """Spans of at most ``limit`` characters covering ``text``, cut after a space where there is one."""
    spans = []
    a = 0
    while len(text) - a > limit:
        b = text.rfind(" ", a + limit // 2, a + limit)
        b = a + limit if b < 0 else b + 1
        spans.append((a, b))
        a = b
    spans.append((a, len(text)))
    return spans


def _cut_blocks(line: str, offset: int, max_chars: int) -> Iterator[tuple[str, str, int, int]]:
    """An over-long line (starting at ``offset`` in the text) as paragraph blocks cut at spaces."""
    for a, b in _cuts(line, max_chars):
        part = line[a:b].strip()
        if part:
            yield ("para", part, offset + a, offset + b)


def _iter_blocks(
    text: str, max_chars: int | None = None, start: int = 0
) -> Iterator[tuple[str, str, int, int]]:
    """``("heading", title, 0, 0)`` and ``("para", body, start, end)`` in document order.

    Paragraphs are runs of non-blank lines; a heading line closes the paragraph before it. A paragraph that
    grows past ``max_chars`` is emitted in slices (at line ends; one over-long line at spaces), so the walk
    holds at most one slice, never the whole text split into lines. ``None`` reads ``MAX_SLICE_CHARS`` at
    call time (not at import), so the slice size can be changed for a run or a test.

    ``start`` begins the walk at the end of a paragraph block of an earlier walk, and yields exactly what
    that walk yielded after it (a large document's parts resume there): such an end is a line start, the
    end of a line, or a cut inside an over-long line, whose rest is cut the same way (``_cuts`` is
    memoryless), never read as a line of its own.
    """
    if max_chars is None:
        max_chars = MAX_SLICE_CHARS
    lines: list[str] = []
    chars = 0
    para_start = 0

    def flush(end: int) -> Iterator[tuple[str, str, int, int]]:
        nonlocal chars
        if lines:
            body = "\n".join(lines).strip()
            if body:
                yield ("para", body, para_start, end)
            lines.clear()
        chars = 0

    pos = start
    n = len(text)
    if 0 < start < n and text[start - 1] != "\n":  # inside an over-long line: its rest, in cuts
        nl = text.find("\n", start)
        nl = n if nl < 0 else nl
        yield from _cut_blocks(text[start:nl], start, max_chars)
        pos = nl + 1
    while pos <= n:
        nl = text.find("\n", pos)
        if nl < 0:
            nl = n
        line = text[pos:nl]
        m = _HEADING.match(line) if line[:1] == "#" else None
        if m:
            yield from flush(pos)
            yield ("heading", m.group(2).strip(), 0, 0)
        elif not line.strip():
            yield from flush(pos)
        else:
            if lines and chars + len(line) > max_chars:
                yield from flush(pos)
            if len(line) > max_chars:
                yield from _cut_blocks(line, pos, max_chars)
            else:
                if not lines:
                    para_start = pos
                lines.append(line)
                chars += len(line) + 1
        pos = nl + 1
    yield from flush(n)


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

    def _units(self, para: _Piece, budget: int) -> list[_Piece]:
        """A paragraph that fits as it is; a longer one as sentences; over-long sentences hard-cut."""
        if para.tokens <= budget:
            return [para]
        sents = [_Piece(t, a, b, 0) for t, a, b in self._sentences(para.text, para.start)]
        for s, n in zip(sents, self.count_tokens([s.text for s in sents]), strict=True):
            s.tokens = n
        units: list[_Piece] = []
        for s in sents:
            units.extend(self._hard_split(s, budget) if s.tokens > budget else [s])
        return units

    def budget_for(self, title: str, heading: str) -> int:
        """Tokens left for text once the title/heading that is embedded with it are counted."""
        head = " ".join(p for p in (title, heading) if p)
        head_tokens = self.count_tokens([head])[0] + 1 if head else 0
        return max(_MIN_BUDGET, self.params.chunk_tokens - head_tokens)

    def chunk(self, doc: Document) -> list[Chunk]:
        return list(self.iter_chunks(doc))

    def _counted(self, paras: list[tuple[str, int, int]]) -> list[_Piece]:
        pieces = [_Piece(t, a, b, 0) for t, a, b in paras]
        for p, n in zip(pieces, self.count_tokens([p.text for p in pieces]), strict=True):
            p.tokens = n
        return pieces

    def iter_chunks(self, doc: Document) -> Iterator[Chunk]:
        """The chunks of ``doc`` in order, produced as the text is walked (see the module docstring).

        A section is held back only while it might still fit in one chunk (its paragraphs' tokens add up to
        less than a few budgets); past that its paragraphs are packed as they arrive.
        """
        return self._chunks_of(doc, _iter_blocks(doc.text))

    def iter_parts(
        self, doc: Document, part_chars: int, cursor: PartCursor | None = None
    ) -> Iterator[ChunkPart]:
        """The chunks of a large document in parts of about ``part_chars`` characters of text, from ``cursor``.

        Why parts are chunked apart: an interrupted run must resume where it stopped without walking (and
        re-chunking: minutes on a 50 MB file) what it already stored. So a part ends at the end of a paragraph
        block, where the block walk can restart (:func:`_iter_blocks`), each part is chunked on its own (the
        heading in effect carried in, no overlap carried across), and the next part's :class:`PartCursor` is
        all a resume needs. Blocks are at most ``part_chars`` long, so a part is too (about twice at most),
        even for a file that is one line. A run from a cursor gives exactly the chunks, ids included, that an
        uninterrupted run gives after it. Chunks differ from :meth:`iter_chunks` only at part boundaries (the
        last chunk before one is not packed together with the first after it).
        """
        cursor = cursor or PartCursor()
        text = doc.text
        slice_chars = min(MAX_SLICE_CHARS, part_chars)
        blocks = _iter_blocks(text, slice_chars, start=cursor.next_char)
        while cursor.next_char < len(text):
            taken: list[tuple[str, str, int, int]] = []
            chars = 0
            next_char = len(text)
            heading = cursor.heading
            for block in blocks:
                taken.append(block)
                kind, body, _, end = block
                if kind == "heading":
                    heading = body
                    continue
                chars += len(body)
                if chars >= part_chars:
                    next_char = end
                    break
            chunks = list(self._chunks_of(doc, iter(taken), cursor.heading, cursor.index))
            cursor = PartCursor(next_char, cursor.index + len(chunks), heading)
            yield ChunkPart(chunks, cursor)

    def _chunks_of(
        self, doc: Document, blocks: Iterator[tuple[str, str, int, int]], heading: str = "", index: int = 0
    ) -> Iterator[Chunk]:
        overlap = self.params.overlap_tokens
        budget = self.budget_for(doc.title, heading)
        waiting: list[tuple[str, int, int]] = []  # paragraphs read, not yet counted
        held: list[_Piece] = []  # counted paragraphs of a section that may still fit whole
        held_tokens = 0
        packer: _Packer | None = None  # set once the section is known not to fit

        def absorb() -> list[list[_Piece]]:
            """Count the waiting paragraphs; pack them once the section cannot fit whole."""
            nonlocal held_tokens, packer, held
            groups: list[list[_Piece]] = []
            pieces = self._counted(waiting)
            waiting.clear()
            if packer is None:
                held.extend(pieces)
                held_tokens += sum(p.tokens for p in pieces)
                if held_tokens <= _FIT_FACTOR * budget:
                    return groups
                packer = _Packer(budget, overlap)
                pieces, held = held, []
            for p in pieces:
                for u in self._units(p, budget):
                    groups.extend(packer.add(u))
            return groups

        def end_section() -> list[list[_Piece]]:
            nonlocal held_tokens, packer, held
            groups = absorb() if waiting else []
            if packer is not None:
                groups.extend(packer.finish())
            elif held:
                whole = "\n\n".join(p.text for p in held)
                if self.count_tokens([whole])[0] <= budget:
                    groups.append([_Piece(whole, held[0].start, held[-1].end, 0)])
                else:
                    packer = _Packer(budget, overlap)
                    for p in held:
                        for u in self._units(p, budget):
                            groups.extend(packer.add(u))
                    groups.extend(packer.finish())
            held, held_tokens, packer = [], 0, None
            return groups

        def emit(groups: list[list[_Piece]]) -> Iterator[Chunk]:
            nonlocal index
            for group in groups:
                yield Chunk(
                    doc_id=doc.doc_id,
                    chunk_index=index,
                    text=_join(group),
                    title=doc.title,
                    heading=heading,
                    start_char=group[0].start,
                    end_char=group[-1].end,
                )
                index += 1

        for kind, text, start, end in blocks:
            if kind == "heading":
                yield from emit(end_section())
                heading = text
                budget = self.budget_for(doc.title, heading)
                continue
            waiting.append((text, start, end))
            if len(waiting) >= _COUNT_BATCH or sum(len(t) for t, _, _ in waiting) > MAX_SLICE_CHARS:
                yield from emit(absorb())
        yield from emit(end_section())


class _Packer:
    """Greedy packing of units into chunks of at most ``budget`` tokens, fed one unit at a time.

    A new chunk starts with trailing units of the previous one (up to ``overlap`` tokens, never all of it),
    dropped when they and the new unit do not fit together.
    """

    def __init__(self, budget: int, overlap: int) -> None:
        self.budget = budget
        self.overlap = overlap
        self.current: list[_Piece] = []
        self.size = 0

    def add(self, u: _Piece) -> list[list[_Piece]]:
        """Add a unit; returns the chunk it closed, if any."""
        current = self.current
        joiner = 1 if current else 0  # the newline between units costs about one token
        if current and self.size + joiner + u.tokens > self.budget:
            carry: list[_Piece] = []
            carried = 0
            for prev in reversed(current[1:] if len(current) > 1 else []):
                if carried + prev.tokens > self.overlap:
                    break
                carry.insert(0, prev)
                carried += prev.tokens + 1
            self.current = [*carry, u]
            self.size = sum(p.tokens for p in self.current) + len(self.current) - 1
            if self.size > self.budget:  # the carried overlap plus u does not fit: drop the overlap
                self.current, self.size = [u], u.tokens
            return [current]
        current.append(u)
        self.size += joiner + u.tokens
        return []

    def finish(self) -> list[list[_Piece]]:
        done = [self.current] if self.current else []
        self.current, self.size = [], 0
        return done

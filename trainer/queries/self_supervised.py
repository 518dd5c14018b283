"""Queries read from the collection itself: document titles / section headings, and inverse-cloze sentences."""

from __future__ import annotations

import random
from collections import defaultdict

from kret.errors import UserInputError
from kret.indexer.document import Chunk
from kret.trainer.queries.catalog import CollectionCatalog
from kret.trainer.queries.records import QueryStats, TrainQuery, normalize_text

SELF_SUPERVISED_KINDS = ("titles", "ict")
_MIN_ICT_SENTENCE = 10
_MIN_ICT_REST = 20


def self_supervised_queries(
    catalog: CollectionCatalog, kind: str, *, seed: int = 0, max_queries: int | None = 20000
) -> tuple[list[TrainQuery], QueryStats]:
    """Queries read from the collection itself, deterministic for a seed, at most ``max_queries``.

    ``titles``: a document title -> the document, and "title heading" -> the section's first chunk. A title
    shared by several documents is dropped (which one would be the positive? the others would be mined as
    "negatives" although they are about the same thing). ``ict`` (inverse cloze): one sentence of a chunk
    -> the rest of that chunk, so the pair does not reward copying the sentence back.
    """
    if kind not in SELF_SUPERVISED_KINDS:
        raise UserInputError(
            f"unknown self-supervised source {kind!r} (choose {' or '.join(SELF_SUPERVISED_KINDS)})"
        )
    stats = QueryStats(source=f"self-supervised:{kind}")
    stats.add("chunks", len(catalog))
    stats.add("documents", len(catalog.by_doc))
    if kind == "titles":
        out = _title_queries(catalog, stats)
        rng = random.Random(seed)
        rng.shuffle(out)
        if max_queries is not None and len(out) > max_queries:
            stats.add("capped", len(out) - max_queries)
            out = out[:max_queries]
    else:
        out = _ict_queries(catalog, stats, seed=seed, max_queries=max_queries)
    stats.add("kept", len(out))
    return out, stats


def _title_queries(catalog: CollectionCatalog, stats: QueryStats) -> list[TrainQuery]:
    cands: list[TrainQuery] = []
    for doc_id, chunks in catalog.by_doc.items():
        title = chunks[0].title.strip()
        if title:
            cands.append(TrainQuery(title, doc_id, None, "titles", f"title:{doc_id}"))
        else:
            stats.add("documents_without_title")
        seen_headings: set[str] = set()
        for c in chunks:
            heading = c.heading.strip()
            if not heading or heading in seen_headings or heading == title:
                continue
            seen_headings.add(heading)
            query = f"{title} {heading}".strip()
            cands.append(
                TrainQuery(query, doc_id, None, "headings", f"heading:{c.id}", positive_chunk_id=c.id)
            )
    by_query: dict[str, set[str]] = defaultdict(set)
    for q in cands:
        by_query[normalize_text(q.query)].add(q.positive_doc_id or "")
    out: list[TrainQuery] = []
    seen: set[str] = set()
    for q in cands:
        norm = normalize_text(q.query)
        if len(by_query[norm]) > 1:
            stats.add("dropped_ambiguous_title")
            continue
        if norm in seen:
            stats.add("dropped_duplicate")
            continue
        seen.add(norm)
        out.append(q)
    stats.add("titles", sum(1 for q in out if q.source == "titles"))
    stats.add("headings", sum(1 for q in out if q.source == "headings"))
    return out


def _ict_queries(
    catalog: CollectionCatalog, stats: QueryStats, *, seed: int, max_queries: int | None
) -> list[TrainQuery]:
    from kret.korean import get_kiwi

    order = list(catalog.chunks.values())
    order.sort(key=lambda c: (c.doc_id, c.chunk_index))
    random.Random(seed).shuffle(order)
    kiwi = get_kiwi()
    out: list[TrainQuery] = []
    seen: set[str] = set()
    step = 256
    for start in range(0, len(order), step):
        if max_queries is not None and len(out) >= max_queries:
            stats.add("capped", len(order) - start)
            break
        part = order[start : start + step]
        sentences = kiwi.split_into_sents([c.text for c in part])
        for c, sents in zip(part, sentences, strict=True):
            if max_queries is not None and len(out) >= max_queries:
                stats.add("capped")
                continue
            usable = [s for s in sents if len(s.text.strip()) >= _MIN_ICT_SENTENCE]
            if len(sents) < 2 or not usable:
                stats.add("chunks_too_short")
                continue
            rng = random.Random(f"{seed}:{c.id}")
            s = usable[rng.randrange(len(usable))]
            rest = " ".join((c.text[: s.start] + " " + c.text[s.end :]).split())
            sentence = " ".join(s.text.split())
            if len(rest) < _MIN_ICT_REST:
                stats.add("chunks_too_short")
                continue
            if sentence in seen:
                stats.add("dropped_duplicate")
                continue
            seen.add(sentence)
            passage = Chunk(c.doc_id, c.chunk_index, rest, title=c.title, heading=c.heading).embed_text
            out.append(TrainQuery(sentence, c.doc_id, passage, "ict", f"ict:{c.id}", positive_chunk_id=c.id))
    return out

"""Train / dev / held-out split of training queries by a *group* of documents, and what it keeps out of mining.

A held-out score only means "the model generalises" if nothing about the held-out part was seen in training.
Splitting by query is not enough: KorQuAD has ~6 questions per paragraph and ~7 paragraphs per article, so a
query-level split scores memorised paragraphs, and even a paragraph-level split leaves the held-out article's
other paragraphs (same topic, same names) in the training positives and negatives. So the split is by a group
key of the positive document: the document itself (``doc``), its ``title`` (an article), or any metadata key
of the indexed documents (``source``, ``product``...). Whole groups go to one side.

* **held-out**: ``heldout_fraction`` of the queries (whole groups), the gate's test set;
* **dev**: ``dev_fraction`` of the remaining queries (whole groups), for choosing hyper-parameters without
  touching the held-out set;
* **train**: the rest, minus any query whose text is also a held-out or dev query.

``excluded_docs`` are the documents of the held-out and dev groups — all of them, also the ones no query
points to — and mining never uses them as negatives: training against a held-out article's paragraphs would
teach the model about that article. The split is seeded and depends only on the queries and the collection.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kret.errors import UserInputError

from .queries import CollectionCatalog, TrainQuery, normalize_text

__all__ = ["BUILTIN_GROUPS", "Split", "group_of_doc", "split_queries"]

BUILTIN_GROUPS = ("doc", "title")


def group_of_doc(catalog: CollectionCatalog, by: str) -> Callable[[str], str]:
    """Document id -> group key. ``doc`` and ``title`` are built in; any other name is a metadata key.

    A document without the title or key is its own group (it cannot share a group it does not name). A
    metadata key that no document of the collection has is a user mistake, reported before any work.
    """
    if not by:
        raise UserInputError("--heldout-by needs doc, title or a metadata key")
    if by == "doc":
        return lambda d: d
    if by == "title":

        def by_title(d: str) -> str:
            chunks = catalog.by_doc.get(d)
            title = normalize_text(chunks[0].title) if chunks else ""
            return f"title:{title}" if title else f"doc:{d}"

        return by_title
    if not any(cs and by in cs[0].meta for cs in catalog.by_doc.values()):
        known = sorted({k for cs in catalog.by_doc.values() if cs for k in cs[0].meta})
        raise UserInputError(
            f"--heldout-by {by!r}: no document of the collection has that metadata key "
            f"(use doc, title{', or one of ' + ', '.join(known[:20]) if known else ''})"
        )

    def by_meta(d: str) -> str:
        chunks = catalog.by_doc.get(d)
        value = chunks[0].meta.get(by) if chunks else None
        return f"{by}:{value}" if value not in (None, "") else f"doc:{d}"

    return by_meta


@dataclass
class Split:
    train: list[TrainQuery]
    dev: list[TrainQuery]
    heldout: list[TrainQuery]
    by: str
    excluded_docs: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)


def _take_groups(
    keys: list[str], groups: dict[str, list[int]], target: int, total: int, taken: set[int]
) -> set[str]:
    chosen: set[str] = set()
    n = 0
    for key in keys:
        if n >= target:
            break
        size = len(groups[key])
        if len(taken) + n + size >= total:  # keep something to train on
            continue
        chosen.add(key)
        n += size
    return chosen


def split_queries(
    queries: Sequence[TrainQuery],
    catalog: CollectionCatalog,
    *,
    heldout_fraction: float = 0.1,
    dev_fraction: float = 0.0,
    by: str = "doc",
    seed: int = 0,
) -> Split:
    """Split ``queries`` into train / dev / held-out by whole groups (see the module docstring).

    ``dev_fraction`` is a share of what is left after the held-out part. At least one query lands in each
    non-empty part when its fraction is > 0 and there are at least two groups.
    """
    if not 0 <= heldout_fraction < 1:
        raise UserInputError(f"held-out fraction must be in [0, 1), got {heldout_fraction}")
    if not 0 <= dev_fraction < 1:
        raise UserInputError(f"dev fraction must be in [0, 1), got {dev_fraction}")
    key_of = group_of_doc(catalog, by)
    queries = list(queries)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        groups[key_of(q.positive_doc_id) if q.positive_doc_id else f"query:{q.qid}"].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total = len(queries)
    held_keys: set[str] = set()
    if heldout_fraction > 0 and total >= 2:
        held_keys = _take_groups(keys, groups, max(1, round(heldout_fraction * total)), total, set())
    held_idx = {i for k in held_keys for i in groups[k]}
    dev_keys: set[str] = set()
    if dev_fraction > 0:
        rest = [k for k in keys if k not in held_keys]
        dev_target = max(1, round(dev_fraction * (total - len(held_idx))))
        dev_keys = _take_groups(rest, groups, dev_target, total, held_idx)
    dev_idx = {i for k in dev_keys for i in groups[k]}
    heldout = [q for i, q in enumerate(queries) if i in held_idx]
    dev = [q for i, q in enumerate(queries) if i in dev_idx]
    kept_out_texts = {normalize_text(q.query) for q in (*heldout, *dev)}
    train = [
        q
        for i, q in enumerate(queries)
        if i not in held_idx and i not in dev_idx and normalize_text(q.query) not in kept_out_texts
    ]
    out_keys = held_keys | dev_keys
    excluded = {d for d in catalog.by_doc if key_of(d) in out_keys}
    excluded |= {q.positive_doc_id for q in (*heldout, *dev) if q.positive_doc_id}
    counts = {
        "groups": len(groups),
        "groups_heldout": len(held_keys),
        "groups_dev": len(dev_keys),
        "train": len(train),
        "dev": len(dev),
        "heldout": len(heldout),
        "train_dropped_same_text": total - len(held_idx) - len(dev_idx) - len(train),
        "docs_excluded_from_negatives": len(excluded),
    }
    return Split(train, dev, heldout, by, excluded, counts)

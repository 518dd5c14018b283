"""Training pairs for weakly supervised pre-training: Wikipedia title -> body, other pair files, mixing,
and E5/KaLM-style consistency filtering.

The KoE5-PT recipe pre-trains on Korean Wikipedia title/body pairs mixed 1:1 with another pair source.
Raw kowiki is a third empty stubs and many disambiguation, list and near-empty pages whose "body" says
nothing about the title; they teach the model nothing or teach it noise. Every filter here counts what it
removed, so a run can report where the pages went instead of silently shrinking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kret.errors import DatasetError, TrainingError, UserInputError

from .wiki import ReadStats, WikiPage, iter_json_rows

__all__ = [
    "MixStats",
    "Pair",
    "PairStats",
    "build_title_body_pairs",
    "consistency_filter",
    "cut_text",
    "is_disambiguation",
    "is_list_page",
    "mix_pairs",
    "read_pairs_jsonl",
    "write_pairs_jsonl",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One (query, positive passage) training example; ``pair_id`` traces it back to its source row."""

    query: str
    positive: str
    source: str
    pair_id: str


@dataclass
class PairStats:
    """Where every page went. Filters run in the order of the fields, and a page counts in the first only."""

    pages_read: int = 0
    empty_or_redirect: int = 0
    disambiguation: int = 0
    list_page: int = 0
    near_empty: int = 0
    duplicate_title: int = 0
    duplicate_body: int = 0
    kept: int = 0
    truncated: int = 0  # kept pairs whose positive was cut to the budget (not a removal)
    read: ReadStats = field(default_factory=ReadStats)

    @property
    def removed(self) -> dict[str, int]:
        return {
            "empty_or_redirect": self.empty_or_redirect,
            "disambiguation": self.disambiguation,
            "list_page": self.list_page,
            "near_empty": self.near_empty,
            "duplicate_title": self.duplicate_title,
            "duplicate_body": self.duplicate_body,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages_read": self.pages_read,
            "removed": self.removed,
            "kept": self.kept,
            "truncated": self.truncated,
            "reader": self.read.as_dict(),
        }

    def summary(self) -> str:
        removed = ", ".join(f"{k} {v:,}" for k, v in self.removed.items())
        return f"{self.pages_read:,} pages read; removed: {removed}; kept {self.kept:,} pairs"


# ---------------------------------------------------------------------------------------------------------
# Page filters
# ---------------------------------------------------------------------------------------------------------

_DISAMBIG_TITLE_RE = re.compile(r"\((?:동음이의|동음이의어|동명이인|disambiguation)\)\s*$", re.IGNORECASE)
# Lead sentences of kowiki disambiguation pages, from a survey of the 90 k AA/AB docs: "X는 다음을 가리킨다.",
# "X에는 다음과 같은 뜻이 있다.", "X의 다른 뜻은 다음과 같다.", "X는 다음 사람을 가리킨다.", "… 동음이의어가
# 있다." WikiExtractor drops the list that follows, so such a page is just that sentence.
_DISAMBIG_LEAD_RE = re.compile(
    r"(?:다음|아래)(?:과|와)?\s*(?:같은|같이)?\s*(?:의\s*)?(?:여러\s*)?"
    r"(?:뜻|의미|사람|인물|동음이의어|동명이인|항목|지명|대상|말|것들?|프로그램)"
    r"|(?:다음|아래)\s*(?:등|중\s*하나)?\s*(?:을|를|의)?\s*(?:가리|의미|뜻|일컫|말한|말하|부르|나타|지칭|이르)"
    r"|(?:다음|아래)(?:과|와)\s*같다|다음(?:이|과\s*같은\s*것들?이)\s*있다"
    r"|다른\s*뜻|여러\s*(?:가지의?\s*)?(?:뜻|의미)|동음이의|동명이인"
)
# Wording that only disambiguation pages use; enough on its own even when a list follows (XML, JSONL
# exports keep the list items, so those bodies are long).
_DISAMBIG_STRONG_RE = re.compile(
    r"(?:다음|아래)(?:과|와)?\s*(?:같은\s*|의\s*)?(?:뜻|의미)(?:이|가|을|를|으로|로|들이)\s*(?:있|쓰|가지|갖|지니|사용)"
    r"|(?:다음|아래)(?:을|를)\s*(?:가리키는|일컫는|의미하는|뜻하는)\s*말이다"
    r"|(?:다음|아래)(?:과|와)?\s*(?:같은\s*)?(?:동음이의어|동명이인)(?:이|가)\s*있다"
    r"|(?:다음|아래)\s*(?:사람|인물)\s*(?:등을|을|를)\s*가리킨다"
)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?。])\s+")
# A disambiguation lead plus its (dropped) list is short; a real article may *contain* "다음과 같다".
DISAMBIG_MAX_CHARS = 300
_LIST_TITLE_RE = re.compile(r"(?:^목록(?:\s|\(|$)|목록\s*(?:\([^()]*\))?\s*$)")


def _last_sentence(line: str) -> str:
    return _SENTENCE_END_RE.split(line.strip())[-1]


def is_disambiguation(page: WikiPage) -> bool:
    """Disambiguation page by explicit flag, ``(동음이의)`` title, or the wording of its lead."""
    if page.is_disambiguation or _DISAMBIG_TITLE_RE.search(page.title):
        return True
    lead = _last_sentence(page.text.split("\n", 1)[0]).rstrip()
    if not lead:
        return False
    if _DISAMBIG_STRONG_RE.search(lead):
        return True
    return (
        len(page.text) < DISAMBIG_MAX_CHARS
        and lead.endswith((".", ":"))
        and bool(_DISAMBIG_LEAD_RE.search(lead))
    )


def is_list_page(title: str) -> bool:
    """``… 목록``, ``… 목록 (지역구별)`` or ``목록 …``: a page of links, not prose about its title."""
    return bool(_LIST_TITLE_RE.search(title.strip()))


_REDIRECT_BODY_RE = re.compile(r"^\s*#\s*(?:redirect|넘겨주기)\b", re.IGNORECASE)


def _norm_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


# ---------------------------------------------------------------------------------------------------------
# Cutting a body to a budget
# ---------------------------------------------------------------------------------------------------------

_UNIT_RE = re.compile(r"[^\n]+")
_SENT_SPLIT_RE = re.compile(r"(?<=[.!?。])\s+(?=\S)")


def _units(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, whole_line) spans of sentences, in order; a span never ends inside a word."""
    for m in _UNIT_RE.finditer(text):
        line_start, line = m.start(), m.group(0)
        pos = 0
        pieces = _SENT_SPLIT_RE.split(line)
        whole = len(pieces) == 1
        for piece in pieces:
            idx = line.find(piece, pos)
            pos = idx + len(piece)
            if piece.strip():
                yield line_start + idx, line_start + pos, whole


def _looks_like_heading(text: str) -> bool:
    """WikiExtractor headings are short lines ("생애.", "어린 시절."), never a "…다." sentence."""
    return len(text) <= 30 and not text.rstrip().endswith(("다.", "다", "요.", "?", "!"))


def cut_text(
    text: str,
    *,
    max_chars: int | None = None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """The leading part of ``text`` that fits every given budget, ending at a sentence or line boundary.

    Whole sentences are taken greedily; only when the first sentence alone is too long is it cut between
    words. A word is never split: if not even one word fits, the result is empty. Token counts are summed
    per sentence (tokenising stops at the budget, not at the end of a long article) and the result is
    re-counted once, because subword tokenisers are not exactly additive, so the budget is a hard limit.
    ``count_tokens`` should count without special tokens (they would be counted once per sentence).
    """
    if token_budget is not None and count_tokens is None:
        raise UserInputError("a token budget needs a count_tokens callable (the model tokenizer)")
    if max_chars is None and token_budget is None:
        return text.strip()
    # Short texts: one count of the whole text usually settles it (tokenizers cost ~linear in length, so
    # this is skipped where the text is clearly longer than the budget).
    if (max_chars is None or len(text) <= max_chars) and (
        token_budget is None or (len(text) <= 3 * token_budget and count_tokens(text) <= token_budget)
    ):
        return text.strip()

    def fits(s: str) -> bool:
        if max_chars is not None and len(s) > max_chars:
            return False
        return token_budget is None or count_tokens(s) <= token_budget

    end = 0
    used_tokens = 0
    limit = len(text)  # end of the first sentence that did not fit
    kept_units: list[tuple[int, int, bool]] = []
    for start, stop, whole in _units(text):
        over = max_chars is not None and stop > max_chars
        if not over and token_budget is not None:
            n = count_tokens(text[start:stop])
            over = used_tokens + n > token_budget
        if over:
            limit = stop
            break
        if token_budget is not None:
            used_tokens += n
        kept_units.append((start, stop, whole))
        end = stop
    else:
        if fits(text):
            return text.strip()
    # A heading with nothing of its section after it reads as a dangling title: drop it.
    while (
        kept_units and kept_units[-1][2] and _looks_like_heading(text[kept_units[-1][0] : kept_units[-1][1]])
    ):
        kept_units.pop()
        end = kept_units[-1][1] if kept_units else 0
    while kept_units and not fits(text[:end]):
        kept_units.pop()
        end = kept_units[-1][1] if kept_units else 0
    if kept_units:
        return text[:end].strip()
    return _cut_words(text[:limit], fits)


def _cut_words(text: str, fits: Callable[[str], bool]) -> str:
    """Longest whitespace-delimited prefix that fits (binary search: a few tokenizer calls)."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    lo, hi = 0, len(ends)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[: ends[mid - 1]]):
            lo = mid
        else:
            hi = mid - 1
    return text[: ends[lo - 1]].strip() if lo else ""


# ---------------------------------------------------------------------------------------------------------
# Title -> body pairs
# ---------------------------------------------------------------------------------------------------------


def build_title_body_pairs(
    pages: Iterable[WikiPage],
    *,
    max_body_chars: int | None = None,
    body_token_budget: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    min_body_chars: int = 50,
    stats: PairStats,
) -> Iterator[Pair]:
    """Yield (title, leading body) pairs, filtering pages whose body cannot stand for their title.

    Filter order (a page is counted by the first that removes it): empty/redirect, disambiguation, list
    page, near-empty (``min_body_chars`` of the cleaned body), duplicate title, duplicate positive. The
    duplicate check hashes the cut positive, the text actually trained on: two pages with the same lead
    would otherwise be each other's false in-batch negative. Without a ``count_tokens`` callable the
    body is cut by ``max_body_chars`` only; a token budget without a counter is an error.
    """
    if body_token_budget is not None and count_tokens is None:
        raise UserInputError("body_token_budget needs count_tokens (pass the model tokenizer's counter)")
    if min_body_chars < 0:
        raise UserInputError("min_body_chars must be >= 0")
    seen_titles: set[str] = set()
    seen_bodies: set[bytes] = set()
    for page in pages:
        stats.pages_read += 1
        body = page.text.strip()
        if not body or _REDIRECT_BODY_RE.match(body):
            stats.empty_or_redirect += 1
            continue
        if is_disambiguation(page):
            stats.disambiguation += 1
            continue
        if is_list_page(page.title):
            stats.list_page += 1
            continue
        if len(body) < min_body_chars:
            stats.near_empty += 1
            continue
        title_key = _norm_key(page.title)
        if title_key in seen_titles:
            stats.duplicate_title += 1
            continue
        positive = cut_text(
            body, max_chars=max_body_chars, token_budget=body_token_budget, count_tokens=count_tokens
        )
        if not positive:
            stats.near_empty += 1
            continue
        digest = hashlib.blake2b(_norm_key(positive).encode("utf-8"), digest_size=16).digest()
        if digest in seen_bodies:
            stats.duplicate_body += 1
            continue
        seen_titles.add(title_key)
        seen_bodies.add(digest)
        if len(positive) < len(body):
            stats.truncated += 1
        stats.kept += 1
        yield Pair(
            query=page.title.strip(),
            positive=positive,
            source=page.source,
            pair_id=f"{page.source}:{page.page_id}" if page.page_id else f"{page.source}:{title_key}",
        )


# ---------------------------------------------------------------------------------------------------------
# Pair files
# ---------------------------------------------------------------------------------------------------------

_QUERY_KEYS = ("query", "anchor", "question")
_POSITIVE_KEYS = ("positive", "pos", "passage", "text", "document")
_ID_KEYS = ("pair_id", "id", "query_id")


def read_pairs_jsonl(path: Path, *, source: str | None = None) -> Iterator[Pair]:
    """Read any query/positive JSONL (``query``/``anchor``/``question`` + ``positive``/``pos``/``passage``/
    ``text``/``document``; a list positive gives its first item).

    A bad line raises ``DatasetError`` naming file and line rather than being skipped: a training set that
    silently lost rows is harder to notice than a run that stops. Blank lines are allowed. ``source`` falls
    back to the row's ``source`` and then the file name; ids fall back to a content hash so they are stable.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    default_source = source or path.name.split(".", 1)[0]
    for _lineno, where, row in iter_json_rows(path):
        query = next((row[k] for k in _QUERY_KEYS if k in row), None)
        positive = next((row[k] for k in _POSITIVE_KEYS if k in row), None)
        if isinstance(positive, list):
            if not positive:
                raise DatasetError(f"{where}: the positive list is empty")
            positive = positive[0]
        if not isinstance(query, str) or not query.strip():
            raise DatasetError(f"{where}: needs a non-empty string in one of {', '.join(_QUERY_KEYS)}")
        if not isinstance(positive, str) or not positive.strip():
            raise DatasetError(
                f"{where}: needs a non-empty string (or list of strings) in one of {', '.join(_POSITIVE_KEYS)}"
            )
        row_source = source or (row["source"] if isinstance(row.get("source"), str) else default_source)
        pid = next((row[k] for k in _ID_KEYS if row.get(k) not in (None, "")), None)
        if pid is None:
            pid = hashlib.sha1(f"{query}\x1f{positive}".encode()).hexdigest()[:16]
        yield Pair(query=query.strip(), positive=positive.strip(), source=row_source, pair_id=str(pid))


def write_pairs_jsonl(pairs: Iterable[Pair], path: Path) -> str:
    """Write pairs as JSONL atomically (temp file + rename) and return the file's sha256.

    The hash goes into the training lineage, so a model can be traced to the exact data it saw; the rename
    means a crashed run never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for p in pairs:
                line = (
                    json.dumps(
                        {"query": p.query, "positive": p.positive, "source": p.source, "pair_id": p.pair_id},
                        ensure_ascii=False,
                    )
                    + "\n"
                ).encode("utf-8")
                digest.update(line)
                fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Mixing
# ---------------------------------------------------------------------------------------------------------


@dataclass
class MixStats:
    """Counts of a mix; ``primary_dropped`` > 0 means the secondary set was too small for the ratio."""

    primary_in: int = 0
    secondary_in: int = 0
    primary_used: int = 0
    secondary_used: int = 0

    @property
    def primary_dropped(self) -> int:
        return self.primary_in - self.primary_used

    @property
    def total(self) -> int:
        return self.primary_used + self.secondary_used


def mix_pairs(
    primary: Sequence[Pair],
    secondary: Sequence[Pair],
    ratio: float,
    seed: int,
    *,
    stats: MixStats | None = None,
) -> list[Pair]:
    """Mix two pair sets at ``ratio`` = secondary:primary (1.0 = the KoE5-PT 1:1 mix) and shuffle.

    Secondary pairs are sampled without replacement: repeating them would put the same passage twice in a
    batch, a false negative for in-batch contrastive loss. When the secondary set is too small for the
    ratio, the primary set is subsampled instead, so the ratio holds. Same inputs and seed, same list.
    """
    if not (ratio >= 0 and np.isfinite(ratio)):
        raise UserInputError(f"mix ratio must be a finite number >= 0, got {ratio}")
    rng = random.Random(seed)
    n_prim = len(primary)
    n_sec = min(len(secondary), round(ratio * n_prim))
    if ratio > 0 and n_sec < round(ratio * n_prim):
        n_prim = min(n_prim, round(n_sec / ratio))
    prim_idx = sorted(rng.sample(range(len(primary)), n_prim)) if n_prim < len(primary) else range(n_prim)
    sec_idx = rng.sample(range(len(secondary)), n_sec)
    mixed = [primary[i] for i in prim_idx] + [secondary[i] for i in sec_idx]
    rng.shuffle(mixed)
    if stats is not None:
        stats.primary_in, stats.secondary_in = len(primary), len(secondary)
        stats.primary_used, stats.secondary_used = n_prim, n_sec
    log.info(
        "mixed %d primary (of %d) + %d secondary (of %d) pairs at ratio %.3g",
        n_prim,
        len(primary),
        n_sec,
        len(secondary),
        ratio,
    )
    return mixed


# ---------------------------------------------------------------------------------------------------------
# Consistency filtering
# ---------------------------------------------------------------------------------------------------------


def _encode(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], batch_size: int, what: str
) -> np.ndarray:
    chunks = []
    for i in range(0, len(texts), batch_size):
        batch = texts[i : i + batch_size]
        emb = np.asarray(encode(batch), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(batch):
            raise TrainingError(f"the {what} encoder returned shape {emb.shape} for {len(batch)} texts")
        chunks.append(emb)
    out = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def consistency_filter(
    pairs: Sequence[Pair],
    encode_queries: Callable[[list[str]], np.ndarray],
    encode_passages: Callable[[list[str]], np.ndarray],
    top_k: int = 2,
    sample_size: int = 1000,
    seed: int = 0,
    *,
    batch_size: int = 256,
) -> tuple[list[Pair], int]:
    """Keep a pair only if a first-round model ranks its positive in the top ``top_k`` among
    ``sample_size`` random other passages of the set (E5's consistency filter, KaLM's ranking filter).

    Negatives are drawn from the *distinct* passages of the set (several queries often share one
    article), so a passage that is some other pair's positive but has the same text as this pair's is
    never its negative. Each query batch shares one random sample, so scoring is one matrix product per
    batch; every query is ranked against exactly ``min(sample_size, distinct passages - 1)`` others. A
    negative must score higher (beyond 1e-6) to push the positive down.
    """
    if top_k < 1:
        raise UserInputError("top_k must be >= 1")
    if sample_size < 1:
        raise UserInputError("sample_size must be >= 1")
    if batch_size < 1:
        raise UserInputError("batch_size must be >= 1")
    n = len(pairs)
    if n < 2:
        return list(pairs), 0
    # Encode each distinct passage once: query sets often share positives (several questions, one article).
    passage_index: dict[str, int] = {}
    pos_of = np.empty(n, dtype=np.int64)
    for i, p in enumerate(pairs):
        pos_of[i] = passage_index.setdefault(p.positive, len(passage_index))
    d = _encode(encode_passages, list(passage_index), batch_size, "passage")
    m = d.shape[0]
    if m < 2:
        return list(pairs), 0
    rng = np.random.default_rng(seed)
    s = min(sample_size, m - 1)
    keep = np.zeros(n, dtype=bool)
    for b0 in range(0, n, batch_size):
        rows = np.arange(b0, min(n, b0 + batch_size))
        # Queries are encoded batch by batch: only the passage matrix is held whole.
        q = _encode(encode_queries, [pairs[i].query for i in rows], batch_size, "query")
        if q.shape[1] != d.shape[1]:
            raise TrainingError(f"query and passage embeddings differ in size ({q.shape[1]} vs {d.shape[1]})")
        own_passage = pos_of[rows]
        # One extra draw so that after removing the pair's own passage there are still s negatives.
        sample = rng.choice(m, size=s + 1, replace=False)
        scores = q @ d[sample].T  # (batch, s+1)
        mask = sample[None, :] == own_passage[:, None]
        # Rows whose own passage was not drawn drop the last draw instead, so every row ranks against s.
        mask[~mask.any(axis=1), -1] = True
        positive_scores = np.einsum("ij,ij->i", q, d[own_passage])
        higher = (scores > positive_scores[:, None] + 1e-6) & ~mask
        keep[rows] = higher.sum(axis=1) < top_k
    kept = [p for p, k in zip(pairs, keep, strict=True) if k]
    dropped = n - len(kept)
    log.info("consistency filter (top-%d of %d): kept %d, dropped %d", top_k, s, len(kept), dropped)
    return kept, dropped

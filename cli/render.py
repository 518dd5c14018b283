"""How search results look in the terminal and in ``--json``: one place, shared by ``kret search`` and the
interactive prompt, so both print the same thing.

The snippet logic itself (which sentences, which spans) lives in :mod:`kret.engine.snippets`; this module only
turns it into a rich table or JSON lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kret.cli.common import print_json
from kret.engine.snippets import Snippet, SnippetMaker

if TYPE_CHECKING:
    from kret.engine.sparse import KiwiBM25Encoder
    from kret.engine.types import Hit

HIGHLIGHT_STYLE = "bold yellow"
_BRANCH_ABBR = {"dense": "d", "sparse": "s"}


def marked(text: str, spans: Sequence[tuple[int, int]], style: str = HIGHLIGHT_STYLE) -> Text:
    """``text`` as rich Text (no markup parsing: a chunk may contain ``[brackets]``) with ``spans`` styled."""
    out = Text(text)
    for a, b in spans:
        out.stylize(style, a, b)
    return out


def shown_path(path: str) -> str:
    """A path under the working directory is shown relative to it (shorter in a narrow column); JSON keeps
    the stored absolute path."""
    import os

    cwd = os.getcwd().rstrip(os.sep) + os.sep
    return path[len(cwd) :] if path.startswith(cwd) else path


def branch_ranks(hit: Hit) -> str:
    """``d#1 s#3``: the hit's rank in each branch that found it (a missing branch did not return it)."""
    return " ".join(f"{_BRANCH_ABBR.get(name, name[:1])}#{b.rank}" for name, b in hit.branches.items())


def hit_records(
    hits: Sequence[Hit], query: str, encoder: KiwiBM25Encoder | None = None
) -> list[dict[str, Any]]:
    """The ``--json`` form: each hit's own fields (full ``text`` kept), plus ``highlights`` (character offsets
    of the query's matched terms in ``text``) and ``snippet`` (its text, spans into it, and the rule that
    chose it)."""
    snippets = SnippetMaker(query, encoder).make_many([hit.text for hit in hits])
    records = []
    for hit, snip in zip(hits, snippets, strict=True):
        rec = hit.to_dict()
        rec["highlights"] = [list(s) for s in snip.highlights]
        rec["snippet"] = snip.to_dict()
        records.append(rec)
    return records


def hits_table(
    hits: Sequence[Hit], query: str, encoder: KiwiBM25Encoder | None = None, *, full: bool = False
) -> Table:
    """One row per hit: rank, fused score with per-branch ranks, title/path, and the snippet (or, with
    ``full``, the whole chunk) with the query's matched terms highlighted."""
    snippets = SnippetMaker(query, encoder).make_many([hit.text for hit in hits])
    table = Table(
        show_lines=True, caption="d#/s#: rank in the dense / Kiwi BM25 branch", caption_justify="left"
    )
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("title / path", max_width=36, overflow="fold")
    table.add_column("text" if full else "why it matched", overflow="fold")
    for hit, snip in zip(hits, snippets, strict=True):
        body = marked(hit.text, snip.highlights) if full else snippet_text(snip)
        where = Text()
        if hit.title:
            where.append(hit.title, style="bold")
            where.append("\n")
        where.append(shown_path(hit.path))
        score = Text(f"{hit.score:.4f}\n")
        score.append(branch_ranks(hit), style="dim")
        table.add_row(str(hit.rank), score, where, body)
    return table


def snippet_text(snip: Snippet) -> Text:
    text = marked(snip.text, snip.spans)
    if snip.basis in ("overlap", "lead"):
        text.append(
            "\n(no query term; " + ("closest sentence" if snip.basis == "overlap" else "opening") + ")",
            style="dim italic",
        )
    return text


def print_hits(
    hits: Sequence[Hit],
    query: str,
    console: Console,
    *,
    encoder: KiwiBM25Encoder | None = None,
    full: bool = False,
    as_json: bool = False,
) -> None:
    """What ``kret search`` prints: JSON lines, ``no results``, or the table."""
    if as_json:
        for rec in hit_records(hits, query, encoder):
            print_json(rec)
        return
    if not hits:
        console.print("no results")
        return
    console.print(hits_table(hits, query, encoder, full=full))

"""``kret search`` without a query (or with ``-i``): a prompt that keeps everything loaded between questions.

A person exploring a corpus asks many questions in a row; a new process per question pays the model load,
Kiwi's dictionary and opening the collection every time (seconds), while a warm query costs milliseconds.
The prompt opens one :class:`~kret.engine.search.Searcher` (``Kret.open()``), warms it up with one throwaway
query, then answers each line in the same format as ``kret search`` and states how long that question took.

Lines starting with ``:`` change the options of the following questions (``:k 5``, ``:mode sparse``,
``:where dept=인사``, ``:fusion rrf``, ``:help`` lists them all); every option is validated the way the inline
flags are, and a bad one is one line of error, never the end of the session. Ctrl-D (or ``:q``) ends it,
Ctrl-C abandons the current line. History is kept by readline in ``KRET_HOME/search_history``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from kret.engine.types import SearchFilter
from kret.errors import KretError, UserInputError

if TYPE_CHECKING:
    from kret.api import Kret
    from kret.engine.search import Searcher

HISTORY_FILE = "search_history"
HISTORY_LENGTH = 1000
PROMPT = "kret> "


@dataclass
class PromptState:
    """What the next question is asked with: SearchOptions overrides, the filter and the output form."""

    collection: str | None = None
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    filter: SearchFilter = field(default_factory=SearchFilter)
    full: bool = False
    as_json: bool = False


class Quit(Exception):
    """Raised by ``:q`` to end the session."""


def _int(value: str, name: str, low: int = 1) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UserInputError(f":{name} expects an integer, got {value!r}") from None
    if n < low:
        raise UserInputError(f":{name} must be at least {low}")
    return n


def _float(value: str, name: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise UserInputError(f":{name} expects a number, got {value!r}") from None
    if not x > 0:
        raise UserInputError(f":{name} must be positive")
    return x


class Session:
    """The prompt's state machine, separate from terminal I/O so tests can drive it line by line."""

    def __init__(self, kr: Kret, state: PromptState, out: Console, err: Console) -> None:
        self.kr = kr
        self.state = state
        self.out = out
        self.err = err
        self.searcher: Searcher | None = None
        self.queries = 0

    # lifecycle --------------------------------------------------------------------------------------
    def open(self) -> float:
        """Open the collection, load model and Kiwi, run one throwaway query; returns the seconds it took."""
        started = time.perf_counter()
        self.searcher = self.kr.open(self.state.collection, self.state.model)
        self.searcher.embedder.encode_queries(["준비"])
        self.searcher.encoder.terms("준비")  # loads the shared Kiwi
        return time.perf_counter() - started

    def close(self) -> None:
        if self.searcher is not None:
            self.searcher.collection.close()
            self.searcher = None

    # one line ---------------------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        """Answer a question or apply a ``:command``; a ``KretError`` is printed as one line."""
        line = line.strip()
        if not line:
            return
        try:
            if line.startswith(":"):
                self.command(line[1:])
            else:
                self.ask(line)
        except KretError as exc:
            self.err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)

    def ask(self, query: str) -> None:
        from kret.cli.render import print_hits

        assert self.searcher is not None, "open() first"
        opts = self.kr.search_options(**self.state.options)
        started = time.perf_counter()
        hits = self.searcher.search(query, opts, self.state.filter)
        searched = time.perf_counter()
        print_hits(
            hits,
            query,
            self.out,
            encoder=self.searcher.encoder,
            full=self.state.full,
            as_json=self.state.as_json,
        )
        shown = time.perf_counter()
        self.queries += 1
        self.err.print(
            f"[dim]{len(hits)} hit{'' if len(hits) == 1 else 's'} · search {1000 * (searched - started):.1f} ms"
            f" + snippets {1000 * (shown - searched):.1f} ms[/]",
            highlight=False,
        )

    # :commands --------------------------------------------------------------------------------------
    def command(self, text: str) -> None:
        name, _, arg = text.strip().partition(" ")
        arg = arg.strip()
        handler = _COMMANDS.get(name.lower())
        if handler is None:
            raise UserInputError(f"unknown command :{name} (:help lists them)")
        handler[0](self, arg)

    def _set_option(self, key: str, value: Any) -> None:
        """Set a SearchOptions override, validated now (so the error comes with the command, not later)."""
        options = {**self.state.options, key: value}
        self.kr.search_options(**options)
        self.state.options = options
        self.err.print(f"[dim]{key} = {value}[/]", highlight=False)

    def cmd_k(self, arg: str) -> None:
        self._set_option("k", _int(arg, "k"))

    def cmd_mode(self, arg: str) -> None:
        self._set_option("mode", arg.lower())

    def cmd_fusion(self, arg: str) -> None:
        self._set_option("fusion", arg.lower())

    def cmd_prefetch(self, arg: str) -> None:
        self._set_option("prefetch_k", _int(arg, "prefetch"))

    def cmd_weights(self, arg: str) -> None:
        parts = arg.split()
        if len(parts) != 2:
            raise UserInputError(":weights expects two numbers: DENSE SPARSE (RRF only)")
        options = {
            **self.state.options,
            "dense_weight": _float(parts[0], "weights"),
            "sparse_weight": _float(parts[1], "weights"),
        }
        self.kr.search_options(**options)
        self.state.options = options
        self.err.print(f"[dim]weights = dense {parts[0]}, sparse {parts[1]}[/]", highlight=False)

    def cmd_where(self, arg: str) -> None:
        if not arg:
            self.err.print(f"where = {self.state.filter.where or '{}'}", highlight=False)
            return
        if arg == "-":
            self._filter(where={})
            return
        from kret.cli.main import _parse_where

        self._filter(where={**self.state.filter.where, **_parse_where((arg,))})

    def cmd_type(self, arg: str) -> None:
        self._filter(source_types=[t for t in arg.replace(",", " ").split() if t != "-"])

    def cmd_path(self, arg: str) -> None:
        self._filter(path_prefix=None if arg in ("", "-") else arg)

    def cmd_glob(self, arg: str) -> None:
        self._filter(path_glob=None if arg in ("", "-") else arg)

    def cmd_clear(self, arg: str) -> None:  # noqa: ARG002 - every command takes its argument
        self._filter(path_prefix=None, path_glob=None, source_types=[], where={})

    def _filter(self, **changes: Any) -> None:
        self.state.filter = replace(self.state.filter, **changes)
        self.err.print(f"[dim]filter = {_describe_filter(self.state.filter)}[/]", highlight=False)

    def cmd_full(self, arg: str) -> None:
        self.state.full = _toggle(arg, self.state.full, "full")
        self.err.print(f"[dim]full = {self.state.full}[/]", highlight=False)

    def cmd_json(self, arg: str) -> None:
        self.state.as_json = _toggle(arg, self.state.as_json, "json")
        self.err.print(f"[dim]json = {self.state.as_json}[/]", highlight=False)

    def cmd_collection(self, arg: str) -> None:
        if not arg:
            self.err.print(f"collection = {self.searcher.collection.name if self.searcher else '-'}")
            return
        old = self.searcher
        self.state = replace(self.state, collection=arg)
        self.searcher = None
        try:
            if old is not None and old.collection.name == arg:
                self.searcher = old
                return
            if old is not None:
                old.collection.close()  # Edge allows one opener: release before opening another
            seconds = self.open()
        except BaseException:
            self.close()
            raise
        self.err.print(f"[dim]collection {arg} opened in {seconds:.1f} s[/]", highlight=False)

    def cmd_show(self, arg: str) -> None:  # noqa: ARG002
        opts = self.kr.search_options(**self.state.options)
        name = self.searcher.collection.name if self.searcher else "-"
        self.err.print(
            f"collection {name}; k {opts.k}; mode {opts.mode}; fusion {opts.fusion}; prefetch {opts.prefetch_k}; "
            f"weights {opts.dense_weight}/{opts.sparse_weight}; filter {_describe_filter(self.state.filter)}; "
            f"full {self.state.full}; json {self.state.as_json}",
            highlight=False,
        )

    def cmd_help(self, arg: str) -> None:  # noqa: ARG002
        self.err.print(HELP, highlight=False, markup=False)

    def cmd_quit(self, arg: str) -> None:  # noqa: ARG002
        raise Quit


def _toggle(arg: str, current: bool, name: str) -> bool:
    if not arg:
        return not current
    if arg.lower() in ("on", "true", "1", "yes"):
        return True
    if arg.lower() in ("off", "false", "0", "no"):
        return False
    raise UserInputError(f":{name} takes on or off, got {arg!r}")


def _describe_filter(flt: SearchFilter) -> str:
    parts = []
    if flt.path_prefix:
        parts.append(f"path {flt.path_prefix}")
    if flt.path_glob:
        parts.append(f"glob {flt.path_glob}")
    if flt.source_types:
        parts.append(f"type {','.join(flt.source_types)}")
    parts.extend(f"{k}={v}" for k, v in flt.where.items())
    return ", ".join(parts) or "none"


_COMMANDS: dict[str, tuple[Callable[[Session, str], None], str]] = {
    "k": (Session.cmd_k, ":k N                 results per question"),
    "mode": (Session.cmd_mode, ":mode dense|sparse|hybrid"),
    "fusion": (Session.cmd_fusion, ":fusion dbsf|rrf|adaptive  how hybrid fuses its branches"),
    "prefetch": (Session.cmd_prefetch, ":prefetch N          candidates per branch before fusion"),
    "weights": (Session.cmd_weights, ":weights D S         RRF branch weights (dense, sparse)"),
    "where": (
        Session.cmd_where,
        ":where key=value     add a payload match (':where -' clears, ':where' shows)",
    ),
    "type": (Session.cmd_type, ":type pdf md         only these file types (':type -' clears)"),
    "path": (Session.cmd_path, ":path PREFIX         only documents under a path (':path -' clears)"),
    "glob": (Session.cmd_glob, ":glob PATTERN        only paths matching a glob (':glob -' clears)"),
    "clear": (Session.cmd_clear, ":clear               drop every filter"),
    "full": (Session.cmd_full, ":full [on|off]       whole chunks instead of snippets"),
    "json": (Session.cmd_json, ":json [on|off]       JSON lines, as --json"),
    "collection": (Session.cmd_collection, ":collection NAME     switch collection"),
    "show": (Session.cmd_show, ":show                the current options"),
    "help": (Session.cmd_help, ":help                this list"),
    "q": (Session.cmd_quit, ":q                   quit (or Ctrl-D)"),
}
_COMMANDS.update(
    {"h": _COMMANDS["help"], "?": _COMMANDS["help"], "quit": _COMMANDS["q"], "exit": _COMMANDS["q"]}
)
_COMMANDS["c"] = _COMMANDS["collection"]

HELP = "Type a question, or a command:\n" + "\n".join(
    f"  {text}" for name, (_, text) in _COMMANDS.items() if name not in ("h", "?", "quit", "exit", "c")
)


# terminal loop ------------------------------------------------------------------------------------------
class _History:
    """readline history in ``KRET_HOME/search_history``; a no-op where readline is missing (Windows)."""

    def __init__(self, path: Path, interactive: bool) -> None:
        self.path = path
        self.interactive = interactive
        try:
            import readline
        except ImportError:  # pragma: no cover - platform without readline
            self.readline = None
            return
        self.readline = readline
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.clear_history()
            if path.is_file():
                readline.read_history_file(str(path))
        except OSError:
            pass

    def add(self, line: str) -> None:
        # On a terminal input() records the line itself; piped input does not go through readline.
        if self.readline is not None and not self.interactive and line.strip():
            self.readline.add_history(line)

    def save(self) -> None:
        if self.readline is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(str(self.path))
        except OSError:
            pass


def run_prompt(
    kr: Kret,
    state: PromptState,
    out: Console,
    err: Console,
    *,
    read_line: Callable[[str], str] = input,
) -> int:
    """The interactive loop; returns the number of questions answered. Ends on EOF (Ctrl-D) or ``:q``."""
    tty = sys.stdin.isatty()
    history = _History(kr.settings.home / HISTORY_FILE, tty)
    session = Session(kr, state, out, err)
    err.print("[dim]loading the model, Kiwi and the collection…[/]")
    seconds = session.open()
    assert session.searcher is not None
    err.print(
        f"collection [bold]{session.searcher.collection.name}[/] ({session.searcher.model_name}) ready in "
        f"{seconds:.1f} s — type a question, :help for options, Ctrl-D to quit",
        highlight=False,
    )
    prompt = PROMPT if tty else ""
    try:
        while True:
            try:
                line = read_line(prompt)
            except EOFError:
                if tty:
                    err.print()
                break
            except KeyboardInterrupt:
                err.print("[dim](Ctrl-D to quit)[/]")
                continue
            history.add(line)
            try:
                session.handle(line)
            except Quit:
                break
            except KeyboardInterrupt:
                err.print("[yellow]interrupted[/] [dim](Ctrl-D to quit)[/]")
    finally:
        session.close()
        history.save()
    return session.queries


def start_prompt(
    kr: Kret,
    collection: str | None,
    model: str | None,
    flt: SearchFilter,
    options: dict[str, Any],
    *,
    full: bool = False,
    as_json: bool = False,
) -> int:
    """``kret search -i``: the prompt, starting from the command line's options (``None`` = settings)."""
    from kret.cli.common import console, out

    state = PromptState(
        collection=collection,
        model=model,
        options={key: value for key, value in options.items() if value is not None},
        filter=flt,
        full=full,
        as_json=as_json,
    )
    return run_prompt(kr, state, out, console)

"""Shared CLI plumbing: settings from flags, one-line errors, progress bars, JSON output."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from kret.errors import KretError

# Every command's click context: -h as well as --help, help text up to 110 columns.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

console = Console(stderr=True)
out = Console()


def get_kret(ctx: click.Context, **overrides: Any):
    """The API object for this invocation, built once from env, kret.toml and global flags."""
    from kret.api import Kret

    obj = ctx.ensure_object(dict)
    if "kret" not in obj:
        obj["kret"] = Kret(**{**obj.get("overrides", {}), **overrides})
    return obj["kret"]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str))


def run_cli(entry: Callable[..., Any]) -> None:
    """Run the click group: kret errors become one line and an exit code; Ctrl-C/SIGTERM exit 130."""

    def _term(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        code = entry(standalone_mode=False)
    except KretError as exc:
        # escape: a message may hold brackets (pip install 'kret[plot]') that rich would read as markup
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    # Without standalone mode, click returns a command's ``ctx.exit(n)`` instead of raising it: an
    # interrupted `kret index` (130) would otherwise exit 0.
    if isinstance(code, int) and code:
        sys.exit(code)


def rich_progress(enabled: bool = True):
    """The one progress-bar layout of the CLI: label, bar, n/total, a free text field, elapsed, remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


class ProgressView:
    """Base of the CLI's progress callbacks: the library calls ``view(stage=..., advance=..., ...)`` and
    the view renders it; ``with`` starts and stops the live display."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = rich_progress(enabled)
        self.tasks: dict[str, Any] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


class IndexProgress(ProgressView):
    """Indexing: files read, then documents written, with the chunks and (unpadded) tokens embedded per
    second. Chunks are embedded sorted by length, so a document is counted when its last chunk is done;
    the chunk and token rates move with every batch."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.chunks = 0
        self.tokens = 0
        self.started: float | None = None

    def __call__(
        self,
        stage: str | None = None,
        total: int | None = None,
        advance: int = 0,
        chunks: int = 0,
        note: str | None = None,
        tokens: int = 0,
        **_: Any,
    ) -> None:
        import time

        if note:
            if self.enabled:
                console.print(f"[dim]{note}[/]")
            return
        if stage is None:
            return
        label = {"read": "reading files", "embed": "embedding documents", "query": "running queries"}.get(
            stage, stage
        )
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(label, total=total, extra="")
            if stage == "embed":
                self.started = time.perf_counter()
        task = self.tasks[stage]
        if total is not None:
            self.progress.update(task, total=total)
        self.chunks += chunks
        self.tokens += tokens
        extra = ""
        if stage == "embed" and self.started is not None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            extra = f"{self.chunks} chunks, {self.chunks / elapsed:.1f} chunks/s"
            if self.tokens:
                extra += f", {self.tokens / elapsed:,.0f} tokens/s"
        self.progress.update(task, advance=advance, extra=extra)

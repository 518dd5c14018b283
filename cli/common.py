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


# Seconds between two progress lines of one task when stderr is not a terminal (a log file, nohup, a pipe).
LINE_INTERVAL_S = 30.0


def rich_progress(enabled: bool = True):
    """The one progress-bar layout of the CLI: label, bar, n/total, a free text field, elapsed, remaining.
    On a stderr that is not a terminal the same tasks are written as plain lines (``line_progress``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if enabled and not console.is_terminal:
        return line_progress(LINE_INTERVAL_S)
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


def line_progress(interval: float):
    """Progress for a stderr that is not a terminal: rich redraws a bar only on a terminal and writes it to a
    file once, when it stops — an hour of `kret train` under nohup or in a CI log said nothing until the end.
    Here every task is a plain line when it starts, at most every ``interval`` seconds while it runs, and
    when it completes (a task that starts again, like the gate's second evaluation, is written again)."""
    import time

    from rich.progress import Progress, Task, TaskID

    def _duration(seconds: float) -> str:
        m, s = divmod(int(seconds), 60)
        h, m = divmod(m, 60)
        return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"

    def _line(task: Task) -> str:
        done = f"{task.completed:,.0f}"
        if task.total is not None:
            done += f"/{task.total:,.0f}"
            if task.total:
                done += f" ({100 * task.completed / task.total:.0f}%)"
        parts = [f"{task.description}: {done}"]
        if task.fields.get("extra"):
            parts.append(str(task.fields["extra"]))
        parts.append(f"{_duration(task.elapsed or 0)} elapsed")
        if not task.finished and task.time_remaining is not None:
            parts.append(f"~{_duration(task.time_remaining)} left")
        return ", ".join(parts)

    class LineProgress(Progress):
        def __init__(self) -> None:
            super().__init__(console=console, disable=True)
            self._last_line: dict[TaskID, float] = {}
            self._last_completed: dict[TaskID, float] = {}
            self._written_finished: set[TaskID] = set()

        def update(self, task_id: TaskID, **kwargs: Any) -> None:
            super().update(task_id, **kwargs)
            self._maybe_write(task_id)

        def advance(self, task_id: TaskID, advance: float = 1) -> None:
            super().advance(task_id, advance)
            self._maybe_write(task_id)

        def _maybe_write(self, task_id: TaskID) -> None:
            task = self._tasks[task_id]
            finished = task.total is not None and task.completed >= task.total
            if not finished:
                self._written_finished.discard(task_id)
            elif task_id in self._written_finished:
                return
            restarted = task.completed < self._last_completed.get(task_id, 0)
            self._last_completed[task_id] = task.completed
            now = time.monotonic()
            last = self._last_line.get(task_id)
            if last is None or finished or restarted or now - last >= interval:
                self._last_line[task_id] = now
                if finished:
                    self._written_finished.add(task_id)
                self.console.print(_line(task), highlight=False, markup=False, soft_wrap=True)

    return LineProgress()


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

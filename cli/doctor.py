"""``kret doctor``: one table of everything that can make kret fail or slow, with the command that fixes it.

The facts are gathered by :func:`kret.doctor.diagnose` (usable from Python); this module only prints them.
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from kret.cli.common import CONTEXT, get_kret, out, print_json

_STYLE = {"ok": "green", "info": "dim", "warn": "yellow", "problem": "bold red"}


@click.command("doctor", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--no-verify", is_flag=True, help="Skip re-hashing the default model's weights (~1 s).")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, no_verify: bool) -> None:
    """Check this installation: extras, default model, serving runtime and CPU, KRET_HOME, collections.

    \b
    Exit code 1 when a problem is found (warnings do not count), so scripts can gate on it:
      kret doctor && kret index ./docs
    """
    from kret.doctor import diagnose

    report = diagnose(get_kret(ctx).settings, verify_weights=not no_verify)
    if as_json:
        print_json(report.to_dict())
    else:
        table = Table(title="kret doctor", show_lines=False)
        for col in ("area", "check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        area = None
        for c in report.checks:
            shown, area = ("" if c.area == area else c.area), c.area
            status = Text(c.status, style=_STYLE.get(c.status, ""))
            table.add_row(shown, c.name, status, Text(c.detail), Text(c.fix))
        out.print(table)
        n, w = len(report.problems), len(report.warnings)
        verdict = "[green]healthy[/]" if not n else f"[bold red]{n} problem(s)[/]"
        out.print(f"{verdict}, {w} warning(s)", highlight=False)
    if report.problems:
        ctx.exit(1)

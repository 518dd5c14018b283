"""Run the ``kret`` command in-process with Click's CliRunner, through the same error handling as the
console script (``run_cli``): a kret error is one line on stderr and its exit code, as a user sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click
from click.testing import CliRunner, Result


class _Entry(click.Command):
    """A command whose ``main`` is the console script's: ``run_cli`` around the real group."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ARG002
        from kret.cli import main as cli_main
        from kret.cli.common import run_cli

        cli_main.register_commands()
        run_cli(
            lambda standalone_mode: cli_main.cli.main(
                args=list(args or ()), prog_name="kret", standalone_mode=standalone_mode
            )
        )


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Result:
    """``kret ARGS`` in this process; ``result.exit_code``, ``result.stdout`` and ``result.stderr``."""
    return CliRunner().invoke(_Entry("kret"), list(args), env=env, catch_exceptions=False)

"""Training runs under ``KRET_HOME/runs/<name>``: what a run name may be, and where a run lives.

One rule for both trainers, so a name ``kret train pretrain`` accepts is also one ``kret train finetune``
accepts (and a folder name on every filesystem: no separators, no leading dot, at most 100 characters).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from kret.errors import UserInputError

if TYPE_CHECKING:
    from kret.api import Kret

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_run_name(name: str) -> str:
    """``name`` itself when it is a valid run name; otherwise a one-line ``UserInputError``."""
    if not RUN_NAME_RE.match(name):
        raise UserInputError(
            f"run name {name!r} may hold only letters, digits, '.', '-' and '_' (at most 100, not starting "
            "with '.', '-' or '_')"
        )
    return name


def runs_dir(kr: Kret) -> Path:
    """The folder every training run's checkpoints, pairs and run.json live under."""
    return Path(kr.settings.home) / "runs"

"""The registry of hard-negative mining rules: one module and one entry each.

Every rule guards against false negatives in its own way (module docstrings say why); the miner applies the
chosen rules in order, and a candidate (or query) is counted by the first rule that removes it, so the
per-rule counts in the run's report add up. To add a rule: write a module with a ``Rule`` subclass and add
one line to ``RULES`` mapping its name to a factory that reads its parameters from ``MiningParams``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kret.errors import UserInputError

from .base import Candidate, QueryContext, Rule
from .consistency import ConsistencyRule
from .margin import MarginRule
from .rank_guard import RankGuardRule
from .rescaled import RescaledRule, relative_score

__all__ = ["DEFAULT_RULES", "RULES", "Candidate", "QueryContext", "Rule", "build_rules", "relative_score"]

RULES: dict[str, Callable[[Any], Rule]] = {
    "margin": lambda p: MarginRule(p.margin),
    "rescaled": lambda p: RescaledRule(p.rescaled_max),
    "rank_guard": lambda p: RankGuardRule(),
    "consistency": lambda p: ConsistencyRule(p.consistency_top_k or 10),
}

# Scale-free guards: the rescaled margin adapts to the model's score scale (random passage = 0, positive = 1),
# the rank guard uses no scores at all. bench/README.md ("Mining rules on e5's scale") has the counts.
DEFAULT_RULES: tuple[str, ...] = ("rescaled", "rank_guard")


def build_rules(names: tuple[str, ...] | list[str], params: Any) -> list[Rule]:
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise UserInputError(
            f"unknown mining rule {', '.join(unknown)} (choose from {', '.join(sorted(RULES))})"
        )
    if len(set(names)) != len(names):
        raise UserInputError(f"mining rules listed twice: {', '.join(names)}")
    return [RULES[n](params) for n in names]

"""Does numpy run as fast after the training loop's allocator setting as in a process that never trained?

    python bench/allocator_numpy.py scoped    # 5 paired tests, then the setting serves 200 blocks, 5 again
    python bench/allocator_numpy.py none      # the same without the setting (the control)

``kret train finetune`` runs its gate's paired tests (numpy) in the process that trained, after
``kret.trainer.allocator.large_blocks_mapped`` set glibc's thresholds back; if that left the allocator in a
worse state, the second timing of ``scoped`` would be slower than its first and than ``none``'s. Prints both
timings in seconds. Run each a few times: the differences to look for are several-fold, not percent.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from kret.evaluators.stats import MEAN, paired_test_many
from kret.trainer.allocator import large_blocks_mapped


def _paired_tests(a: dict, b: dict) -> float:
    t0 = time.perf_counter()
    for _ in range(5):
        paired_test_many(a, b, {"ndcg": MEAN})
    return time.perf_counter() - t0


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ("scoped", "none"):
        sys.exit("usage: python bench/allocator_numpy.py scoped|none")
    rng = np.random.default_rng(0)
    a, b = {"values": rng.random(1700)}, {"values": rng.random(1700)}
    before = _paired_tests(a, b)
    if sys.argv[1] == "scoped":
        with large_blocks_mapped():  # activation-sized blocks (2-24 MB), allocated and freed as a step does
            blocks = [np.ones(int(n)) for n in rng.integers(200_000, 3_000_000, 200)]
            del blocks
    print(f"{sys.argv[1]}: before {before:.2f} s, after {_paired_tests(a, b):.2f} s")


if __name__ == "__main__":
    main()

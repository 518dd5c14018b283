"""Run a command and trace its resident memory: VmRSS every 0.5 s, and the kernel's peak at the end.

    python bench/rss_trace.py OUT kret train finetune --mine-negatives -c … --max-steps 2

Writes ``OUT.rss`` (seconds since start, VmRSS in KiB, one line per sample), ``OUT.stdout``, ``OUT.stderr``
and prints one JSON line: exit code, wall seconds, the sampled peak and ``ru_maxrss`` of the child (the true
peak; the sampler can miss a spike shorter than its interval). GB are 10⁹ bytes.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.time()
    peak = 0
    with open(out + ".stdout", "w") as so, open(out + ".stderr", "w") as se, open(out + ".rss", "w") as trace:
        child = subprocess.Popen(cmd, stdout=so, stderr=se)
        while child.poll() is None:
            try:
                with open(f"/proc/{child.pid}/status") as fh:
                    kib = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
                peak = max(peak, kib)
                trace.write(f"{time.time() - t0:.1f} {kib}\n")
                trace.flush()
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.5)
    max_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "rc": child.returncode,
                "wall_s": round(time.time() - t0, 1),
                "sampled_peak_gb": round(peak * 1024 / 1e9, 2),
                "peak_rss_gb": round(max_kib * 1024 / 1e9, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

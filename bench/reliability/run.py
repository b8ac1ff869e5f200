"""Reliability report: chaos runs under each Redis durability setting, as a table.

    uv run python bench/reliability/run.py [--deliveries 2000] [--seeds 1,2,3]

Each run delivers N real signed webhooks while, on a seeded schedule, workers are
killed (-9), the dispatcher and status are restarted, Redis is restarted, taken away
from the ingress, switched to an evicting policy for a while (nothing may be appended
then) and frozen (SIGSTOP) while status and the dispatcher restart. It prints
deliveries, jobs, lost, duplicates executed, retries lost and dead letters missing (runs
the dispatcher did not follow), the worst recovery time per fault, and for each kill -9
how long until the killed worker's jobs ran again. Not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from support.chaos import FAULTS, SICK_REDIS_FAULTS, ChaosRun, markdown

SETTINGS = [("always", "sigkill"), ("everysec", "sigterm"), ("everysec", "sigkill")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seeds", default="1,2")
    args = parser.parse_args()
    reports = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for appendfsync, kill in SETTINGS:
            with tempfile.TemporaryDirectory(prefix="hookline-chaos-") as tmp:
                run = ChaosRun(
                    Path(tmp),
                    seed=seed,
                    deliveries=args.deliveries,
                    rate=args.rate,
                    appendfsync=appendfsync,
                    redis_kill=kill,
                    faults=FAULTS + SICK_REDIS_FAULTS,
                )
                report = run.run()
                reports.append(report)
                print(markdown([report]).splitlines()[-1], flush=True)
    print()
    print(markdown(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())

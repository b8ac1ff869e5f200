"""Nothing accepted is lost, whatever dies: the chaos run at test size.

Raise the size from the environment (``HOOKLINE_CHAOS_DELIVERIES``, ``HOOKLINE_CHAOS_SEED``)
or run ``bench/reliability`` for the longer runs and the report.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.chaos import FAULTS, SICK_REDIS_FAULTS, ChaosRun, markdown

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_accepted_webhook_ends_in_exactly_one_finished_job_through_chaos(
    tmp_path: Path,
) -> None:
    run = ChaosRun(
        tmp_path,
        seed=int(os.environ.get("HOOKLINE_CHAOS_SEED", "7")),
        deliveries=int(os.environ.get("HOOKLINE_CHAOS_DELIVERIES", "500")),
        appendfsync="always",
        redis_kill="sigkill",
    )
    report = run.run()
    print("\n" + markdown([report]))
    assert len(report.faults) >= 4, "the schedule injected too few faults to mean anything"
    assert {f.kind for f in report.faults} == set(FAULTS), "every kind of fault, at least once"
    assert report.accepted == report.deliveries, f"ingress refused some: {run.answers}"
    assert report.lost == 0
    assert report.duplicate_jobs == 0
    assert report.not_final == 0
    assert report.failed == 0
    assert report.metrics_match
    assert report.retries_lost == 0
    assert report.dead_letters_missing == 0
    # A kill -9'd worker's jobs run again (the time, goal 5 s, is in the report; that it
    # comes from liveness rather than the lease is proven by tests/e2e/test_worker_
    # recovery.py with a 120 s lease). A generous bound only: timing decides nothing.
    assert report.worst_kill_rerun < 25.0, report.worst_kill_rerun
    assert report.leaked_secrets == []


def test_a_sick_redis_loses_nothing_and_gets_nothing_it_may_evict(tmp_path: Path) -> None:
    """Only the sick-Redis faults: an evicting policy for a while (the ingress spools,
    nothing is appended), and a frozen Redis while status and the dispatcher restart
    (they answer within a second, saying why)."""
    run = ChaosRun(
        tmp_path,
        seed=int(os.environ.get("HOOKLINE_CHAOS_SEED", "11")),
        deliveries=200,
        faults=SICK_REDIS_FAULTS,
        fault_every=(1.0, 2.0),
    )
    report = run.run()
    print("\n" + markdown([report]))
    assert {f.kind for f in report.faults} == set(SICK_REDIS_FAULTS)
    assert report.accepted == report.deliveries, f"ingress refused some: {run.answers}"
    assert report.lost == 0
    assert report.duplicate_jobs == 0
    assert report.not_final == 0
    assert report.appended_while_unsafe == 0
    assert report.worst_frozen_answer < 1.0

"""The worker's pure decisions: attempt numbers, cancels, lease periods, spec checks."""

from __future__ import annotations

import re
from typing import assert_never

from hookline.events import HANDLER_PATH, CommandRun, HandlerRun, JobSpec, Run, run_of

# Job ids name folders (work dir, artifacts): keep them to a safe, path-free shape.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def run_attempt(queued_attempt: int, deliveries: int) -> int:
    """The attempt number of one run of a queued entry.

    The first delivery runs the attempt the dispatcher queued; every redelivery of the
    same entry (its worker crashed, lost its lease or handed it back on shutdown) is a
    new attempt numbered one higher, so its ``job.started`` outranks the lost run's
    events in the status view and both runs stay visible in the stream.
    """
    return queued_attempt + max(deliveries, 1) - 1


def worker_lost(deliveries: int, max_deliveries: int) -> bool:
    """An entry delivered more than ``max_deliveries`` times ends as "worker lost"."""
    return deliveries > max_deliveries


def cancel_applies(queued_attempt: int, marker: bytes | str | None) -> bool:
    """A cancel marker holds the highest attempt to cancel. It stops every run of a queued
    attempt up to that number (a reclaimed run of attempt 1 is still attempt 1's job)."""
    if marker is None:
        return False
    try:
        return queued_attempt <= int(marker)
    except ValueError:
        return False


def lease_periods(lease_timeout: float) -> tuple[float, float]:
    """How often to renew our leases and to look for lapsed ones: a lease is renewed
    three times per timeout (a late renewal never loses it), and lapsed leases are
    looked for four times per timeout (a crash is recovered within 1.25 timeouts)."""
    renew = min(5.0, max(0.05, lease_timeout / 3))
    claim = min(5.0, max(0.05, lease_timeout / 4))
    return renew, claim


def heartbeat_period(worker_ttl: float) -> float:
    """A heartbeat every 5 s, or three per TTL when the TTL is short."""
    return min(5.0, max(0.05, worker_ttl / 3))


def job_id_problem(job_id: str) -> str | None:
    if not _JOB_ID.match(job_id):
        return f"job id {job_id!r} is not 1-128 letters, digits, '_', '.', ':' or '-'"
    return None


def spec_problem(spec: JobSpec) -> str | None:
    """Why a job's spec cannot be run, or None. Such a job is dead-lettered unrun."""
    if spec.run is None and spec.old_command is not None and spec.old_handler is not None:
        try:
            run_of(spec.old_command, spec.old_handler)
        except ValueError as exc:  # an old-shape spec with both: the one rule says why
            return f"pipeline {spec.pipeline!r} {exc}"
    if (problem := run_problem(spec.pipeline, spec.run)) is not None:
        return problem
    if not spec.timeout > 0:
        return f"pipeline {spec.pipeline!r} has timeout {spec.timeout!r}; must be > 0"
    if any("\x00" in k or "=" in k or not k or "\x00" in v for k, v in spec.env.items()):
        return f"pipeline {spec.pipeline!r} has an invalid environment variable"
    return None


def run_problem(pipeline: str, run: Run | None) -> str | None:
    if isinstance(run, HandlerRun):  # isinstance, not match: on every job's path
        if not HANDLER_PATH.match(run.path):
            return f"handler {run.path!r} is not of the form 'package.module:function'"
        return None
    if isinstance(run, CommandRun):
        if not run.argv or not run.argv[0]:
            return f"pipeline {pipeline!r} has an empty command"
        if any("\x00" in arg for arg in run.argv):
            return f"pipeline {pipeline!r} has a NUL byte in its command"
        return None
    if run is None:
        return f"unknown pipeline {pipeline!r}: no command and no handler"
    assert_never(run)

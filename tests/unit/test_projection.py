"""What each event asks of its job's view: pure decisions, no Redis (the rule itself
runs in Redis: tests/integration/test_status_store.py)."""

import json

import pytest
from hookline.events import (
    AnyEvent,
    JobCancelRequested,
    JobFinished,
)
from hookline_status.documents import STATUSES, Status
from hookline_status.projection import (
    PHASE_ENDED,
    PHASE_QUEUED,
    PHASE_STARTED,
    TRANSITIONS,
    ViewUpdate,
    allowed,
    project,
)
from support.jobs import (
    DEFERRED_2,
    FAILED_1,
    FINISHED_2,
    HISTORY,
    IDS,
    PURGED,
    QUEUED_1,
    QUEUED_2,
    RECEIVED,
    SKIPPED,
    STARTED_1,
    at,
)


def update_of(event: AnyEvent) -> ViewUpdate:
    update = project(event)
    assert update is not None
    return update


def test_ranks_order_the_phases_of_an_attempt_and_then_the_attempts() -> None:
    ranks = [u.rank for e in HISTORY if (u := project(e)) is not None]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


@pytest.mark.parametrize(
    ("event", "status", "completes", "measured", "starts"),
    [
        (RECEIVED, "queued", False, None, False),
        (QUEUED_1, "queued", False, None, False),
        (STARTED_1, "started", False, None, True),
        (FAILED_1, "failed", True, None, False),
        (DEFERRED_2, "deferred", False, None, False),
        (FINISHED_2, "finished", True, None, False),
        (SKIPPED, "skipped", True, None, False),
        (PURGED, "failed", False, None, False),  # a purge is not counted again
    ],
)
def test_what_each_event_asks_of_the_view(
    event: AnyEvent, status: str, completes: bool, measured: float | None, starts: bool
) -> None:
    update = project(event)
    assert update is not None
    assert (update.status, update.completes, update.measured, update.starts) == (
        status,
        completes,
        measured,
        starts,
    )


def test_only_finished_and_failed_attempts_measure_their_duration() -> None:
    timed = JobFinished(**IDS, attempt=1, outcome="failed", duration=1.5, occurred_at=at(3))
    canceled = JobFinished(**IDS, attempt=1, outcome="canceled", duration=1.5, occurred_at=at(3))
    assert update_of(timed).measured == 1.5
    assert update_of(canceled).completes
    assert update_of(canceled).measured is None


def test_phases_are_named() -> None:
    assert update_of(QUEUED_1).phase == PHASE_QUEUED
    assert update_of(STARTED_1).phase == PHASE_STARTED
    assert update_of(FAILED_1).phase == PHASE_ENDED


def test_operator_commands_concern_no_view() -> None:
    assert project(JobCancelRequested(job_id="j1")) is None


def test_a_new_attempt_clears_the_previous_attempts_end() -> None:
    for event in (DEFERRED_2, QUEUED_2):
        assert "ended_at" in update_of(event).clear


def test_ended_views_expire_after_their_pipelines_ttl() -> None:
    finished = JobFinished(**IDS, attempt=1, outcome="finished", result_ttl=60, occurred_at=at(3))
    failed = JobFinished(**IDS, attempt=1, outcome="failed", failure_ttl=120, occurred_at=at(3))
    assert update_of(finished).ttl == 60
    assert update_of(failed).ttl == 120


def test_a_summary_lists_only_what_the_event_says() -> None:
    assert (u := project(STARTED_1)) is not None
    assert json.loads(u.summary) == {
        "type": "job.started",
        "event_id": STARTED_1.event_id,
        "occurred_at": at(2).isoformat(),
        "attempt": 1,
        "queue": "pipeline_tasks",
        "pipeline": "demo",
        "worker": "w1",
    }


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (None, "skipped", True),
        ("queued", "skipped", True),
        ("skipped", "queued", False),
        ("skipped", "started", False),
        ("failed", "queued", True),
        ("finished", "queued", True),
        ("canceled", "deferred", True),
        ("started", "skipped", False),
        ("finished", "skipped", False),
    ],
)
def test_transition_table(old: Status | None, new: Status, ok: bool) -> None:
    assert allowed(old, new) is ok


def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(STATUSES)

import itertools
from datetime import datetime

import pytest
from hookline.events import (
    AnyEvent,
    JobDeferred,
    JobError,
    JobFinished,
    JobQueued,
    JobSpec,
    JobStarted,
    WebhookReceived,
)
from hookline_status.projection import fold, render
from support.jobs import at

IDS = {"job_id": "j1", "delivery_id": "d1"}


RECEIVED = WebhookReceived(**IDS, event="push", repository="o/r", occurred_at=at(0))
QUEUED_1 = JobQueued(
    **IDS, attempt=1, spec=JobSpec(pipeline="demo"), occurred_at=at(1), created_at=at(0)
)
STARTED_1 = JobStarted(
    **IDS, attempt=1, queue="pipeline_tasks", pipeline="demo", worker="w1", occurred_at=at(2)
)
FAILED_1 = JobFinished(
    **IDS,
    attempt=1,
    outcome="failed",
    worker="w1",
    error=JobError(type="Boom", message="no"),
    occurred_at=at(3),
)
DEFERRED_2 = JobDeferred(
    **IDS,
    attempt=2,
    queue="pipeline_tasks",
    pipeline="demo",
    not_before=at(10),
    occurred_at=at(3.5),
)
QUEUED_2 = JobQueued(**IDS, attempt=2, spec=JobSpec(pipeline="demo"), occurred_at=at(10))
STARTED_2 = JobStarted(
    **IDS, attempt=2, queue="pipeline_tasks", pipeline="demo", worker="w2", occurred_at=at(11)
)
FINISHED_2 = JobFinished(
    **IDS,
    attempt=2,
    outcome="finished",
    worker="w2",
    result={"ok": True},
    started_at=at(11),
    occurred_at=at(12),
)
SKIPPED = JobFinished(**IDS, attempt=0, outcome="skipped", reason="no route", occurred_at=at(1))


def status_after(events: list[AnyEvent]) -> str:
    return fold(events)["j1"]["status"]


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([RECEIVED], "queued"),
        ([RECEIVED, QUEUED_1], "queued"),
        ([RECEIVED, QUEUED_1, STARTED_1], "started"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1], "failed"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2], "deferred"),
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2, STARTED_2], "started"),
        (
            [RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2, STARTED_2, FINISHED_2],
            "finished",
        ),
        ([RECEIVED, SKIPPED], "skipped"),
        # stale and duplicate events change nothing
        ([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, STARTED_1], "failed"),
        ([RECEIVED, FINISHED_2, QUEUED_1, STARTED_1, FAILED_1], "finished"),
        ([SKIPPED, RECEIVED], "skipped"),
    ],
)
def test_status_follows_the_highest_attempt_and_phase(events: list[AnyEvent], status: str) -> None:
    assert status_after(events) == status


HISTORY = [RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2, STARTED_2, FINISHED_2]


def test_applying_every_event_twice_changes_nothing() -> None:
    once = fold(HISTORY)
    twice = fold([e for event in HISTORY for e in (event, event)])
    assert once == twice


@pytest.mark.parametrize("seed", range(20))
def test_any_arrival_order_ends_in_the_same_final_state(seed: int) -> None:
    import random

    shuffled = HISTORY[:]
    random.Random(seed).shuffle(shuffled)
    view = fold(shuffled)["j1"]
    assert view["status"] == "finished"
    assert view["attempt"] == "2"
    assert render(view)["result"] == {"ok": True}


def test_a_finished_view_renders_in_the_api_shape() -> None:
    body = render(fold(HISTORY)["j1"])
    assert set(body) >= {
        "job_id",
        "status",
        "created_at",
        "started_at",
        "ended_at",
        "result",
        "error",
        "meta",
    }
    assert body["status"] == "finished"
    assert body["started_at"] == at(11).isoformat()
    assert body["ended_at"] == at(12).isoformat()
    assert body["error"] is None
    assert body["worker"] == "w2"


def test_a_new_attempt_clears_the_previous_attempts_end() -> None:
    view = fold([RECEIVED, QUEUED_1, STARTED_1, FAILED_1, DEFERRED_2, QUEUED_2])["j1"]
    assert "ended_at" not in view
    assert view["attempt"] == "2"


def test_events_of_other_jobs_do_not_interfere() -> None:
    other = JobStarted(
        job_id="j2", delivery_id="d2", attempt=1, queue="q", pipeline="p", worker="w"
    )
    views = fold([*HISTORY, other])
    assert views["j1"]["status"] == "finished"
    assert views["j2"]["status"] == "started"


def test_permutations_of_one_attempt_agree() -> None:
    finals = {
        fold(list(order))["j1"]["status"]
        for order in itertools.permutations([RECEIVED, QUEUED_1, STARTED_1, FAILED_1])
    }
    assert finals == {"failed"}


# -- transitions, expiry, creation time, metrics (the Model twin of the Lua script) ------

import random as _random  # noqa: E402

from hookline_status.projection import TRANSITIONS, Model, allowed, project  # noqa: E402
from support.jobs import PATHS, history  # noqa: E402


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
def test_transition_table(old: str | None, new: str, ok: bool) -> None:
    assert allowed(old, new) is ok


def test_every_status_has_a_row_in_the_transition_table() -> None:
    from hookline_status.projection import STATUSES

    assert set(TRANSITIONS) == set(STATUSES)


def test_nothing_follows_a_skipped_job() -> None:
    late = JobQueued(**IDS, attempt=1, spec=JobSpec(pipeline="demo"), occurred_at=at(5))
    assert status_after([RECEIVED, SKIPPED, late]) == "skipped"


@pytest.mark.parametrize(
    ("path", "ttl_field", "expires_after"),
    [
        ("finish", "result_ttl", 60.0),
        ("fail", "failure_ttl", 120.0),
    ],
)
def test_ended_views_expire_after_their_pipelines_ttl(
    path: str, ttl_field: str, expires_after: float
) -> None:
    events = history("j", path=path, **{ttl_field: expires_after})
    view = fold(events)["j"]
    ended = int(datetime.fromisoformat(view["ended_at"]).timestamp() * 1000)
    assert int(view["expires_ms"]) == ended + int(expires_after * 1000)


def test_a_new_attempt_cancels_the_expiry() -> None:
    again = JobQueued(**IDS, attempt=3, spec=JobSpec(pipeline="demo"), occurred_at=at(30))
    assert "expires_ms" not in fold([*HISTORY, again])["j1"]


@pytest.mark.parametrize("seed", range(10))
def test_creation_time_is_the_earliest_whatever_the_order(seed: int) -> None:
    events = history("j", path="retry-then-finish")
    shuffled = _random.Random(seed).sample(events, len(events))
    view = fold(shuffled)["j"]
    assert view["created_at"] == at(0).isoformat()
    assert view["created_ms"] == str(int(at(0).timestamp() * 1000))


def test_the_model_counts_outcomes_durations_and_waits_once() -> None:
    model = Model()
    for path in PATHS:
        for event in history(path, path=path) * 2:  # everything delivered twice
            if (update := project(event)) is not None:
                model.apply(update)
    assert model.completed == {
        "pipeline_tasks\tdemo\tfinished": 2,
        "pipeline_tasks\tdemo\tfailed": 2,
        "pipeline_tasks\tdemo\tcanceled": 1,
        "\t\tskipped": 1,
    }
    assert model.duration["pipeline_tasks\tdemo\tcount"] == 4
    assert model.wait["pipeline_tasks\tcount"] == 5  # every start, retries included


def test_history_keeps_stale_and_reordered_events_once() -> None:
    model = Model()
    for event in [*HISTORY, *reversed(HISTORY)]:
        if (update := project(event)) is not None:
            model.apply(update)
    assert len(model.histories["j1"]) == len(HISTORY)


def test_a_purged_failed_job_expires_at_once_without_counting_again() -> None:
    from hookline.events import JobPurged

    failed = [RECEIVED, QUEUED_1, STARTED_1, FAILED_1]
    purge = JobPurged(**IDS, attempt=1, queue="pipeline_tasks", occurred_at=at(20))
    model = Model()
    for event in [*failed, purge, purge]:
        if (update := project(event)) is not None:
            model.apply(update)
    assert sum(model.completed.values()) == 1
    view = model.views["j1"]
    assert view["status"] == "failed"
    assert int(view["expires_ms"]) <= int(at(20).timestamp() * 1000) + 1
    assert model.sweep(int(at(21).timestamp() * 1000)) == 1
    assert "j1" not in model.views

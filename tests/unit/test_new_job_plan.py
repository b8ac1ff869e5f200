"""plan_new_job: a webhook and the config in, what the new_job script writes out."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hookline.events import JobCancelRequested, JobDeferred, JobFinished, JobQueued, WebhookReceived
from hookline.keys import Keys
from hookline_dispatcher.configfile import parse_config
from hookline_dispatcher.lifecycle.webhooks import Mode, NewJob, plan_new_job
from support.payloads import payload

KEYS = Keys("t")
RECEIVED_AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = parse_config(
    """
[pipelines.build]
handler = "ci:build"
queue = "builds"
[pipelines.review]
handler = "ci:review"
delay = "2m"
[[routes]]
events = ["pull_request"]
pipeline = "review"
[[routes]]
events = ["push"]
pipeline = "build"
supersede = true
"""
)


def plan(event: str, name: str, body: bytes | None = None, now: datetime = RECEIVED_AT) -> NewJob:
    received = WebhookReceived(
        delivery_id="d-1",
        job_id="j-1",
        event=event,
        payload=msgspec.Raw(payload(event, name) if body is None else body),
        occurred_at=RECEIVED_AT,
    )
    return plan_new_job(KEYS, received, CONFIG, now, skip_ttl_ms=60_000)


@pytest.mark.parametrize(
    ("event", "name", "body", "now", "mode", "stream", "first"),
    [
        ("push", "with-new-branch.payload.json", None, RECEIVED_AT, "queue",
         KEYS.job_queued("builds"), JobQueued),
        # a route's delay: deferred until due (and queued at once once it is past)
        ("pull_request", "opened.payload.json", None, RECEIVED_AT, "defer",
         KEYS.job_deferred, JobDeferred),
        ("pull_request", "opened.payload.json", None, RECEIVED_AT + timedelta(minutes=3),
         "queue", KEYS.job_queued("pipeline_tasks"), JobQueued),
        ("push", "payload.json", None, RECEIVED_AT, "skip", KEYS.job_finished, JobFinished),
        ("star", "created.payload.json", None, RECEIVED_AT, "skip", KEYS.job_finished,
         JobFinished),
        ("push", "payload.json", b"[1, 2]", RECEIVED_AT, "skip", KEYS.job_finished, JobFinished),
    ],
)  # fmt: skip
def test_a_webhook_is_queued_deferred_or_skipped(
    event: str,
    name: str,
    body: bytes | None,
    now: datetime,
    mode: Mode,
    stream: str,
    first: type,
) -> None:
    job = plan(event, name, body, now)
    assert (job.mode, job.stream, type(job.event)) == (mode, stream, first)
    assert job.job_id == "j-1"
    assert job.fields[:2] == [
        "phase",
        {"queue": "queued", "defer": "deferred"}.get(mode, "skipped"),
    ]
    assert (job.delayed is not None) is (mode == "defer")
    assert (job.skipped is not None) is (mode == "skip")
    assert job.record_ttl_ms == (60_000 if mode == "skip" else 0)


def test_a_deferred_job_waits_in_the_delayed_set_until_its_route_delay() -> None:
    job = plan("pull_request", "opened.payload.json")
    assert job.delayed is not None
    due = RECEIVED_AT + timedelta(minutes=2)
    assert job.delayed.due_ms == int(due.timestamp() * 1000)
    assert job.delayed.member == "j-1:1"
    stream, job_id, event = job.delayed.data.split(b"\n", 2)
    assert (stream.decode(), job_id) == (KEYS.job_queued("pipeline_tasks"), b"j-1")
    assert msgspec.json.decode(event, type=JobQueued).occurred_at == due


def test_a_payload_that_is_not_an_object_is_skipped_as_bad() -> None:
    job = plan("push", "payload.json", b"[1, 2]")
    assert job.skipped is not None
    assert job.skipped.kind == "bad_payload"


def test_a_superseding_route_claims_its_slot_and_names_the_cancel() -> None:
    job = plan("push", "with-new-branch.payload.json")
    assert job.supersede is not None
    assert job.supersede.slot.startswith(KEYS.supersede_slot(""))
    assert job.supersede.value == f"{int(RECEIVED_AT.timestamp() * 1000)} j-1"
    assert isinstance(job.supersede.cancel, JobCancelRequested)
    assert job.supersede.cancel.requested_by == "supersede: newer job j-1"
    assert plan("pull_request", "opened.payload.json").supersede is None

"""The typed records of shared hashes: what a writer stores reads back the same, what an
older or broken writer stored still reads, and the API's schema comes from the same type."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hookline.records import (
    CurrentJob,
    WorkerHeartbeat,
    WorkerView,
    from_hash,
    to_hash,
    worker_view,
)
from hookline_status.openapi import document, from_structs

STARTED = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
FULL = WorkerHeartbeat(
    name="w1",
    host="box",
    pid=4242,
    queues=["pipeline_tasks", "video"],
    concurrency=4,
    busy=2,
    jobs_done=17,
    jobs_failed=3,
    state="draining",
    current_jobs=[
        CurrentJob(job_id="a1", attempt=1, queue="video", pipeline="render", started_at=STARTED),
        CurrentJob(job_id="b2", attempt=3, queue="pipeline_tasks", pipeline="lint"),
    ],
    started_at=STARTED,
    last_heartbeat=1_777_636_800_250,
    ttl=30.0,
)


def as_redis(fields: dict[str, str]) -> dict[bytes, bytes]:
    """The hash as HGETALL hands it back."""
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_a_heartbeat_reads_back_as_it_was_written() -> None:
    stored = to_hash(FULL)
    assert all(isinstance(v, str) for v in stored.values())
    assert stored["queues"] == "pipeline_tasks,video"
    assert from_hash(WorkerHeartbeat, as_redis(stored)) == FULL


def test_current_jobs_are_stored_as_objects_not_text() -> None:
    stored = msgspec.json.decode(to_hash(FULL)["current_jobs"])
    assert [(j["job_id"], j["attempt"]) for j in stored] == [("a1", 1), ("b2", 3)]


def test_missing_fields_take_their_defaults() -> None:
    assert from_hash(WorkerHeartbeat, {}) == WorkerHeartbeat()
    assert from_hash(WorkerHeartbeat, {b"name": b"w2"}).current_jobs == []


@pytest.mark.parametrize(
    ("field", "value", "default"),
    [
        ("pid", "not-a-pid", None),
        ("busy", "-1", 0),
        ("jobs_done", "lots", 0),
        ("concurrency", "1.5.2", None),
        ("current_jobs", '[{"job_id": 7}]', []),
        ("current_jobs", "[{broken", []),
        ("started_at", "yesterday", None),
        ("started_at", "2026-05-01T12:00:00", None),  # no zone: not an instant
        ("ttl", "-3", None),
    ],
)
def test_a_bad_field_takes_its_default_and_the_rest_still_shows(
    field: str, value: str, default: object
) -> None:
    raw = as_redis({**to_hash(FULL), field: value})
    read = from_hash(WorkerHeartbeat, raw)
    assert getattr(read, field) == default
    assert read == msgspec.structs.replace(FULL, **{field: default})


@pytest.mark.parametrize("field", ["current_jobs", "current_job"])
def test_comma_separated_job_ids_of_older_workers_are_upcast(field: str) -> None:
    read = from_hash(WorkerHeartbeat, {field.encode(): b"j1,j2", b"busy": b"2"})
    assert [(j.job_id, j.attempt) for j in read.current_jobs] == [("j1", 0), ("j2", 0)]


def test_a_record_with_a_required_field_is_refused() -> None:
    class Bare(msgspec.Struct):
        must: str

    with pytest.raises(TypeError, match="default"):
        to_hash(Bare(must="x"))


def test_the_view_of_a_worker_says_busy_idle_or_dead() -> None:
    beat_ms = 1_777_636_800_000
    now = beat_ms / 1000 + 2
    assert worker_view("w1", beat_ms, FULL, now, ttl=30).state == "busy"
    assert worker_view("w1", beat_ms, WorkerHeartbeat(), now, ttl=30).state == "idle"
    dead = worker_view("w1", beat_ms, FULL, now, ttl=1)
    assert (dead.state, dead.heartbeat_age_seconds) == ("dead", 2.0)
    assert dead.last_heartbeat == datetime.fromtimestamp(beat_ms / 1000, UTC)
    assert dead.current_jobs == FULL.current_jobs


def test_the_workers_schema_is_derived_from_the_view_struct() -> None:
    schemas = document()["components"]["schemas"]
    derived = from_structs(WorkerView)
    assert {k: schemas[k] for k in derived} == derived
    worker = schemas["WorkerView"]
    assert set(worker["required"]) == set(worker["properties"])
    assert worker["properties"]["current_jobs"]["items"] == {
        "$ref": "#/components/schemas/CurrentJob"
    }
    assert worker["properties"]["host"] == {"type": "string", "nullable": True}
    assert {"job_id", "attempt"} <= set(schemas["CurrentJob"]["required"])
    assert "anyOf" not in str(schemas)  # OpenAPI 3.0 spells optional values "nullable"

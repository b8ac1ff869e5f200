"""The dispatcher as a real process with a real worker and status: retries with backoff
to success, retries exhausted into the dead-letter stream, a delayed command pipeline
from hookline.toml, and two dispatchers at once never queueing a job twice."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis
from hookline.events import (
    AnyEvent,
    DeadLetter,
    JobDeferred,
    JobError,
    JobFinished,
    JobQueued,
    encode,
)
from hookline.keys import EVENT_FIELD, Keys
from support.payloads import append_webhook
from support.processes import ServiceProcess, http_json
from support.streams import entries, events
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
PRINT_ARGS = "import json, sys; print(json.dumps(dict(argv=sys.argv[1:])))"

CONFIG = f"""
[pipelines.flaky]
handler = "support.e2e_pipelines:flaky"
queue = "e2e"
retries = 3
backoff = {{ kind = "exponential", base = "200ms", cap = "400ms" }}

[pipelines.doomed]
handler = "support.e2e_pipelines:doomed"
queue = "e2e"
retries = 2
backoff = {{ kind = "fixed", base = "100ms" }}

[pipelines.args]
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(PRINT_ARGS)},
           "{{repository}}", "{{sha}}", "{{tag}}", "{{event}}", "{{action}}", "{{sender}}"]
queue = "e2e"
delay = "2s"

[[routes]]
events = ["push"]
branches = ["master"]
pipeline = "flaky"

[[routes]]
events = ["pull_request"]
pipeline = "doomed"

[[routes]]
events = ["release"]
actions = ["published"]
pipeline = "args"
"""


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def events_of(client: redis.Redis, stream: str, job_id: str) -> list[AnyEvent]:
    found = []
    for event in events(client.xrange(stream)):
        if getattr(event, "job_id", None) == job_id:
            found.append(event)
    return found


def test_retries_with_backoff_dead_letters_and_a_delayed_command_pipeline(
    tmp_path: Path,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    sync_redis: redis.Redis,
    keys: Keys,
) -> None:
    config = tmp_path / "hookline.toml"
    config.write_text(CONFIG)
    env = {
        **base_env,
        "HOOKLINE_CONFIG": str(config),
        "HOOKLINE_DISPATCHER_TICK": "50ms",
        "HOOKLINE_WORKER_QUEUES": "e2e",
        "PYTHONPATH": str(TESTS),
    }
    for name in ("dispatcher", "worker", "status"):
        services.append(ServiceProcess(name, env, tmp_path / "logs").start())
    dispatcher, status = services[0], services[-1]

    flaky = append_webhook(sync_redis, keys, "push", "with-new-branch.payload.json", "e2e-flaky")
    doomed = append_webhook(sync_redis, keys, "pull_request", "opened.payload.json", "e2e-doomed")
    args = append_webhook(sync_redis, keys, "release", "published.payload.json", "e2e-args")

    def view(job_id: str) -> dict[str, object]:
        code, body = http_json(f"{status.url}/jobs/{job_id}")
        return body if code == 200 else {}

    # the delayed command pipeline waits, and status says until when
    waiting = wait_until(
        lambda: (v := view(args)).get("status") == "deferred" and v, 20, what="deferred view"
    )
    assert waiting["not_before"]

    def ended(job_id: str, attempt: int = 1) -> dict[str, object]:
        """The view once attempt ``attempt`` ended (between a failed attempt and its
        job.deferred the view may say failed for a moment)."""
        return wait_until(
            lambda: (
                (v := view(job_id)).get("status") in ("finished", "failed")
                and v.get("attempt") == attempt
                and v
            ),
            30,
            what=f"job {job_id} to end",
        )

    done = ended(flaky, 3)
    assert done["status"] == "finished", done
    assert done["attempt"] == 3
    assert done["result"] == {"attempt": 3}
    deferrals = events_of(sync_redis, keys.job_deferred, flaky)
    assert [d.attempt for d in deferrals if isinstance(d, JobDeferred)] == [2, 3]
    third = [q for q in events_of(sync_redis, keys.job_queued("e2e"), flaky)][-1]
    assert isinstance(third, JobQueued)
    assert [r.error.message for r in third.history if r.error] == [
        "flaky attempt 1",
        "flaky attempt 2",
    ]

    dead = ended(doomed, 3)
    assert dead["status"] == "failed"
    assert dead["attempt"] == 3
    letters = [
        msgspec.json.decode(fields[EVENT_FIELD], type=DeadLetter)
        for _, fields in entries(sync_redis.xrange(keys.dead_letter))
    ]
    [letter] = [x for x in letters if x.job_id == doomed]
    history = json.loads(letter.data)
    assert [a["error"]["message"] for a in history["attempts"]] == [
        f"doomed attempt {n}" for n in (1, 2, 3)
    ]
    ends = [
        e for e in events_of(sync_redis, keys.job_finished, doomed) if isinstance(e, JobFinished)
    ]
    assert [e.attempt for e in ends] == [1, 2, 3]

    with urllib.request.urlopen(f"{dispatcher.url}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    for line in (
        'hookline_jobs_dispatched_total{pipeline="flaky",queue="e2e"} 3.0',
        'hookline_retries_scheduled_total{pipeline="flaky"} 2.0',
        'hookline_retries_scheduled_total{pipeline="doomed"} 2.0',
        "hookline_dead_letter_total 1.0",
        "hookline_deferred_jobs ",
    ):
        assert line in metrics, line

    result = ended(args)
    assert result["status"] == "finished", result
    assert result["result"] == {
        "argv": [
            "Codertocat/Hello-World",
            "",
            "0.0.1",
            "release",
            "published",
            "Codertocat",
        ]
    }


def test_two_dispatchers_at_once_never_queue_a_job_twice_even_when_one_dies(
    tmp_path: Path,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    sync_redis: redis.Redis,
    keys: Keys,
) -> None:
    config = tmp_path / "hookline.toml"
    config.write_text(
        '[pipelines.p]\nhandler = "m:f"\nretries = 1\n'
        'backoff = { kind = "fixed", base = "300ms" }\n'
        '[[routes]]\nevents = ["push"]\npipeline = "p"\n'
    )
    env = {
        **base_env,
        "HOOKLINE_CONFIG": str(config),
        "HOOKLINE_DISPATCHER_TICK": "10ms",
        "HOOKLINE_DISPATCHER_CLAIM_IDLE": "200ms",
    }
    for _ in range(2):
        services.append(ServiceProcess("dispatcher", env, tmp_path / "logs").start())
    total = 300
    jobs = [
        append_webhook(sync_redis, keys, "push", "with-new-branch.payload.json", f"two-{i}")
        for i in range(total)
    ]
    for job_id in jobs[:50]:  # replays of the same deliveries
        delivery = f"two-{jobs.index(job_id)}"
        append_webhook(sync_redis, keys, "push", "with-new-branch.payload.json", delivery)
    stream = keys.job_queued("pipeline_tasks")

    def queued() -> list[JobQueued]:
        return [e for e in events(sync_redis.xrange(stream)) if isinstance(e, JobQueued)]

    wait_until(lambda: len(queued()) >= total, 30, what="every job to be queued")
    # both took part
    assert all("job_dispatched" in p.logs() for p in services)
    # one dies (kill -9) the moment the failures arrive; the other takes over its
    # pending entries and the retries: all state is in Redis
    # every first attempt fails: both dispatchers schedule and move the retries
    for job in queued():
        finished = JobFinished(
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            attempt=1,
            outcome="failed",
            error=JobError(type="RuntimeError", message="no"),
        )
        sync_redis.xadd(keys.job_finished, {EVENT_FIELD: encode(finished)})
        if job.job_id == jobs[total // 2]:
            services[0].kill()
    wait_until(lambda: len(queued()) >= 2 * total, 30, what="every retry to be queued")
    wait_until(lambda: sync_redis.zcard(keys.delayed) == 0, 10, what="the delayed set to drain")
    attempts = [(q.job_id, q.attempt) for q in queued()]
    assert len(attempts) == len(set(attempts)) == 2 * total
    assert {j for j, _ in attempts} == set(jobs)

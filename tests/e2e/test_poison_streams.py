"""Random bytes and truncated events appended straight into every stream: each consumer
dead-letters them with the reason and carries on with the good entries behind them."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
import redis as sync_redis
from hookline.events import DeadLetter, WebhookReceived, encode
from hookline.keys import EVENT_FIELD, Keys
from support.processes import ServiceProcess, http_json
from support.streams import entries
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

POISON = [
    os.urandom(64),
    b"{",
    b'{"type":"job.queued","v":1',
    b'{"type":"nope"}',
    b"",
    b'{"type":"webhook.received","delivery_id":7}',
]


def test_every_consumer_dead_letters_poison_and_keeps_going(
    base_env: dict[str, str],
    keys: Keys,
    redis_url: str,
    tmp_path: Path,
    services: list[ServiceProcess],
) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    streams = [
        keys.webhook_received,
        keys.job_queued("pipeline_tasks"),
        keys.job_started,
        keys.job_finished,
        keys.commands,
    ]
    for stream in streams:
        for data in POISON:
            client.xadd(stream, {EVENT_FIELD: data})
        client.xadd(stream, {b"not-the-event-field": b"x"})
    for name in ("dispatcher", "status", "worker"):
        services.append(ServiceProcess(name, base_env, tmp_path).start())
    status_url = services[1].url

    # A good delivery behind the poison still becomes a finished job.
    from support.payloads import payload

    good = WebhookReceived(
        delivery_id="after-poison",
        job_id="job-after-poison",
        event="push",
        repository="Codertocat/Hello-World",
        payload=msgspec.Raw(payload("push", "with-new-branch.payload.json")),
    )
    client.xadd(keys.webhook_received, {EVENT_FIELD: encode(good)})

    def finished() -> bool:
        code, view = http_json(f"{status_url}/jobs/job-after-poison")
        return code == 200 and view["status"] == "finished"

    wait_until(finished, timeout=30, what="the good job behind the poison to finish")

    expected = {
        (keys.webhook_received, "dispatcher"),
        (keys.webhook_received, "status"),
        (keys.job_queued("pipeline_tasks"), "workers"),
        (keys.job_queued("pipeline_tasks"), "status"),
        (keys.job_started, "status"),
        (keys.job_finished, "status"),
        (keys.commands, "dispatcher"),
    }
    decoder = msgspec.json.Decoder(DeadLetter)

    def dead_lettered() -> set[tuple[str, str]]:
        letters = [
            decoder.decode(f[EVENT_FIELD]) for _, f in entries(client.xrange(keys.dead_letter))
        ]
        return {(d.source_stream, d.group) for d in letters}

    wait_until(
        lambda: expected <= dead_lettered(),
        timeout=30,
        what="every consumer group to dead-letter the poison",
    )
    letters = [decoder.decode(f[EVENT_FIELD]) for _, f in entries(client.xrange(keys.dead_letter))]
    assert all(letter.reason for letter in letters)
    for proc in services:
        assert proc.process is not None
        assert proc.process.poll() is None, f"{proc.service} died: {proc.logs()[-1500:]}"
    client.close()

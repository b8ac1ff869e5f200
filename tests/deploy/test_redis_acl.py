"""deploy/redis: the ACL file keeps each service to its own keys, and the whole flow
still works with every service logged in as its own user."""

from __future__ import annotations

import functools
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.deploy import ACL_USERS, DEPLOY, AclRedis
from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, http_json
from support.waiting import wait_until

SECRET = "acl-secret-0123456789"
P = "{hookline}:"


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    server = AclRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.stop()


def test_redis_conf_turns_on_aof_and_noeviction(acl_redis: AclRedis) -> None:
    admin = acl_redis.admin()
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert admin.config_get("appendfsync")["appendfsync"] == "everysec"


def test_every_user_in_the_acl_file_is_loaded_with_a_hashed_password(
    acl_redis: AclRedis,
) -> None:
    users = acl_redis.admin().acl_users()
    assert sorted(users) == sorted(ACL_USERS)
    rendered = (acl_redis.tmp / "users.acl").read_text()
    assert all(p not in rendered for p in acl_redis.passwords.values())
    assert "@" not in "".join(
        line for line in rendered.splitlines() if line.startswith("user")
    ).replace("@all", "")


def test_render_refuses_a_missing_password_naming_it(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [
            "sh",
            str(DEPLOY / "redis" / "render-acl.sh"),
            str(DEPLOY / "redis" / "users.acl"),
            str(tmp_path / "out.acl"),
        ],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "REDIS_ADMIN_PASSWORD is not set" in done.stderr
    assert not (tmp_path / "out.acl").exists()


# (user, command, allowed): what each service must do, and a sample of what it must not.
CASES = [
    ("ingress", ["EVAL", "return 1", "2", P + "delivery:d1", P + "webhook.received"], True),
    ("ingress", ["XADD", P + "webhook.received", "*", "e", "x"], True),
    ("ingress", ["SET", P + "delivery:d1", "job", "PX", "1000"], True),
    ("ingress", ["XADD", P + "job.queued.pipeline_tasks", "*", "e", "x"], False),
    ("ingress", ["XRANGE", P + "job.finished", "-", "+"], False),
    (
        "ingress",
        ["XREADGROUP", "GROUP", "dispatcher", "i", "STREAMS", P + "webhook.received", ">"],
        False,
    ),
    ("ingress", ["HGETALL", P + "job:j1"], False),
    ("ingress", ["FLUSHALL"], False),
    ("ingress", ["CONFIG", "GET", "requirepass"], False),
    ("ingress", ["KEYS", "*"], False),
    (
        "dispatcher",
        ["XREADGROUP", "GROUP", "dispatcher", "d", "STREAMS", P + "webhook.received", ">"],
        True,
    ),
    ("dispatcher", ["XADD", P + "job.queued.high", "*", "e", "x"], True),
    ("dispatcher", ["XACK", P + "job.started", "dispatcher", "1-1"], True),
    ("dispatcher", ["XADD", P + "job.finished", "*", "e", "x"], True),
    ("dispatcher", ["ZADD", P + "delayed", "1", "m"], True),
    ("dispatcher", ["HSET", P + "delayed:events", "m", "x"], True),
    ("dispatcher", ["LPUSH", P + "answer:c1", "x"], True),
    ("dispatcher", ["SET", P + "cancel:j1", "2"], True),
    ("dispatcher", ["PUBLISH", P + "control", "j1"], True),
    ("dispatcher", ["SADD", P + "queues", "high"], True),
    ("dispatcher", ["HSET", P + "job:j1", "status", "x"], False),
    ("dispatcher", ["SET", P + "delivery:d1", "x"], False),
    ("dispatcher", ["HSET", P + "worker:w1", "x", "1"], False),
    ("dispatcher", ["SHUTDOWN"], False),
    (
        "worker",
        ["XREADGROUP", "GROUP", "workers", "w", "STREAMS", P + "job.queued.pipeline_tasks", ">"],
        True,
    ),
    ("worker", ["XAUTOCLAIM", P + "job.queued.pipeline_tasks", "workers", "w", "30000", "0"], True),
    ("worker", ["XADD", P + "job.started", "*", "e", "x"], True),
    ("worker", ["XADD", P + "job.finished", "*", "e", "x"], True),
    ("worker", ["HSET", P + "worker:w1", "pid", "1"], True),
    ("worker", ["ZADD", P + "workers", "1", "w1"], True),
    ("worker", ["GET", P + "cancel:j1"], True),
    ("worker", ["SUBSCRIBE", P + "control"], True),
    ("worker", ["SET", P + "cancel:j1", "9"], False),
    ("worker", ["XRANGE", P + "webhook.received", "-", "+"], False),
    ("worker", ["XADD", P + "webhook.received", "*", "e", "x"], False),
    ("worker", ["XADD", P + "commands", "*", "e", "x"], False),
    ("worker", ["HGETALL", P + "job:j1"], False),
    ("worker", ["PUBLISH", P + "control", "j1"], False),
    ("status", ["XREADGROUP", "GROUP", "status", "s", "STREAMS", P + "job.started", ">"], True),
    ("status", ["XTRIM", P + "job.started", "MINID", "0"], True),
    ("status", ["HSET", P + "g1:job:j1", "status", "queued"], True),
    ("status", ["ZADD", P + "jobs:all", "1", "j1"], True),
    ("status", ["HINCRBY", P + "metrics:completed", "k", "1"], True),
    ("status", ["INCRBY", P + "views:next", "1"], True),
    ("status", ["SCAN", "0", "MATCH", P + "g1:*"], True),
    ("status", ["XADD", P + "commands", "*", "e", "x"], True),
    ("status", ["BLPOP", P + "answer:c1", "1"], True),
    ("status", ["XINFO", "GROUPS", P + "job.queued.pipeline_tasks"], True),
    ("status", ["ZRANGEBYSCORE", P + "workers", "0", "+inf"], True),
    ("status", ["HGETALL", P + "dispatcher:job:j1"], True),
    ("status", ["SET", P + "metrics:leader", "t", "NX", "PX", "5000"], True),
    (
        "status",
        ["EVAL", "return redis.call('PEXPIRE', KEYS[1], 5000)", "1", P + "metrics:leader"],
        True,
    ),
    ("status", ["SET", P + "delivery:d1", "x"], False),
    ("status", ["ZADD", P + "delayed", "1", "m"], False),
    ("status", ["HSET", P + "worker:w1", "x", "1"], False),
    ("status", ["SET", P + "cancel:j1", "1"], False),
    ("status", ["FLUSHDB"], False),
    ("keda", ["XINFO", "GROUPS", P + "job.queued.pipeline_tasks"], True),
    ("keda", ["XPENDING", P + "job.queued.pipeline_tasks", "workers"], True),
    ("keda", ["XADD", P + "job.queued.pipeline_tasks", "*", "e", "x"], False),
    ("keda", ["XINFO", "GROUPS", P + "webhook.received"], False),
    ("default", ["CONFIG", "GET", "maxmemory-policy"], True),
    # The Redis safety check (persistence, eviction policy) of every service.
    *((user, ["INFO", "persistence"], True) for user in ("ingress", "dispatcher", "worker")),
    ("status", ["INFO", "memory"], True),
    ("worker", ["CONFIG", "GET", "save"], False),
]


def test_each_user_may_do_its_own_work_and_nothing_else(acl_redis: AclRedis) -> None:
    admin = acl_redis.admin()
    wrong = []
    for user, command, allowed in CASES:
        reply = admin.execute_command("ACL", "DRYRUN", user, *command)  # type: ignore[no-untyped-call]
        if (reply == "OK") != allowed:
            wrong.append((user, " ".join(command), reply))
    assert not wrong, wrong


@pytest.mark.e2e
def test_webhook_to_finished_with_each_service_logged_in_as_its_own_user(
    acl_redis: AclRedis, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    """The real services against a Redis that enforces deploy/redis/users.acl."""
    common = {
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "HOOKLINE_PREFIX": "hookline",
        "HOOKLINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "HOOKLINE_WORK_DIR": str(tmp_path / "work"),
        "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    logs = tmp_path / "logs"
    procs = {}
    for service in ("status", "dispatcher", "worker", "ingress"):
        env = {**common, "REDIS_URL": acl_redis.url(service)}
        args = ["--name", "acl-w1"] if service == "worker" else None
        procs[service] = ServiceProcess(service, env, logs, args=args)
        services.append(procs[service])
    status_url = procs["status"].url
    procs["ingress"].env["HOOKLINE_STATUS_URL"] = status_url
    for proc in procs.values():
        proc.start(wait=False)
    for proc in procs.values():
        proc.wait_healthy()

    jobs = {}
    for event, name, expected in (
        ("push", "with-new-branch.payload.json", "finished"),
        ("pull_request", "opened.payload.json", "finished"),
        ("star", "created.payload.json", "skipped"),
    ):
        body = payload(event, name)
        request = urllib.request.Request(
            f"{procs['ingress'].url}/webhook",
            data=body,
            method="POST",
            headers=signed_headers(SECRET, body, event),
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
            jobs[json.loads(reply.read())["job_id"]] = expected

    def ended(job_id: str) -> str:
        status, view = http_json(f"{status_url}/jobs/{job_id}")
        final = status == 200 and view["status"] in ("finished", "failed", "skipped")
        return view["status"] if final else ""

    admin = acl_redis.admin()
    for job_id, expected in jobs.items():
        try:
            got = wait_until(functools.partial(ended, job_id), 30, what=f"job {job_id} to end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; ACL LOG: {admin.acl_log(count=20)}") from None
        assert got == expected, job_id
    status, health = http_json(f"{status_url}/health")
    assert status == 200, health
    assert health["redis_connected"] is True
    assert health["redis_safety"]["safe"] is True, health

    # Nothing the services did was refused (the Redis safety check reads INFO, which
    # each user may run), apart from redis-py's optional library tag (CLIENT SETINFO,
    # Redis >= 7.2).
    denied = [
        (e["username"], e["object"], e["reason"])
        for e in admin.acl_log(count=256)
        if e["object"] != "client|setinfo"
    ]
    assert denied == [], denied
    assert {e["username"] for e in admin.acl_log(count=256)} <= {
        "ingress",
        "dispatcher",
        "worker",
        "status",
    }

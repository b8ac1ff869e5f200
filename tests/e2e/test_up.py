"""The whole system from ``hookline up``: real processes, real payloads, HTTP only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.payloads import payload, signed_headers
from support.processes import http_json
from support.redis_server import RedisServer
from support.system import System
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[System]:
    """One `hookline up` shared by the tests that only read from it (each uses its own
    deliveries), so the suite pays for its start once."""
    running = System(
        tmp_path_factory.mktemp("up"),
        {
            "REDIS_URL": redis_server.url,
            "HOOKLINE_PREFIX": f"up{uuid.uuid4().hex[:8]}",
            "GITHUB_WEBHOOK_SECRET": SECRET,
        },
    )
    running.start()
    yield running
    running.stop()


def deliver(system: System, event: str, name: str) -> tuple[int, dict[str, object]]:
    body = payload(event, name)
    request = urllib.request.Request(
        f"{system.ingress}/webhook",
        data=body,
        method="POST",
        headers=signed_headers(SECRET, body, event),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def final_view(system: System, job_id: str) -> dict[str, object]:
    finals = {"finished", "failed", "skipped", "canceled"}
    return wait_until(
        lambda: (v := system.job(job_id)) and v["status"] in finals and v,
        timeout=30,
        what=f"job {job_id} to end",
    )


def test_real_payloads_flow_from_webhook_to_final_status(system: System) -> None:
    cases = [
        ("push", "with-new-branch.payload.json", "finished"),
        ("pull_request", "opened.payload.json", "finished"),
        ("star", "created.payload.json", "skipped"),
        ("push", "payload.json", "skipped"),  # deleted tag: nothing to build
    ]
    answers = []
    for event, name, _ in cases:
        status, body = deliver(system, event, name)
        assert status == 202, body
        assert body["status_url"] == f"{system.status}/jobs/{body['job_id']}"
        answers.append(body)
    for (event, _, expected), answer in zip(cases, answers, strict=True):
        view = final_view(system, str(answer["job_id"]))
        assert view["status"] == expected, view
        if expected == "finished":
            result = view["result"]
            assert isinstance(result, dict)
            assert Path(str(result["artifact"])).is_file()
            assert view["started_at"]
            assert view["ended_at"]
        else:
            assert event in str(view["reason"])
    push_result = final_view(system, str(answers[0]["job_id"]))["result"]
    assert isinstance(push_result, dict)
    assert push_result["commits"] == 1
    assert push_result["authors"] == ["Codertocat"]
    assert push_result["files_touched"] == 1

    # Other tests share this system: look for this test's jobs, not for exact counts.
    ids = [str(a["job_id"]) for a in answers]
    status, listing = http_json(f"{system.status}/jobs?status=all&limit=100")
    assert status == 200
    assert isinstance(listing, dict)
    assert set(ids) <= {job["job_id"] for job in listing["jobs"]}
    status, finished = http_json(f"{system.status}/jobs?status=finished&limit=100")
    assert isinstance(finished, dict)
    assert {j["job_id"] for j in finished["jobs"]} & set(ids) == {ids[0], ids[1]}
    status, health = http_json(f"{system.status}/health")
    assert status == 200
    assert health["redis_connected"] is True
    assert health["workers_count"] == 2


def test_ping_is_answered_and_queues_no_job(system: System) -> None:
    status, body = deliver(system, "ping", "payload.json")
    assert status in (200, 202)
    view = final_view(system, str(body["job_id"])) if status == 202 else {}
    assert view.get("status", "skipped") == "skipped"


def test_status_api_refuses_bad_queries_and_unknown_jobs(system: System) -> None:
    status, body = http_json(f"{system.status}/jobs/no-such-job")
    assert status == 404
    assert body["error"] == "not_found"
    for query, name in (
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
    ):
        status, body = http_json(f"{system.status}/jobs?{query}")
        assert status == 400, query
        assert name in body["detail"]


def test_webhook_send_delivers_a_signed_push_and_the_job_finishes(system: System) -> None:
    env = {**system.env, "GITHUB_WEBHOOK_SECRET": SECRET}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hookline.cli",
            "webhook",
            "send",
            "--event",
            "push",
            "--url",
            f"{system.ingress}/webhook",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP 202")
    answer = json.loads(done.stdout.split("\n", 1)[1])
    view = final_view(system, answer["job_id"])
    assert view["status"] == "finished"


def test_up_stops_every_service_on_sigterm(tmp_path: Path, redis_url: str, prefix: str) -> None:
    system = System(
        tmp_path,
        {"REDIS_URL": redis_url, "HOOKLINE_PREFIX": prefix, "GITHUB_WEBHOOK_SECRET": SECRET},
        workers=1,
    ).start()
    assert system.process is not None
    children = _children(system.process.pid)
    assert len(children) == 4
    assert system.stop() == 0
    assert "hookline stopped" in system.logs()
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def test_up_with_a_taken_port_exits_2_with_one_clear_line(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "HOOKLINE_PREFIX": prefix,
            "HOOKLINE_INGRESS_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "hookline.cli", "up"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "HOOKLINE_INGRESS_PORT" in lines[0]
    assert "in use" in lines[0]


def test_up_generates_a_secret_when_none_is_configured(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "HOOKLINE_PREFIX": prefix, "GITHUB_WEBHOOK_SECRET": ""}
    system = System(tmp_path, env, workers=1).start()
    try:
        secret_file = tmp_path / ".hookline" / "secret"
        assert secret_file.is_file()
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        assert ".hookline/secret" in system.logs()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hookline.cli",
                "webhook",
                "send",
                "--url",
                f"{system.ingress}/webhook",
            ],
            cwd=tmp_path,
            env={**system.env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.stdout.startswith("HTTP 202"), done.stdout + done.stderr
    finally:
        system.stop()


def test_a_service_without_a_secret_refuses_to_start(tmp_path: Path, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_WEBHOOK_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "hookline.cli", "ingress"],
        cwd=tmp_path,
        env={**env, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "GITHUB_WEBHOOK_SECRET" in done.stderr

"""The whole system from ``hookline up``: real processes, real payloads, HTTP only."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hookline.embedded_redis import free_port
from support.payloads import payload, signed_headers
from support.processes import healthy, http_json, terminate
from support.redis_server import RedisServer
from support.system import System
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-0123456789"


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


def test_up_generates_a_secret_once_then_says_it_reuses_it(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "HOOKLINE_PREFIX": prefix, "GITHUB_WEBHOOK_SECRET": ""}
    system = System(tmp_path, env, workers=1).start()
    try:
        secret_file = tmp_path / ".hookline" / "secret"
        assert secret_file.is_file()
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        assert "secret    generated, stored in .hookline/secret" in system.logs()
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
    again = System(tmp_path, env, workers=1)
    again.log_path = tmp_path / "up-again.log"
    again.start()
    try:
        banner = again.logs()
        assert "secret    reused, stored in .hookline/secret" in banner
        assert "generated" not in banner
    finally:
        again.stop()


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


def hookline_cli(
    workdir: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in ``workdir``, as a second terminal beside ``up`` would run it."""
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_operator_commands_read_the_redis_of_up_beside_them(tmp_path: Path, prefix: str) -> None:
    """No REDIS_URL and no HOOKLINE_PREFIX in the CLI's environment: up's embedded Redis
    is on its own port under a prefix of its own, and the CLI in the same folder finds
    both through .hookline/up.json; so do `status --rebuild` and a worker run by hand."""
    redis_port = free_port()
    up_env = {
        "HOOKLINE_REDIS_PORT": str(redis_port),
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": SECRET,
    }
    system = System(tmp_path, up_env, workers=1)
    record = tmp_path / ".hookline" / "up.json"
    cli_env = {k: v for k, v in system.env.items() if k not in ("REDIS_URL", "HOOKLINE_PREFIX")}
    shown = f"redis://:***@127.0.0.1:{redis_port}/0"  # up's Redis has a password of its own
    source = f"redis {shown} prefix {prefix} (from .hookline/up.json)"
    system.start()
    by_hand: subprocess.Popen[bytes] | None = None
    try:
        password = (tmp_path / ".hookline" / "redis.password").read_text().strip()
        assert len(password) >= 32
        written = json.loads(record.read_text())
        assert written["redis_url"] == f"redis://:{password}@127.0.0.1:{redis_port}/0"
        assert written["prefix"] == prefix
        assert oct(record.stat().st_mode & 0o777) == "0o600"
        assert "recorded in .hookline/up.json" in system.logs()
        assert password not in system.logs()
        assert oct((tmp_path / ".hookline" / "redis").stat().st_mode & 0o777) == "0o700"
        # Without the password nobody gets in (a local user, a pipeline command).
        with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(64).startswith(b"-NOAUTH")

        info = hookline_cli(tmp_path, cli_env, "info")
        assert info.returncode == 0, info.stderr
        assert info.stdout.splitlines()[0] == source
        data = json.loads(hookline_cli(tmp_path, cli_env, "info", "--json").stdout)
        assert len([w for w in data["workers"] if w["state"] != "dead"]) == 1
        cancel = hookline_cli(tmp_path, cli_env, "cancel", "no-such-job")
        assert cancel.stdout.splitlines()[0] == source
        rebuilt = hookline_cli(tmp_path, cli_env, "status", "--rebuild")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert rebuilt.stdout.splitlines()[0] == source

        # A worker started by hand here joins this system (its Redis, its prefix).
        by_hand = subprocess.Popen(
            [sys.executable, "-m", "hookline.cli", "worker", "--name", "by-hand", "--port", "0"],
            cwd=tmp_path,
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def joined() -> bool:
            out = hookline_cli(tmp_path, cli_env, "info", "--json").stdout
            return any(w["name"] == "by-hand" for w in json.loads(out)["workers"])

        wait_until(joined, timeout=20, what="the worker run by hand to join up's system")

        # REDIS_URL, when set, wins over the record.
        elsewhere = "redis://op:hunter2@127.0.0.1:1/0"
        down = hookline_cli(tmp_path, {**cli_env, "REDIS_URL": elsewhere}, "jobs")
        assert down.returncode == 1
        assert "redis://op:***@127.0.0.1:1/0 (from REDIS_URL)" in down.stderr
        assert "hunter2" not in down.stdout + down.stderr
    finally:
        terminate(by_hand, 15)
        assert system.stop() == 0
    assert not record.exists()
    gone = hookline_cli(tmp_path, cli_env, "info")
    assert f"127.0.0.1:{redis_port}" not in gone.stdout + gone.stderr
    assert "no hookline up here" in gone.stdout + gone.stderr


def test_a_second_up_in_the_same_folder_is_refused(tmp_path: Path, prefix: str) -> None:
    """Two ups on one .hookline/ would share its Redis data and fight over its record."""
    first = System(tmp_path, {"HOOKLINE_REDIS_PORT": str(free_port()), "HOOKLINE_PREFIX": prefix})
    first.start()
    try:
        before = (tmp_path / ".hookline" / "up.json").read_text()
        second = System(tmp_path, {"HOOKLINE_REDIS_PORT": str(free_port())}, workers=1)
        second.log_path = tmp_path / "second.log"
        with second.log_path.open("wb") as log:
            code = subprocess.run(
                [sys.executable, "-m", "hookline.cli", "up", "--workers", "1"],
                cwd=tmp_path,
                env=second.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=False,
            ).returncode
        assert code == 2
        said = second.logs().strip().splitlines()
        assert len(said) == 1
        assert "another hookline up" in said[0]
        assert f"pid {first.process.pid}" in said[0]  # type: ignore[union-attr]
        assert (tmp_path / ".hookline" / "up.json").read_text() == before
        info = hookline_cli(
            tmp_path, {k: v for k, v in first.env.items() if k != "REDIS_URL"}, "info"
        )
        assert info.returncode == 0, info.stderr
    finally:
        assert first.stop() == 0


def test_kill_9_of_up_takes_its_embedded_redis_with_it(tmp_path: Path) -> None:
    port = free_port()
    system = System(tmp_path, {"HOOKLINE_REDIS_PORT": str(port)}, workers=1)
    system.start()
    assert system.process is not None
    system.process.kill()
    system.process.wait()

    def redis_gone() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) != 0

    wait_until(redis_gone, timeout=15, what="the embedded Redis to end with its up")


def test_a_record_left_by_an_up_that_is_gone_is_not_used(tmp_path: Path) -> None:
    """A record nobody holds (its up was killed) is stale: never read, and said so."""
    home = tmp_path / ".hookline"
    home.mkdir()
    record = home / "up.json"
    record.write_text('{"redis_url": "redis://127.0.0.1:1/0", "prefix": "x", "pid": 1}\n')
    record.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = hookline_cli(tmp_path, env, "info")
    assert "127.0.0.1:1/" not in done.stdout + done.stderr
    assert ".hookline/up.json is stale" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("content", "mode", "said"),
    [
        (b"\x00\xff garbage", 0o600, "not a record hookline up wrote"),
        (b'{"redis_url": "redis://:pw@127.0.0.1:1/0", "prefix": "x", "pid": 1}', 0o666, "0600"),
    ],
    ids=["garbage", "world-readable"],
)
def test_a_hostile_record_is_refused_in_one_line(
    tmp_path: Path, content: bytes, mode: int, said: str
) -> None:
    """Held (as by a live up) but not what up writes: one line naming the file, exit 2."""
    home = tmp_path / ".hookline"
    home.mkdir()
    record = home / "up.json"
    record.write_bytes(content)
    record.chmod(mode)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    with record.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = hookline_cli(tmp_path, env, "info")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert ".hookline/up.json" in done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr


LONG_CONFIG = """
[pipelines.long]
command = [{python}, "-c", {script}]
timeout = "20m"
retries = 0

[[routes]]
events = ["push"]
pipeline = "long"
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait for a reaper that never comes)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_second_ctrl_c_stops_running_jobs_at_once(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    pid_file = tmp_path / "pipeline.pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    config = tmp_path / "hookline.toml"
    config.write_text(
        LONG_CONFIG.format(python=json.dumps(sys.executable), script=json.dumps(script))
    )
    env = {
        "REDIS_URL": redis_url,
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "HOOKLINE_CONFIG": str(config),
    }
    system = System(tmp_path, env, workers=1).start()
    assert system.process is not None
    try:
        status, answer = deliver(system, "push", "with-new-branch.payload.json")
        assert status == 202, answer
        pid = int(
            wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, what="the job")
        )
        system.process.send_signal(signal.SIGINT)
        wait_until(
            lambda: "a running job may take up to 65s" in system.logs(),
            10,
            what="up to say it is stopping",
        )
        assert "Ctrl-C again" in system.logs()
        assert system.process.poll() is None  # the job holds the shutdown
        assert _running(pid)
        system.process.send_signal(signal.SIGINT)
        assert system.process.wait(timeout=20) == 0
    finally:
        system.stop()
    assert "stopping running jobs now" in system.logs()
    assert "hookline stopped" in system.logs()
    wait_until(lambda: not _running(pid), 5, what="the pipeline to be stopped")


def _child_running(up_pid: int, module: str) -> int | None:
    for pid in _children(up_pid):
        with contextlib.suppress(OSError):
            if module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
    return None


def test_a_service_that_keeps_dying_is_restarted_with_a_growing_delay(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    """The dispatcher is killed and its port taken, so each restart dies at once: up
    waits 1 s, then 2 s (and says so), and the service comes back once it can start."""
    system = System(
        tmp_path,
        {"REDIS_URL": redis_url, "HOOKLINE_PREFIX": prefix, "GITHUB_WEBHOOK_SECRET": SECRET},
        workers=1,
    ).start()
    assert system.process is not None
    try:
        pid = _child_running(system.process.pid, "hookline_dispatcher")
        assert pid is not None
        with socket.socket() as taken:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _running(pid), 10, what="the dispatcher to die")
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", system.dispatcher_port))
            taken.listen()
            wait_until(lambda: "restarting in 1s (restart 1)" in system.logs(), 10, what="1s")
            wait_until(
                lambda: (
                    "restarting in 2s (restart 2, backing off, 2 failures in a row)"
                    in system.logs()
                ),
                15,
                what="the second restart to back off",
            )
        port = system.dispatcher_port
        wait_until(lambda: healthy(port), 20, what="the dispatcher back")
        assert "restart 3," not in system.logs()  # it started once it could
    finally:
        assert system.stop() == 0

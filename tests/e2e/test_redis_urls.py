"""Every Redis URL form the settings accept works end to end, and one they cannot use
is refused at start in one line, not with a traceback when connecting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import ServiceProcess, http_json
from support.redis_server import own_redis

pytestmark = pytest.mark.e2e


def test_a_service_runs_on_a_unix_socket_redis(
    tmp_path: Path, base_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    socket_path = tmp_path / "r.sock"
    server = own_redis(tmp_path / "redis", extra_args=["--unixsocket", str(socket_path)])
    try:
        env = {**base_env, "REDIS_URL": f"unix://{socket_path}?db=0"}
        status = ServiceProcess("status", env, tmp_path).start()
        services.append(status)
        code, body = http_json(f"{status.url}/health")
        assert code == 200, body
        assert body["redis_connected"] is True
        listed = subprocess.run(
            [sys.executable, "-m", "hookline.cli", "jobs", "--json"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
    finally:
        for proc in services:
            proc.stop()
        services.clear()
        server.stop()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://127.0.0.1:6379/0?foo=1", "unknown option(s) foo"),
        ("redis://127.0.0.1:port/0", "Port could not be cast"),
        ("redis://127.0.0.1:6379/zero", "must be a number"),
        ("http://127.0.0.1:6379", "must start with"),
    ],
)
@pytest.mark.parametrize("command", [["worker"], ["info"]])
def test_a_url_redis_cannot_use_is_refused_in_one_line(
    url: str, said: str, command: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hookline.cli", *command],
        env={**os.environ, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("hookline: error: REDIS_URL: ")
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reader_that_goes_away_is_not_a_redis_error(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """``hookline jobs | head -1``: the closed pipe is not "cannot reach Redis"."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "hookline.cli", "info", "--interval", "0.05"],
        env={**os.environ, **base_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    reader.stdout.readline()
    reader.stdout.close()  # as `head -1` does after its line
    _, err = reader.communicate(timeout=30)
    assert b"cannot reach Redis" not in err
    assert b"Traceback" not in err

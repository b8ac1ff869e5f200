"""Redis with a password and TLS (``rediss://``, a self-signed certificate made here):
the whole flow works end to end, and nothing logs the password."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from hookline.embedded_redis import find_redis_server, free_port
from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, http_json
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "tls-redis-password-5e7a"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test's certificate (apt-get install openssl)")
    cert, key = folder / "redis.crt", folder / "redis.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    binary = find_redis_server()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--appendonly",
            "yes",
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    def answers() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"redis-server without TLS support? It exited: {out[-500:]}")
        client = sync_redis.Redis.from_url(url)
        try:
            return bool(client.ping())
        except (sync_redis.ConnectionError, OSError):
            return False
        finally:
            client.close()

    wait_until(answers, timeout=15, what="redis-server with TLS to answer")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def test_the_whole_flow_runs_over_tls_with_a_password(
    tls_redis: str, base_env: dict[str, str], tmp_path: Path, services: list[ServiceProcess]
) -> None:
    env = {**base_env, "REDIS_URL": tls_redis}
    for name in ("status", "dispatcher", "worker", "ingress"):
        services.append(ServiceProcess(name, env, tmp_path).start())
    ingress, status = services[3], services[0]
    body = payload("push", "with-new-branch.payload.json")
    request = urllib.request.Request(
        f"{ingress.url}/webhook",
        data=body,
        method="POST",
        headers=signed_headers("test-secret-0123456789", body, "push"),
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
        job_id = json.loads(reply.read())["job_id"]

    def finished() -> bool:
        code, view = http_json(f"{status.url}/jobs/{job_id}")
        return code == 200 and view["status"] == "finished"

    wait_until(finished, timeout=30, what="the job to finish over TLS")
    for proc in services:
        assert PASSWORD not in proc.logs()

"""Operator actions across real processes: the status service's admin endpoints and the
CLI append commands, the dispatcher carries them out, the worker stops what runs, and the
views show the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from hookline.keys import Keys
from support.payloads import append_webhook
from support.processes import ServiceProcess, http_json
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parents[1]
TOKEN = "operator-admin-token"
CONFIG = f"""
[pipelines.long]
command = [{json.dumps(sys.executable)}, "-c", "import time; time.sleep(60)"]
timeout = "2m"
retries = 0

[pipelines.doomed]
handler = "support.e2e_pipelines:doomed"
retries = 0

[[routes]]
events = ["push"]
pipeline = "long"

[[routes]]
events = ["pull_request"]
pipeline = "doomed"
"""


def post(url: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def view(status: ServiceProcess, job_id: str) -> dict[str, Any]:
    code, body = http_json(f"{status.url}/jobs/{job_id}")
    return body if code == 200 else {}


def test_cancel_requeue_and_purge_through_the_api_and_the_cli(
    tmp_path: Path,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    redis_url: str,
    keys: Keys,
) -> None:
    config = tmp_path / "hookline.toml"
    config.write_text(CONFIG)
    env = {
        **base_env,
        "HOOKLINE_CONFIG": str(config),
        "HOOKLINE_ADMIN_TOKEN": TOKEN,
        "PYTHONPATH": str(TESTS),
    }
    status = ServiceProcess("status", env, tmp_path).start()
    services.append(status)
    services.append(ServiceProcess("dispatcher", env, tmp_path).start())
    services.append(ServiceProcess("worker", env, tmp_path, args=["--concurrency", "2"]).start())
    client = redis.Redis.from_url(redis_url)

    # A running command pipeline is canceled through POST /jobs/<id>/cancel.
    running = append_webhook(client, keys, "push", "with-new-branch.payload.json", "op-long")
    wait_until(
        lambda: view(status, running).get("status") == "started",
        timeout=20,
        what="the long job to start",
    )
    assert post(f"{status.url}/jobs/{running}/cancel", token=None)[0] == 401
    assert post(f"{status.url}/jobs/{running}/cancel", token="wrong")[0] == 403
    code, answer = post(f"{status.url}/jobs/{running}/cancel")
    assert code == 200, answer
    assert answer["ok"] is True
    wait_until(
        lambda: view(status, running).get("status") == "canceled",
        timeout=10,
        what="the running job to be canceled",
    )

    # A failed job is requeued through the API: a new attempt of the same job id.
    doomed = append_webhook(client, keys, "pull_request", "opened.payload.json", "op-doomed")
    wait_until(
        lambda: view(status, doomed).get("status") == "failed",
        timeout=20,
        what="the doomed job to fail",
    )
    code, answer = post(f"{status.url}/jobs/{doomed}/requeue")
    assert code == 200, answer
    wait_until(
        lambda: (v := view(status, doomed)).get("status") == "failed" and v.get("attempt") == 2,
        timeout=20,
        what="the second attempt to fail",
    )

    # `hookline empty failed` purges it: gone from the failed listing.
    cli_env = {**os.environ, **env}
    done = subprocess.run(
        [sys.executable, "-m", "hookline.cli", "empty", "failed"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    def failed_ids() -> set[str]:
        code, body = http_json(f"{status.url}/jobs?status=failed")
        return {job["job_id"] for job in body["jobs"]} if code == 200 else {"?"}

    wait_until(
        lambda: doomed not in failed_ids(),
        timeout=20,
        what="the purged job to leave the failed listing",
    )
    client.close()

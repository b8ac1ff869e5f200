"""A command pipeline, run by a real worker under a real ``hookline up`` given every
secret in its environment, tries every way to read them (its own environment, the
worker's /proc environ, cmdline, mem and fds, every hookline process's environ, the
files the secrets were handed over in) and finds none."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hookline.config import SECRET_VARIABLES
from support.payloads import payload, signed_headers
from support.processes import post_webhook
from support.redis_server import own_redis
from support.system import System
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex
ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
REDIS_PASSWORD = "redispw-" + uuid.uuid4().hex
PROBE = Path(__file__).parent.parent / "support" / "secret_probe.py"
ROOT = os.geteuid() == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the pipeline's user may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="probe-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_command_pipeline_cannot_read_any_secret(tmp_path: Path, shared_dir: Path) -> None:
    redis = own_redis(tmp_path / "redis", password=REDIS_PASSWORD)
    probe = shared_dir / "probe.py"
    shutil.copy(PROBE, probe)
    probe.chmod(0o644)
    # As root the command runs as `nobody`; python from /usr/bin, which nobody can run.
    python = "/usr/bin/python3" if ROOT else sys.executable
    config = shared_dir / "hookline.toml"
    up_home = tmp_path / ".hookline"
    config.write_text(
        f"[pipelines.probe]\ncommand = [{json.dumps(python)}, {json.dumps(str(probe))}]\n"
        f"env = {{ PROBE_UP_HOME = {json.dumps(str(up_home) if ROOT else '')} }}\n"
        '[[routes]]\nevents = ["push"]\npipeline = "probe"\n'
    )
    env = {
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0",
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HOOKLINE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HOOKLINE_CONFIG": str(config),
        "HOOKLINE_WORK_DIR": str(shared_dir / "work"),
        "HOOKLINE_ARTIFACTS_DIR": str(shared_dir / "artifacts"),
        "HOOKLINE_PREFIX": f"sec{uuid.uuid4().hex[:8]}",
    }
    if ROOT:
        env["HOOKLINE_WORKER_RUN_AS"] = "nobody"
    system = System(tmp_path, env, workers=1)
    try:
        system.start()
        body = payload("push", "with-new-branch.payload.json")
        status, answer = post_webhook(
            system.ingress, body, signed_headers(WEBHOOK_SECRET, body, "push")
        )
        assert status == 202, answer
        view = wait_until(
            lambda: (
                (v := system.job(answer["job_id"])) and v["status"] in ("finished", "failed") and v
            ),
            timeout=30,
            what="the probe job to end",
        )
        assert view["status"] == "finished", view
        found = cast(dict[str, Any], view["result"])
        dump = (shared_dir / "artifacts" / answer["job_id"] / "dump.bin").read_bytes()
        assert system.process is not None
        environs = service_environs(system.process.pid) if ROOT else {}
    finally:
        system.stop()
        redis.stop()
    assert "hookline_worker" in found["parent_cmdline"], found  # the probe did run under it
    assert found["hookline_seen"] >= 5, found  # up, ingress, dispatcher, status, worker
    if ROOT:
        assert found["uid"] != 0, found
    for secret in (WEBHOOK_SECRET, ADMIN_TOKEN, REDIS_PASSWORD):
        assert secret.encode() not in dump, f"the pipeline read {secret[:8]}…"
    assert found["parent_environ"] is False, found
    assert found["parent_mem_bytes"] == 0, found
    assert found["parent_fds_read"] == 0, found
    assert found["own_fds"] == [], found
    assert found["environ_readable"] == [], found
    assert found["up_files_read"] == [], found
    if ROOT:  # root may read every service's environ: each names only its own files
        files = {
            name: sorted(k for k in env if k.endswith("_FILE") and k[:-5] in SECRET_VARIABLES)
            for name, env in environs.items()
        }
        assert files == {
            "hookline_ingress": ["GITHUB_WEBHOOK_SECRET_FILE", "REDIS_URL_FILE"],
            "hookline_status": ["HOOKLINE_ADMIN_TOKEN_FILE", "REDIS_URL_FILE"],
            "hookline_dispatcher": ["REDIS_URL_FILE"],
            "hookline_worker": ["REDIS_URL_FILE"],
        }
        for env in environs.values():
            text = "\n".join(env.values())
            assert not any(s in text for s in (WEBHOOK_SECRET, ADMIN_TOKEN, REDIS_PASSWORD))


def service_environs(up_pid: int) -> dict[str, dict[str, str]]:
    """The environment each service of ``up`` was started with, by module name."""
    found: dict[str, dict[str, str]] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            raw = (entry / "environ").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == up_pid and len(cmdline) > 2:
            pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
            found[cmdline[2].decode()] = {k: v for k, _, v in pairs}
    return found

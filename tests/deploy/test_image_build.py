"""The Dockerfile's build steps, run for real without Docker: the same `uv sync`
commands into a fresh environment, then the service started from it the way the image
starts it (its console script) and checked with the image's health check script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hookline.embedded_redis import free_port
from support.deploy import DEPLOY, PORT_VARS, REPO, SERVICES, dockerfile_instructions, uv
from support.waiting import wait_until

pytestmark = pytest.mark.e2e


def build_steps(service: str) -> tuple[list[list[str]], dict[str, str]]:
    """The Dockerfile's `uv sync` commands for ``service``, and its build-stage ENV."""
    steps = dockerfile_instructions(DEPLOY / "docker" / "Dockerfile")
    build_stage = steps[: [i for i, (op, _) in enumerate(steps) if op == "FROM"][2]]
    env: dict[str, str] = {}
    for op, args in build_stage:
        if op == "ENV":
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args))
    commands = []
    for op, args in build_stage:
        if op != "RUN":
            continue
        for part in args.split("&&"):
            words = part.replace("${SERVICE}", service).split()
            words = [w for w in words if not w.startswith("--mount=")]
            if words[:2] == ["uv", "sync"]:
                commands.append(words[2:])
    return commands, env


# Two of the four (the build steps are the same text for all; test_files.py checks every
# service's package and console script): the public one and the one users extend.
@pytest.mark.parametrize("service", ["ingress", "worker"])
def test_the_image_build_installs_only_its_service_and_it_runs(
    service: str, tmp_path: Path, redis_url: str, prefix: str
) -> None:
    commands, build_env = build_steps(service)
    assert len(commands) == 2
    venv = tmp_path / "venv"
    env = {**os.environ, **build_env, "UV_PROJECT_ENVIRONMENT": str(venv)}
    # Speed only, not what is installed: no .pyc compilation, link from uv's cache.
    env.update(UV_COMPILE_BYTECODE="0", UV_LINK_MODE="symlink")
    env.pop("VIRTUAL_ENV", None)
    for args in commands:
        done = subprocess.run(
            [*uv(), "sync", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    script = venv / "bin" / f"hookline-{service}"
    assert script.is_file()
    own = subprocess.run([str(python), "-c", f"import hookline_{service}"], check=False)
    assert own.returncode == 0
    for other in set(SERVICES) - {service}:
        found = subprocess.run(
            [str(python), "-c", f"import hookline_{other}"], capture_output=True, check=False
        )
        assert found.returncode != 0, f"the {service} image holds hookline_{other}"
    dev = subprocess.run([str(python), "-c", "import pytest"], capture_output=True, check=False)
    assert dev.returncode != 0, "dev dependencies in the image"

    port = free_port()
    run_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOOKLINE_SERVICE": service,
        PORT_VARS[service]: str(port),
        "REDIS_URL": redis_url,
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": "image-secret-0123456789",
        "HOOKLINE_LOG_FORMAT": "json",
        "HOOKLINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "HOOKLINE_WORK_DIR": str(tmp_path / "work"),
        "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [str(script)],
        env=run_env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    check = [str(python), str(DEPLOY / "docker" / "healthcheck.py")]
    try:

        def healthy() -> bool:
            assert process.poll() is None, (tmp_path / "service.log").read_text()[-2000:]
            return (
                subprocess.run(check, env=run_env, capture_output=True, check=False).returncode == 0
            )

        wait_until(healthy, 30, interval=0.2, what=f"{service} from its image build")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0, (tmp_path / "service.log").read_text()[-2000:]

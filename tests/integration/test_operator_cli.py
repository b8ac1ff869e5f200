"""The operator CLI as a real subprocess: ``hookline config check``, ``requeue``,
``cancel`` and ``empty failed`` (the dispatcher loop runs in the test's process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hookline.keys import Keys
from support.dispatching import TOML, Harness, make_harness
from support.waiting import async_wait_until


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hookline.cli",
        *args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def h(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[Harness]:
    harness = make_harness(redis, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(harness.consumer.run(stop))
    yield harness
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_config_check_prints_the_resolved_routes(tmp_path: Path) -> None:
    path = tmp_path / "hookline.toml"
    path.write_text(TOML)
    code, out, err = await cli({}, "config", "check", str(path))
    assert code == 0, err
    assert f"{path}: ok, 3 pipeline(s), 3 route(s)" in out
    assert (
        "1. events=pull_request actions=closed repositories=Codertocat/* -> pipeline 'later'" in out
    )
    assert "delay 5m" in out
    assert "supersede" in out
    assert out.rstrip().endswith("anything else -> skipped")


async def test_config_check_of_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "hookline.toml"
    path.write_text('[pipelines.a]\nhandler = "m:f"\n\n[[routes]]\npipeline = "b"\n')
    code, out, err = await cli({}, "config", "check", str(path))
    assert code == 2
    assert out == ""
    assert (
        err == f"hookline: error: {path}:5: routes[0].pipeline: unknown pipeline 'b' (known: a)\n"
    )


async def test_config_check_refuses_a_placeholder_in_a_shell_script(tmp_path: Path) -> None:
    path = tmp_path / "hookline.toml"
    path.write_text('[pipelines.a]\ncommand = ["sh", "-c", "echo {branch}"]\n')
    code, out, err = await cli({}, "config", "check", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"hookline: error: {path}:2: pipelines.a.command[2]: {{branch}} inside")
    assert '"$HOOKLINE_META_BRANCH" in the script' in err
    path.write_text(
        '[pipelines.a]\ncommand = ["sh", "-c", "echo {branch}"]\nunsafe_shell_templates = true\n'
        '[[routes]]\npipeline = "a"\n'
    )
    code, out, err = await cli({}, "config", "check", str(path))
    assert code == 0, err
    assert "unsafe shell templates" in out


async def test_the_dispatcher_refuses_to_start_with_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "hookline.toml"
    path.write_text('[pipelines.a]\nhandler = "m:f"\nbackoff = { kind = "linear" }\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hookline_dispatcher",
        env={**os.environ, "HOOKLINE_CONFIG": str(path)},
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert f"{path}:3: pipelines.a.backoff.kind: Invalid enum value 'linear'" in err.decode()


BAD_ARGUMENTS = [
    (["requeue"], "give either a JOB_ID or --all"),
    (["cancel", "a b"], "not a job id"),
    (["empty", "done"], "invalid choice: 'done'"),
]


async def test_bad_arguments_are_refused_and_append_nothing(
    redis: aioredis.Redis, keys: Keys, base_env: dict[str, str]
) -> None:
    results = await asyncio.gather(*(cli(base_env, *args) for args, _ in BAD_ARGUMENTS))
    for (args, message), (code, _, err) in zip(BAD_ARGUMENTS, results, strict=True):
        assert code == 2, args
        assert message in err, args
    assert await redis.exists(keys.commands) == 0


async def test_cancel_prints_the_answer_and_succeeds(h: Harness, base_env: dict[str, str]) -> None:
    job_id = await h.webhook("push", "with-new-branch.payload.json", "cli-1")
    await async_wait_until(lambda: h.queued(), what="the job to be queued")
    code, out, err = await cli(base_env, "cancel", job_id)
    assert code == 0, err
    assert f"job {job_id}: queued attempt 1 canceled" in out
    code, out, _ = await cli(base_env, "requeue", job_id)
    assert code == 0
    assert "attempt 2 queued on builds" in out


async def test_a_refused_command_exits_non_zero(h: Harness, base_env: dict[str, str]) -> None:
    code, out, _ = await cli(base_env, "requeue", "nobody")
    assert code == 1
    assert "job nobody is unknown" in out


async def test_no_answer_in_time_exits_non_zero_and_says_why(
    redis: aioredis.Redis, keys: Keys, base_env: dict[str, str]
) -> None:
    code, _, err = await cli(base_env, "cancel", "j1", "--timeout", "200ms")
    assert code == 1
    assert "no answer within 0.2s: is a dispatcher running?" in err
    assert await redis.xlen(keys.commands) == 1  # still carried out once one runs

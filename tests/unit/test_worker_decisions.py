"""The worker's pure decisions and the pure parts of running a pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hookline.events import CommandRun, HandlerRun, JobSpec
from hookline_worker import decisions
from hookline_worker.context import JobContext
from hookline_worker.runners.command import command_env, command_outcome, result_from_stdout
from hookline_worker.runners.result import MAX_RESULT_BYTES, OUTPUT_TAIL_BYTES, checked_result


@pytest.mark.parametrize(
    ("queued", "deliveries", "attempt"),
    [(1, 1, 1), (1, 2, 2), (1, 3, 3), (3, 1, 3), (3, 2, 4), (2, 0, 2)],
)
def test_each_redelivery_is_a_new_attempt(queued: int, deliveries: int, attempt: int) -> None:
    assert decisions.run_attempt(queued, deliveries) == attempt


@pytest.mark.parametrize(
    ("deliveries", "max_deliveries", "lost"),
    [(1, 3, False), (3, 3, False), (4, 3, True), (2, 1, True)],
)
def test_worker_lost_past_max_deliveries(deliveries: int, max_deliveries: int, lost: bool) -> None:
    assert decisions.worker_lost(deliveries, max_deliveries) is lost


@pytest.mark.parametrize(
    ("attempt", "marker", "applies"),
    [
        (1, None, False),
        (1, b"1", True),
        (1, b"2", True),
        (2, b"1", False),
        (3, "3", True),
        (1, b"junk", False),
    ],
)
def test_cancel_marker_covers_attempts_up_to_its_value(
    attempt: int, marker: Any, applies: bool
) -> None:
    assert decisions.cancel_applies(attempt, marker) is applies


@pytest.mark.parametrize(
    ("lease", "renew", "claim"),
    [(30.0, 5.0, 5.0), (2.0, 2 / 3, 0.5), (0.3, 0.1, 0.075), (600.0, 5.0, 5.0)],
)
def test_lease_periods(lease: float, renew: float, claim: float) -> None:
    assert decisions.lease_periods(lease) == pytest.approx((renew, claim))
    assert decisions.heartbeat_period(lease) <= lease / 3 + 1e-9


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (JobSpec(pipeline="p", run=HandlerRun(path="pkg.mod:fn")), None),
        (JobSpec(pipeline="p", run=CommandRun(argv=["make", "all"])), None),
        (JobSpec(pipeline="p"), "unknown pipeline 'p'"),
        (JobSpec(pipeline="p", run=CommandRun(argv=[])), "empty command"),
        (JobSpec(pipeline="p", run=CommandRun(argv=[""])), "empty command"),
        (JobSpec(pipeline="p", run=CommandRun(argv=["a\x00b"])), "NUL byte"),
        (JobSpec(pipeline="p", run=HandlerRun(path="no_colon")), "not of the form"),
        (JobSpec(pipeline="p", run=HandlerRun(path="pkg.mod:fn"), timeout=0), "timeout 0"),
        (
            JobSpec(pipeline="p", run=CommandRun(argv=["x"]), env={"A=B": "1"}),
            "invalid environment",
        ),
    ],
)
def test_spec_problems(spec: JobSpec, problem: str | None) -> None:
    found = decisions.spec_problem(spec)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("job_id", "ok"),
    [
        ("6f1c4b7e-2f52-5d8e", True),
        ("job_1.2:3", True),
        ("../x", False),
        ("", False),
        ("a/b", False),
    ],
)
def test_job_ids_must_be_path_safe(job_id: str, ok: bool) -> None:
    assert (decisions.job_id_problem(job_id) is None) is ok


@pytest.mark.parametrize(
    ("stdout", "result"),
    [
        (b"", {"exit_code": 0}),
        (b"building\n", {"exit_code": 0}),
        (b'log\n{"video": "out.mp4"}\n\n', {"video": "out.mp4"}),
        (b'{"a": 1}\nnot json at the end\n', {"exit_code": 0}),
        (b"[1, 2]\n", {"exit_code": 0}),  # an object, not any JSON value
    ],
)
def test_result_is_the_json_object_on_the_last_line(stdout: bytes, result: object) -> None:
    assert result_from_stdout(stdout) == result


def test_failed_command_error_has_the_stderr_tail() -> None:
    outcome = command_outcome(2, b"", b"warning\nfatal: no such ref\n")
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.message == "exit status 2: fatal: no such ref"
    assert outcome.error.traceback == "warning\nfatal: no such ref\n"
    killed = command_outcome(-9, b"", b"")
    assert killed.error is not None
    assert killed.error.message == "killed by SIGKILL"


def test_result_size_cap() -> None:
    assert checked_result({"x": "a" * (MAX_RESULT_BYTES - 20)}).ok
    too_big = checked_result({"x": "a" * MAX_RESULT_BYTES})
    assert too_big.error is not None
    assert (too_big.error.type, too_big.error.retryable) == ("ResultTooLarge", False)
    odd = checked_result({1: object()})
    assert odd.error is not None
    assert odd.error.type == "ResultNotSerializable"
    assert OUTPUT_TAIL_BYTES <= MAX_RESULT_BYTES


def test_command_env_drops_worker_secrets_and_adds_the_job() -> None:
    ctx = JobContext(
        job_id="j1",
        delivery_id="d1",
        attempt=2,
        queue="q",
        pipeline="p",
        worker="w",
        meta={"repository": "octo/cat", "draft": False, "pr_number": 7, "ref": None},
        artifacts_root=Path("/a"),
    )
    base = {
        "PATH": "/bin",
        "REDIS_URL": "redis://secret@h",
        "GITHUB_WEBHOOK_SECRET": "secret-0123456789",
        "HOOKLINE_WORKER_NAME": "w",
    }
    env = command_env(base, {"PATH": "/opt"}, ctx)
    assert env["PATH"] == "/opt"
    assert "REDIS_URL" not in env
    assert "GITHUB_WEBHOOK_SECRET" not in env
    assert "HOOKLINE_WORKER_NAME" not in env
    assert env["HOOKLINE_JOB_ID"] == "j1"
    assert env["HOOKLINE_ATTEMPT"] == "2"
    assert env["HOOKLINE_JOB_ARTIFACTS"] == "/a/j1"
    assert env["HOOKLINE_META_REPOSITORY"] == "octo/cat"
    assert env["HOOKLINE_META_DRAFT"] == "false"
    assert env["HOOKLINE_META_PR_NUMBER"] == "7"
    assert "HOOKLINE_META_REF" not in env

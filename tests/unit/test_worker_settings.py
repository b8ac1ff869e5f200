"""Worker settings and flags: every bad value is one line naming the setting, exit 2."""

from __future__ import annotations

import argparse

import pytest
from hookline.errors import ConfigError
from hookline_worker.__main__ import flags_of, run
from hookline_worker.cli import add_worker_arguments
from hookline_worker.settings import load

BASE = {"REDIS_URL": "redis://127.0.0.1:1/0"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_the_environment() -> None:
    args = parse(
        "--name", "w-1", "--queues", "high, low", "--concurrency", "8", "--burst",
        "--worker-ttl", "45s", "--lease-timeout", "10s", "--shutdown-timeout", "2m",
        "--batch", "500",
    )  # fmt: skip
    env = {**BASE, "HOOKLINE_WORKER_CONCURRENCY": "2", "HOOKLINE_WORKER_TTL": "5"}
    settings = load(env, **flags_of(args))
    assert settings.worker_name == "w-1"
    assert settings.queues == ["high", "low"]
    assert (settings.concurrency, settings.burst, settings.batch) == (8, True, 500)
    assert (settings.worker_ttl, settings.lease_timeout, settings.shutdown_timeout) == (
        45.0,
        10.0,
        120.0,
    )


def test_defaults() -> None:
    settings = load(BASE)
    assert settings.queues == ["pipeline_tasks"]
    assert (settings.concurrency, settings.burst, settings.max_deliveries) == (1, False, 3)
    assert (settings.lease_timeout, settings.worker_ttl, settings.shutdown_timeout) == (
        30.0,
        30.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({}, ["--concurrency", "0"], "HOOKLINE_WORKER_CONCURRENCY: must be at least 1"),
        ({}, ["--queues", ","], "HOOKLINE_WORKER_QUEUES: name at least one queue"),
        ({}, ["--queues", "a b"], "HOOKLINE_WORKER_QUEUES: invalid queue 'a b'"),
        ({}, ["--worker-ttl", "soon"], "HOOKLINE_WORKER_TTL:"),
        ({}, ["--lease-timeout", "0.1"], "HOOKLINE_WORKER_LEASE_TIMEOUT: must be at least 0.3s"),
        ({}, ["--batch", "0"], "HOOKLINE_WORKER_BATCH: must be at least 1"),
        ({}, ["--name", "a/b"], "HOOKLINE_WORKER_NAME: invalid worker name 'a/b'"),
        ({}, ["--shutdown-timeout", "-1"], "HOOKLINE_WORKER_SHUTDOWN_TIMEOUT"),
        ({"HOOKLINE_WORKER_MAX_DELIVERIES": "0"}, [], "HOOKLINE_WORKER_MAX_DELIVERIES"),
        ({"HOOKLINE_WORKER_KILL_GRACE": "x"}, [], "HOOKLINE_WORKER_KILL_GRACE"),
        ({"HOOKLINE_WORKER_CONCURRENCY": "many"}, [], "HOOKLINE_WORKER_CONCURRENCY"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    env: dict[str, str], flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError):
        load({**BASE, **env}, **flags_of(parse(*flags)))
    assert run(parse(*flags), {**BASE, **env}) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1

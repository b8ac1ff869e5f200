"""Secrets given as files (``<VAR>_FILE``), forgotten once read, and kept from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hookline.config import SECRET_VARIABLES, env_names
from hookline.errors import ConfigError
from hookline.private import forget_secrets
from hookline.redis_target import resolve
from hookline_ingress.settings import load as load_ingress
from hookline_status.settings import StatusSettings
from hookline_status.settings import load as load_status
from hookline_worker.settings import load as load_worker

SECRET = "s3cret-" + "x" * 32


def secret_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "secret"
    path.write_text(text)
    return str(path)


def test_a_secret_is_read_from_the_file_its_file_variable_names(tmp_path: Path) -> None:
    path = secret_file(tmp_path, f"{SECRET},older-{SECRET}\n")
    assert load_ingress({"GITHUB_WEBHOOK_SECRET_FILE": path}).secrets == [
        SECRET,
        f"older-{SECRET}",
    ]
    status = load_status({"HOOKLINE_ADMIN_TOKEN_FILE": secret_file(tmp_path, SECRET + "\r\n")})
    assert status.admin_token == SECRET


def test_the_redis_url_may_be_a_file_too(tmp_path: Path) -> None:
    url = "redis://:pw@127.0.0.1:6399/2"
    env = {"REDIS_URL_FILE": secret_file(tmp_path, url + "\n")}
    assert load_worker(env).redis_url == url
    target = resolve(env, tmp_path)
    assert (target.url, target.source) == (url, "REDIS_URL_FILE")
    assert "REDIS_URL_FILE" not in target.apply(env)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("", "is empty"), ("\n", "is empty"), (b"\xff\xfe", "not UTF-8")],
)
def test_a_bad_secret_file_is_one_clear_error(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "secret"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"^GITHUB_WEBHOOK_SECRET_FILE: .*{problem}"):
        load_ingress({"GITHUB_WEBHOOK_SECRET_FILE": str(path)})


def test_a_secret_given_both_ways_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^HOOKLINE_ADMIN_TOKEN_FILE: is set together with"):
        load_status(
            {
                "HOOKLINE_ADMIN_TOKEN": SECRET,
                "HOOKLINE_ADMIN_TOKEN_FILE": secret_file(tmp_path, SECRET),
            }
        )


def test_every_secret_setting_is_a_known_secret_variable() -> None:
    names = env_names(StatusSettings)
    assert {names["admin_token"], names["read_token"], names["redis_url"]} <= set(SECRET_VARIABLES)
    assert "GITHUB_WEBHOOK_SECRET" in SECRET_VARIABLES


def test_forgetting_removes_secrets_and_their_files_only() -> None:
    env = {
        "REDIS_URL": "redis://:pw@h/0",
        "GITHUB_WEBHOOK_SECRET_FILE": "/run/secrets/w",
        "HOOKLINE_READ_TOKEN": SECRET,
        "HOOKLINE_PREFIX": "p",
        "PATH": "/bin",
    }
    assert sorted(forget_secrets(env)) == [
        "GITHUB_WEBHOOK_SECRET_FILE",
        "HOOKLINE_READ_TOKEN",
        "REDIS_URL",
    ]
    assert env == {"HOOKLINE_PREFIX": "p", "PATH": "/bin"}


def test_a_service_process_forgets_its_secrets_and_is_undumpable() -> None:
    """What ``run_service`` calls: afterwards neither the process's environment (that
    children inherit) holds the secret nor may others ptrace-read it."""
    script = (
        "import ctypes, os\n"
        "from hookline.private import keep_secrets\n"
        "keep_secrets()\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), 'REDIS_URL' in os.environ)\n"
    )
    env = {**os.environ, "REDIS_URL": "redis://:pw@h/0"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "False"]


def test_run_as_names_an_existing_user() -> None:
    with pytest.raises(ConfigError, match=r"^HOOKLINE_WORKER_RUN_AS: no such user 'no-such-user'"):
        load_worker({"HOOKLINE_WORKER_RUN_AS": "no-such-user"})
    if os.geteuid() == 0:
        assert load_worker({"HOOKLINE_WORKER_RUN_AS": "nobody"}).run_as == "nobody"
    else:
        with pytest.raises(ConfigError, match="needs the worker to run as root"):
            load_worker({"HOOKLINE_WORKER_RUN_AS": "nobody"})

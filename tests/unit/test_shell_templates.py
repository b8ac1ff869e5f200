"""Placeholders inside code a shell or interpreter runs are refused (a branch name comes
from whoever opens a pull request); values passed as arguments or variables are fine."""

from __future__ import annotations

import json

import pytest
from hookline.errors import ConfigError
from hookline_dispatcher.configfile import parse_config
from hookline_dispatcher.shell_templates import code_items


def toml(command: list[str], extra: str = "") -> str:
    return f"[pipelines.a]\ncommand = {json.dumps(command)}\n{extra}"


REFUSED = [
    (["sh", "-c", "echo {branch}"], 2),
    (["bash", "-c", "git checkout {ref} && make"], 2),
    (["/bin/sh", "-c", "echo {sha}"], 2),
    (["/usr/bin/dash", "-ec", "deploy {branch}"], 2),
    (["zsh", "-o", "pipefail", "-c", "x {tag}"], 4),
    (["ksh", "-x", "-c", "x {sender}"], 3),
    (["busybox", "sh", "-c", "x {branch}"], 3),
    (["env", "sh", "-c", "x {branch}"], 3),
    (["/usr/bin/env", "-i", "PATH=/bin", "bash", "-lc", "x {branch}"], 5),
    (["nice", "-n", "5", "sh", "-c", "x {branch}"], 5),
    (["timeout", "60", "bash", "-c", "x {branch}"], 4),
    (["docker", "run", "img", "sh", "-c", "x {branch}"], 5),
    (["sh", "-c", "{branch}"], 2),
    (["python3", "-c", "print('{branch}')"], 2),
    (["/usr/bin/python3.12", "-I", "-c", "print('{branch}')"], 3),
    (["perl", "-e", "print '{branch}'"], 2),
    (["node", "-e", "console.log('{branch}')"], 2),
    (["ruby", "-e", "puts '{branch}'"], 2),
    (["ssh", "-p", "22", "deploy@host", "./deploy.sh", "{branch}"], 5),
]

ALLOWED = [
    ["echo", "{branch}"],
    ["sh", "-c", 'echo "$HOOKLINE_META_BRANCH"'],
    ["sh", "-c", 'echo "$1"', "sh", "{branch}"],
    ["bash", "./build.sh", "{branch}", "{sha}"],
    ["sh", "-e", "script.sh", "{branch}"],
    ["python3", "render.py", "--branch", "{branch}"],
    ["python3", "-c", "import sys; print(sys.argv[1])", "{branch}"],
    ["python3", "-m", "tool", "-c", "{branch}"],
    ["git", "clone", "{clone_url}"],
    ["ssh", "deploy@host", "./deploy.sh"],
    ["sh", "-c", "echo {{literal}}"],
]


@pytest.mark.parametrize(("command", "index"), REFUSED)
def test_a_placeholder_in_shell_or_interpreter_code_is_refused(
    command: list[str], index: int
) -> None:
    assert index in code_items(command)
    with pytest.raises(ConfigError) as info:
        parse_config(toml(command), "f.toml")
    message = str(info.value)
    assert message.startswith(f"f.toml:2: pipelines.a.command[{index}]: {{"), message
    assert "$HOOKLINE_META_" in message or "$HOOKLINE_" in message
    assert "unsafe_shell_templates = true" in message


@pytest.mark.parametrize("command", ALLOWED)
def test_values_passed_as_arguments_or_variables_are_allowed(command: list[str]) -> None:
    assert parse_config(toml(command), "f.toml").pipelines["a"].command == command


def test_the_error_names_the_variable_that_carries_the_value() -> None:
    with pytest.raises(ConfigError, match=r'"\$HOOKLINE_META_BRANCH" in the script'):
        parse_config(toml(["sh", "-c", "echo {branch}"]))
    with pytest.raises(ConfigError, match=r'"\$HOOKLINE_JOB_ID" in the script'):
        parse_config(toml(["sh", "-c", "echo {job_id}"]))


def test_a_pipeline_may_opt_in_by_name() -> None:
    text = toml(["sh", "-c", "echo {branch}"], "unsafe_shell_templates = true\n")
    assert parse_config(text).pipelines["a"].unsafe_shell_templates

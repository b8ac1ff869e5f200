"""Which argv items a shell or an interpreter will read as code: a placeholder there lets
whoever names a branch (anyone who opens a pull request from a fork) run commands.

Pure: :func:`code_items` reads an argv template and returns the indexes of its items
that are code (``sh -c SCRIPT``, ``python -c CODE``, ``ssh HOST COMMAND…``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Programs that read their -c argument as shell script.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish"})
# Interpreters, and the flags whose argument is code.
INTERPRETER_FLAGS = {
    "python": frozenset({"-c"}),
    "perl": frozenset({"-e", "-E"}),
    "ruby": frozenset({"-e"}),
    "node": frozenset({"-e", "--eval", "-p", "--print"}),
    "php": frozenset({"-r"}),
}
# Shell options that take the next item as their value (``sh -o pipefail -c …``).
_SHELL_VALUE_OPTIONS = frozenset({"-o", "+o", "-O", "+O"})
# ssh options that take a value; every item after the destination is remote shell text.
_SSH_VALUE_OPTIONS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")
_VERSIONED = re.compile(r"^(python|perl|ruby|node|php)[0-9.]*$")
_NAMED = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def program_name(item: str) -> str:
    """``/usr/bin/python3.12`` -> ``python``; ``bash`` -> ``bash``."""
    base = item.rsplit("/", 1)[-1]
    versioned = _VERSIONED.match(base)
    return versioned.group(1) if versioned else base


def code_items(argv: list[str]) -> list[int]:
    """Indexes of the items of ``argv`` a shell or interpreter runs as code. The program
    is found at any position (``env``, ``busybox``, ``sudo``, ``nice -n 5``, ``timeout
    60`` … in front of it): the first item named like a shell, interpreter or ssh."""
    for start, item in enumerate(argv):
        name = program_name(item)
        if name in SHELLS:
            return _shell_script(argv, start)
        if name in INTERPRETER_FLAGS:
            return _interpreter_code(argv, start, INTERPRETER_FLAGS[name])
        if name == "ssh":
            return _ssh_command(argv, start)
    return []


def _shell_script(argv: list[str], start: int) -> list[int]:
    """``sh [options] -c SCRIPT [name args…]``: SCRIPT is code, the rest are values."""
    command = False
    i = start + 1
    while i < len(argv):
        item = argv[i]
        if item == "--":
            i += 1
            break
        if item in _SHELL_VALUE_OPTIONS:
            i += 2
            continue
        if len(item) > 1 and item[0] in "-+" and not item.startswith("--"):
            command = command or "c" in item[1:]
            i += 1
            continue
        if item.startswith("--"):  # long options (bash --norc) take no value
            i += 1
            continue
        break
    return [i] if command and i < len(argv) else []


def _interpreter_code(argv: list[str], start: int, flags: frozenset[str]) -> list[int]:
    """``python -c CODE``, ``perl -e CODE`` (each one, also as ``-eCODE``): the code."""
    found: list[int] = []
    i = start + 1
    while i < len(argv):
        item = argv[i]
        if item in flags:
            if i + 1 < len(argv):
                found.append(i + 1)
            i += 2
            continue
        if any(item.startswith(flag) and len(flag) == 2 for flag in flags if item != flag):
            found.append(i)
        elif not item.startswith("-"):
            break  # a script file: what follows are its arguments
        i += 1
    return found


def _ssh_command(argv: list[str], start: int) -> list[int]:
    """``ssh [options] HOST COMMAND…``: the remote side joins COMMAND… and runs it with
    a shell, so every item after the destination is code."""
    i = start + 1
    while i < len(argv) and argv[i].startswith("-"):
        item = argv[i]
        if item == "--":
            i += 1
            break
        i += 2 if len(item) == 2 and item[1] in _SSH_VALUE_OPTIONS else 1
    return list(range(i + 1, len(argv)))


def safe_variable(placeholder: str) -> str:
    """The environment variable a command finds the placeholder's value in."""
    if placeholder in ("job_id", "delivery_id"):
        return f"HOOKLINE_{placeholder.upper()}"
    return f"HOOKLINE_META_{placeholder.upper()}"


def shell_template_problems(command: list[str]) -> Iterator[tuple[int, str]]:
    """(index, problem) for each code item of ``command`` holding a placeholder: a
    command injection, since a branch name is chosen by whoever opens a pull request
    and may hold ``$(...)``."""
    for i in code_items(command):
        names = [m.group(1) for m in _NAMED.finditer(command[i]) if m.group(1)]
        if names:
            name = names[0]
            yield (
                i,
                f"{{{name}}} inside code that a shell or interpreter runs ({command[i]!r}): "
                f"its value comes from the webhook (a pull request's branch name is chosen "
                f"by whoever opens it) and could run commands. Read it from the "
                f'environment instead ("${safe_variable(name)}" in the script), or pass it '
                f"as an argument after the script (sh -c 'echo \"$1\"' sh {{{name}}}); "
                "unsafe_shell_templates = true on the pipeline allows it anyway",
            )

"""Reading ``hookline.toml``: decode, check cross-references, and name the line of
any mistake (``hookline.toml:12: pipelines.build.timeout: ...``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from hookline.durations import Duration, format_duration, parse_duration
from hookline.errors import ConfigError
from hookline.events import HANDLER_PATH, run_of
from hookline.keys import check_name

from hookline_dispatcher.config import (
    DEFAULT_CONFIG,
    PLACEHOLDERS,
    Pipeline,
    Route,
    RoutingConfig,
)
from hookline_dispatcher.shell_templates import shell_template_problems

KeyPath = tuple[str | int, ...]
T = TypeVar("T")

_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_WORD = re.compile(r"^[a-z_]+$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class ConfigFileError(ConfigError):
    """A mistake in ``hookline.toml``; ``setting`` is ``file:line``."""

    def __init__(self, path: str, line: int | None, key: str, problem: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(where, f"{key}: {problem}" if key else problem)
        self.path = path
        self.line = line
        self.key = key


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        if isinstance(value, str | int | float):
            return parse_duration(value)
        raise ValueError(f"expected a duration like '90s', got {value!r}")
    raise NotImplementedError(f"no decoder for {kind!r}")


def load_config(path: str | None) -> RoutingConfig:
    """The routing config of ``path``; the built-in default when ``path`` is None."""
    if path is None:
        return DEFAULT_CONFIG
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(path, None, "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(path, None, "", "not UTF-8 text") from None
    return parse_config(text, path)


def parse_config(text: str, path: str = "hookline.toml") -> RoutingConfig:
    """Decode and validate ``text``; raises :class:`ConfigFileError`."""
    try:
        raw = msgspec.toml.decode(text, type=_Document)
    except msgspec.ValidationError as exc:
        raise _validation_error(text, path, (), exc) from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        line = _TOML_LINE.search(message)
        raise ConfigFileError(
            path, int(line.group(1)) if line else None, "", f"invalid TOML: {message}"
        ) from None
    pipelines = {
        name: _convert(text, path, ("pipelines", name), value, Pipeline)
        for name, value in raw.pipelines.items()
    }
    routes = [
        _convert(text, path, ("routes", i), value, Route) for i, value in enumerate(raw.routes)
    ]
    config = RoutingConfig(pipelines=pipelines, routes=routes)
    for keypath, problem in problems(config):
        raise _error(text, path, keypath, problem)
    return config


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The file's top level; each pipeline and route is converted on its own, so that an
    error names the pipeline (msgspec writes a dict key as ``[...]``)."""

    pipelines: dict[str, dict[str, Any]] = {}
    routes: list[dict[str, Any]] = []


def _convert(text: str, path: str, at: KeyPath, value: Any, kind: type[T]) -> T:
    try:
        return msgspec.convert(value, kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _validation_error(text, path, at, exc) from None


def _validation_error(
    text: str, path: str, at: KeyPath, exc: msgspec.ValidationError
) -> ConfigFileError:
    message = str(exc)
    found = _AT.search(message)
    keypath = (*at, *parse_keypath(found.group(1))) if found else at
    problem = message[: found.start()] if found else message
    if unknown := _UNKNOWN.search(problem):
        keypath = (*keypath, unknown.group(1))
        problem = f"unknown key `{unknown.group(1)}`"
    return _error(text, path, keypath, problem)


def _error(text: str, path: str, keypath: KeyPath, problem: str) -> ConfigFileError:
    return ConfigFileError(path, find_line(text, keypath), format_keypath(keypath), problem)


def problems(config: RoutingConfig) -> Iterator[tuple[KeyPath, str]]:
    """Every mistake msgspec cannot see: cross-references, names, globs, templates."""
    for name, pipeline in config.pipelines.items():
        yield from _pipeline_problems(name, pipeline)
    for index, route in enumerate(config.routes):
        yield from _route_problems(index, route, config)


def _pipeline_problems(name: str, pipeline: Pipeline) -> Iterator[tuple[KeyPath, str]]:
    at: KeyPath = ("pipelines", name)
    if not _PIPELINE_NAME.match(name):
        yield at, "a pipeline name is 1-64 letters, digits, '_', '.' or '-'"
    yield from _run_problems(at, pipeline)
    yield from _limit_problems(at, pipeline)


def _run_problems(at: KeyPath, pipeline: Pipeline) -> Iterator[tuple[KeyPath, str]]:
    """What the pipeline runs: a command or a handler."""
    try:
        run_of(pipeline.command, pipeline.handler)
    except ValueError as exc:
        yield at, str(exc)
    if pipeline.command is not None:
        if not pipeline.command or not pipeline.command[0]:
            yield (*at, "command"), "the command needs a program as its first item"
        for i, arg in enumerate(pipeline.command):
            if (problem := template_problem(arg)) is not None:
                yield (*at, "command", i), problem
        if not pipeline.unsafe_shell_templates:
            yield from _shell_template_problems(at, pipeline.command)
    if pipeline.handler is not None and not HANDLER_PATH.match(pipeline.handler):
        yield (*at, "handler"), f"expected 'package.module:function', got {pipeline.handler!r}"


def _shell_template_problems(at: KeyPath, command: list[str]) -> Iterator[tuple[KeyPath, str]]:
    for i, problem in shell_template_problems(command):
        yield (*at, "command", i), problem


def _limit_problems(at: KeyPath, pipeline: Pipeline) -> Iterator[tuple[KeyPath, str]]:
    """Where and how it runs: queue, timeout, retries, environment."""
    try:
        check_name("queue name", pipeline.queue)
    except ValueError as exc:
        yield (*at, "queue"), str(exc)
    if pipeline.timeout <= 0:
        yield (*at, "timeout"), "must be more than 0s"
    if not 0 <= pipeline.retries <= 100:
        yield (*at, "retries"), f"must be between 0 and 100, got {pipeline.retries}"
    backoff = pipeline.backoff
    if backoff.kind == "exponential" and backoff.cap < backoff.base:
        yield (*at, "backoff", "cap"), "must not be less than `base`"
    for i, kind in enumerate(pipeline.no_retry_on):
        if not kind:
            yield (*at, "no_retry_on", i), "an error type cannot be empty"
    for var in pipeline.env:
        if not _ENV_NAME.match(var):
            yield (*at, "env", var), f"{var!r} is not an environment variable name"


def _route_problems(
    index: int, route: Route, config: RoutingConfig
) -> Iterator[tuple[KeyPath, str]]:
    at: KeyPath = ("routes", index)
    if route.pipeline not in config.pipelines:
        known = ", ".join(sorted(config.pipelines)) or "none defined"
        yield (*at, "pipeline"), f"unknown pipeline {route.pipeline!r} (known: {known})"
    for field in ("events", "actions"):
        for i, word in enumerate(getattr(route, field)):
            if not _WORD.match(word):
                yield (*at, field, i), f"{word!r} is not a GitHub {field[:-1]} name"
    for field in ("repositories", "branches", "tags"):
        for i, pattern in enumerate(getattr(route, field)):
            if (problem := glob_problem(pattern)) is not None:
                yield (*at, field, i), problem


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable glob (``*``, ``?``, ``[...]``), or None."""
    if not pattern:
        return "a glob cannot be empty"
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                return f"{pattern!r}: '[' inside '[...]'"
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    if depth:
        return f"{pattern!r}: '[' without a closing ']'"
    return None


def template_problem(arg: str) -> str | None:
    """Why an argv template item is wrong (unknown placeholder, stray brace), or None."""
    for match in _PLACEHOLDER.finditer(arg):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            return f"stray {token!r} in {arg!r} (write {token * 2} for a literal brace)"
        if name not in PLACEHOLDERS:
            return f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})"
    return None


# -- key paths and their lines --------------------------------------------------------


def parse_keypath(text: str) -> KeyPath:
    """``.routes[1].pipeline`` -> ``("routes", 1, "pipeline")``."""
    return tuple(
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _TOKEN.finditer(text)
    )


def format_keypath(keypath: KeyPath) -> str:
    out = ""
    for part in keypath:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def find_line(text: str, keypath: KeyPath) -> int | None:
    """The line where ``keypath`` (or its nearest enclosing key) is written."""
    lines = key_lines(text)
    for end in range(len(keypath), 0, -1):
        if (line := lines.get(keypath[:end])) is not None:
            return line
    return None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Where each table header and key of a TOML document is, by key path."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    depth = 0  # brackets of a multi-line array still open
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if depth:
            depth = max(0, depth + _bracket_balance(line))
            continue
        if not line:
            continue
        if line.startswith("[["):
            name = _split_key(line[2 : line.find("]]")])
            counts[name] = counts.get(name, -1) + 1
            table = (*name, counts[name])
            _record(lines, table, number)
        elif line.startswith("["):
            table = _split_key(line[1 : line.find("]")])
            _record(lines, table, number)
        elif "=" in line:
            key, _, value = line.partition("=")
            _record(lines, (*table, *_split_key(key)), number)
            depth = max(0, _bracket_balance(value))
    return lines


def _record(lines: dict[KeyPath, int], path: KeyPath, number: int) -> None:
    """Where ``path`` and each of its parents first appear."""
    for end in range(1, len(path) + 1):
        lines.setdefault(path[:end], number)


def _split_key(key: str) -> KeyPath:
    parts: list[str] = []
    current = ""
    quote = ""
    for ch in key.strip():
        if quote:
            if ch == quote:
                quote = ""
            else:
                current += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return tuple(parts)


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _bracket_balance(text: str) -> int:
    balance = 0
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance


# -- what `hookline config check` prints ----------------------------------------------


def describe(config: RoutingConfig) -> list[str]:
    """The resolved routes, first match first, each with the pipeline it runs."""
    out: list[str] = []
    for index, route in enumerate(config.routes, 1):
        conditions = [
            f"{field}={','.join(values)}"
            for field in ("events", "actions", "repositories", "branches", "tags")
            if (values := getattr(route, field))
        ]
        if route.skip_drafts:
            conditions.append("not drafts")
        when = " ".join(conditions) or "every delivery"
        pipeline = config.pipelines[route.pipeline]
        out.append(f"{index}. {when} -> pipeline {route.pipeline!r}")
        runs = (
            "command " + " ".join(pipeline.command)
            if pipeline.command is not None
            else f"handler {pipeline.handler}"
        )
        backoff = pipeline.backoff
        wait = (
            f"exponential {format_duration(backoff.base)}..{format_duration(backoff.cap)}"
            if backoff.kind == "exponential"
            else f"fixed {format_duration(backoff.base)}"
        )
        delay = route.delay if route.delay is not None else pipeline.delay
        extras = []
        if delay:
            extras.append(f"delay {format_duration(delay)}")
        if route.supersede:
            extras.append("supersede")
        if pipeline.no_retry_on:
            extras.append("no retry on " + ",".join(pipeline.no_retry_on))
        if pipeline.unsafe_shell_templates:
            extras.append("unsafe shell templates")
        out.append(f"     {runs}")
        out.append(
            f"     queue {pipeline.queue}, timeout {format_duration(pipeline.timeout)}, "
            f"retries {pipeline.retries} ({wait}), keep results "
            f"{format_duration(pipeline.result_ttl)} / failures "
            f"{format_duration(pipeline.failure_ttl)}" + "".join(f", {e}" for e in extras)
        )
    out.append("anything else -> skipped")
    return out

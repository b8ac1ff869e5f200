"""Lua script headers name the keys and arguments; calls pass them by name."""

import pytest
from hookline.lua import Script, ScriptError

SOURCE = """-- Append once per marker.
-- KEYS: marker, stream
-- ARGV: value, ttl_ms
-- ARGV*: fields
return 1
"""


def test_keyword_arguments_become_keys_then_argv_in_header_order() -> None:
    script = Script("t:once", SOURCE)
    command = script.command(stream="s", marker="m", ttl_ms=5, value="v", fields=["a", "b"])
    assert command == ("EVALSHA", script.sha, 2, "m", "s", "v", 5, "a", "b")


@pytest.mark.parametrize(
    "values",
    [
        {"marker": "m", "stream": "s", "value": "v", "fields": []},  # ttl_ms missing
        {"marker": "m", "stream": "s", "value": "v", "ttl_ms": 1, "fields": [], "x": 1},
    ],
)
def test_a_missing_or_unknown_argument_is_refused(values: dict[str, object]) -> None:
    with pytest.raises(ScriptError, match="t:once"):
        Script("t:once", SOURCE).command(**values)


@pytest.mark.parametrize(
    "source",
    [
        "return 1\n",  # no header at all
        "-- ARGV: a\nreturn 1\n",  # no KEYS line
        "-- KEYS: a, a\nreturn 1\n",  # a name twice
        "-- KEYS: a\n-- ARGV*: b, c\nreturn 1\n",  # two variadic names
    ],
)
def test_a_script_without_a_proper_header_is_refused(source: str) -> None:
    with pytest.raises(ScriptError):
        Script("t:bad", source)


def test_a_variadic_keys_tail_follows_the_named_keys() -> None:
    source = "-- Batch.\n-- KEYS: out\n-- KEYS*: more\n-- ARGV: a\n-- ARGV*: rest\nreturn 1\n"
    script = Script("t:batch", source)
    command = script.command(out="o", more=["k1", "k2"], a=1, rest=["x"])
    assert command == ("EVALSHA", script.sha, 3, "o", "k1", "k2", 1, "x")

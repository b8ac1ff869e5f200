"""hookline.toml: decoding, cross-checks, and errors that name file, line and key."""

from pathlib import Path

import pytest
from hookline.errors import ConfigError
from hookline_dispatcher.config import DEFAULT_CONFIG
from hookline_dispatcher.configfile import describe, load_config, parse_config

GOOD = """
# a comment
[pipelines.render]
command = ["render", "{clone_url}", "--sha", "{sha}", "--pr={pr_number}", "{{literal}}"]
queue = "video"
timeout = "45m"
retries = 5
backoff = { kind = "fixed", base = "90s" }
no_retry_on = ["Timeout"]
result_ttl = "2d"
failure_ttl = "14d"
env = { RENDER_QUALITY = "high" }

[pipelines.notify]
handler = "hooks.notify:send"

[[routes]]
events = ["push"]
branches = ["main", "release/*"]
pipeline = "render"
supersede = true
delay = "30s"

[[routes]]
events = ["pull_request"]
actions = ["opened", "synchronize"]
skip_drafts = true
pipeline = "notify"
"""


def test_a_complete_file_decodes_into_pipelines_and_routes() -> None:
    config = parse_config(GOOD)
    render = config.pipelines["render"]
    assert render.queue == "video"
    assert render.timeout == 45 * 60.0
    assert render.backoff.kind == "fixed"
    assert render.backoff.base == 90.0
    assert render.failure_ttl == 14 * 86400.0
    assert render.env == {"RENDER_QUALITY": "high"}
    assert config.pipelines["notify"].retries == 3  # the defaults apply
    assert config.pipelines["notify"].backoff.kind == "exponential"
    assert [r.pipeline for r in config.routes] == ["render", "notify"]
    assert config.routes[0].delay == 30.0
    assert config.routes[1].skip_drafts


def test_no_file_means_the_built_in_default() -> None:
    assert load_config(None) is DEFAULT_CONFIG


def test_an_unreadable_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^/nonexistent/hookline.toml: cannot read"):
        load_config("/nonexistent/hookline.toml")


def test_describe_lists_routes_in_match_order() -> None:
    lines = describe(parse_config(GOOD))
    assert lines[0] == "1. events=push branches=main,release/* -> pipeline 'render'"
    assert "delay 30s, supersede, no retry on Timeout" in lines[2]
    assert lines[3].startswith("2. events=pull_request actions=opened,synchronize not drafts")
    assert lines[-1] == "anything else -> skipped"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[pipelines.a]\nhandler = "m:f"\n\n[[routes]]\npipeline = "b"\n',
            "f.toml:5: routes[0].pipeline: unknown pipeline 'b' (known: a)",
        ),
        (
            '[pipelines.a]\ncommand = ["x"]\nhandler = "m:f"\n',
            "f.toml:1: pipelines.a: needs exactly one of `command`",
        ),
        ("[pipelines.a]\nretries = 1\n", "f.toml:1: pipelines.a: needs exactly one of"),
        (
            '[pipelines.a]\nhandler = "m:f"\nqueue = "a b"\n',
            "f.toml:3: pipelines.a.queue: invalid queue name 'a b'",
        ),
        (
            '[pipelines.a]\ncommand = [\n  "run = x",\n  "{nope}",\n]\n',
            "f.toml:2: pipelines.a.command[1]: unknown placeholder {nope}",
        ),
        (
            '[pipelines.a]\ncommand = ["run", "{sha"]\n',
            "f.toml:2: pipelines.a.command[1]: stray '{'",
        ),
        ("[pipelines.a]\ncommand = []\n", "f.toml:2: pipelines.a.command: the command needs"),
        ('[pipelines.a]\nhandler = "notapath"\n', "f.toml:2: pipelines.a.handler: expected"),
        (
            '[pipelines.a]\nhandler = "m:f"\n[[routes]]\npipeline = "a"\nbranches = ["[main"]\n',
            "f.toml:5: routes[0].branches[0]: '[main': '[' without a closing ']'",
        ),
        (
            '[pipelines.a]\nhandler = "m:f"\n[[routes]]\npipeline = "a"\n'
            '[[routes]]\npipeline = "a"\nrepositories = [""]\n',
            "f.toml:7: routes[1].repositories[0]: a glob cannot be empty",
        ),
        (
            '[pipelines.a]\nhandler = "m:f"\n[[routes]]\npipeline = "a"\nevents = ["Push!"]\n',
            "f.toml:5: routes[0].events[0]: 'Push!' is not a GitHub event name",
        ),
        (
            '[pipelines.a]\nhandler = "m:f"\nretries = "3"\n',
            "f.toml:3: pipelines.a.retries: Expected `int`, got `str`",
        ),
        ('[pipelines.a]\nhandler = "m:f"\nretries = -1\n', "f.toml:3: pipelines.a.retries: must"),
        (
            '[pipelines.a]\nhandler = "m:f"\ntimeout = "soon"\n',
            "f.toml:3: pipelines.a.timeout: expected a duration like '90s'",
        ),
        ('[pipelines.a]\nhandler = "m:f"\ntimeout = 0\n', "f.toml:3: pipelines.a.timeout: must"),
        (
            '[pipelines.a]\nhandler = "m:f"\n\n[pipelines.a.backoff]\nbase = "1m"\ncap = "1s"\n',
            "f.toml:6: pipelines.a.backoff.cap: must not be less than `base`",
        ),
        (
            '[pipelines.a]\nhandler = "m:f"\nbackoff = { kind = "linear" }\n',
            "f.toml:3: pipelines.a.backoff.kind: Invalid enum value 'linear'",
        ),
        (
            '[pipelines.a]\nhandler = "m:f"\ntimout = "1m"\n',
            "f.toml:3: pipelines.a.timout: unknown key `timout`",
        ),
        ('[[routes]]\npipeline = "a"\nbranch = ["x"]\n', "f.toml:3: routes[0].branch: unknown key"),
        ('[pipeline.a]\nhandler = "m:f"\n', "f.toml:1: pipeline: unknown key `pipeline`"),
        ("routes = 3\n", "f.toml:1: routes: Expected `array`, got `int`"),
        ('[pipelines.a\nhandler = "m:f"\n', "f.toml:1: invalid TOML"),
        ('[pipelines."a b"]\nhandler = "m:f"\n', "f.toml:1: pipelines.a b: a pipeline name is"),
        (
            '[pipelines.a]\nhandler = "m:f"\nenv = { "BAD-NAME" = "1" }\n',
            "f.toml:3: pipelines.a.env.BAD-NAME: 'BAD-NAME' is not an environment variable name",
        ),
    ],
)
def test_a_mistake_names_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.toml")
    assert str(info.value).startswith(error), str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "hookline.toml"
    path.write_text(GOOD)
    assert load_config(str(path)).pipelines["render"].queue == "video"

import json

import pytest
from hookline.github import extract_meta
from hookline_dispatcher.config import DEFAULT_CONFIG
from hookline_dispatcher.routing import Routed, Skipped, fill_template, route
from support.payloads import payload


def decide(event: str, name: str) -> Routed | Skipped:
    meta = extract_meta(event, json.loads(payload(event, name)), delivery_id="d", job_id="j")
    return route(meta, DEFAULT_CONFIG)


@pytest.mark.parametrize(
    ("event", "name", "routed"),
    [
        ("push", "with-new-branch.payload.json", True),
        ("push", "payload.json", False),  # a deleted tag: nothing to build
        ("pull_request", "opened.payload.json", True),
        ("pull_request", "synchronize.payload.json", True),
        ("ping", "payload.json", False),
        ("release", "published.payload.json", False),
        ("star", "created.payload.json", False),
    ],
)
def test_default_route_runs_the_demo_on_pushes_and_pull_requests(
    event: str, name: str, routed: bool
) -> None:
    decision = decide(event, name)
    assert isinstance(decision, Routed) is routed
    if isinstance(decision, Routed):
        assert decision.spec.pipeline == "demo"
        assert decision.spec.queue == "pipeline_tasks"
    else:
        assert event in decision.reason


def test_templates_fill_each_argument_without_a_shell() -> None:
    meta = {"clone_url": "https://x/y.git", "sha": "abc; rm -rf /", "pr_number": None}
    argv = fill_template(
        ["git", "clone", "{clone_url}", "--sha={sha}", "{pr_number}", "{{literal}}"], meta
    )
    assert argv == ["git", "clone", "https://x/y.git", "--sha=abc; rm -rf /", "", "{literal}"]

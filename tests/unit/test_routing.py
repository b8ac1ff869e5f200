import json
from datetime import UTC, datetime

import pytest
from hookline.events import CommandRun, Meta
from hookline.github import extract_meta
from hookline_dispatcher.config import DEFAULT_CONFIG
from hookline_dispatcher.configfile import parse_config
from hookline_dispatcher.routing import Routed, Skipped, fill_template, route, supersede_slot
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
    meta: Meta = {"clone_url": "https://x/y.git", "sha": "abc; rm -rf /", "pr_number": None}
    argv = fill_template(
        ["git", "clone", "{clone_url}", "--sha={sha}", "{pr_number}", "{{literal}}"], meta
    )
    assert argv == ["git", "clone", "https://x/y.git", "--sha=abc; rm -rf /", "", "{literal}"]


# -- a non-default hookline.toml ------------------------------------------------------

ROUTES = parse_config(
    """
[pipelines.build]
command = ["build", "{clone_url}", "--sha", "{sha}", "--branch={branch}"]
[pipelines.release]
command = ["publish", "{repository}", "{tag}"]
[pipelines.review]
handler = "ci.review:run"
delay = "2m"
[pipelines.ping]
handler = "ci.ping:pong"
[pipelines.other]
handler = "ci.other:run"

[[routes]]
events = ["push"]
repositories = ["acme/*"]
pipeline = "other"

[[routes]]
events = ["push"]
repositories = ["Codertocat/Hello-*"]
branches = ["main", "mast?r", "release/*"]
tags = ["v[0-9]*"]
pipeline = "build"

[[routes]]
events = ["pull_request"]
actions = ["opened", "synchronize", "reopened", "ready_for_review"]
skip_drafts = true
pipeline = "review"

[[routes]]
events = ["release"]
actions = ["published"]
pipeline = "release"

[[routes]]
events = ["ping"]
pipeline = "ping"
"""
)


def load(event: str, name: str, **changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(payload(event, name))
    data.update(changes)
    return data


def routed(event: str, data: dict[str, object]) -> Routed | Skipped:
    meta = extract_meta(event, data, delivery_id="d", job_id="j")
    return route(meta, ROUTES, datetime(2026, 11, 29, 12, tzinfo=UTC))


def draft_of(event: str, name: str) -> dict[str, object]:
    data = load(event, name)
    pull = dict(data["pull_request"])  # type: ignore[call-overload]
    pull["draft"] = True
    data["pull_request"] = pull
    return data


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        # push to a branch: master matches the glob "mast?r"
        ("push", load("push", "with-new-branch.payload.json"), "build"),
        # the same push to a branch no glob names
        ("push", load("push", "with-new-branch.payload.json", ref="refs/heads/dev"), "no_route"),
        (
            "push",
            load("push", "with-new-branch.payload.json", ref="refs/heads/release/2.1"),
            "build",
        ),
        # tag pushes: v[0-9]* matches v1.2.0, not nightly
        (
            "push",
            load("push", "with-new-branch.payload.json", ref="refs/tags/v1.2.0"),
            "build",
        ),
        (
            "push",
            load("push", "with-new-branch.payload.json", ref="refs/tags/nightly"),
            "no_route",
        ),
        # a tag deletion (the real payload) and a branch deletion build nothing
        ("push", load("push", "payload.json"), "deleted_ref"),
        (
            "push",
            load(
                "push",
                "payload.json",
                ref="refs/heads/master",
                after="0" * 40,
                deleted=True,
            ),
            "deleted_ref",
        ),
        # another repository: the glob names Codertocat/Hello-*
        (
            "push",
            load(
                "push",
                "with-new-branch.payload.json",
                repository={"full_name": "someone/else", "clone_url": "x"},
            ),
            "no_route",
        ),
        (
            "push",
            load(
                "push",
                "with-new-branch.payload.json",
                repository={"full_name": "acme/site", "clone_url": "x"},
            ),
            "other",
        ),
        ("pull_request", load("pull_request", "opened.payload.json"), "review"),
        ("pull_request", load("pull_request", "synchronize.payload.json"), "review"),
        ("pull_request", load("pull_request", "ready_for_review.payload.json"), "review"),
        ("pull_request", load("pull_request", "closed.payload.json"), "no_route"),
        ("pull_request", load("pull_request", "labeled.payload.json"), "no_route"),
        ("pull_request", draft_of("pull_request", "opened.payload.json"), "draft"),
        ("pull_request", load("pull_request", "converted_to_draft.payload.json"), "no_route"),
        ("release", load("release", "published.payload.json"), "release"),
        ("release", load("release", "created.payload.json"), "no_route"),
        ("ping", load("ping", "payload.json"), "ping"),
        ("ping", load("ping", "with-app_id.payload.json"), "ping"),
        ("workflow_run", load("workflow_run", "completed.payload.json"), "no_route"),
        ("star", load("star", "created.payload.json"), "no_route"),
    ],
)
def test_routes_of_a_real_config(event: str, data: dict[str, object], expected: str) -> None:
    decision = routed(event, data)
    if isinstance(decision, Routed):
        assert decision.spec.pipeline == expected
    else:
        assert decision.kind == expected, decision.reason
        assert event in decision.reason


def test_a_command_template_is_filled_from_the_push() -> None:
    decision = routed("push", load("push", "with-new-branch.payload.json"))
    assert isinstance(decision, Routed)
    assert decision.spec.run == CommandRun(
        argv=[
            "build",
            "https://github.com/Codertocat/Hello-World.git",
            "--sha",
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "--branch=master",
        ]
    )
    assert decision.spec.not_before is None


def test_a_release_fills_its_tag() -> None:
    decision = routed("release", load("release", "published.payload.json"))
    assert isinstance(decision, Routed)
    assert decision.spec.run == CommandRun(argv=["publish", "Codertocat/Hello-World", "0.0.1"])


def test_a_pipeline_delay_sets_not_before() -> None:
    decision = routed("pull_request", load("pull_request", "opened.payload.json"))
    assert isinstance(decision, Routed)
    assert decision.spec.not_before == datetime(2026, 11, 29, 12, 2, tzinfo=UTC)


def test_the_supersede_slot_is_per_route_repository_and_branch() -> None:
    base = extract_meta(
        "push", load("push", "with-new-branch.payload.json"), delivery_id="d", job_id="j"
    )
    other_branch = {**base, "branch": "dev"}
    other_repo = {**base, "repository": "x/y"}
    slots = {
        supersede_slot(0, base),
        supersede_slot(1, base),
        supersede_slot(0, other_branch),
        supersede_slot(0, other_repo),
    }
    assert len(slots) == 4
    assert supersede_slot(0, {**base, "sha": "other"}) == supersede_slot(0, base)

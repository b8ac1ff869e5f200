"""``hookline.toml``: pipelines and the routes that select them, as frozen Structs."""

from __future__ import annotations

from typing import Literal

import msgspec
from hookline.durations import Duration
from hookline.keys import DEFAULT_QUEUE

DEMO_HANDLER = "hookline_worker.demo:summarize"

# What an argv template may name: the fields of hookline.github.extract_meta.
PLACEHOLDERS = (
    "repository",
    "clone_url",
    "html_url",
    "ref",
    "branch",
    "tag",
    "sha",
    "before",
    "event",
    "action",
    "delivery_id",
    "job_id",
    "sender",
    "pr_number",
)


class BackoffConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``exponential``: full jitter, uniform in [0, min(cap, base * 2**(attempt-1))];
    ``fixed``: always ``base``."""

    kind: Literal["exponential", "fixed"] = "exponential"
    base: Duration = Duration(5)
    cap: Duration = Duration(600)


class Pipeline(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a job runs: an argv template (``command``) or a Python callable (``handler``)."""

    command: list[str] | None = None
    handler: str | None = None
    queue: str = DEFAULT_QUEUE
    timeout: Duration = Duration(1800)
    retries: int = 3
    backoff: BackoffConfig = BackoffConfig()
    no_retry_on: list[str] = []
    result_ttl: Duration = Duration(86400)
    failure_ttl: Duration = Duration(7 * 86400)
    delay: Duration = Duration(0)
    env: dict[str, str] = {}
    # Allow placeholders inside a shell script or interpreter code (`sh -c "… {branch}"`):
    # a command injection for anyone who can name a branch; off unless set by name.
    unsafe_shell_templates: bool = False


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """First matching route wins. Empty lists match anything."""

    pipeline: str
    events: list[str] = []
    actions: list[str] = []
    repositories: list[str] = []
    branches: list[str] = []
    tags: list[str] = []
    skip_drafts: bool = False
    supersede: bool = False
    delay: Duration | None = None


class RoutingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pipelines: dict[str, Pipeline] = {}
    routes: list[Route] = []


# With no hookline.toml: every push and pull request runs the built-in demo pipeline.
DEFAULT_CONFIG = RoutingConfig(
    pipelines={"demo": Pipeline(handler=DEMO_HANDLER, timeout=Duration(60), retries=2)},
    routes=[Route(events=["push", "pull_request"], pipeline="demo")],
)

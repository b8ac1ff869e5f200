"""What hookline reads from a GitHub payload: the fields routes and pipelines use."""

from __future__ import annotations

from typing import Any

from hookline.events import Meta


def extract_meta(event: str, payload: dict[str, Any], *, delivery_id: str, job_id: str) -> Meta:
    """The placeholders a pipeline may use (``{repository}``, ``{sha}``, ...), from any event.

    Missing values are None; nothing here raises on an unexpected payload shape.
    """
    repo = _dict(payload.get("repository"))
    ref = _str(payload.get("ref"))
    pull = _dict(payload.get("pull_request"))
    head = _dict(pull.get("head"))
    branch = tag = None
    if ref and ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
    elif ref and ref.startswith("refs/tags/"):
        tag = ref[len("refs/tags/") :]
    elif event in ("create", "delete") and ref:
        branch, tag = (ref, None) if payload.get("ref_type") == "branch" else (None, ref)
    if pull and branch is None:
        branch = _str(head.get("ref"))
    sha = _str(payload.get("after")) or _str(head.get("sha"))
    release = _dict(payload.get("release"))
    if tag is None and release:
        tag = _str(release.get("tag_name"))
    number = payload.get("number") if pull else None
    return {
        "event": event,
        "action": _str(payload.get("action")),
        "delivery_id": delivery_id,
        "job_id": job_id,
        "repository": _str(repo.get("full_name")),
        "clone_url": _str(repo.get("clone_url")),
        "html_url": _str(repo.get("html_url")),
        "ref": ref,
        "branch": branch,
        "tag": tag,
        "sha": sha,
        "before": _str(payload.get("before")),
        "sender": _str(_dict(payload.get("sender")).get("login")),
        "pr_number": number if isinstance(number, int) else None,
        "draft": bool(pull.get("draft")) if pull else None,
        "deleted": bool(payload.get("deleted")) if event == "push" else None,
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None

"""The built-in demo pipeline: a real summary of what a push or pull request changed."""

from __future__ import annotations

import json
from typing import Any

from hookline_worker.context import JobContext


def summarize(ctx: JobContext) -> dict[str, Any]:
    """Write ``summary.json`` for a push (commits, authors, files touched) or a pull
    request (title, size of the change), and return its path and figures."""
    payload = ctx.payload
    summary: dict[str, Any] = {
        "event": ctx.meta.get("event"),
        "repository": ctx.meta.get("repository"),
        "ref": ctx.meta.get("ref"),
        "sha": ctx.meta.get("sha"),
    }
    if ctx.meta.get("event") == "push":
        commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
        authors = sorted(
            {
                str((c.get("author") or {}).get("name") or (c.get("author") or {}).get("email"))
                for c in commits
            }
        )
        files: set[str] = set()
        for commit in commits:
            for kind in ("added", "modified", "removed"):
                files.update(str(f) for f in commit.get(kind) or [])
        summary.update(
            commits=len(commits), authors=authors, files_touched=len(files), files=sorted(files)
        )
    elif ctx.meta.get("event") == "pull_request":
        pull = payload.get("pull_request") or {}
        summary.update(
            number=ctx.meta.get("pr_number"),
            title=pull.get("title"),
            action=ctx.meta.get("action"),
            commits=pull.get("commits"),
            additions=pull.get("additions"),
            deletions=pull.get("deletions"),
            changed_files=pull.get("changed_files"),
        )
    path = ctx.artifact_path("summary.json")
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    figures = {k: v for k, v in summary.items() if k != "files"}
    return {"artifact": str(path.resolve()), **figures}


async def noop(ctx: JobContext) -> None:
    """Does nothing: for smoke tests and for measuring the worker itself."""
    return None

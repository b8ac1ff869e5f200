"""Real GitHub webhook payloads shipped with the library (``github_payloads/``, MIT, from
octokit/webhooks): the default bodies of ``hookline webhook send`` and the tests' data."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "github_payloads"

# The sample each event sends when no action is named: the delivery a pipeline most often
# runs for (a push to a branch, not the tag deletion that ``push/payload.json`` is).
DEFAULT_SAMPLES = {
    "push": "with-new-branch",
    "pull_request": "opened",
    "issues": "opened",
    "release": "published",
}


class NoSample(LookupError):
    """No shipped payload for that event (or action); the message lists what there is."""


def events() -> list[str]:
    """Every ``X-GitHub-Event`` value a sample exists for."""
    return sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())


def sample_path(event: str, action: str | None = None) -> Path:
    """The file a delivery of ``event`` (with ``action``) is best shown by."""
    folder = SAMPLES / event
    if "/" in event or event.startswith(".") or not folder.is_dir():
        raise NoSample(f"no sample payload for event {event!r}; there are: {', '.join(events())}")
    names = sorted(p.name for p in folder.glob("*.payload.json"))
    if action is not None:
        if "/" not in action and (folder / f"{action}.payload.json").is_file():
            return folder / f"{action}.payload.json"
        actions = sorted({n.split(".")[0] for n in names})
        raise NoSample(f"no {event} sample with action {action!r}; there are: {', '.join(actions)}")
    for name in (f"{DEFAULT_SAMPLES.get(event)}.payload.json", "payload.json"):
        if (folder / name).is_file():
            return folder / name
    return folder / names[0]


def sample(event: str, name: str) -> bytes:
    """The bytes of ``github_payloads/<event>/<name>``, unchanged."""
    path = SAMPLES / event / name
    if not path.is_file():
        raise NoSample(f"no sample payload {event}/{name}")
    return path.read_bytes()

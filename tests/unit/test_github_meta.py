import json

from hookline.events import Meta
from hookline.github import extract_meta
from support.payloads import payload


def meta_of(event: str, name: str) -> Meta:
    return extract_meta(event, json.loads(payload(event, name)), delivery_id="d", job_id="j")


def test_push_to_a_branch() -> None:
    meta = meta_of("push", "with-new-branch.payload.json")
    assert meta["repository"] == "Codertocat/Hello-World"
    assert meta["branch"] == "master"
    assert meta["tag"] is None
    assert meta["sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert meta["clone_url"] == "https://github.com/Codertocat/Hello-World.git"
    assert meta["deleted"] is False


def test_push_deleting_a_tag() -> None:
    meta = meta_of("push", "payload.json")
    assert meta["tag"] == "simple-tag"
    assert meta["branch"] is None
    assert meta["deleted"] is True


def test_pull_request_opened() -> None:
    meta = meta_of("pull_request", "opened.payload.json")
    assert meta["action"] == "opened"
    assert isinstance(meta["pr_number"], int)
    assert meta["branch"]
    assert meta["sha"]


def test_release_has_its_tag() -> None:
    meta = meta_of("release", "published.payload.json")
    assert meta["tag"]


def test_odd_shapes_never_raise() -> None:
    weird = {"repository": "not a dict", "ref": 5, "pull_request": [], "sender": None}
    meta = extract_meta("push", weird, delivery_id="d", job_id="j")
    assert meta["repository"] is None
    assert meta["ref"] is None

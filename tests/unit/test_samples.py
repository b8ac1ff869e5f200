"""The real GitHub payloads shipped with the library, as ``hookline webhook send`` picks them."""

import json

import pytest
from hookline.samples import NoSample, events, sample_path


def test_every_event_folder_has_a_default_sample() -> None:
    for event in events():
        assert sample_path(event).is_file()


@pytest.mark.parametrize(
    ("event", "action", "ref_or_action"),
    [
        ("push", None, "refs/heads/master"),  # a branch push, not a tag deletion
        ("pull_request", None, "opened"),
        ("pull_request", "closed", "closed"),
        ("issues", "labeled", "labeled"),
    ],
)
def test_the_sample_matches_the_event_and_action(
    event: str, action: str | None, ref_or_action: str
) -> None:
    body = json.loads(sample_path(event, action).read_bytes())
    assert ref_or_action in (body.get("ref"), body.get("action"))


def test_an_unknown_event_or_action_names_what_there_is() -> None:
    with pytest.raises(NoSample, match=r"there are: .*pull_request"):
        sample_path("no_such_event")
    with pytest.raises(NoSample, match=r"there are: .*opened"):
        sample_path("pull_request", "exploded")
    with pytest.raises(NoSample, match="with action 'x'"):
        sample_path("push", "x")  # not silently the default push
    with pytest.raises(NoSample):
        sample_path("../../etc")

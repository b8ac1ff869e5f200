from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hookline import events
from hookline.events import (
    CommandRun,
    HandlerRun,
    JobFinished,
    JobQueued,
    JobSpec,
    WebhookReceived,
    decode,
    encode,
)

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


def test_there_is_a_golden_sample_of_every_event_type() -> None:
    tags = {path.name.split(".v")[0] for path in GOLDEN}
    union_tags = {cls.__struct_config__.tag for cls in events.AnyEvent.__args__}
    assert union_tags <= tags


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_every_golden_sample_still_decodes(path: Path) -> None:
    event = decode(path.read_bytes())
    assert event.__struct_config__.tag == path.name.split(".v")[0]
    assert event.occurred_at.tzinfo is not None
    assert decode(encode(event)) == event


def test_events_round_trip_with_a_raw_payload_kept_byte_for_byte() -> None:
    body = b'{"ref": "refs/heads/main",  "weird spacing": [1, 2]}'
    event = WebhookReceived(delivery_id="d", job_id="j", event="push", payload=msgspec.Raw(body))
    back = decode(encode(event))
    assert isinstance(back, WebhookReceived)
    assert bytes(back.payload) == body
    assert back.event_id == event.event_id


def test_every_event_carries_ids_and_a_utc_time_and_a_version() -> None:
    event = JobQueued(job_id="j", delivery_id="d", spec=JobSpec(pipeline="p"))
    assert event.v == 1
    assert len(event.event_id) == 32
    assert event.occurred_at.tzinfo == UTC
    assert event.occurred_at <= datetime.now(UTC)


def test_unknown_fields_are_ignored_so_adding_a_field_is_backward_compatible() -> None:
    data = (Path(__file__).parent / "golden" / "job.started.v1.json").read_bytes()
    newer = data.replace(b'"worker"', b'"added_later":{"x":1},"worker"')
    assert decode(newer) == decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"type":"job.nope"}',
        b'{"type":"job.started"}',
        b'{"type":"job.finished","job_id":"j","delivery_id":"d","attempt":1,"outcome":"meh"}',
        b"\xff\xfe",
    ],
)
def test_bad_entries_raise_a_decode_error(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode(data)


def test_outcome_is_one_of_the_known_values() -> None:
    finished = JobFinished(
        job_id="j", delivery_id="d", attempt=1, outcome="skipped", reason="no route"
    )
    assert decode(encode(finished)) == finished


def test_the_old_spec_shape_is_upcast_to_run_at_decode_time() -> None:
    golden = Path(__file__).parent / "golden"
    old = decode((golden / "job.queued.v1.json").read_bytes())
    new = decode((golden / "job.queued.v1.run.json").read_bytes())
    command = decode((golden / "job.queued.v1.command.json").read_bytes())
    assert isinstance(old, JobQueued)
    assert isinstance(new, JobQueued)
    assert isinstance(command, JobQueued)
    assert old.spec == new.spec
    assert old.spec.run == HandlerRun(path="hookline_worker.demo:summarize")
    assert command.spec.run == CommandRun(argv=["render", "Codertocat/Hello-World", "main"])
    assert b'"handler":' not in encode(old)  # written again in the new shape only
    assert b'"command":' not in encode(command)


def test_an_old_spec_with_both_a_command_and_a_handler_decodes_with_nothing_to_run() -> None:
    """It decodes (so the worker can fail the job saying why, as it always did), with no
    ``run``: the worker refuses a spec with nothing to run."""
    data = (Path(__file__).parent / "golden" / "job.queued.v1.json").read_bytes()
    both = decode(data.replace(b'"command":null', b'"command":["x"]'))
    assert isinstance(both, JobQueued)
    assert both.spec.run is None
    assert (both.spec.old_command, both.spec.old_handler) == (
        ["x"],
        "hookline_worker.demo:summarize",
    )
    assert JobSpec(pipeline="p").run is None

"""A stream's entries as the tests read them back with XRANGE, typed once.

redis-py types an XRANGE reply loosely (the reply, each id and each field map may be None,
keys and values bytes or str) because the same type serves XREADGROUP, whose pending
entries can be deleted ones. XRANGE on a bytes client (``decode_responses=False``, as
``hookline.redis_client.connect`` and the test fixtures make) never returns those, so
these check that and give the tests bytes ids and ``dict[bytes, bytes]`` fields.
"""

from __future__ import annotations

from typing import cast

from hookline.events import AnyEvent, decode
from hookline.keys import EVENT_FIELD
from redis.typing import StreamRangeResponse

Fields = dict[bytes, bytes]


def entries(reply: StreamRangeResponse | None) -> list[tuple[bytes, Fields]]:
    """The ``(id, fields)`` pairs of an XRANGE or XREVRANGE reply."""
    assert reply is not None, "XRANGE replied nothing"
    out: list[tuple[bytes, Fields]] = []
    for entry_id, fields in reply:
        assert isinstance(entry_id, bytes), f"not a bytes client: entry id {entry_id!r}"
        assert fields is not None, f"entry {entry_id!r} has no fields"
        out.append((entry_id, cast(Fields, fields)))
    return out


def events(reply: StreamRangeResponse | None) -> list[AnyEvent]:
    """The events of an XRANGE reply, decoded, in stream order."""
    return [decode(fields[EVENT_FIELD]) for _, fields in entries(reply)]

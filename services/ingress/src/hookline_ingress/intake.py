"""Pure checks of one delivery: headers, media type, signature choice, the JSON inside.

No I/O here: each check returns the JSON payload or raises :class:`Refusal`, which the
HTTP handler turns into ``{"error", "detail"}`` with the right status.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

import msgspec
from hookline import signing

# A GitHub delivery id is a GUID; it becomes part of a Redis key, so nothing that could
# leave the key's shape (braces, spaces, control characters) is accepted.
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# GitHub event names: push, pull_request, check_suite, ... (also a metric label).
_EVENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_FORM_FIELDS = 32
# How deep a payload's objects and arrays may nest. GitHub's deepest payload among the
# shipped samples nests 7 levels; every consumer decodes the payload again, and a
# recursive decoder fails near 1000 levels, so the limit keeps a wide margin both ways.
MAX_DEPTH = 64
# Keeps only the brackets (each as ``[`` or ``]``: the kind does not change the depth)
# and the quotes around strings.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET_OR_QUOTE = bytes(c for c in range(256) if c not in b'[]{}"')

Media = Literal["json", "form"]
# ``unavailable``: neither Redis nor the spool could take the webhook (503).
RequestOutcome = Literal[
    "accepted",
    "duplicate",
    "ignored",
    "rejected_signature",
    "rejected_input",
    "spooled",
    "unavailable",
]


# What a 202 says happened to a delivery that reached Redis or the spool (its
# ``outcome`` field); ingress does not know the routes, so none of them promises that a
# pipeline runs: the dispatcher decides that (no matching route: the job ends skipped).
Stored = Literal["accepted", "duplicate", "spooled"]
_STORED_MESSAGES: dict[Stored, str] = {
    "accepted": "Webhook accepted for {target}: queued for the dispatcher, which runs "
    "the pipeline of the route it matches (or skips it); follow status_url",
    "duplicate": "Duplicate delivery for {target}: already received, nothing new queued; "
    "status_url is the job of the first delivery",
    "spooled": "Webhook accepted for {target} and kept on disk: Redis is unavailable, it "
    "is queued for the dispatcher as soon as Redis is back; follow status_url",
}


def stored_answer(outcome: Stored, target: str, job_id: str, status_url: str) -> dict[str, str]:
    """The 202 body of a delivery that was appended, spooled or already there."""
    return {
        "message": _STORED_MESSAGES[outcome].format(target=target),
        "outcome": outcome,
        "job_id": job_id,
        "status_url": status_url,
    }


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    status: int
    error: str
    detail: str
    outcome: RequestOutcome = "rejected_input"


class Repository(msgspec.Struct):
    full_name: str | None = None
    html_url: str | None = None


class PayloadHead(msgspec.Struct):
    """The few fields ingress reads; the rest of the payload passes through untouched."""

    action: str | None = None
    repository: Repository | None = None
    zen: str | None = None
    hook_id: int | None = None


_head_decoder = msgspec.json.Decoder(PayloadHead)


def check_headers(event: str, delivery: str) -> None:
    for name, value, pattern in (
        ("X-GitHub-Event", event, _EVENT),
        ("X-GitHub-Delivery", delivery, _DELIVERY),
    ):
        if not value:
            raise Refusal(400, "missing_header", f"{name} header is required")
        if not pattern.match(value):
            raise Refusal(400, "invalid_header", f"{name} header is malformed")


def media_kind(content_type: str) -> Media:
    """``content_type`` is the bare media type (parameters such as charset removed)."""
    kind = content_type.strip().lower()
    if kind == "application/json":
        return "json"
    if kind == "application/x-www-form-urlencoded":
        return "form"
    raise Refusal(
        415,
        "unsupported_media_type",
        "Content-Type must be application/json or application/x-www-form-urlencoded",
    )


def expect_signature(secrets: Sequence[str], headers: Mapping[str, str]) -> BodyMac | None:
    """Refuse at once, before any of the body is read, unless ``X-Hub-Signature-256``
    has the shape of a signature; then the MAC to feed the body to. None in insecure
    mode (no secrets): every body passes, the caller warns."""
    if not secrets:
        return None
    header = headers.get("X-Hub-Signature-256")
    if header is None and "X-Hub-Signature" in headers:
        raise Refusal(
            401,
            "invalid_signature",
            "X-Hub-Signature (SHA-1) is not accepted: X-Hub-Signature-256 is required",
            "rejected_signature",
        )
    if not header or not header.startswith(signing.PREFIX):
        raise _bad_signature()
    return BodyMac(secrets, header)


class BodyMac:
    """HMAC-SHA256 of a body under each secret, fed chunk by chunk as the body arrives,
    then checked against the header."""

    def __init__(self, secrets: Sequence[str], header: str) -> None:
        self._macs = [hmac.new(s.encode(), digestmod=hashlib.sha256) for s in secrets]
        self._given = header[len(signing.PREFIX) :].strip().lower().encode()

    def update(self, chunk: bytes) -> None:
        for mac in self._macs:
            mac.update(chunk)

    def check(self) -> None:
        """Refuse unless the body signs under one of the secrets; every secret is
        compared, in constant time."""
        valid = False
        for mac in self._macs:
            valid |= hmac.compare_digest(mac.hexdigest().encode(), self._given)
        if not valid:
            raise _bad_signature()


def _bad_signature() -> Refusal:
    return Refusal(
        401,
        "invalid_signature",
        "X-Hub-Signature-256 is missing or does not match the body",
        "rejected_signature",
    )


def json_payload(kind: Media, body: bytes) -> bytes:
    """The JSON document of a delivery: the body itself, or the form's ``payload`` field."""
    if kind == "json":
        return body
    try:
        form = parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise Refusal(400, "invalid_form", "the form body cannot be parsed") from None
    values = form.get(b"payload")
    if not values:
        raise Refusal(400, "missing_payload", "the form has no payload field")
    if len(values) > 1:
        raise Refusal(400, "invalid_form", "the form has more than one payload field")
    return values[0]


def nests_deeper(document: bytes, limit: int) -> bool:
    """Whether ``document``'s arrays and objects nest deeper than ``limit``: counted
    without recursion and without decoding (brackets inside strings do not count).
    With the strings cut out and only the brackets kept, each pass removes every
    innermost ``[]`` pair, so the passes it takes to empty are the depth; all of it runs
    in C (a payload is never walked byte by byte in Python). Only authenticated bodies
    get here."""
    if document.count(b"[") + document.count(b"{") <= limit:
        return False  # fewer brackets than the limit: the common, fast path
    # Escaped backslashes, then escaped quotes, go first: every quote left opens or
    # closes a string, so the brackets outside strings are every other piece.
    unescaped = document.replace(b"\\\\", b"").replace(b'\\"', b"")
    pieces = unescaped.translate(_SQUARE, _NOT_BRACKET_OR_QUOTE).split(b'"')
    brackets = b"".join(pieces[0::2])
    for depth in range(limit + 1):
        inner = brackets.replace(b"[]", b"")
        if inner == brackets:
            # Empty, or only unmatched brackets left (``]]][[[``, not JSON): each
            # opener left unclosed still nests, so it counts.
            return depth + brackets.count(b"[") > limit
        brackets = inner
    return True


def check_depth(document: bytes, limit: int = MAX_DEPTH) -> None:
    if nests_deeper(document, limit):
        raise _too_deep(limit)


def _too_deep(limit: int) -> Refusal:
    return Refusal(
        422, "payload_too_deep", f"the payload nests objects and arrays deeper than {limit} levels"
    )


def payload_head(document: bytes) -> PayloadHead:
    """The fields ingress reads; the document must be one JSON object, nested no
    deeper than :data:`MAX_DEPTH`."""
    check_depth(document)
    try:
        return _head_decoder.decode(document)
    except msgspec.ValidationError as exc:
        raise Refusal(422, "invalid_payload", f"payload is not a GitHub event: {exc}") from None
    except msgspec.DecodeError:
        raise Refusal(400, "invalid_json", "the payload is not valid JSON") from None
    except RecursionError:  # only malformed JSON can get past the depth check this deep
        raise _too_deep(MAX_DEPTH) from None


# The ``event`` label of a request whose header names none of the known events.
OTHER_EVENT = "other"


def metric_event(event: str, known: frozenset[str]) -> str:
    """The ``event`` metric label: the header when it names one of ``known`` (a fixed
    list: GitHub's events and the allow-list), else ``other``. Anyone can send any
    header, so a label taken from it as is would add one series per request."""
    return event if event in known else OTHER_EVENT

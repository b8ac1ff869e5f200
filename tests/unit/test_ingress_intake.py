"""Pure checks of one delivery and the ingress settings, as tables of cases."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hookline import signing
from hookline.errors import ConfigError
from hookline_ingress import intake
from hookline_ingress.intake import Refusal
from hookline_ingress.settings import MIN_SECRET, load
from multidict import CIMultiDict

SECRETS = ["new", "old"]
BODY = b'{"zen": "Keep it logically awesome."}'


@pytest.mark.parametrize(
    ("event", "delivery", "error"),
    [
        ("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", None),
        ("pull_request_review_comment", "a.b:c_d-1", None),
        ("", "x", "missing_header"),
        ("push", "", "missing_header"),
        ("Push", "x", "invalid_header"),
        ("push event", "x", "invalid_header"),
        ("p" * 65, "x", "invalid_header"),
        ("push", "x" * 129, "invalid_header"),
        ("push", "{other}:key", "invalid_header"),
        ("push", "a b", "invalid_header"),
        ("push", "x\u00e9", "invalid_header"),
    ],
)
def test_headers_are_checked(event: str, delivery: str, error: str | None) -> None:
    if error is None:
        intake.check_headers(event, delivery)
        return
    with pytest.raises(Refusal) as caught:
        intake.check_headers(event, delivery)
    assert (caught.value.status, caught.value.error) == (400, error)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("APPLICATION/JSON", "json"),
        ("application/x-www-form-urlencoded", "form"),
        ("text/plain", None),
        ("application/octet-stream", None),
        ("multipart/form-data", None),
        ("", None),
    ],
)
def test_media_types(content_type: str, kind: str | None) -> None:
    if kind is not None:
        assert intake.media_kind(content_type) == kind
        return
    with pytest.raises(Refusal) as caught:
        intake.media_kind(content_type)
    assert (caught.value.status, caught.value.error) == (415, "unsupported_media_type")


def _sha1(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@pytest.mark.parametrize(
    ("secrets", "headers", "ok", "detail_has"),
    [
        (SECRETS, {"X-Hub-Signature-256": signing.sign("new", BODY)}, True, ""),
        (SECRETS, {"X-Hub-Signature-256": signing.sign("old", BODY)}, True, ""),
        (SECRETS, {"x-hub-signature-256": signing.sign("new", BODY)}, True, ""),
        (SECRETS, {"X-Hub-Signature-256": signing.sign("other", BODY)}, False, "does not"),
        (SECRETS, {}, False, "missing"),
        (SECRETS, {"X-Hub-Signature-256": "md5=00"}, False, "missing"),
        (SECRETS, {"X-Hub-Signature": _sha1("new", BODY)}, False, "SHA-1"),
        (
            SECRETS,
            {
                "X-Hub-Signature": _sha1("new", BODY),
                "X-Hub-Signature-256": signing.sign("bad", BODY),
            },
            False,
            "does not",
        ),
        ([], {}, True, ""),  # insecure mode: nothing to check against
    ],
)
def test_signature_choice(
    secrets: list[str], headers: dict[str, str], ok: bool, detail_has: str
) -> None:
    def check() -> None:
        mac = intake.expect_signature(secrets, CIMultiDict(headers))
        if mac is not None:
            for start in range(0, len(BODY), 7):  # fed in pieces, as a body arrives
                mac.update(BODY[start : start + 7])
            mac.check()

    if ok:
        check()
        return
    with pytest.raises(Refusal) as caught:
        check()
    refusal = caught.value
    assert (refusal.status, refusal.outcome) == (401, "rejected_signature")
    assert detail_has in refusal.detail


@pytest.mark.parametrize(
    ("kind", "body", "expected", "error"),
    [
        ("json", BODY, BODY, None),
        ("form", urlencode({"payload": BODY}).encode(), BODY, None),
        ("form", urlencode({"payload": "{}", "other": "x"}).encode(), b"{}", None),
        ("form", b"other=1", None, "missing_payload"),
        ("form", b"", None, "missing_payload"),
        ("form", b"payload=1&payload=2", None, "invalid_form"),
        ("form", b"&".join(b"f%d=1" % i for i in range(40)), None, "invalid_form"),
    ],
)
def test_json_payload(kind: str, body: bytes, expected: bytes | None, error: str | None) -> None:
    if error is None:
        assert intake.json_payload(kind, body) == expected  # type: ignore[arg-type]
        return
    with pytest.raises(Refusal) as caught:
        intake.json_payload(kind, body)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.error) == (400, error)


@pytest.mark.parametrize(
    ("document", "status", "error"),
    [
        (b"not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b'{"a": 1', 400, "invalid_json"),
        (b"[1]", 422, "invalid_payload"),
        (b"null", 422, "invalid_payload"),
        (b'{"repository": "x"}', 422, "invalid_payload"),
    ],
)
def test_payload_head_refuses(document: bytes, status: int, error: str) -> None:
    with pytest.raises(Refusal) as caught:
        intake.payload_head(document)
    assert (caught.value.status, caught.value.error) == (status, error)


def test_payload_head_reads_the_few_fields() -> None:
    head = intake.payload_head(
        b'{"action": "opened", "repository": {"full_name": "o/r"}, "hook_id": 7, "x": [1]}'
    )
    assert (head.action, head.repository and head.repository.full_name, head.hook_id) == (
        "opened",
        "o/r",
        7,
    )


@pytest.mark.parametrize(
    ("event", "label"),
    [("push", "push"), ("made_up", "other"), ("Evil Label", "other"), ("", "other")],
)
def test_metric_label_is_bounded(event: str, label: str) -> None:
    assert intake.metric_event(event, frozenset({"push", "ping"})) == label


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({}, "GITHUB_WEBHOOK_SECRET"),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_INSECURE": "1"},
            "HOOKLINE_INGRESS_INSECURE",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_INSECURE": "maybe"},
            "HOOKLINE_INGRESS_INSECURE",
        ),
        (
            {
                "GITHUB_WEBHOOK_SECRET": "secret-0123456789",
                "HOOKLINE_INGRESS_EVENTS": "push,Pull Request",
            },
            "HOOKLINE_INGRESS_EVENTS",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_REDIS_TIMEOUT": "9s"},
            "HOOKLINE_INGRESS_REDIS_TIMEOUT",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_REDIS_TIMEOUT": "0"},
            "HOOKLINE_INGRESS_REDIS_TIMEOUT",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_DEDUPE_TTL": "0s"},
            "HOOKLINE_INGRESS_DEDUPE_TTL",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_DEDUPE_TTL": "soon"},
            "HOOKLINE_INGRESS_DEDUPE_TTL",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_MAX_BODY": "-1"},
            "HOOKLINE_INGRESS_MAX_BODY",
        ),
        (
            {
                "GITHUB_WEBHOOK_SECRET": "secret-0123456789",
                "HOOKLINE_INGRESS_MAX_BODY": str(2 << 30),
            },
            "HOOKLINE_INGRESS_MAX_BODY",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_BODY_TIMEOUT": "0"},
            "HOOKLINE_INGRESS_BODY_TIMEOUT",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_SPOOL_DIR": "  "},
            "HOOKLINE_INGRESS_SPOOL_DIR",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_REPLICA": "../up"},
            "HOOKLINE_INGRESS_REPLICA",
        ),
        (
            {"GITHUB_WEBHOOK_SECRET": "secret-0123456789", "HOOKLINE_INGRESS_REPLICA": ".."},
            "HOOKLINE_INGRESS_REPLICA",
        ),
        (
            {
                "GITHUB_WEBHOOK_SECRET": "secret-0123456789",
                "HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL": "0s",
            },
            "HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert caught.value.setting == setting


def test_settings_parse() -> None:
    settings = load(
        {
            "GITHUB_WEBHOOK_SECRET": "new-secret-0123456789, old-secret-0123456789",
            "HOOKLINE_INGRESS_EVENTS": "push, pull_request",
            "HOOKLINE_INGRESS_DEDUPE_TTL": "3d",
            "HOOKLINE_INGRESS_REDIS_TIMEOUT": "500ms",
            "HOOKLINE_INGRESS_SPOOL_DIR": "/var/spool/hookline",
            "HOOKLINE_INGRESS_REPLICA": "ingress-1",
            "HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL": "1m",
        }
    )
    assert settings.secrets == ["new-secret-0123456789", "old-secret-0123456789"]
    assert settings.events == ["push", "pull_request"]
    assert (settings.dedupe_ttl, settings.redis_timeout) == (3 * 86400.0, 0.5)
    assert settings.spool_dir == "/var/spool/hookline"
    assert (settings.replica, settings.spool_adopt_interval) == ("ingress-1", 60.0)
    assert load({"HOOKLINE_INGRESS_INSECURE": "1"}).insecure


@pytest.mark.parametrize(
    "secrets",
    ["s", "short-secret", "long-enough-secret-0,short-secret"],
)
def test_a_short_webhook_secret_is_refused(secrets: str) -> None:
    """Every secret of the rotation list must have at least MIN_SECRET characters."""
    with pytest.raises(ConfigError) as caught:
        load({"GITHUB_WEBHOOK_SECRET": secrets})
    assert caught.value.setting == "GITHUB_WEBHOOK_SECRET"
    assert f"at least {MIN_SECRET} characters" in str(caught.value)
    assert "short-secret" not in str(caught.value)  # the error never shows a secret


@pytest.mark.parametrize(
    ("document", "limit", "deeper"),
    [
        (b'{"a": [1, {"b": 2}]}', 3, False),
        (b'{"a": [1, {"b": 2}]}', 2, True),
        (b"[[], [], [], [], []]", 1, True),
        (b"[[], [], [], [], []]", 2, False),
        (b'{"a": "[[[[{{{{"}', 1, False),  # brackets inside a string
        (b'{"a\\"[[[": "\\\\", "b": "]]]]"}', 1, False),  # escaped quote, escaped backslash
        (b'["\\\\", [[]]]', 2, True),  # the string ends after the escaped backslash
        (b'["a\\n\\u005d]", [[]]]', 2, True),  # other escapes, a bracket in a string
        (b'["a\\n\\u005d]", [[]]]', 3, False),
        (b"[" * 10_000, 64, True),  # unclosed: still counted without recursion
        (b"1", 0, False),
    ],
)
def test_nesting_depth_is_counted_without_decoding(
    document: bytes, limit: int, deeper: bool
) -> None:
    assert intake.nests_deeper(document, limit) is deeper


def test_the_depth_scan_agrees_with_a_decoder_on_every_real_payload() -> None:
    """GitHub's deepest shipped payload nests 7 levels (the reason for a limit of 64)."""
    from hookline import samples

    deepest = 0
    for event in samples.events():
        for path in sorted((samples.SAMPLES / event).glob("*.json")):
            document = path.read_bytes()
            depth = next(d for d in range(100) if not intake.nests_deeper(document, d))
            assert depth == _decoded_depth(json.loads(document)), path.name
            deepest = max(deepest, depth)
    assert deepest == 7


def _decoded_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_decoded_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_decoded_depth(v) for v in value), default=0)
    return 0

"""The one redaction of URLs: passwords never shown, everything else readable."""

from __future__ import annotations

import pytest
from hookline.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:s3cret@127.0.0.1:6390/0", "redis://:***@127.0.0.1:6390/0"),
        ("redis://worker:s3cret@redis:6379/2", "redis://worker:***@redis:6379/2"),
        ("rediss://u:p%40ss@cache.example:6380", "rediss://u:***@cache.example:6380"),
        ("redis://s3cret@redis", "redis://***@redis"),
        ("redis://a:b@c@redis:1", "redis://a:***@redis:1"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_masks_the_password_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_password_the_url_carries() -> None:
    url = "redis://u:p%40ss@h:1/0?password=other"
    text = "AUTH failed: p@ss / p%40ss / other"
    assert redact_text(text, url) == "AUTH failed: *** / *** / ***"
    assert redact_text("Connection refused", "redis://h:1/0") == "Connection refused"

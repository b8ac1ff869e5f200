"""The one way a Redis reply becomes text: bytes are UTF-8 (bad bytes replaced),
anything else is formatted."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """``value`` as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)

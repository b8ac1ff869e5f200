"""Human durations ("90s", "30m", "24h", "7d") to seconds, and back."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class Duration(float):
    """Seconds, written in config as a number or as "90s", "30m", "1h30m", "7d"."""


def parse_duration(text: str | int | float) -> Duration:
    """Parse a duration; plain numbers are seconds. Raises ValueError on anything else."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like '90s', got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower()
        if not raw:
            raise ValueError("expected a duration like '90s', got an empty string")
        try:
            seconds = float(raw)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or pos == 0:
                raise ValueError(
                    f"expected a duration like '90s', '30m', '24h' or '7d', got {text!r}"
                ) from None
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    return Duration(seconds)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for messages ("90s", "7d")."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"

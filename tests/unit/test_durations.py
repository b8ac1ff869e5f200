import pytest
from hookline.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("15", 15),
        (2.5, 2.5),
        (" 2W ", 1209600),
    ],
)
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "5 m", "-3s", "1h-5m", "s", True])
def test_bad_durations_are_refused_with_the_value_named(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(90, "90s"), (1800, "30m"), (604800, "1w"), (0.5, "0.5s"), (86400, "1d")]
)
def test_format_duration_is_the_short_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

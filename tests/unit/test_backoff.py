import pytest
from hookline.backoff import full_jitter, reconnect_delay, restart_delay


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "ceiling"),
    [(1, 5, 600, 5), (2, 5, 600, 10), (3, 5, 600, 20), (8, 5, 600, 600), (200, 5, 600, 600)],
)
def test_full_jitter_ceiling_doubles_up_to_the_cap(
    attempt: int, base: float, cap: float, ceiling: float
) -> None:
    assert full_jitter(attempt, base, cap, rand=lambda: 1.0) == ceiling
    assert full_jitter(attempt, base, cap, rand=lambda: 0.0) == 0.0
    assert full_jitter(attempt, base, cap, rand=lambda: 0.5) == ceiling / 2


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        full_jitter(0, 1, 10)


def test_reconnect_delay_is_never_zero_and_stays_bounded() -> None:
    assert reconnect_delay(1, rand=lambda: 0.0) > 0
    assert reconnect_delay(100, rand=lambda: 1.0) <= 5.05 + 1e-9


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)]
)
def test_restart_delay_doubles_up_to_its_cap(failures: int, delay: float) -> None:
    assert restart_delay(failures) == delay


def test_restart_delay_counts_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        restart_delay(0)

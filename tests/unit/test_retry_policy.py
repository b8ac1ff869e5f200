"""When a failed attempt runs again, and after how long."""

import pytest
from hookline.events import Backoff, JobError, JobSpec
from hookline_dispatcher.policy import GiveUp, Retry, backoff_delay, decide_retry

SPEC = JobSpec(
    pipeline="build",
    retries=3,
    backoff=Backoff(kind="exponential", base=2.0, cap=10.0),
    no_retry_on=["Timeout"],
)
BOOM = JobError(type="RuntimeError", message="boom")


@pytest.mark.parametrize(
    ("attempt", "first", "error", "canceling", "expected"),
    [
        (1, 1, BOOM, False, Retry(1.0, "retry 1 of 3 after RuntimeError: boom")),
        (2, 1, BOOM, False, Retry(2.0, "retry 2 of 3 after RuntimeError: boom")),
        (3, 1, BOOM, False, Retry(4.0, "retry 3 of 3 after RuntimeError: boom")),
        (4, 1, BOOM, False, GiveUp("failed 4 times, no retries left (RuntimeError: boom)")),
        # a requeued job (run starting at attempt 5) gets its retries afresh
        (5, 5, BOOM, False, Retry(1.0, "retry 1 of 3 after RuntimeError: boom")),
        (8, 5, BOOM, False, GiveUp("failed 4 times, no retries left (RuntimeError: boom)")),
        (
            1,
            1,
            JobError(type="Timeout", message="slow"),
            False,
            GiveUp("Timeout is not retried by pipeline 'build' (Timeout: slow)"),
        ),
        (
            1,
            1,
            JobError(type="Bad", message="x", retryable=False),
            False,
            GiveUp("not retryable (Bad: x)"),
        ),
        (1, 1, BOOM, True, GiveUp("canceled while running (RuntimeError: boom)")),
        (1, 1, None, False, Retry(1.0, "retry 1 of 3 after no error recorded")),
    ],
)
def test_retry_decisions(
    attempt: int, first: int, error: JobError | None, canceling: bool, expected: object
) -> None:
    decision = decide_retry(SPEC, attempt, first, error, canceling=canceling, rand=lambda: 0.5)
    assert decision == expected


def test_no_retries_means_the_first_failure_is_final() -> None:
    spec = JobSpec(pipeline="p", retries=0)
    assert isinstance(decide_retry(spec, 1, 1, BOOM), GiveUp)


@pytest.mark.parametrize(
    ("backoff", "retry", "rand", "delay"),
    [
        (Backoff(kind="exponential", base=5, cap=600), 1, 1.0, 5.0),
        (Backoff(kind="exponential", base=5, cap=600), 4, 1.0, 40.0),
        (Backoff(kind="exponential", base=5, cap=600), 20, 1.0, 600.0),  # capped
        (Backoff(kind="exponential", base=5, cap=600), 20, 0.0, 0.0),  # full jitter
        (Backoff(kind="fixed", base=30, cap=1), 7, 0.0, 30.0),
    ],
)
def test_backoff_delays(backoff: Backoff, retry: int, rand: float, delay: float) -> None:
    assert backoff_delay(backoff, retry, lambda: rand) == delay

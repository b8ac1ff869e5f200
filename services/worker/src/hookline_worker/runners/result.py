"""What a runner hands back: ok with a JSON-able result, or the job's error."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import msgspec
from hookline.events import JobError

MAX_RESULT_BYTES = 64 * 1024
OUTPUT_TAIL_BYTES = 16 * 1024

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class RunResult:
    ok: bool
    result: Any = None
    error: JobError | None = None


OK_NONE = RunResult(True, result=None)


def error_of(exc: BaseException, *, retryable: bool = True) -> JobError:
    tail = "".join(traceback.format_exception(exc))[-OUTPUT_TAIL_BYTES:]
    return JobError(
        type=type(exc).__name__, message=str(exc)[:2000], traceback=tail, retryable=retryable
    )


def checked_result(value: Any) -> RunResult:
    """A pipeline's result, if it encodes as JSON within the size cap."""
    try:
        size = len(_encoder.encode(value))
    except (TypeError, msgspec.EncodeError, ValueError, OverflowError) as exc:
        return RunResult(
            False,
            error=JobError(
                type="ResultNotSerializable",
                message=f"result is not JSON-serialisable: {exc}",
                retryable=False,
            ),
        )
    if size > MAX_RESULT_BYTES:
        return RunResult(
            False,
            error=JobError(
                type="ResultTooLarge",
                message=f"result is {size} bytes, over the {MAX_RESULT_BYTES} byte cap",
                retryable=False,
            ),
        )
    return RunResult(True, result=value)

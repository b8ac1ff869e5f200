"""What a handler pipeline receives: the job's ids, its payload, a logger, a place for files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
from hookline.events import Meta

_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(slots=True)
class JobContext:
    """One attempt of a job, as its handler sees it. ``payload``, ``artifacts_dir`` and
    ``log`` are built on first use (most handlers need only some of them)."""

    job_id: str
    delivery_id: str
    attempt: int
    queue: str
    pipeline: str
    worker: str
    meta: Meta
    artifacts_root: Path
    raw_payload: bytes | msgspec.Raw = b"{}"
    base_log: Any = None
    _payload: dict[str, Any] | None = field(default=None, repr=False)
    _log: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A relative HOOKLINE_ARTIFACTS_DIR is relative to the worker's own working
        # directory; made absolute here so that a command in its scratch folder and a
        # handler see the same folder.
        self.artifacts_root = self.artifacts_root.absolute()

    @property
    def payload(self) -> dict[str, Any]:
        """The GitHub payload, decoded on first use."""
        if self._payload is None:
            self._payload = _decoder.decode(self.raw_payload)
        return self._payload

    @property
    def artifacts_dir(self) -> Path:
        """``HOOKLINE_ARTIFACTS_DIR/<job id>``, an absolute path: files kept after the job
        (created by :meth:`artifact_path`, and before a command pipeline starts)."""
        return self.artifacts_root / self.job_id

    @property
    def log(self) -> Any:
        """A structlog logger bound to the job id and attempt."""
        if self._log is None:
            base = self.base_log if self.base_log is not None else structlog.get_logger()
            self._log = base.bind(job_id=self.job_id, attempt=self.attempt)
        return self._log

    def artifact_path(self, name: str) -> Path:
        """A file path for this job's artifacts; the folder is created on first use."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.artifacts_dir / name

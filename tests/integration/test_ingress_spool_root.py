"""A spool root shared by ingress replicas, on a real disk: a directory each, and the
spools of replicas that are gone taken in, once, in their order."""

from __future__ import annotations

import os
from pathlib import Path

from hookline_ingress.spool import FILE_NAME, Spool, SpoolEntry, lock_directory
from hookline_ingress.spoolroot import SpoolRoot, replica_name


def entry(name: str) -> SpoolEntry:
    return SpoolEntry(
        delivery_id=name,
        job_id=f"j-{name}",
        marker=f"m-{name}",
        stream="s",
        data=b"x",
        spooled_at=0.0,
    )


def opened(root: Path, replica: str = "host", explicit: bool = False) -> SpoolRoot:
    spool_root = SpoolRoot(root, replica, explicit)
    spool_root.open_own()
    return spool_root


def own(spool_root: SpoolRoot) -> Spool:
    assert spool_root.own is not None
    return spool_root.own


def ids(spool: Spool) -> list[str]:
    return [e.delivery_id for e in spool.entries()]


async def test_replicas_on_one_host_take_a_directory_each(tmp_path: Path) -> None:
    first, second = opened(tmp_path), opened(tmp_path)
    assert (own(first).directory.name, own(second).directory.name) == ("host", "host-2")
    assert await own(first).append(entry("a"))
    assert await own(second).append(entry("b"))
    assert (ids(own(first)), ids(own(second))) == (["a"], ["b"])


async def test_the_spool_of_a_replica_that_is_gone_is_taken_in_once(tmp_path: Path) -> None:
    survivor, gone = opened(tmp_path, "left"), opened(tmp_path, "right")
    await own(survivor).append(entry("s1"))
    for name in ("g1", "g2", "g3"):
        await own(gone).append(entry(name))
    alive = opened(tmp_path, "alive")
    await own(alive).append(entry("x"))
    own(gone).close()  # what the kernel does when its process dies, kill -9 included
    (tmp_path / "right" / "webhooks.compact").write_bytes(b"a compaction cut short")

    assert await survivor.adopt() == 3
    assert ids(own(survivor)) == ["s1", "g1", "g2", "g3"]  # behind its own, in order
    assert not (tmp_path / "right").exists()
    assert ids(own(alive)) == ["x"]  # a live owner's spool is left alone
    assert await alive.adopt() == 0  # nothing left to take twice


async def test_a_directory_being_adopted_by_another_replica_is_left_to_it(tmp_path: Path) -> None:
    first, gone = opened(tmp_path, "first"), opened(tmp_path, "gone")
    await own(gone).append(entry("g1"))
    own(gone).close()
    held = lock_directory(tmp_path / "gone")  # another replica in the middle of adopting
    assert held is not None
    try:
        assert await first.adopt() == 0
        assert (tmp_path / "gone" / FILE_NAME).stat().st_size > 0
    finally:
        os.close(held)


async def test_a_spool_of_the_layout_without_replicas_is_taken_in(tmp_path: Path) -> None:
    legacy = Spool(tmp_path)
    legacy.open()
    await legacy.append(entry("old1"))
    await legacy.append(entry("old2"))
    legacy.close()
    replica = opened(tmp_path)
    assert await replica.adopt() == 2
    assert ids(own(replica)) == ["old1", "old2"]
    assert not (tmp_path / FILE_NAME).exists()


def test_a_host_name_becomes_a_safe_directory_name() -> None:
    assert replica_name("ingress-7f9c.local") == "ingress-7f9c.local"
    assert replica_name("we/ird host") == "we-ird-host"
    assert replica_name("..") == "ingress"

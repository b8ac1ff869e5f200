"""The spool file on a real disk: order, fsync'd appends, torn writes, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hookline.errors import ConfigError
from hookline_ingress.spool import FILE_NAME, HEADER, Spool, SpoolEntry, encode_frame


def entry(n: int, size: int = 10) -> SpoolEntry:
    return SpoolEntry(
        delivery_id=f"d{n}",
        job_id=f"j{n}",
        marker=f"m{n}",
        stream="s",
        data=bytes([n % 256]) * size,
        spooled_at=float(n),
    )


def opened(path: Path) -> Spool:
    spool = Spool(path)
    spool.open()
    return spool


def set_aside(path: Path) -> list[Path]:
    return sorted(path.glob("damaged-*.bin"))


async def fill(spool: Spool, count: int) -> None:
    for n in range(count):
        assert await spool.append(entry(n))


async def test_entries_survive_a_restart_in_arrival_order(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    await fill(spool, 5)
    spool.close()
    again = opened(tmp_path)
    assert [e.delivery_id for e in again.entries()] == [f"d{n}" for n in range(5)]
    assert again.holds("d3")
    assert again.depth == 5


async def test_a_delivery_already_spooled_is_not_spooled_twice(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    assert await spool.append(entry(1))
    assert not await spool.append(entry(1))
    assert spool.depth == 1


async def test_replay_hands_entries_over_in_order_then_empties_the_file(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    await fill(spool, 4)
    seen: list[str] = []

    async def push(e: SpoolEntry) -> None:
        seen.append(e.delivery_id)

    assert await spool.replay(push) == 4
    assert seen == ["d0", "d1", "d2", "d3"]
    assert spool.depth == 0
    assert (tmp_path / FILE_NAME).stat().st_size == 0
    assert not spool.holds("d0")


async def test_a_failing_push_keeps_the_rest_and_compacts(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    await fill(spool, 5)

    async def push(e: SpoolEntry) -> None:
        if e.delivery_id == "d2":
            raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        await spool.replay(push)
    assert [e.delivery_id for e in spool.entries()] == ["d2", "d3", "d4"]
    assert (tmp_path / FILE_NAME).stat().st_size == sum(
        len(encode_frame(entry(n))) for n in (2, 3, 4)
    )
    # appends after a compaction follow the kept entries, and all survive a restart
    assert await spool.append(entry(9))
    spool.close()
    assert [e.delivery_id for e in opened(tmp_path).entries()] == ["d2", "d3", "d4", "d9"]


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size, HEADER.size + 5, -1])
async def test_a_torn_last_frame_is_cut_off_and_set_aside(tmp_path: Path, cut: int) -> None:
    spool = opened(tmp_path)
    await fill(spool, 3)
    spool.close()
    path = tmp_path / FILE_NAME
    whole = path.read_bytes()
    last = len(encode_frame(entry(2)))
    keep = len(whole) - last + (cut if cut > 0 else last + cut)
    path.write_bytes(whole[:keep])  # a crash part way through the last append
    again = opened(tmp_path)
    assert [e.delivery_id for e in again.entries()] == ["d0", "d1"]
    [aside] = set_aside(tmp_path)
    assert aside.read_bytes() == whole[len(whole) - last : keep]
    assert await again.append(entry(7))
    again.close()
    assert [e.delivery_id for e in opened(tmp_path).entries()] == ["d0", "d1", "d7"]


async def test_a_corrupt_frame_keeps_what_precedes_it_and_sets_the_rest_aside(
    tmp_path: Path,
) -> None:
    spool = opened(tmp_path)
    await fill(spool, 3)
    spool.close()
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    second = len(encode_frame(entry(0)))
    data[second + HEADER.size + 2] ^= 0xFF  # a flipped bit inside entry d1
    path.write_bytes(bytes(data))
    again = opened(tmp_path)
    assert [e.delivery_id for e in again.entries()] == ["d0"]
    [aside] = set_aside(tmp_path)
    assert aside.read_bytes() == bytes(data[second:])


async def test_garbage_file_loads_as_empty_with_everything_set_aside(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\x00garbage" * 100)
    spool = opened(tmp_path)
    assert spool.depth == 0
    assert len(list(set_aside(tmp_path))) == 1


def test_a_second_process_cannot_share_the_directory(tmp_path: Path) -> None:
    first = opened(tmp_path)
    with pytest.raises(ConfigError) as caught:
        opened(tmp_path)
    assert caught.value.setting == "HOOKLINE_INGRESS_SPOOL_DIR"
    first.close()
    opened(tmp_path).close()


def test_an_unusable_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        opened(blocker / "spool")
    assert caught.value.setting == "HOOKLINE_INGRESS_SPOOL_DIR"

"""The embedded Redis's password is never on its command line (any local user reads
``/proc/<pid>/cmdline``), and its data folder is private."""

from __future__ import annotations

from pathlib import Path

from hookline.embedded_redis import EmbeddedRedis, ping
from support.redis_server import own_redis


def test_the_password_is_in_a_private_config_file_not_on_the_command_line(
    tmp_path: Path,
) -> None:
    server: EmbeddedRedis = own_redis(tmp_path / "redis", password="pw-" + "z" * 30)
    try:
        assert server.process is not None
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"pw-zzz" not in cmdline
        assert ping(server.host, server.port, password="pw-" + "z" * 30)
        assert not ping(server.host, server.port)  # no password, no answer
        assert (tmp_path / "redis").stat().st_mode & 0o077 == 0
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
    finally:
        server.stop()

"""`a2v serve` on a port that is already in use fails with one line (exit 5) and leaves everything as it was.

It used to make its data dir, write `tokens.json` and the link-signing key (and, distributed, migrate the
database and write the storage's tokens) before it found out that it could not listen: a typo in
`--port` left secrets in a folder the user never meant to create.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import one_error_line, run_cli
from services import RedisServer, child_env

from a2v_cli.errors import ExitCode


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_embedded_serve_on_a_taken_port_writes_nothing(tmp_path: Path, taken_port: int) -> None:
    data = tmp_path / "data"
    r = run_cli("serve", "--port", str(taken_port), "--data-dir", str(data), timeout=120)
    assert r.code == ExitCode.UNAVAILABLE, r.stderr
    one_error_line(r.stderr, f"cannot listen on 127.0.0.1:{taken_port}", "--port")
    assert not data.exists(), tree(data)
    data.mkdir()
    (data / "mine.txt").write_text("kept")
    r = run_cli("serve", "--port", str(taken_port), "--data-dir", str(data), timeout=120)
    assert r.code == ExitCode.UNAVAILABLE, r.stderr
    assert tree(data) == ["mine.txt"]


def test_a_front_end_on_a_taken_port_writes_nothing(tmp_path: Path, taken_port: int, redis_server: RedisServer,
                                                    database: str) -> None:
    storage = tmp_path / "storage"
    storage.mkdir(mode=0o700)
    env = {k: v for k, v in child_env(tmp_path / "home", {}).items() if k != "A2V_SERVER_TOKENS"}
    r = run_cli("serve", "--port", str(taken_port), "--broker", redis_server.fresh_url(), "--database", database,
                "--storage", str(storage), env=env, timeout=120)
    assert r.code == ExitCode.UNAVAILABLE, r.stderr
    one_error_line(r.stderr, f"cannot listen on 127.0.0.1:{taken_port}")
    assert tree(storage) == []  # no tokens.json, no signing key
    with psycopg.connect(database, autocommit=True) as conn:  # nor a migrated database
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

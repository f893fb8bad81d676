"""The distributed deployment end to end: `a2v serve` front ends and `a2v worker` processes over a real
Redis (Celery's broker), a real PostgreSQL and a shared storage directory, all on 127.0.0.1.

Redis and PostgreSQL are throwaway instances started by tests/services.py; each deployment gets its own
database and its own Redis database number, and every front end and worker runs as its own process in
its own working directory with its own A2V_HOME, so they share nothing but the three services.
"""

from __future__ import annotations

import socket

from services import PostgresServer, RedisServer

# --- the throwaway services themselves -------------------------------------------------------------


def redis_command(server: RedisServer, *args: str, db: int = 0) -> bytes:
    """One Redis command over a raw socket (RESP), its raw answer: the tests need no client library."""
    def resp(*parts: str) -> bytes:
        return f"*{len(parts)}\r\n".encode() + b"".join(f"${len(p.encode())}\r\n{p}\r\n".encode() for p in parts)

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(resp("SELECT", str(db)) + resp(*args))
        answer = b""
        while answer.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[1]


def test_redis_keeps_its_data_through_kill_9(redis_server: RedisServer) -> None:
    db = int(redis_server.fresh_url().rsplit("/", 1)[1])
    assert redis_command(redis_server, "RPUSH", "a2v-fixture-check", "job-1", db=db).startswith(b":")
    pid = redis_server.proc.pid  # type: ignore[union-attr]
    redis_server.restart()
    assert redis_server.proc.pid != pid and redis_server.ping()  # type: ignore[union-attr]
    assert redis_command(redis_server, "LLEN", "a2v-fixture-check", db=db) == b":1\r\n"


def test_postgres_databases_are_fresh_and_loopback_only(postgres_server: PostgresServer, database: str) -> None:
    name = database.rsplit("/", 1)[1]
    assert database == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}"
    assert postgres_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name) == "0"
    assert postgres_server.psql("SHOW listen_addresses") == "127.0.0.1"
    other = postgres_server.fresh_database()
    assert other != database
    postgres_server.drop_database(other)

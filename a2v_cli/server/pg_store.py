"""The distributed deployment's state in PostgreSQL: videos, jobs, idempotency keys, uploads, workers.

Why PostgreSQL (through psycopg 3, the maintained driver, and its connection pool): every front end
and worker on every host reads and writes the same rows, and the database's row locks decide who holds
a job. The rules that keep a job rendered once:

- an Idempotency-Key is unique per owner in the table (``INSERT ... ON CONFLICT DO NOTHING``), so two
  front ends given the same key at once create one job;
- a worker *claims* a job in one transaction under ``SELECT ... FOR UPDATE``: only a pending job, or a
  processing one whose holder is gone, can be claimed; each claim has its own random id and counts a try.
  A worker holds an advisory lock on the job in its own session (`Liveness`) for as long as it renders,
  so the moment it dies (``kill -9`` closes its connection) the database knows the job has no holder;
  heartbeats older than the lease say the same for a worker that hangs or lost the database;
- a result is published (its folder renamed into place) and the job marked finished in one
  transaction that first checks the claim is still the caller's, so a worker presumed dead that
  finishes after all cannot publish a second output set.

The schema is created by the numbered SQL files in ``migrations/``, applied at start by whichever
process comes first, under an advisory lock.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from a2v_cli.errors import UnavailableError
from a2v_cli.schema import Video
from a2v_cli.server.deployment import JobLimits
from a2v_cli.store import VIDEO_COLUMNS, Job, delete_outcome, new_video_id, now_iso

log = logging.getLogger("a2v.server")

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6132765F6D6967  # pg_advisory_xact_lock key: "a2v_mig"
# a job's advisory lock key: the first 64 bits of md5(video_id), computed the same way here and in SQL
JOB_LOCK_SQL = "('x' || substr(md5(video_id), 1, 16))::bit(64)::bigint"
_VIDEO_SQL = ", ".join(VIDEO_COLUMNS)
_JOB_SQL = ("video_id, owner, pose_id, audio_url, attempts, alpha_format, allow_private, max_bytes, "
            "download_timeout_s, max_audio_seconds")


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker now holds: render it under ``limits``, report with ``claim_id``."""

    job: Job
    limits: JobLimits
    claim_id: str


def _video(row: tuple) -> Video:
    return Video(**dict(zip(VIDEO_COLUMNS, row)))


def _claimed(row: tuple, claim_id: str) -> ClaimedJob:
    job = Job(row[0], row[1], row[2], row[3], row[4], row[5])
    return ClaimedJob(job, JobLimits(bool(row[6]), int(row[7]), float(row[8]), float(row[9])), claim_id)


def job_lock_key(video_id: str) -> int:
    """``JOB_LOCK_SQL`` in Python: the signed 64-bit advisory lock key of a job."""
    import hashlib

    return int.from_bytes(hashlib.md5(video_id.encode()).digest()[:8], "big", signed=True)


class Liveness:
    """A worker process's own database session, holding an advisory lock on each job it renders.

    Why: a worker killed outright cannot say so, but its connection closes and the database drops its
    locks at once; the sweeper and other workers then see the job has no holder (`PgStore.reap`,
    `PgStore.claim` with ``held``) instead of waiting out a heartbeat lease."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def hold(self, video_id: str) -> bool:
        """Take the job's lock; False when another session holds it (its worker is alive)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (job_lock_key(video_id),)).fetchone()
                    return bool(row and row[0])
                except psycopg.OperationalError:  # the session was lost (and its locks with it): a new one
                    if attempt == 2:
                        raise UnavailableError("the database does not answer", "try again shortly") from None
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return False

    def drop(self, video_id: str) -> None:
        with self._lock:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (job_lock_key(video_id),))
            except psycopg.Error:
                pass  # a lost session holds nothing any more

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (for logs and messages)."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def migrations() -> list[tuple[int, str]]:
    """(version, file name) of every migration, in order."""
    found = []
    for path in MIGRATIONS.glob("*.sql"):
        number = path.name.split("_", 1)[0]
        if number.isdigit():
            found.append((int(number), path.name))
    return sorted(found)


class PgStore:
    """`StateStore`, `UploadIndex` and the job table's transitions on one PostgreSQL connection pool."""

    def __init__(self, url: str, max_connections: int = 10, timeout_s: float = 10.0) -> None:
        self.url = url
        try:  # one connection first: a wrong URL or a database that is down is one clear line, at once
            psycopg.connect(url, connect_timeout=max(1, int(timeout_s))).close()
        except psycopg.Error as err:
            why = (str(err).strip().splitlines() or [err.__class__.__name__])[0].strip()
            raise UnavailableError(f"cannot connect to the database {redact_url(url)}: {redact_url(why)}",
                                   "check --database (A2V_DATABASE) and that PostgreSQL runs") from None
        self.pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max_connections, timeout=timeout_s, open=False,
            kwargs={"connect_timeout": max(1, int(timeout_s))}, name="a2v",
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction (committed on success); a lost database is UnavailableError."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as err:
            raise UnavailableError(f"the database does not answer: {str(err).strip().splitlines()[0]}",
                                   "try again shortly") from None

    def transaction(self) -> contextlib.AbstractContextManager[psycopg.Connection]:
        """A pooled connection in one transaction, for the tables kept by other modules (tokens, avatars)."""
        return self._conn()

    # --- schema ---------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations this database lacks (one process at a time); returns the ones applied."""
        applied = []
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS a2v_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                         "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = {r[0] for r in conn.execute("SELECT version FROM a2v_migrations")}
            for version, name in migrations():
                if version in done:
                    continue
                conn.execute((MIGRATIONS / name).read_text(encoding="utf-8"))  # type: ignore[arg-type]
                conn.execute("INSERT INTO a2v_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(name)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        return applied

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1").fetchone()

    # --- StateStore -----------------------------------------------------------------------------

    def create_job(
        self, pose_id: str, owner: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None, limits: JobLimits | None = None,
    ) -> tuple[Video, Job, bool]:
        """Insert a pending job, or with a known ``idempotency_key`` find the first one (any front end's)."""
        if limits is None:
            raise ValueError("a distributed job needs the front end's limits")
        ts = now_iso()
        with self._conn() as conn:
            row = conn.execute(
                "INSERT INTO videos (video_id, owner, pose_id, status, created_at, updated_at, audio_url, "
                "idempotency_key, alpha_format, allow_private, max_bytes, download_timeout_s, max_audio_seconds) "
                "VALUES (%s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING video_id",
                (new_video_id(), owner, pose_id, ts, ts, audio_url, idempotency_key, alpha_format,
                 limits.allow_private, limits.max_bytes, limits.download_timeout_s, limits.max_audio_seconds),
            ).fetchone()
            created = row is not None
            if row is None:
                row = conn.execute("SELECT video_id FROM videos WHERE owner = %s AND idempotency_key = %s",
                                   (owner, idempotency_key)).fetchone()
            video_id = row[0]
            video = _video(conn.execute(f"SELECT {_VIDEO_SQL} FROM videos WHERE video_id = %s", (video_id,)).fetchone())
            jrow = conn.execute(f"SELECT {_JOB_SQL} FROM videos WHERE video_id = %s", (video_id,)).fetchone()
        return video, _claimed(jrow, "").job, created

    def get(self, video_id: str, owner: str = "") -> Video | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {_VIDEO_SQL} FROM videos WHERE video_id = %s AND owner = %s AND status != 'deleted'",
                (video_id, owner),
            ).fetchone()
        return _video(row) if row else None

    def page(self, owner: str, limit: int | None = None, before_seq: int | None = None
             ) -> tuple[list[Video], int | None]:
        sql = f"SELECT {_VIDEO_SQL}, seq FROM videos WHERE owner = %s AND status != 'deleted'"
        args: list[Any] = [owner]
        if before_seq is not None:
            sql += " AND seq < %s"
            args.append(before_seq)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit + 1)
        with self._conn() as conn:
            rows = conn.execute(sql, args).fetchall()
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if more else rows
        return [_video(r[:-1]) for r in rows], (rows[-1][-1] if more else None)

    def delete(self, video_id: str, owner: str = "") -> str:
        with self._conn() as conn:
            row = conn.execute("SELECT status FROM videos WHERE video_id = %s AND owner = %s FOR UPDATE",
                               (video_id, owner)).fetchone()
            outcome = delete_outcome(row[0] if row else None)
            if outcome == "deleted":
                self._tombstone(conn, [video_id])
            return outcome

    def prune(self, owner: str, created_before: str) -> list[str]:
        with self._conn() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT video_id FROM videos WHERE owner = %s AND status IN ('finished', 'failed') AND created_at < %s "
                "ORDER BY seq FOR UPDATE", (owner, created_before))]
            self._tombstone(conn, ids)
        return ids

    @staticmethod
    def _tombstone(conn: psycopg.Connection, ids: list[str]) -> None:
        if ids:
            conn.execute(
                "UPDATE videos SET status = 'deleted', video_url = NULL, mask_video_url = NULL, "
                "alpha_video_url = NULL, updated_at = %s WHERE video_id = ANY(%s)", (now_iso(), ids))

    def status_counts(self) -> dict[str, int]:
        with self._conn() as conn:
            return {s: n for s, n in conn.execute("SELECT status, COUNT(*) FROM videos GROUP BY status")}

    def unclaimed(self, waiting_since: str) -> int:
        with self._conn() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM videos WHERE status = 'pending' AND updated_at < %s",
                                    (waiting_since,)).fetchone()[0])

    # --- UploadIndex ----------------------------------------------------------------------------

    def add_upload(self, upload_id: str, owner: str, size: int) -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO uploads (upload_id, owner, size, created_at) VALUES (%s, %s, %s, %s)",
                         (upload_id, owner, size, now_iso()))

    def owns_upload(self, upload_id: str, owner: str) -> bool:
        with self._conn() as conn:
            return conn.execute("SELECT 1 FROM uploads WHERE upload_id = %s AND owner = %s",
                                (upload_id, owner)).fetchone() is not None

    # --- publishing to the broker ---------------------------------------------------------------

    def mark_published(self, video_id: str) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE videos SET published_at = now() WHERE video_id = %s AND published_at IS NULL",
                         (video_id,))

    def take_unpublished(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Pending jobs never handed to the broker (a front end stopped between commit and publish, or the
        broker was down), queued more than ``older_than_s`` ago; marked published now (the caller publishes)."""
        with self._conn() as conn:
            return [r[0] for r in conn.execute(
                "UPDATE videos SET published_at = now() WHERE video_id IN (SELECT video_id FROM videos "
                "WHERE status = 'pending' AND published_at IS NULL AND queued_at < now() - make_interval(secs => %s) "
                "ORDER BY queued_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING video_id", (older_than_s, limit))]

    def unpublish(self, video_id: str) -> None:
        """A publish failed: leave the job for the next sweep."""
        with self._conn() as conn:
            conn.execute("UPDATE videos SET published_at = NULL WHERE video_id = %s AND status = 'pending'",
                         (video_id,))

    # --- the job's life in a worker -------------------------------------------------------------

    def status(self, video_id: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute("SELECT status FROM videos WHERE video_id = %s", (video_id,)).fetchone()
        return row[0] if row else None

    def claim(self, video_id: str, claim_id: str, max_tries: int, lease_s: float, held: bool = False
              ) -> ClaimedJob | str:
        """Take ``video_id`` for ``claim_id``: the job, or why not ("unknown", "finished", "failed", "deleted",
        "busy": a live worker holds it; "failed" also when this would be try ``max_tries + 1``).

        ``held``: the caller holds the job's `Liveness` lock, so whoever had it before is gone and a
        processing job is taken over at once; otherwise only once its heartbeat is older than ``lease_s``."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT status, attempts, heartbeat_at < now() - make_interval(secs => %s), last_error FROM videos "
                "WHERE video_id = %s FOR UPDATE", (lease_s, video_id)).fetchone()
            if row is None:
                return "unknown"
            status, attempts, stale, last_error = row
            if status not in ("pending", "processing"):
                return status
            if status == "processing" and not (held or stale):
                return "busy"
            if attempts >= max_tries:
                self._give_up(conn, video_id, attempts, last_error)
                return "failed"
            jrow = conn.execute(
                "UPDATE videos SET status = 'processing', claim_id = %s, attempts = attempts + 1, "
                f"heartbeat_at = now(), updated_at = %s WHERE video_id = %s RETURNING {_JOB_SQL}",
                (claim_id, now_iso(), video_id)).fetchone()
        return _claimed(jrow, claim_id)

    @staticmethod
    def _give_up(conn: psycopg.Connection, video_id: str, attempts: int, last_error: str | None) -> None:
        why = last_error or "the worker stopped during each one"
        conn.execute(
            "UPDATE videos SET status = 'failed', error = %s, claim_id = NULL, heartbeat_at = NULL, updated_at = %s "
            "WHERE video_id = %s", (f"gave up after {attempts} tries: {why}", now_iso(), video_id))

    def heartbeat(self, claim_ids: list[str], worker: str, queue: str, concurrency: int) -> None:
        """Keep ``claim_ids`` held and ``worker`` counted."""
        with self._conn() as conn:
            if claim_ids:
                conn.execute("UPDATE videos SET heartbeat_at = now() WHERE claim_id = ANY(%s) "
                             "AND status = 'processing'", (claim_ids,))
            conn.execute(
                "INSERT INTO workers (name, queue, concurrency, seen_at) VALUES (%s, %s, %s, now()) "
                "ON CONFLICT (name) DO UPDATE SET seen_at = now(), queue = EXCLUDED.queue, "
                "concurrency = EXCLUDED.concurrency", (worker, queue, concurrency))

    def worker_gone(self, worker: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM workers WHERE name = %s", (worker,))

    def workers(self, seen_within_s: float) -> int:
        """`a2v worker` processes whose heartbeat is younger than ``seen_within_s``."""
        with self._conn() as conn:
            conn.execute("DELETE FROM workers WHERE seen_at < now() - interval '1 day'")
            return int(conn.execute("SELECT COUNT(*) FROM workers WHERE seen_at > now() - make_interval(secs => %s)",
                                    (seen_within_s,)).fetchone()[0])

    def started(self, video_id: str, claim_id: str, duration: float) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE videos SET duration = %s, updated_at = %s WHERE video_id = %s AND claim_id = %s",
                         (duration, now_iso(), video_id, claim_id))

    def finish(self, video_id: str, claim_id: str, publish: Callable[[], None], **result: Any) -> bool:
        """While still holding the claim: ``publish()`` (put the files in place), then mark finished, in one
        transaction. False, and nothing published, when the claim was lost (another worker took the job)."""
        allowed = {"video_url", "mask_video_url", "alpha_video_url", "frame_count"}
        if set(result) - allowed:
            raise ValueError(f"not result columns: {sorted(set(result) - allowed)}")
        with self._conn() as conn:
            row = conn.execute("SELECT status, claim_id FROM videos WHERE video_id = %s FOR UPDATE",
                               (video_id,)).fetchone()
            if row is None or tuple(row) != ("processing", claim_id):
                return False
            publish()
            sets = "".join(f", {k} = %s" for k in result)
            conn.execute(
                f"UPDATE videos SET status = 'finished', error = NULL, claim_id = NULL, heartbeat_at = NULL, "
                f"updated_at = %s{sets} WHERE video_id = %s", (now_iso(), *result.values(), video_id))
        return True

    def fail(self, video_id: str, claim_id: str, reason: str) -> bool:
        """The job failed for good (bad input, or its last try); False when the claim was lost."""
        with self._conn() as conn:
            return conn.execute(
                "UPDATE videos SET status = 'failed', error = %s, claim_id = NULL, heartbeat_at = NULL, "
                "updated_at = %s WHERE video_id = %s AND claim_id = %s AND status = 'processing' RETURNING 1",
                (reason, now_iso(), video_id, claim_id)).fetchone() is not None

    def release(self, video_id: str, claim_id: str, reason: str | None = None) -> bool:
        """Give the job back (pending, to be published again); ``reason`` is kept for the last try's error."""
        with self._conn() as conn:
            return conn.execute(
                "UPDATE videos SET status = 'pending', claim_id = NULL, heartbeat_at = NULL, queued_at = now(), "
                "published_at = NULL, last_error = COALESCE(%s, last_error), updated_at = %s "
                "WHERE video_id = %s AND claim_id = %s AND status = 'processing' RETURNING 1",
                (reason, now_iso(), video_id, claim_id)).fetchone() is not None

    def reap(self, lease_s: float, max_tries: int, on_reaped: Callable[[str], object] | None = None
             ) -> tuple[list[str], list[str]]:
        """Jobs whose worker is gone (its `Liveness` lock is free, or its heartbeat older than ``lease_s``):
        back to pending (unpublished), or failed after ``max_tries``. Returns (requeued, failed).

        ``on_reaped(video_id)`` runs for each while the job is still locked here (no worker can have
        taken it again yet): the place to remove what the gone worker left."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT video_id, attempts, last_error FROM videos WHERE status = 'processing' "
                "AND (heartbeat_at < now() - make_interval(secs => %s) "
                f"OR pg_try_advisory_xact_lock({JOB_LOCK_SQL})) FOR UPDATE SKIP LOCKED", (lease_s,)).fetchall()
            requeued, failed = [], []
            for video_id, attempts, last_error in rows:
                if on_reaped is not None:
                    on_reaped(video_id)
                if attempts >= max_tries:
                    self._give_up(conn, video_id, attempts, last_error)
                    failed.append(video_id)
                else:
                    conn.execute(
                        "UPDATE videos SET status = 'pending', claim_id = NULL, heartbeat_at = NULL, "
                        "queued_at = now(), published_at = NULL, updated_at = %s WHERE video_id = %s",
                        (now_iso(), video_id))
                    requeued.append(video_id)
        return requeued, failed

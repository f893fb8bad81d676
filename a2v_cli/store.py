"""The video history: a small SQLite database, so `video get` / `video list` work across runs.

One row per video; `owner` keeps each API token's videos apart when the server uses it. The server
also keeps its job queue here (`audio_url`, `idempotency_key`, `attempts`), so an accepted job is on
disk before the client hears about it and survives a crash.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from a2v_cli.schema import Video

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL DEFAULT '',
    pose_id TEXT,
    status TEXT NOT NULL,
    video_url TEXT,
    mask_video_url TEXT,
    alpha_video_url TEXT,
    error TEXT,
    duration REAL,
    frame_count INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS videos_owner_seq ON videos(owner, seq);
"""

# Job columns, added to databases created before the server existed (ALTER TABLE keeps their rows).
_JOB_COLUMNS = {
    "audio_url": "TEXT", "idempotency_key": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 0", "alpha_format": "TEXT",
}
_JOB_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS videos_owner_idempotency ON videos(owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS videos_status_seq ON videos(status, seq);
"""

VIDEO_COLUMNS = _COLUMNS = (
    "video_id", "status", "video_url", "mask_video_url", "pose_id", "created_at", "updated_at",
    "duration", "frame_count", "error", "alpha_video_url",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for db in connections:
        db.close()
    connections.clear()


def iso_before(seconds: float) -> str:
    """The ISO time ``seconds`` ago, in the form ``created_at`` is stored in (so strings compare in order)."""
    from datetime import timedelta

    try:
        then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    except OverflowError:  # before the year 1: older than anything stored
        return "0000"
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


VIDEO_ID = re.compile(r"vid_[0-9a-f]{20}")  # what new_video_id makes: nothing else is a video's id (or folder)


def new_video_id() -> str:
    return "vid_" + uuid.uuid4().hex[:20]


def delete_outcome(status: str | None) -> str:
    """What deleting a video in ``status`` (None: no such video of this owner) does; the one rule for
    every store: 'deleted', 'gone' (deleted before), 'busy' (pending or processing) or 'unknown'."""
    if status is None:
        return "unknown"
    if status == "deleted":
        return "gone"
    return "busy" if status in ("pending", "processing") else "deleted"


@dataclass(frozen=True)
class Job:
    """What a worker needs to render one queued video."""

    video_id: str
    owner: str
    pose_id: str
    audio_url: str
    attempts: int
    alpha_format: str | None = None  # also render a real-alpha file: "webm" or "mov"


class VideoStore:
    """Durable video records. Every method opens its own short transaction, so a crash loses nothing.

    ``synchronous="FULL"`` makes every commit reach the disk before it returns (the server uses it, so an
    acknowledged job survives a power cut too); ``NORMAL`` survives a crash of the process.
    """

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            have = {r[1] for r in db.execute("PRAGMA table_info(videos)")}
            for name, decl in _JOB_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE videos ADD COLUMN {name} {decl}")
            db.executescript(_JOB_INDEXES)
        finally:
            db.close()

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection for reads, kept open: a read then costs microseconds, not a connect.

        In WAL mode readers never block the writer and each statement sees a committed snapshot.
        Each connection is used only by the thread that opened it; ``close()`` closes them all.
        """
        if "_readers" not in self.__dict__:
            self._local = threading.local()
            self._readers: list[sqlite3.Connection] = []
            weakref.finalize(self, _close_all, self._readers)
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._local.db = db
            self._readers.append(db)
        return db

    def close(self) -> None:
        """Close the kept-open read connections (the store stays usable; reads reopen them)."""
        readers = self.__dict__.pop("_readers", [])
        self.__dict__.pop("_local", None)
        _close_all(readers)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def create(
        self, pose_id: str, owner: str = "", status: str = "pending", video_id: str | None = None, **extra: Any
    ) -> Video:
        ts = now_iso()
        video_id = video_id or new_video_id()
        with self._connect() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM videos").fetchone()[0]
            db.execute(
                "INSERT INTO videos (video_id, owner, pose_id, status, created_at, updated_at, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (video_id, owner, pose_id, status, ts, ts, seq),
            )
        if extra:
            return self.update(video_id, **extra)
        return self.get(video_id, owner=owner)  # type: ignore[return-value]

    def update(self, video_id: str, **changes: Any) -> Video:
        allowed = set(_COLUMNS) - {"video_id", "created_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not video columns: {sorted(unknown)}")
        changes["updated_at"] = now_iso()
        assignments = ", ".join(f"{k} = ?" for k in changes)
        with self._connect() as db:
            db.execute(f"UPDATE videos SET {assignments} WHERE video_id = ?", (*changes.values(), video_id))
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return Video(**dict(zip(_COLUMNS, row)))

    def get(self, video_id: str, owner: str = "") -> Video | None:
        row = self._reader().execute(
            f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE video_id = ? AND owner = ? AND status != 'deleted'",
            (video_id, owner),
        ).fetchone()
        return Video(**dict(zip(_COLUMNS, row))) if row else None

    def list(self, owner: str = "", limit: int | None = None, before_seq: int | None = None) -> list[Video]:
        """Newest first."""
        return self.page(owner, limit, before_seq)[0]

    def page(
        self, owner: str, limit: int | None = None, before_seq: int | None = None
    ) -> tuple[list[Video], int | None]:
        """Newest first, and the ``seq`` to continue before when more rows exist (else None)."""
        sql = f"SELECT {', '.join(_COLUMNS)}, seq FROM videos WHERE owner = ? AND status != 'deleted'"
        args: list[Any] = [owner]
        if before_seq is not None:
            sql += " AND seq < ?"
            args.append(before_seq)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit + 1)
        rows = self._reader().execute(sql, args).fetchall()
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if more else rows
        videos = [Video(**dict(zip(_COLUMNS, r[:-1]))) for r in rows]
        return videos, (rows[-1][-1] if more else None)

    # --- the server's job queue -------------------------------------------------------------------

    def create_job(
        self, pose_id: str, owner: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None,
    ) -> tuple[Video, Job, bool]:
        """Queue a pending video in one transaction; with a known ``idempotency_key`` return that one instead.

        The third value says whether a new job was created.
        """
        ts = now_iso()
        video_id = new_video_id()
        with self._connect() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT video_id FROM videos WHERE owner = ? AND idempotency_key = ?", (owner, idempotency_key)
                ).fetchone()
                if row:
                    video_id = row[0]
            if idempotency_key is None or not row:
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM videos").fetchone()[0]
                db.execute(
                    "INSERT INTO videos (video_id, owner, pose_id, status, created_at, updated_at, seq, audio_url, "
                    "idempotency_key, alpha_format) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                    (video_id, owner, pose_id, ts, ts, seq, audio_url, idempotency_key, alpha_format),
                )
                created = True
            else:
                created = False
            video = self._row(db, video_id)
            job = self._job(db, video_id)
        assert video is not None and job is not None
        return video, job, created

    def claim_next(self, audio_prefix: str | None = None) -> Job | None:
        """Move the oldest pending job (whose audio_url starts with ``audio_prefix``, if given) to
        processing, counting the attempt, and return it."""
        with self._connect() as db:
            if audio_prefix is None:
                row = db.execute("SELECT video_id FROM videos WHERE status = 'pending' ORDER BY seq LIMIT 1").fetchone()
            else:
                row = db.execute(
                    "SELECT video_id FROM videos WHERE status = 'pending' AND substr(audio_url, 1, ?) = ? "
                    "ORDER BY seq LIMIT 1", (len(audio_prefix), audio_prefix),
                ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE videos SET status = 'processing', attempts = attempts + 1, updated_at = ? WHERE video_id = ?",
                (now_iso(), row[0]),
            )
            return self._job(db, row[0])

    def requeue(self, video_id: str | None = None) -> list[str]:
        """Put one processing job (or, with no id, every one) back to pending; returns the ids moved."""
        with self._connect() as db:
            if video_id is None:
                ids = [r[0] for r in db.execute("SELECT video_id FROM videos WHERE status = 'processing'")]
            else:
                ids = [video_id]
            for vid in ids:
                db.execute(
                    "UPDATE videos SET status = 'pending', updated_at = ? WHERE video_id = ? AND status = 'processing'",
                    (now_iso(), vid),
                )
        return ids

    def job(self, video_id: str) -> Job | None:
        with self._connect() as db:
            return self._job(db, video_id)

    @staticmethod
    def _row(db: sqlite3.Connection, video_id: str) -> Video | None:
        row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return Video(**dict(zip(_COLUMNS, row))) if row else None

    @staticmethod
    def _job(db: sqlite3.Connection, video_id: str) -> Job | None:
        row = db.execute(
            "SELECT video_id, owner, pose_id, COALESCE(audio_url, ''), attempts, alpha_format FROM videos "
            "WHERE video_id = ?",
            (video_id,),
        ).fetchone()
        return Job(*row) if row else None

    def status_counts(self) -> dict[str, int]:
        """Videos per status, every owner's (the server's metrics)."""
        rows = self._reader().execute("SELECT status, COUNT(*) FROM videos GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def unclaimed(self, waiting_since: str) -> int:
        """Jobs pending since before the ISO time ``waiting_since`` (``updated_at`` is when they became pending)."""
        row = self._reader().execute(
            "SELECT COUNT(*) FROM videos WHERE status = 'pending' AND updated_at < ?", (waiting_since,)
        ).fetchone()
        return int(row[0])

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    def ids(self, owner: str = "") -> list[str]:
        with self._connect() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT video_id FROM videos WHERE owner = ? AND status != 'deleted' ORDER BY seq DESC", (owner,)
                )
            ]

    # --- deleting ---------------------------------------------------------------------------------
    # A deleted video keeps a row with status 'deleted' (a tombstone, no URLs): deleting it again is a
    # harmless no-op, so a retried request cannot turn a success into "not found"; get/list skip it.

    def delete(self, video_id: str, owner: str = "") -> str:
        """Mark one video deleted: 'deleted', 'gone' (deleted before), 'busy' (not done yet) or 'unknown'.

        The caller removes its files after this commits.
        """
        with self._connect() as db:
            row = db.execute("SELECT status FROM videos WHERE video_id = ? AND owner = ?", (video_id, owner)).fetchone()
            outcome = delete_outcome(row[0] if row else None)
            if outcome == "deleted":
                self._tombstone(db, [video_id])
            return outcome

    def prune(self, owner: str, created_before: str) -> list[str]:
        """Mark every finished or failed video of ``owner`` created before the ISO time deleted; their ids."""
        with self._connect() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT video_id FROM videos WHERE owner = ? AND status IN ('finished', 'failed') "
                    "AND created_at < ? ORDER BY seq",
                    (owner, created_before),
                )
            ]
            self._tombstone(db, ids)
        return ids

    @staticmethod
    def _tombstone(db: sqlite3.Connection, ids: list[str]) -> None:
        ts = now_iso()
        db.executemany(
            "UPDATE videos SET status = 'deleted', video_url = NULL, mask_video_url = NULL, alpha_video_url = NULL, "
            "updated_at = ? WHERE video_id = ?",
            [(ts, vid) for vid in ids],
        )

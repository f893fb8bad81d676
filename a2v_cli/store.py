"""The video history: a small SQLite database, so `video get` / `video list` work across runs.

One row per video; `owner` keeps each API token's videos apart when the server uses it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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

_COLUMNS = (
    "video_id", "status", "video_url", "mask_video_url", "pose_id", "created_at", "updated_at",
    "duration", "frame_count", "error", "alpha_video_url",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_video_id() -> str:
    return "vid_" + uuid.uuid4().hex[:20]


class VideoStore:
    """Durable video records. Every method opens its own short transaction, so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
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
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE video_id = ? AND owner = ?", (video_id, owner)
            ).fetchone()
        return Video(**dict(zip(_COLUMNS, row))) if row else None

    def list(self, owner: str = "", limit: int | None = None, before_seq: int | None = None) -> list[Video]:
        """Newest first."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE owner = ?"
        args: list[Any] = [owner]
        if before_seq is not None:
            sql += " AND seq < ?"
            args.append(before_seq)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._connect() as db:
            rows = db.execute(sql, args).fetchall()
        return [Video(**dict(zip(_COLUMNS, r))) for r in rows]

    def ids(self, owner: str = "") -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT video_id FROM videos WHERE owner = ? ORDER BY seq DESC", (owner,))]

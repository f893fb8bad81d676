"""Audio uploaded to this server (the `audio.upload` extension), each file readable only by its uploader.

Files live in the deployment's `Blobs` as ``uploads/<upload_id>`` (the data dir, the shared directory or
the bucket); who uploaded what is a row in the deployment's database (`UploadIndex`: SQLite here,
PostgreSQL in `pg_store`). A job refers to an upload as ``a2v-upload:<upload_id>``, so the worker reads
the file from the storage instead of fetching the public URL over HTTP.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from a2v_cli.errors import InputError, NotFoundError
from a2v_cli.server.blobs import Blobs, LocalBlobs
from a2v_cli.server.fetch import human_size
from a2v_cli.store import now_iso

UPLOAD_SCHEME = "a2v-upload:"
UPLOAD_ID = re.compile(r"upl_[0-9a-f]{24}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""


def too_large(max_bytes: int) -> PayloadTooLargeError:
    """An upload (audio.upload, avatar.create) over --max-upload-bytes, in one wording and the docs' unit: the
    file's own limit, whether the body's cap (the limit plus multipart framing) or the copy found it."""
    return PayloadTooLargeError(f"the uploaded file is larger than this server's limit of {human_size(max_bytes)}")


class PayloadTooLargeError(InputError):
    """A request body or upload over the server's size cap."""

    api_code = 41300
    http_status = 413


class UploadIndex(Protocol):
    """Who uploaded which file."""

    def add_upload(self, upload_id: str, owner: str, size: int) -> None: ...

    def owns_upload(self, upload_id: str, owner: str) -> bool: ...


class SqliteUploadIndex:
    """The embedded deployment's index: a table in the server's SQLite database."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._execute(_SCHEMA, script=True)

    def _execute(self, sql: str, args: tuple = (), script: bool = False) -> list[tuple]:
        """One statement in its own committed transaction (synchronous=FULL: an answered upload is on disk)."""
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            db.execute("PRAGMA synchronous=FULL")
            with db:
                if script:
                    db.executescript(sql)
                    return []
                return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def add_upload(self, upload_id: str, owner: str, size: int) -> None:
        self._execute(
            "INSERT INTO uploads (upload_id, owner, size, created_at) VALUES (?, ?, ?, ?)",
            (upload_id, owner, size, now_iso()),
        )

    def owns_upload(self, upload_id: str, owner: str) -> bool:
        return bool(self._execute("SELECT 1 FROM uploads WHERE upload_id = ? AND owner = ?", (upload_id, owner)))


class UploadStore:
    """Upload files in ``files`` (a directory is taken as local storage), their owners in ``index`` (a SQLite
    database path is taken as one)."""

    def __init__(self, index: UploadIndex | Path, files: Blobs | Path) -> None:
        self.index: UploadIndex = SqliteUploadIndex(index) if isinstance(index, Path) else index
        self.files: Blobs = LocalBlobs(files.parent, None, uploads=files) if isinstance(files, Path) else files
        self.dir = self.files.uploads_dir()  # where a new upload is written and checked first
        self.dir.mkdir(parents=True, exist_ok=True)

    def save(self, stream: BinaryIO, owner: str, max_bytes: int) -> str:
        """Copy ``stream`` into a new upload (at most ``max_bytes``); returns its id."""
        upload_id = "upl_" + uuid.uuid4().hex[:24]
        tmp = self.dir / f".{upload_id}.part"
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise too_large(max_bytes)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            from a2v_cli.server.media import check_audio_file

            check_audio_file(tmp, "the uploaded file")
            self.files.put_upload(upload_id, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        self.index.add_upload(upload_id, owner, size)
        return upload_id

    def path(self, upload_id: str, owner: str) -> Path | str:
        """Where the file of ``upload_id`` is (a local path, or a short-lived URL) if ``owner`` uploaded it;
        NotFoundError otherwise (same answer either way)."""
        if UPLOAD_ID.fullmatch(upload_id) and self.index.owns_upload(upload_id, owner):
            where = self.files.upload_location(upload_id)
            if where is not None:
                return where
        raise NotFoundError(f"unknown upload {upload_id!r}", "upload the file again with audio.upload")

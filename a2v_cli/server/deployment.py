"""A deployment: which job queue, state store and file storage a server uses, chosen once at start.

Why: the routes must not branch on how the server is deployed. They talk to a `Deployment` and its
`StateStore`, `UploadStore` and `Blobs`; `open_deployment` picks the implementations:

- embedded (the default): SQLite in the data dir, render workers in this process, files in the data dir;
- distributed (``--broker --database --storage``): PostgreSQL, Celery (`a2v worker` renders), files in
  a directory every host mounts or an S3-compatible bucket. Its module imports psycopg and Celery (and
  boto3 for a bucket); it is imported only when chosen.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from a2v_cli import config
from a2v_cli.schema import Video
from a2v_cli.server.avatar_index import AvatarIndex, FolderAvatars
from a2v_cli.server.blobs import Blobs, LocalBlobs
from a2v_cli.server.security import Authenticator, Tokens, UrlSigner, load_signing_key, load_tokens, make_private
from a2v_cli.server.settings import ServerSettings
from a2v_cli.server.uploads import UploadStore
from a2v_cli.store import Job, VideoStore

log = logging.getLogger("a2v.server")

STATUSES = ("pending", "processing", "finished", "failed")


@dataclass(frozen=True)
class JobLimits:
    """The front end's limits, stored with a job so the worker that renders it applies the same ones."""

    allow_private: bool
    max_bytes: int
    download_timeout_s: float
    max_audio_seconds: float

    @classmethod
    def of(cls, settings: ServerSettings) -> JobLimits:
        return cls(settings.allow_private_urls, settings.max_upload_bytes, settings.download_timeout_s,
                   settings.max_audio_seconds)


class StateStore(Protocol):
    """Videos, their jobs and idempotency keys (`VideoStore` on SQLite, `PgStore` on PostgreSQL)."""

    def create_job(
        self, pose_id: str, owner: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None,
    ) -> tuple[Video, Job, bool]: ...

    def get(self, video_id: str, owner: str = "") -> Video | None: ...

    def page(self, owner: str, limit: int | None = None, before_seq: int | None = None
             ) -> tuple[list[Video], int | None]: ...

    def delete(self, video_id: str, owner: str = "") -> str: ...

    def prune(self, owner: str, created_before: str) -> list[str]: ...

    def status_counts(self) -> dict[str, int]:
        """How many videos are in each status (all tenants; for the operator's metrics)."""
        ...

    def unclaimed(self, waiting_since: str) -> int:
        """How many jobs have been pending since before the ISO time ``waiting_since``."""
        ...

    def ping(self) -> None:
        """Raise unless the database answers."""
        ...


class Deployment(Protocol):
    kind: str  # "embedded" or "distributed"
    root: Path  # where files live locally: the data dir, the shared directory, or a bucket's local copies
    store: StateStore
    uploads: UploadStore
    blobs: Blobs
    tokens: Authenticator
    avatars: AvatarIndex  # which avatars each tenant has

    def submit(self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None,
               alpha_format: str | None, limits: JobLimits) -> tuple[Video, Job, bool]:
        """Store the job (or find the one with this key) and hand it to the workers; True when new."""
        ...

    def lock(self) -> None:
        """Claim what only one server may use (the embedded data dir); UnavailableError if taken."""
        ...

    def unlock(self) -> None: ...

    def start(self) -> None: ...

    def stop(self, grace_s: float) -> None: ...

    def not_ready(self) -> str | None:
        """Why the deployment cannot take jobs now (database or broker down), or None."""
        ...

    def workers(self) -> int:
        """Render workers able to take jobs now."""
        ...


def open_root(root: Path, settings: ServerSettings, generate_token: bool = True) -> tuple[LocalBlobs, Tokens]:
    """The private file root (data dir or storage), its signing key, blob storage and configured tokens
    (with none configured, the generated ``default`` one if ``generate_token``)."""
    make_private(root)  # secrets, uploads and videos: owner only (umask 077)
    signer = UrlSigner(load_signing_key(root), settings.url_lifetime_s)
    return LocalBlobs(root, signer), load_tokens(root, settings.tokens_file, generate=generate_token)


def open_deployment(settings: ServerSettings) -> Deployment:
    if settings.distributed:
        from a2v_cli.server.distributed import DistributedDeployment

        return DistributedDeployment.open(settings)
    return EmbeddedDeployment.open(settings)


class EmbeddedDeployment:
    """Everything in one process and one data dir: SQLite, worker threads with render children, local files."""

    kind = "embedded"

    def __init__(self, settings: ServerSettings, root: Path, store: VideoStore, uploads: UploadStore,
                 blobs: LocalBlobs, tokens: Tokens) -> None:
        from a2v_cli.server.fetch import FetchPolicy
        from a2v_cli.server.jobs import JobRunner, SqliteJobQueue, WorkerPool

        self.settings = settings
        self.root = root
        self.store = store
        self.uploads = uploads
        self.blobs = blobs
        self.tokens = tokens
        self.avatars = FolderAvatars(root)
        self.queue = SqliteJobQueue(store)
        policy = FetchPolicy(max_bytes=settings.max_upload_bytes, allow_private=settings.allow_private_urls,
                             total_timeout=settings.download_timeout_s)
        runner = JobRunner(root, uploads, policy, settings.max_audio_seconds, settings.device)
        self.pool = WorkerPool(self.queue, runner, settings.workers)
        self.lock_file: Any = None

    @classmethod
    def open(cls, settings: ServerSettings) -> EmbeddedDeployment:
        root = (settings.data_dir or config.home_dir() / "server").expanduser().resolve()
        blobs, tokens = open_root(root, settings)
        store = VideoStore(root / "server.db", synchronous="FULL")
        uploads = UploadStore(root / "server.db", blobs)
        return cls(settings, root, store, uploads, blobs, tokens)

    def submit(self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None,
               alpha_format: str | None, limits: JobLimits) -> tuple[Video, Job, bool]:
        return self.queue.submit(owner, pose_id, audio_url, idempotency_key, alpha_format)  # limits: this process's

    def lock(self) -> None:
        if self.lock_file is None:
            self.lock_file = _lock_data_dir(self.root)

    def unlock(self) -> None:
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None

    def start(self) -> None:
        self.lock()
        requeued = self.queue.recover()
        if requeued:
            log.info("requeued %d unfinished job(s) from the last run: %s", len(requeued), ", ".join(requeued))
        swept = self.pool.runner.sweep(self.queue.finished_ids())
        if swept:
            log.info("removed %d leftover scratch or partial file(s) of the last run", swept)
        self.pool.start()

    def stop(self, grace_s: float) -> None:
        try:
            self.pool.stop(grace_s)
        finally:
            self.unlock()

    def not_ready(self) -> str | None:
        try:
            self.store.ping()
        except sqlite3.Error as err:
            return f"the database does not answer: {err}"
        return None

    def workers(self) -> int:
        return self.pool.alive()


def _lock_data_dir(data_dir: Path) -> Any:
    """One server per data dir: startup requeues unfinished jobs, which would steal another server's work."""
    f = open(data_dir / "server.lock", "a+")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; documented
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        from a2v_cli.errors import UnavailableError

        raise UnavailableError(
            f"another a2v server is already using the data dir {data_dir}", "stop it or give --data-dir"
        ) from None
    return f

"""The distributed deployment's front end: state in PostgreSQL, jobs through Celery, files on shared storage
(a directory every host mounts, or an S3-compatible bucket: `open_blobs`).

Why a sweeper: a job is committed to the database before it is published to the broker (so an
accepted job is never only in a message), which leaves two gaps that the `Sweeper` closes, in every
front end and every worker (the database's row locks keep them from doing the same work twice):

- a job committed but never published (the front end died between the two, or the broker was down)
  is published again after a few seconds;
- a job whose worker is gone (killed mid-render: its session's lock on the job is free; or hung: its
  heartbeat is older than the lease) goes back to pending and is published again, or fails with its
  reason after ``--max-tries`` tries.

No data-dir lock: any number of front ends may run against the same services.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from a2v_cli.errors import InputError, UnavailableError
from a2v_cli.schema import Video
from a2v_cli.server import celery_app
from a2v_cli.server.blobs import Blobs, LocalBlobs
from a2v_cli.server.deployment import JobLimits
from a2v_cli.server.periodic import Periodic
from a2v_cli.server.pg_avatars import PgAvatars
from a2v_cli.server.pg_store import PgStore
from a2v_cli.server.pg_tokens import DbTokens, TokenTable
from a2v_cli.server.security import UrlSigner, load_tokens, make_private
from a2v_cli.server.settings import ServerSettings
from a2v_cli.server.uploads import UploadStore
from a2v_cli.store import Job

log = logging.getLogger("a2v.server")

LEASE_S = 15.0  # a processing job whose heartbeat is older than this has lost its worker
HEARTBEAT_S = 2.0  # how often a worker renews its jobs and its own row
SWEEP_S = 2.0  # how often the sweeper looks
PUBLISH_GRACE_S = 5.0  # a committed job not published after this is published by the sweeper
WORKER_SEEN_S = 3 * HEARTBEAT_S + 1  # a worker counts while its heartbeat is younger than this
STAGING_LEFTOVER_S = 3600.0  # a staging folder this old is a killed worker's (copies take seconds)
STAGING_SWEEP_EVERY = 30  # sweeps between looks at the staging folders


def storage_root(storage: str) -> Path | None:
    """The shared storage directory, or None for an ``s3://`` bucket (its URL checked: InputError, exit 2)."""
    if storage.startswith("s3://"):
        from a2v_cli.server.s3_blobs import parse_url

        parse_url(storage)
        return None
    if "://" in storage:
        raise InputError(f"storage {storage.split('://', 1)[0]}:// is not supported",
                         "give a directory every front end and worker mounts, or s3://bucket/prefix")
    return Path(storage).expanduser().resolve()


def open_blobs(storage: str, front_end: bool = False) -> tuple[Path, Blobs]:
    """The storage's local root and its `Blobs` (signing no links yet). For a directory the root is that
    directory; for a bucket it is a private folder of this process's (staging, new uploads, bundle copies),
    removed by `close_blobs`. UnavailableError (exit 5) when the bucket does not answer."""
    root = storage_root(storage)
    if root is not None:
        make_private(root)
        return root, LocalBlobs(root, None)
    from a2v_cli.server.s3_blobs import S3Blobs
    from a2v_cli.server.worker import scratch_dir

    local = scratch_dir("a2v-s3-")
    make_private(local)
    try:
        blobs = S3Blobs(storage, local, front_end=front_end)  # a front end's calls give up sooner
        blobs.check()
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    return local, blobs


def close_blobs(root: Path, blobs: Blobs) -> None:
    """Remove a bucket's local folder (a shared directory stays, of course)."""
    if not isinstance(blobs, LocalBlobs):
        shutil.rmtree(root, ignore_errors=True)


class Publisher:
    """Hands committed jobs to the broker and records that it did; a failure leaves them to the sweeper."""

    def __init__(self, store: PgStore, broker: str, queue: str) -> None:
        self.store = store
        self.queue = queue
        self.app = celery_app.make_app(broker, queue)

    def publish(self, video_id: str) -> bool:
        try:
            celery_app.publish(self.app, self.queue, video_id)
        except Exception as err:
            log.warning("could not publish %s (%s); the sweeper will try again", video_id, err.__class__.__name__,
                        extra={"job_id": video_id})
            return False
        return True

    def publish_new(self, video_id: str) -> None:
        """A job just committed by this process: publish, then mark it published."""
        if self.publish(video_id):
            self.store.mark_published(video_id)

    def problem(self) -> str | None:
        return celery_app.broker_problem(self.app)


class Sweeper:
    """A thread that republishes unpublished jobs and takes jobs back from dead workers (see the module doc)."""

    def __init__(self, store: PgStore, publisher: Publisher, max_tries: int, blobs: Blobs | None = None,
                 interval_s: float = SWEEP_S) -> None:
        self.store = store
        self.publisher = publisher
        self.max_tries = max_tries
        self.blobs = blobs
        self.interval_s = interval_s
        self._rounds = 0
        self._thread = Periodic("a2v-sweeper", interval_s, self.sweep)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def sweep(self) -> None:
        requeued, failed = self.store.reap(LEASE_S, self.max_tries,
                                           self.blobs.discard_staging if self.blobs is not None else None)
        for video_id in failed:
            log.info("%s failed: its worker stopped during each of %d tries", video_id, self.max_tries,
                     extra={"job_id": video_id})
        for video_id in requeued:
            log.info("%s: its worker is gone; queued again", video_id, extra={"job_id": video_id})
        for video_id in self.store.take_unpublished(0 if requeued else PUBLISH_GRACE_S):
            if not self.publisher.publish(video_id):
                self.store.unpublish(video_id)
        self._rounds += 1
        if self.blobs is not None and self._rounds % STAGING_SWEEP_EVERY == 0:
            removed = self.blobs.sweep_staging(STAGING_LEFTOVER_S)
            if removed:
                log.info("removed %d leftover staging folder(s) of stopped workers", removed)


def _token_table(store: PgStore, settings: ServerSettings, root: Path, bucket: bool) -> TokenTable:
    """The tokens table, with --tokens-file / A2V_SERVER_TOKENS imported. With neither and an empty table, the
    first front end on a shared directory generates one in <storage>/tokens.json (as the embedded server
    does); on a ``bucket`` there is no private folder every host reads to put one in, and a
    token must never go to a log, so it refuses to start and says how to add one."""
    table = TokenTable(store)
    empty = table.count() == 0
    configured = load_tokens(root, settings.tokens_file, generate=empty and not bucket)
    table.import_tokens(configured.plain(), "--tokens-file / A2V_SERVER_TOKENS")
    if empty and bucket and not configured.plain():
        raise InputError("the database has no tokens yet, and a bucket has no folder to keep a generated one in",
                         "add one first: a2v serve tokens add NAME --database URL (it prints the token once), "
                         "or give --tokens-file / A2V_SERVER_TOKENS")
    return table


class DistributedDeployment:
    """A front end only: accepts and answers; `a2v worker` processes render."""

    kind = "distributed"

    def __init__(self, settings: ServerSettings, root: Path, store: PgStore, blobs: Any, tokens: DbTokens) -> None:
        self.settings = settings
        self.root = root
        self.store = store
        self.blobs = blobs
        self.tokens = tokens
        self.avatars = PgAvatars(store, blobs)
        self.uploads = UploadStore(store, blobs)
        self.publisher = Publisher(store, settings.broker or "", settings.queue)
        self.sweeper = Sweeper(store, self.publisher, settings.max_tries, blobs)

    @classmethod
    def open(cls, settings: ServerSettings) -> DistributedDeployment:
        storage = settings.storage or ""
        shared = storage_root(storage)  # a bad storage URL is a usage error before anything connects
        # a bucket is looked at first (nothing is written if it does not answer), a directory after the database
        bucket = open_blobs(storage, front_end=True) if shared is None else None
        store: PgStore | None = None
        try:
            store = PgStore(settings.database or "", max_connections=20)  # nothing is written if it is down
            store.migrate()
            root, blobs = bucket or open_blobs(storage, front_end=True)
            blobs.signer = UrlSigner(blobs.signing_key(), settings.url_lifetime_s)
            tokens = DbTokens(_token_table(store, settings, root, bucket=shared is None))
        except BaseException:
            if store is not None:
                store.close()
            if bucket is not None:
                close_blobs(*bucket)
            raise
        return cls(settings, root, store, blobs, tokens)

    def submit(self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None,
               alpha_format: str | None, limits: JobLimits) -> tuple[Video, Job, bool]:
        video, job, created = self.store.create_job(pose_id, owner, audio_url, idempotency_key, alpha_format, limits)
        if created:  # committed: from here on the job is safe whatever happens to this process
            self.publisher.publish_new(video.video_id)
        return video, job, created

    def lock(self) -> None:
        """Nothing to hold: front ends share everything through the services."""

    def unlock(self) -> None:
        pass

    def start(self) -> None:
        self.sweeper.start()
        self.tokens.start()

    def stop(self, grace_s: float) -> None:
        self.sweeper.stop()
        self.tokens.stop()
        self.store.close()
        close_blobs(self.root, self.blobs)

    def not_ready(self) -> str | None:
        try:
            self.store.ping()
        except UnavailableError as err:
            return err.message
        return self.publisher.problem() or self.blobs.problem()

    def workers(self) -> int:
        return self.store.workers(WORKER_SEEN_S)

"""`a2v worker`: a Celery worker that renders the distributed deployment's jobs.

Each task carries a video id. The worker claims the job's row (`PgStore.claim`: one holder at a time, a
try counted), fetches the audio (an upload from the shared storage, or the audio_url under the front
end's limits), renders in a long-lived child process exactly as the embedded server does
(`render_worker.RenderProcess`: scrubbed environment, lower priority, dies with us) into a staging
folder (on the shared directory, or on local disk and then uploaded to the bucket), and publishes it
(a rename, or the bucket's manifest object) while still holding the claim.

Failures: bad input fails the job at once (a retry would fail the same way); anything else (the
render process died, storage full) gives the job back for another try until ``--max-tries``, then fails
it with the last reason. SIGTERM: running renders get ``shutdown_grace_s`` to finish, then are handed
back to the queue; the process exits 0. The worker holds each job's advisory lock in its own database
session (`pg_store.Liveness`), so if it is killed outright its jobs are free at once (the next sweep,
every 2 s, requeues them); a heartbeat thread covers a worker that hangs (`distributed.LEASE_S`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_mod
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from a2v_cli.errors import A2VError, InputError
from a2v_cli.server.settings import DEFAULT_QUEUE, check_common, check_distributed

if TYPE_CHECKING:
    from a2v_cli.server.blobs import Blobs
    from a2v_cli.server.distributed import Publisher
    from a2v_cli.server.pg_store import ClaimedJob, Liveness, PgStore
    from a2v_cli.server.render_worker import RenderProcess, RenderSpec

log = logging.getLogger("a2v.worker")

SHUTDOWN_GRACE_S = 30.0
REPUBLISH_S = 1.0  # a job found pending but locked is published again after this (never dropped)


@dataclass
class WorkerSettings:
    broker: str | None = None
    database: str | None = None
    storage: str | None = None
    concurrency: int = 1
    device: str = "auto"
    queue: str = DEFAULT_QUEUE
    max_tries: int = 3
    log_format: str = "text"
    shutdown_grace_s: float = SHUTDOWN_GRACE_S

    def __post_init__(self) -> None:
        check_common(self.max_tries, 1.0, self.queue, self.log_format)
        if self.concurrency < 1:
            raise InputError("--concurrency must be 1 or more")
        if not check_distributed({"broker": self.broker, "database": self.database, "storage": self.storage}):
            raise InputError("a2v worker needs --broker, --database and --storage (or A2V_BROKER, A2V_DATABASE, "
                             "A2V_STORAGE)", "give the same three settings as the front ends (docs/deploy.md)")


class JobRenderer:
    """Runs claimed jobs on a fixed set of render processes; shared by the Celery pool's threads."""

    def __init__(self, store: PgStore, live: Liveness, blobs: Blobs, publisher: Publisher,
                 settings: WorkerSettings, name: str) -> None:
        from a2v_cli.server.render_worker import RenderProcess

        self.store = store
        self.live = live
        self.blobs = blobs  # the shared directory, or the bucket
        self.publisher = publisher
        self.settings = settings
        self.name = name
        self.scratch = scratch_dir()
        self.procs: queue_mod.Queue[RenderProcess] = queue_mod.Queue()
        self._all = [RenderProcess(f"render-{i + 1}") for i in range(settings.concurrency)]
        for p in self._all:
            self.procs.put(p)
        self.active: dict[str, str] = {}  # claim id -> video id
        self._lock = threading.Lock()
        self.abort = threading.Event()  # SIGTERM's grace is over: hand running jobs back
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, name="a2v-heartbeat", daemon=True)

    def start(self) -> None:
        for p in self._all:
            p.start()  # warm: the first job does not wait for the engine to load
        self._beat_once()
        self._beat.start()

    def close(self) -> None:
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join(10)
        for p in self._all:
            p.stop(kill=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        try:
            self.store.worker_gone(self.name)
        except A2VError:
            pass

    def _beat_once(self) -> None:
        with self._lock:
            claims = list(self.active)
        self.store.heartbeat(claims, self.name, self.settings.queue, self.settings.concurrency)

    def _heartbeats(self) -> None:
        from a2v_cli.server.distributed import HEARTBEAT_S

        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat_once()
            except Exception as err:
                log.warning("heartbeat failed: %s", err)

    # --- one job ---------------------------------------------------------------------------------

    def run(self, video_id: str) -> None:
        """Claim and render ``video_id``; every outcome is recorded in its row (this never raises for a job)."""
        from a2v_cli.server.distributed import LEASE_S
        from a2v_cli.server.pg_store import ClaimedJob

        if not self.live.hold(video_id):
            # a live worker renders it (this message is a redelivery), or a sweeper looks at it this instant
            if self.store.status(video_id) == "pending":
                time.sleep(REPUBLISH_S)
                self.publisher.publish(video_id)
            log.info("%s not taken: another worker holds it", video_id, extra={"job_id": video_id})
            return
        claim_id = uuid.uuid4().hex
        try:
            got = self.store.claim(video_id, claim_id, self.settings.max_tries, LEASE_S, held=True)
            if not isinstance(got, ClaimedJob):
                log.info("%s not taken: %s", video_id, got, extra={"job_id": video_id})
                return
            with self._lock:
                self.active[claim_id] = video_id
            work = self.scratch / claim_id
            try:
                self._render(got, work)
            finally:
                with self._lock:
                    self.active.pop(claim_id, None)
                shutil.rmtree(work, ignore_errors=True)
        finally:
            self.live.drop(video_id)

    def _render(self, claimed: ClaimedJob, work: Path) -> None:
        from a2v_cli.server.fetch import Abandoned

        job, claim_id = claimed.job, claimed.claim_id
        vid = job.video_id
        t0 = time.perf_counter()
        log.info("rendering %s (pose %s, try %d) on %s", vid, job.pose_id, job.attempts, self.name,
                 extra={"job_id": vid})
        try:
            self.blobs.discard_staging(vid)  # what an earlier try's worker left when it died
            with self.blobs.staged(vid) as staged:  # the render writes straight into it
                spec = self._spec(claimed, work, staged)
                proc = self.procs.get()
                try:
                    outcome = proc.run(spec, lambda d: self.store.started(vid, claim_id, d), self.abort.is_set)
                finally:
                    self.procs.put(proc)
                self.blobs.prepare(vid, staged)  # uploaded (to a bucket) before the transaction that publishes
                result = {"video_url": f"videos/{vid}/video.mp4", "mask_video_url": f"videos/{vid}/mask.mp4",
                          "frame_count": outcome.frame_count}
                if outcome.alpha_path:
                    result["alpha_video_url"] = f"videos/{vid}/{outcome.alpha_path.name}"
                done = self.store.finish(vid, claim_id, lambda: self.blobs.publish(vid, staged, replace=True),
                                         **result)
            if done:
                log.info("finished %s in %.1f s", vid, time.perf_counter() - t0, extra={"job_id": vid})
            else:
                log.info("%s was taken over by another worker; this render is dropped", vid, extra={"job_id": vid})
        except Abandoned:
            log.info("%s handed back for shutdown", vid, extra={"job_id": vid})
            self._give_back(vid, claim_id, None)
        except InputError as err:
            log.info("%s failed: %s", vid, err.message, extra={"job_id": vid})
            self.store.fail(vid, claim_id, err.message)
        except Exception as err:
            reason = err.message if isinstance(err, A2VError) else f"internal error: {err.__class__.__name__}: {err}"
            if isinstance(err, A2VError):
                log.warning("%s: try %d failed: %s", vid, job.attempts, reason, extra={"job_id": vid})
            else:
                log.exception("%s: try %d failed with an internal error", vid, job.attempts, extra={"job_id": vid})
            if job.attempts >= self.settings.max_tries:
                self.store.fail(vid, claim_id, f"gave up after {job.attempts} tries: {reason}")
            else:
                self._give_back(vid, claim_id, reason)

    def _give_back(self, video_id: str, claim_id: str, reason: str | None) -> None:
        if self.store.release(video_id, claim_id, reason):
            self.publisher.publish_new(video_id)

    def _spec(self, claimed: ClaimedJob, work: Path, out: Path) -> RenderSpec:
        """The render of the job: its audio fetched into ``work`` (or its upload), its files into ``out``."""
        from a2v_cli.server.fetch import Deadline, FetchPolicy, fetch
        from a2v_cli.server.render_worker import RenderSpec
        from a2v_cli.server.tenants import tenant_key
        from a2v_cli.server.uploads import UPLOAD_SCHEME

        job, limits = claimed.job, claimed.limits
        work.mkdir(parents=True, mode=0o700)
        if job.audio_url.startswith(UPLOAD_SCHEME):
            upload_id = job.audio_url[len(UPLOAD_SCHEME):]
            found = self.blobs.fetch_upload(upload_id, work) if self.store.owns_upload(upload_id, job.owner) else None
            if found is None:
                raise InputError("the uploaded file is gone", "upload it again")
            source = found
            name = "the uploaded file"
        else:
            policy = FetchPolicy(max_bytes=limits.max_bytes, allow_private=limits.allow_private,
                                 total_timeout=limits.download_timeout_s)
            deadline = Deadline(policy.total_timeout)
            try:
                source = fetch(job.audio_url, work / "audio_url", policy, self.abort.is_set, deadline)
            finally:
                deadline.close()
            name = "audio_url"
        return RenderSpec(
            video_id=job.video_id, pose_id=job.pose_id, out_dir=str(out), work_dir=str(work / "render"),
            max_audio_seconds=limits.max_audio_seconds, source_path=str(source), source_name=name,
            device=self.settings.device, alpha_format=job.alpha_format,
            avatars_dir=str(self.blobs.avatars_home(tenant_key(job.owner)) / "avatars"),
        )


SCRATCH_PREFIX = "a2v-worker-"


def scratch_dir(prefix: str = SCRATCH_PREFIX) -> Path:
    """A new private scratch folder on this host's disk; the ones of processes that died here (their pid
    gone) are removed first, so a ``kill -9`` leaves nothing behind for long."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(f"{prefix}*-*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


_banner_format: logging.Formatter | None = None  # set once by _configure_logging


def _say(line: str) -> None:
    """One line on stderr, a JSON record under `--log-format json`; safe in a signal handler (one os.write, no
    logging lock), which is where Celery's banners are written from."""
    if _banner_format is not None:
        line = _banner_format.format(log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None))
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _configure_logging(log_format: str) -> None:
    from celery.apps import worker as celery_worker

    from a2v_cli.server.logs import JsonFormatter, TextFormatter

    global _banner_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    _banner_format = JsonFormatter() if log_format == "json" else None
    # Celery writes its shutdown banners ("worker: Warm shutdown (MainProcess)", "Hitting Ctrl+C again...") with
    # its module's safe_say, straight to stdout: with `--log-format json` every line must be a record
    celery_worker.safe_say = lambda msg, f=None: _say(str(msg).strip())  # type: ignore[assignment]
    for name in ("a2v", "celery"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.propagate = False
        lg.setLevel(logging.INFO if name == "a2v" else logging.WARNING)


def run_worker(settings: WorkerSettings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
    from celery.signals import worker_ready, worker_shutting_down

    from a2v_cli.engine.lipsync import check_device
    from a2v_cli.server import celery_app
    from a2v_cli.server.distributed import Publisher, Sweeper, close_blobs, open_blobs
    from a2v_cli.server.pg_store import Liveness, PgStore

    _configure_logging(settings.log_format)
    check_device(settings.device)  # before taking any job: a worker that cannot render must not take jobs
    # Celery's multi-line warning when run as root (containers often are) is noise here: the worker needs
    # no privileges, and docs/deploy.md runs it as a plain user where it can
    warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges")
    root, blobs = open_blobs(settings.storage or "")  # a bucket that does not answer: exit 5 here
    try:
        store = PgStore(settings.database or "", max_connections=settings.concurrency + 3)
        store.migrate()
    except BaseException:
        close_blobs(root, blobs)
        raise
    live = Liveness(settings.database or "")
    publisher = Publisher(store, settings.broker or "", settings.queue)
    name = f"a2v@{socket.gethostname()}:{os.getpid()}"
    renderer = JobRenderer(store, live, blobs, publisher, settings, name)
    sweeper = Sweeper(store, publisher, settings.max_tries, blobs)
    app = publisher.app

    @app.task(name=celery_app.TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def render(video_id: str) -> None:
        renderer.run(str(video_id))

    def ready(**_: object) -> None:
        _say(f"a2v worker ready (queue={settings.queue}, concurrency={settings.concurrency})")

    grace = threading.Timer(settings.shutdown_grace_s, renderer.abort.set)
    grace.daemon = True  # an idle worker exits at once, not when the grace period is over

    def shutting_down(**_: object) -> None:
        busy = len(renderer.active)
        if busy:
            log.info("stopping: %d job(s) get %.0f s to finish, then go back to the queue", busy,
                     settings.shutdown_grace_s)
        if grace.ident is None:  # once, however many signals come
            grace.start()

    worker_ready.connect(ready, weak=False)
    worker_shutting_down.connect(shutting_down, weak=False)
    try:
        renderer.start()
        sweeper.start()
        worker = app.Worker(
            hostname=name, pool_cls="threads", concurrency=settings.concurrency, queues=[settings.queue],
            loglevel="WARNING", quiet=True, without_gossip=True, without_mingle=True, without_heartbeat=True,
            optimization="fair", redirect_stdouts=False,
        )
        worker.start()
        code = int(worker.exitcode or 0)
    finally:
        grace.cancel()
        renderer.abort.set()
        sweeper.stop()
        renderer.close()
        live.close()
        store.close()
        close_blobs(root, blobs)
    log.info("a2v worker stopped")
    return code

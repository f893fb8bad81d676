"""The embedded deployment's job queue and the worker threads that drain it.

`JobQueue` is all these workers know about storage: submit, claim, finish, fail, release.
`SqliteJobQueue` keeps jobs in the video history database (one process owns a data dir); the HTTP
layer reaches it only through `deployment.EmbeddedDeployment`. (The distributed deployment hands
jobs to `a2v worker` processes through Celery instead: `distributed`, `worker`.)
`Worker` takes one job at a time and drives it pending -> processing -> finished | failed;
`JobRunner` says what a job needs (its audio source and output folder) and cleans up after it.
An `audio_url` is downloaded first, by a `Fetcher` thread in this process under a deadline on the
whole download, so a slow or hostile host holds a download slot, never a render worker; decoding and
rendering happen in the worker's render process (`render_worker`).
"""

from __future__ import annotations

import collections
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from a2v_cli.errors import A2VError
from a2v_cli.schema import Video
from a2v_cli.server.fetch import Abandoned, Deadline, FetchPolicy, fetch
from a2v_cli.server.render_worker import RenderProcess, RenderSpec
from a2v_cli.server.tenants import tenant_avatars
from a2v_cli.server.uploads import UPLOAD_SCHEME, UploadStore
from a2v_cli.store import VIDEO_ID, Job, VideoStore

log = logging.getLogger("a2v.server")

MAX_ATTEMPTS = 3  # a job that takes the server down this many times fails instead of looping forever
POLL_S = 1.0  # how often an idle worker looks at the queue without being woken
MIN_FETCH_SLOTS = 4  # downloads at once: at least this many, or two per render worker


class JobQueue(Protocol):
    """Durable jobs. Every method is safe to call from any thread."""

    def submit(
        self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None,
    ) -> tuple[Video, Job, bool]:
        """Store a pending job (or find the one with this idempotency key); True when new."""
        ...

    def claim(self, timeout: float, downloads: bool = True) -> Job | None:
        """The next pending job, now processing, waiting up to ``timeout`` s for one.

        ``downloads=False``: only a job whose audio is an upload (every download slot is busy).
        """
        ...

    def started(self, video_id: str, duration: float) -> None: ...

    def finish(self, video_id: str, **result: Any) -> None: ...

    def fail(self, video_id: str, reason: str) -> None: ...

    def release(self, video_id: str) -> None:
        """Give an unfinished job back (pending) so it runs again."""
        ...

    def recover(self) -> list[str]:
        """At startup: jobs left processing by a crash become pending again."""
        ...

    def wake(self) -> None:
        """Wake workers waiting in ``claim`` (new work, or time to stop)."""
        ...


class SqliteJobQueue:
    """JobQueue on the video history; workers in this process are woken at once on submit."""

    def __init__(self, store: VideoStore) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._generation = 0

    def submit(
        self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None,
    ) -> tuple[Video, Job, bool]:
        video, job, created = self.store.create_job(pose_id, owner, audio_url, idempotency_key, alpha_format)
        if created:
            self.wake()
        return video, job, created

    def wake(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def claim(self, timeout: float, downloads: bool = True) -> Job | None:
        with self._cond:
            seen = self._generation
        job = self.store.claim_next(None if downloads else UPLOAD_SCHEME)
        if job is None:
            with self._cond:
                if self._generation == seen:  # nothing submitted since we looked: sleep until something is
                    self._cond.wait(min(timeout, POLL_S))
        return job

    def started(self, video_id: str, duration: float) -> None:
        self.store.update(video_id, duration=duration)

    def finish(self, video_id: str, **result: Any) -> None:
        self.store.update(video_id, status="finished", error=None, **result)

    def fail(self, video_id: str, reason: str) -> None:
        self.store.update(video_id, status="failed", error=reason)

    def release(self, video_id: str) -> None:
        self.store.requeue(video_id)
        self.wake()

    def recover(self) -> list[str]:
        return self.store.requeue()

    def finished_ids(self) -> set[str]:
        """Every finished video's id (to tell result folders from leftovers at startup)."""
        db = sqlite3.connect(self.store.path, timeout=30)
        try:
            return {r[0] for r in db.execute("SELECT video_id FROM videos WHERE status = 'finished'")}
        finally:
            db.close()


class JobRunner:
    """Turns a job into a `RenderSpec`: where its audio comes from and where its files go."""

    def __init__(
        self, data_dir: Path, uploads: UploadStore, policy: FetchPolicy, max_audio_seconds: float, device: str = "auto"
    ) -> None:
        self.data_dir = data_dir
        self.uploads = uploads
        self.policy = policy
        self.max_audio_seconds = max_audio_seconds
        self.device = device

    def needs_download(self, job: Job) -> bool:
        return not job.audio_url.startswith(UPLOAD_SCHEME)

    def work_dir(self, video_id: str) -> Path:
        return self.data_dir / "work" / video_id

    def download(self, job: Job, deadline: Deadline, should_stop: Callable[[], bool]) -> Path:
        """Fetch the job's audio_url into its work dir under the SSRF policy and ``deadline``."""
        work = self.work_dir(job.video_id)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, mode=0o700)
        return fetch(job.audio_url, work / "audio_url", self.policy, should_stop, deadline)

    def spec(self, job: Job, source: Path | None = None) -> RenderSpec:
        """The render of ``job``, from its upload or from ``source`` (its downloaded audio)."""
        name = "audio_url"
        if source is None:
            source = self.uploads.path(job.audio_url[len(UPLOAD_SCHEME) :], job.owner)
            name = "the uploaded file"  # the client names it as the user knows it
        return RenderSpec(
            video_id=job.video_id,
            pose_id=job.pose_id,
            out_dir=str(self.data_dir / "videos" / job.video_id),
            work_dir=str(self.work_dir(job.video_id) / "render"),
            max_audio_seconds=self.max_audio_seconds,
            source_path=str(source),
            source_name=name,
            device=self.device,
            alpha_format=job.alpha_format,
            avatars_dir=str(tenant_avatars(self.data_dir, job.owner)),
        )

    def clean(self, video_id: str, keep_result: bool) -> None:
        """Remove a job's scratch files, and its output folder unless it finished (every exit path)."""
        shutil.rmtree(self.work_dir(video_id), ignore_errors=True)
        if not keep_result:
            shutil.rmtree(self.data_dir / "videos" / video_id, ignore_errors=True)

    def sweep(self, finished: set[str]) -> int:
        """At startup, before any worker runs: drop every scratch dir, every unfinished job's output and
        half-written (``.*.part``) files a crash left behind. Returns how many things went.

        Only what a2v made is touched (names of video ids): a data dir given with --data-dir may be a folder
        whose own ``videos/`` or ``work/`` holds the user's files.
        """
        removed = 0
        work = self.data_dir / "work"
        if work.is_dir():
            for entry in work.iterdir():
                if VIDEO_ID.fullmatch(entry.name):
                    _remove(entry)
                    removed += 1
        videos = self.data_dir / "videos"
        if videos.is_dir():
            for entry in videos.iterdir():
                if not VIDEO_ID.fullmatch(entry.name):
                    continue
                if entry.name not in finished or not entry.is_dir():
                    _remove(entry)
                    removed += 1
                    continue
                for part in entry.glob(".*.part"):
                    _remove(part)
                    removed += 1
        return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Fetcher:
    """Download slots: threads that fetch jobs' audio_url so render workers never wait on a remote host.

    A worker hands a claimed job with an audio_url here and goes on; the finished download comes
    back through ``take()``, ahead of new jobs. While every slot is busy, workers claim only jobs
    whose audio is an upload. A failed download fails the job here. Each download
    runs under its own `Deadline` (the policy's total time), which ``stop()`` cancels.
    """

    def __init__(self, queue: JobQueue, runner: JobRunner, slots: int) -> None:
        self.queue = queue
        self.runner = runner
        self.slots = slots
        self._cond = threading.Condition()
        self._todo: collections.deque[Job] = collections.deque()
        self._ready: collections.deque[tuple[Job, Path]] = collections.deque()
        self._active: dict[str, Deadline] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        for i in range(self.slots):
            t = threading.Thread(target=self._run, name=f"a2v-fetch-{i + 1}", daemon=True)
            t.start()
            self._threads.append(t)

    def room(self) -> bool:
        """Whether another download may be handed over now (queued + running < slots)."""
        with self._cond:
            return len(self._todo) + len(self._active) < self.slots

    def submit(self, job: Job) -> None:
        with self._cond:
            self._todo.append(job)
            self._cond.notify_all()

    def take(self) -> tuple[Job, Path] | None:
        """A downloaded job for a worker to render, or None."""
        with self._cond:
            return self._ready.popleft() if self._ready else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._todo and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._todo.popleft()
                deadline = Deadline(self.runner.policy.total_timeout)
                self._active[job.video_id] = deadline
            ready: Path | None = None
            try:
                ready = self.runner.download(job, deadline, lambda: self._stopping)
            except Abandoned:
                self.runner.clean(job.video_id, keep_result=False)
                self.queue.release(job.video_id)
            except A2VError as err:
                log.info("%s failed: %s", job.video_id, err.message)
                self.runner.clean(job.video_id, keep_result=False)
                self.queue.fail(job.video_id, err.message)
            except Exception as err:
                log.exception("download for %s failed with an internal error", job.video_id)
                self.runner.clean(job.video_id, keep_result=False)
                self.queue.fail(job.video_id, f"internal error: {err.__class__.__name__}: {err}")
            finally:
                deadline.close()
                with self._cond:
                    self._active.pop(job.video_id, None)
                    if ready is not None:
                        self._ready.append((job, ready))
                    self._cond.notify_all()
            self.queue.wake()  # a job to render, or a free slot: a waiting worker looks again

    def stop(self, timeout: float = 10) -> None:
        """Cancel running downloads and give every job not yet rendered back to the queue."""
        with self._cond:
            self._stopping = True
            for deadline in self._active.values():
                deadline.cancel()
            left = [*self._todo, *(job for job, _ in self._ready)]
            self._todo.clear()
            self._ready.clear()
            self._cond.notify_all()
        for job in left:
            self.runner.clean(job.video_id, keep_result=False)
            self.queue.release(job.video_id)
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))


class Worker:
    """Takes jobs one at a time until told to stop; a failure fails the job, not the worker.

    Each worker drives its own render process (see `render_worker`). A job with an audio_url goes to
    the `Fetcher` first and comes back here, downloaded, ahead of new jobs.
    """

    def __init__(self, queue: JobQueue, runner: JobRunner, fetcher: Fetcher, name: str = "worker") -> None:
        self.queue = queue
        self.runner = runner
        self.fetcher = fetcher
        self.name = name
        self.current: str | None = None
        self.render = RenderProcess(name)

    def run(self, stop: threading.Event, abort: threading.Event) -> None:
        """Loop until ``stop``; ``abort`` asks the job in hand to give up (it is requeued)."""
        try:
            self.render.start()  # warm: the first job does not wait for the engine to load
            while not stop.is_set():
                try:
                    self.step(stop, abort)
                except Exception:  # e.g. the database unreachable for a moment: keep the worker alive
                    log.exception("%s: the job queue failed; retrying", self.name)
                    stop.wait(POLL_S)
        finally:
            self.render.stop()

    def step(self, stop: threading.Event, abort: threading.Event) -> None:
        """Render one downloaded job, or claim a new one (rendering it, or handing it to the fetcher)."""
        ready = self.fetcher.take()
        if ready is not None:
            self.process(ready[0], abort.is_set, ready[1])
            return
        room = self.fetcher.room()  # every download slot busy: only uploads, until a slot frees up
        job = self.queue.claim(timeout=POLL_S, downloads=room)
        if job is None:
            return
        if stop.is_set():  # claimed while shutting down: leave it for the next start
            self.queue.release(job.video_id)
            return
        if job.attempts > MAX_ATTEMPTS:
            self.runner.clean(job.video_id, keep_result=False)
            self.queue.fail(job.video_id, f"gave up after {MAX_ATTEMPTS} attempts: the server stopped during each one")
            return
        if self.runner.needs_download(job):
            self.fetcher.submit(job)
        else:
            self.process(job, abort.is_set)

    def process(self, job: Job, should_stop: Callable[[], bool], source: Path | None = None) -> None:
        self.current = job.video_id
        t0 = time.perf_counter()
        finished = False
        try:
            log.info("%s: rendering %s (pose %s, attempt %d)", self.name, job.video_id, job.pose_id, job.attempts)
            spec = self.runner.spec(job, source)
            outcome = self.render.run(spec, lambda d: self.queue.started(job.video_id, d), should_stop)
            self.queue.finish(
                job.video_id,
                video_url=outcome.video_path.resolve().as_uri(),
                mask_video_url=outcome.mask_path.resolve().as_uri(),
                frame_count=outcome.frame_count,
                **({"alpha_video_url": outcome.alpha_path.resolve().as_uri()} if outcome.alpha_path else {}),
            )
            finished = True
            log.info("%s: finished %s in %.1f s", self.name, job.video_id, time.perf_counter() - t0)
        except Abandoned:
            log.info("%s: %s abandoned for shutdown; it will run again on the next start", self.name, job.video_id)
            self.runner.clean(job.video_id, keep_result=False)
            self.queue.release(job.video_id)
        except A2VError as err:
            log.info("%s: %s failed: %s", self.name, job.video_id, err.message)
            self.runner.clean(job.video_id, keep_result=False)
            self.queue.fail(job.video_id, err.message)
        except Exception as err:
            # a bug or an environment problem: the job fails with the cause, the traceback goes to the log
            log.exception("%s: %s failed with an internal error", self.name, job.video_id)
            self.runner.clean(job.video_id, keep_result=False)
            self.queue.fail(job.video_id, f"internal error: {err.__class__.__name__}: {err}")
        finally:
            if finished:
                self.runner.clean(job.video_id, keep_result=True)
            self.current = None


class WorkerPool:
    """N worker threads and their download slots. ``stop()`` lets running renders finish for ``grace_s``,
    then abandons (requeues) them; downloads are abandoned at once (they are cheap to redo)."""

    def __init__(self, queue: JobQueue, runner: JobRunner, size: int, fetch_slots: int | None = None) -> None:
        self.queue = queue
        self.runner = runner
        self.fetcher = Fetcher(queue, runner, fetch_slots or max(MIN_FETCH_SLOTS, 2 * size))
        self.workers = [Worker(queue, runner, self.fetcher, f"worker-{i + 1}") for i in range(size)]
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.workers:
            self.fetcher.start()
        for w in self.workers:
            t = threading.Thread(target=w.run, args=(self._stop, self._abort), name=f"a2v-{w.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def alive(self) -> int:
        """Worker threads running now (0 before ``start``, after ``stop`` or with --workers 0)."""
        return sum(t.is_alive() for t in self._threads)

    def stop(self, grace_s: float) -> None:
        self._stop.set()
        self.queue.wake()
        self.fetcher.stop()
        deadline = time.monotonic() + grace_s
        busy = [w.current for w in self.workers if w.current]
        if busy:
            log.info("waiting up to %.0f s for %s to finish", grace_s, ", ".join(busy))
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._abort.set()
            for t in self._threads:
                t.join(30)
        self.fetcher.stop()  # a download a worker handed over while the pool was stopping

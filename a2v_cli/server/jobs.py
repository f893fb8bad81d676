"""The job queue and the workers that drain it, kept apart so either can be replaced.

`JobQueue` is all a worker and the HTTP layer know about storage: submit, claim, finish, fail,
release. `SqliteJobQueue` keeps jobs in the video history database (one process owns a data dir);
a distributed queue can implement the same protocol later without touching the API or the worker.
`Worker` takes one job at a time and drives it pending -> processing -> finished | failed;
`JobRunner` says what a job needs (its audio source and output folder); the work itself, getting
the audio (an upload on this server, or a checked download), decoding and rendering it, happens in
the worker's render process (`render_worker`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from a2v_cli.errors import A2VError
from a2v_cli.schema import Video
from a2v_cli.server.fetch import Abandoned, FetchPolicy
from a2v_cli.server.render_worker import RenderProcess, RenderSpec
from a2v_cli.server.uploads import UPLOAD_SCHEME, UploadStore
from a2v_cli.store import Job, VideoStore

log = logging.getLogger("a2v.server")

MAX_ATTEMPTS = 3  # a job that takes the server down this many times fails instead of looping forever
POLL_S = 1.0  # how often an idle worker looks at the queue without being woken


class JobQueue(Protocol):
    """Durable jobs. Every method is safe to call from any thread."""

    def submit(
        self, owner: str, pose_id: str, audio_url: str, idempotency_key: str | None = None,
        alpha_format: str | None = None,
    ) -> tuple[Video, Job, bool]:
        """Store a pending job (or find the one with this idempotency key); True when new."""
        ...

    def claim(self, timeout: float) -> Job | None:
        """The next pending job, now processing, waiting up to ``timeout`` s for one."""
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

    def claim(self, timeout: float) -> Job | None:
        with self._cond:
            seen = self._generation
        job = self.store.claim_next()
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

    def spec(self, job: Job) -> RenderSpec:
        source_path = url = None
        if job.audio_url.startswith(UPLOAD_SCHEME):
            source_path = str(self.uploads.path(job.audio_url[len(UPLOAD_SCHEME) :], job.owner))
        else:
            url = job.audio_url
        return RenderSpec(
            video_id=job.video_id,
            pose_id=job.pose_id,
            out_dir=str(self.data_dir / "videos" / job.video_id),
            work_dir=str(self.data_dir / "work" / job.video_id),
            max_audio_seconds=self.max_audio_seconds,
            max_bytes=self.policy.max_bytes,
            allow_private=self.policy.allow_private,
            device=self.device,
            alpha_format=job.alpha_format,
            source_path=source_path,
            url=url,
        )


class Worker:
    """Takes jobs from a queue one at a time until told to stop; a failure fails the job, not the worker.

    Each worker drives its own render process (see `render_worker`).
    """

    def __init__(self, queue: JobQueue, runner: JobRunner, name: str = "worker") -> None:
        self.queue = queue
        self.runner = runner
        self.name = name
        self.current: str | None = None
        self.render = RenderProcess(name)

    def run(self, stop: threading.Event, abort: threading.Event) -> None:
        """Loop until ``stop``; ``abort`` asks the job in hand to give up (it is requeued)."""
        try:
            self.render.start()  # warm: the first job does not wait for the engine to load
            while not stop.is_set():
                try:
                    job = self.queue.claim(timeout=POLL_S)
                    if job is None:
                        continue
                    if stop.is_set():  # claimed while shutting down: leave it for the next start
                        self.queue.release(job.video_id)
                        return
                    self.process(job, abort.is_set)
                except Exception:  # e.g. the database unreachable for a moment: keep the worker alive
                    log.exception("%s: the job queue failed; retrying", self.name)
                    stop.wait(POLL_S)
        finally:
            self.render.stop()

    def process(self, job: Job, should_stop: Callable[[], bool]) -> None:
        self.current = job.video_id
        t0 = time.perf_counter()
        try:
            if job.attempts > MAX_ATTEMPTS:
                self.queue.fail(
                    job.video_id, f"gave up after {MAX_ATTEMPTS} attempts: the server stopped during each one"
                )
                return
            log.info("%s: rendering %s (pose %s, attempt %d)", self.name, job.video_id, job.pose_id, job.attempts)
            spec = self.runner.spec(job)
            outcome = self.render.run(spec, lambda d: self.queue.started(job.video_id, d), should_stop)
            self.queue.finish(
                job.video_id,
                video_url=outcome.video_path.resolve().as_uri(),
                mask_video_url=outcome.mask_path.resolve().as_uri(),
                frame_count=outcome.frame_count,
                **({"alpha_video_url": outcome.alpha_path.resolve().as_uri()} if outcome.alpha_path else {}),
            )
            log.info("%s: finished %s in %.1f s", self.name, job.video_id, time.perf_counter() - t0)
        except Abandoned:
            log.info("%s: %s abandoned for shutdown; it will run again on the next start", self.name, job.video_id)
            self.queue.release(job.video_id)
        except A2VError as err:
            log.info("%s: %s failed: %s", self.name, job.video_id, err.message)
            self.queue.fail(job.video_id, err.message)
        except Exception as err:
            # a bug or an environment problem: the job fails with the cause, the traceback goes to the log
            log.exception("%s: %s failed with an internal error", self.name, job.video_id)
            self.queue.fail(job.video_id, f"internal error: {err.__class__.__name__}: {err}")
        finally:
            self.current = None


class WorkerPool:
    """N worker threads. ``stop()`` lets running jobs finish for ``grace_s``, then abandons (requeues) them."""

    def __init__(self, queue: JobQueue, runner: JobRunner, size: int) -> None:
        self.queue = queue
        self.workers = [Worker(queue, runner, f"worker-{i + 1}") for i in range(size)]
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in self.workers:
            t = threading.Thread(target=w.run, args=(self._stop, self._abort), name=f"a2v-{w.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, grace_s: float) -> None:
        self._stop.set()
        self.queue.wake()
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

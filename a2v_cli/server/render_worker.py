"""Render jobs in a child process, so a render never slows the API or takes it down.

Rendering runs Python (compositing) next to C (ONNX Runtime, ffmpeg). In the server's own process
the Python part would hold the GIL against the event loop and the realtime endpoints would wait
tens of milliseconds behind it; a crash in native code would end the server. So each worker thread
drives one long-lived child (`python -m a2v_cli.server.render_worker`), started at a lower CPU
priority (nice 10, inherited by its ffmpeg processes) so the API comes first on a small machine.

The child parses hostile media, so it gets a scrubbed environment (`child_env`: no token, no proxy,
nothing but what Python, the engine and CUDA need) and reads a client's file only through
`media.sanitise` (ffmpeg with an explicit demuxer and `-protocol_whitelist file`). It never touches
the network: an `audio_url` has been downloaded by the server (`jobs.Fetcher`) before the job comes here.

Protocol: one JSON object per line. The parent writes a `RenderSpec`; the child answers with
`{"event": "duration", ...}` once the audio is decoded, then `{"event": "done", ...}` or
`{"event": "failed", "message": ..., "internal": bool}`. The child exits when its stdin closes or
its parent disappears (checked twice a second), so a `kill -9` of the server leaves no render behind.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from a2v_cli.errors import A2VError, InputError
from a2v_cli.server.fetch import Abandoned
from a2v_cli.server.media import sanitise

log = logging.getLogger("a2v.server")

RENDER_NICE = 10
PARENT_CHECK_S = 0.5
STOP_CHECK_S = 0.2

# What the render child may see of the server's environment: Python's and the C libraries' basics,
# thread counts, CUDA. Never A2V_SERVER_TOKENS, A2V_TOKEN or a proxy, whatever else is set.
CHILD_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT",
    "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "A2V_HOME", "A2V_DEBUG", "NO_COLOR",
})
CHILD_ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "CUDNN_", "ORT_")
NEVER_PASSED = frozenset({"A2V_SERVER_TOKENS", "A2V_TOKEN"})


def child_env(parent: dict[str, str] | None = None) -> dict[str, str]:
    """The render child's environment: an allow-list of ``parent``'s (default ``os.environ``), plus a
    PYTHONPATH that finds this a2v_cli, also from a checkout that is not installed."""
    parent = dict(os.environ) if parent is None else parent
    env = {
        k: v for k, v in parent.items()
        if (k in CHILD_ENV or k.startswith(CHILD_ENV_PREFIXES)) and k not in NEVER_PASSED
    }
    package_root = str(Path(__file__).resolve().parents[2])
    path = parent.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
    return env


@dataclass(frozen=True)
class RenderSpec:
    """Everything a render process needs for one job (plain data, sent as JSON)."""

    video_id: str
    pose_id: str
    out_dir: str
    work_dir: str
    max_audio_seconds: float
    source_path: str  # the client's audio on this server's disk: an upload, or a finished download
    source_name: str = "audio_url"  # how messages name it
    device: str = "auto"
    alpha_format: str | None = None  # also write out_dir/alpha.<format> with real alpha
    avatars_dir: str | None = None  # the job's tenant's avatar bundles (server/avatars.py); None: built-ins only


@dataclass
class RenderOutcome:
    video_path: Path
    mask_path: Path
    frame_count: int
    alpha_path: Path | None = None


def render_spec(spec: RenderSpec, on_duration: Callable[[float], None]) -> RenderOutcome:
    """Check, clean and decode the client's audio, render video and mask into ``spec.out_dir``."""
    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.avatars import use_user_dir
    from a2v_cli.engine.render import RenderJob, render

    use_user_dir(Path(spec.avatars_dir) if spec.avatars_dir else None)  # this tenant's bundles, never the host's
    work, out = Path(spec.work_dir), Path(spec.out_dir)
    for d in (work, out):  # leftovers of an attempt that a crash cut short
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, mode=0o700)
    try:
        audio = sanitise(Path(spec.source_path), work / "audio.wav", spec.max_audio_seconds, spec.source_name)
        prepared = decode(audio, work, spec.max_audio_seconds)
        on_duration(prepared.duration)
        result = render(
            RenderJob(
                pose_id=spec.pose_id,
                audio=prepared,
                video_path=out / "video.mp4",
                mask_path=out / "mask.mp4",
                alpha_path=out / f"alpha.{spec.alpha_format}" if spec.alpha_format else None,
                alpha_format=spec.alpha_format,
                device=spec.device,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RenderOutcome(result.video_path, result.mask_path, result.frame_count, result.alpha_path)


# --- the child ---------------------------------------------------------------------------------------


def _exit_with_parent() -> None:
    parent = os.getppid()
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    """The child's loop: one job per stdin line, events on the protocol channel."""
    # the protocol gets its own copy of stdout; fd 1 then points at stderr, so a library that prints
    # cannot corrupt it
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    if hasattr(os, "nice"):
        try:
            os.nice(RENDER_NICE)
        except OSError:
            pass
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    # Ctrl-C in the server's terminal reaches the whole process group; the server decides when a
    # render stops (it closes our stdin or requeues the job), so the child ignores it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="INFO:     %(message)s", stream=sys.stderr)
    import a2v_cli.engine.render  # noqa: F401 - load numpy, onnxruntime and the engine before the first job

    def send(**event: Any) -> None:
        channel.write(json.dumps(event) + "\n")
        channel.flush()

    for line in sys.stdin:
        spec = RenderSpec(**json.loads(line))
        try:
            outcome = render_spec(spec, lambda d: send(event="duration", value=d))
        except A2VError as err:
            send(event="failed", message=err.message, internal=not isinstance(err, InputError))
        except Exception as err:
            logging.getLogger("a2v.server").exception("render of %s failed with an internal error", spec.video_id)
            send(event="failed", message=f"internal error: {err.__class__.__name__}: {err}", internal=True)
        else:
            send(event="done", video_path=str(outcome.video_path), mask_path=str(outcome.mask_path),
                 frame_count=outcome.frame_count, alpha_path=str(outcome.alpha_path) if outcome.alpha_path else None)


# --- the parent's side -------------------------------------------------------------------------------


class RenderFailed(A2VError):
    """A render that failed for a reason other than the input (the message says which)."""


class RenderProcess:
    """One child process, started on demand and replaced after a crash or an abandoned job."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "a2v_cli.server.render_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, encoding="utf-8", bufsize=1,
            env=child_env(),
        )
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout, self.events), daemon=True,
                                       name=f"a2v-{self.name}-events")
        self.reader.start()

    @staticmethod
    def _read(stream: IO[str], events: queue.Queue[dict[str, Any] | None]) -> None:
        for line in stream:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put(None)  # the child is gone

    def run(self, spec: RenderSpec, on_duration: Callable[[float], None], should_stop: Callable[[], bool]
            ) -> RenderOutcome:
        """Render ``spec`` in the child; Abandoned (child killed) once ``should_stop()`` turns true."""
        self.start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(asdict(spec)) + "\n")
            self.proc.stdin.flush()
        except OSError:
            self.stop()
            raise RenderFailed("internal error: the render process could not be reached") from None
        while True:
            try:
                event = self.events.get(timeout=STOP_CHECK_S)
            except queue.Empty:
                if should_stop():
                    self.stop(kill=True)
                    raise Abandoned from None
                continue
            if event is None:
                code = self.proc.wait()
                self.stop()
                raise RenderFailed(f"internal error: the render process died (exit code {code})")
            if event["event"] == "duration":
                on_duration(float(event["value"]))
            elif event["event"] == "done":
                alpha = event.get("alpha_path")
                return RenderOutcome(Path(event["video_path"]), Path(event["mask_path"]), int(event["frame_count"]),
                                     Path(alpha) if alpha else None)
            elif event["event"] == "failed":
                raise (RenderFailed if event.get("internal") else InputError)(event["message"])

    def stop(self, kill: bool = False, timeout: float = 10) -> None:
        """Close the child: stdin EOF lets it exit between jobs; ``kill`` ends a render at once."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self.reader is not None:
            self.reader.join(timeout)  # it reads stdout until EOF, which the exit has just caused
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe:
                    pipe.close()
            except OSError:
                pass


if __name__ == "__main__":
    main()

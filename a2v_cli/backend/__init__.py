"""Backends: where the API operations run. `local` renders on this machine; `remote` (next) talks HTTP.

The CLI talks only to the `Backend` protocol, so every command behaves the same in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from a2v_cli.schema import Avatar, Pose, Video

ProgressFn = Callable[[int, int], None]


@dataclass
class GenerateOptions:
    """Everything `generate` takes besides the pose and the audio."""

    output: Path | None = None
    mask_output: Path | None = None
    alpha_format: str | None = None
    force: bool = False
    device: str = "auto"
    model: str | None = None  # local mode: a Wav2Lip-style ONNX path or models-folder name
    still: bool = False  # no idle motion (local mode; refused remotely)
    stdin: BinaryIO | None = None
    on_saved: Callable[[Path], None] | None = None  # told of each output file once it is complete


class Backend(Protocol):
    mode: str  # "local" or "remote"

    def list_avatars(self) -> list[Avatar]: ...

    def list_poses(self, avatar_id: str) -> list[Pose]: ...

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        """Start (remote) or run (local) a generation; returns the video record."""
        ...

    def get_video(self, video_id: str) -> Video: ...

    def list_videos(self, limit: int | None = None) -> list[Video]: ...

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None) -> Path:
        """Fetch one of a video's URLs into ``dest`` (temp file, renamed when complete)."""
        ...


POLL_INITIAL = 0.5
POLL_MAX = 5.0


def wait_for(
    backend: Backend,
    video: Video,
    timeout: float,
    on_status: Callable[[Video], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Video:
    """Poll until ``video`` is finished; VideoFailedError / WaitTimeoutError carry the last state."""
    import time

    from a2v_cli.errors import VideoFailedError, WaitTimeoutError

    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + timeout
    delay = POLL_INITIAL
    while True:
        if on_status:
            on_status(video)
        if video.status == "finished":
            return video
        if video.status == "failed":
            err = VideoFailedError(f"video {video.video_id} failed: {video.error or 'no reason given'}")
            err.video = video  # type: ignore[attr-defined]
            raise err
        left = deadline - clock()
        if left <= 0:
            err2 = WaitTimeoutError(
                f"video {video.video_id} is still {video.status} after {timeout:g} s",
                f"check later with `a2v video get {video.video_id} --wait`",
            )
            err2.video = video  # type: ignore[attr-defined]
            raise err2
        sleep(min(delay, left))
        delay = min(delay * 1.6, POLL_MAX)
        video = backend.get_video(video.video_id)

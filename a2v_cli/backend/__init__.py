"""Backends: where the API operations run. `local` renders on this machine; `remote` (next) talks HTTP.

The CLI talks only to the `Backend` protocol, so every command behaves the same in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from a2v_cli.schema import Avatar, Pose, Video

ProgressFn = Callable[[int, int], None]


@dataclass
class GenerateOptions:
    """Everything `generate` takes besides the pose and the audio."""

    output: Path | None = None
    mask_output: Path | None = None
    alpha_format: str | None = None
    force: bool = False
    device: str | None = None  # None: not given (auto); remote mode refuses any value
    model: str | None = None  # local mode: a Wav2Lip-style ONNX path or models-folder name
    still: bool = False  # no idle motion (local mode; refused remotely)
    stdin: BinaryIO | None = None
    on_saved: Callable[[Path], None] | None = None  # told of each output file once it is complete


@dataclass(frozen=True)
class Outputs:
    """The files one `generate` writes."""

    video: Path
    mask: Path
    alpha: Path | None = None

    def named(self) -> list[tuple[str, Path]]:
        pairs = [("the video output", self.video), ("the mask output", self.mask)]
        return pairs + ([("the alpha output", self.alpha)] if self.alpha else [])


def mask_path_for(video: Path) -> Path:
    return video.with_name(f"{video.stem}.mask.mp4")


def alpha_path_for(video: Path, fmt: str) -> Path:
    return video.with_name(f"{video.stem}.alpha.{fmt}")


def default_video_path(audio: str, pose_id: str, video_id: str, cwd: Path) -> Path:
    """`<audio stem>-<pose>.mp4` here, for a file or a URL's file name; `a2v-<video id>.mp4` for stdin."""
    if audio == "-":
        return cwd / f"a2v-{video_id}.mp4"
    if "://" in audio:
        from urllib.parse import unquote, urlsplit

        stem = Path(unquote(urlsplit(audio).path)).stem
        return cwd / (f"{stem}-{pose_id}.mp4" if stem and stem not in (".", "..") else f"a2v-{video_id}.mp4")
    return cwd / f"{Path(audio).stem}-{pose_id}.mp4"


def plan_outputs(audio: str, pose_id: str, options: GenerateOptions, video_id: str, cwd: Path) -> Outputs:
    """Name and check every file a `generate` writes: the one check both modes run before any upload or render.

    No output may be the audio, the model or another output (resolved paths, device and inode),
    with or without --force; a name whose extension says another format than MP4 is refused; existing
    files need --force.
    """
    from a2v_cli.files import check_directory_target, check_mp4_name, check_outputs, input_file

    if options.output is not None:
        check_directory_target(options.output)
    if options.mask_output is not None:
        check_directory_target(options.mask_output, "--mask-output", "out.mask.mp4")
    video = (options.output or default_video_path(audio, pose_id, video_id, cwd)).absolute()
    mask = (options.mask_output or mask_path_for(video)).absolute()
    alpha = alpha_path_for(video, options.alpha_format) if options.alpha_format else None
    outputs = Outputs(video, mask, alpha)
    inputs = [("the audio", input_file(audio)), ("the model", input_file(options.model))]

    def names() -> None:  # after the same-file checks: `-o talk.wav` for talk.wav is about the input first
        check_mp4_name(video)
        check_mp4_name(mask, "--mask-output")

    check_outputs(outputs.named(), inputs, options.force, names=names)
    return outputs


class Backend(Protocol):
    mode: str  # "local" or "remote"

    def list_avatars(self) -> list[Avatar]: ...

    def list_poses(self, avatar_id: str) -> list[Pose]: ...

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        """Start (remote) or run (local) a generation; returns the video record."""
        ...

    def get_video(self, video_id: str) -> Video: ...

    def list_videos(self, limit: int | None = None) -> list[Video]: ...

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None, force: bool = False) -> Path:
        """Fetch one of a video's URLs into ``dest`` (temp file, then placed: exclusively unless ``force``)."""
        ...

    def delete_video(self, video_id: str) -> dict[str, Any]:
        """Forget one video and remove its kept files: {"video_id", "deleted"} (False: deleted before)."""
        ...

    def prune_videos(self, older_than_s: float) -> dict[str, Any]:
        """Delete finished and failed videos older than ``older_than_s``: {"deleted": [ids], "count"}."""
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

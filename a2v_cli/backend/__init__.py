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
    stdin: BinaryIO | None = None


class Backend(Protocol):
    mode: str  # "local" or "remote"

    def list_avatars(self) -> list[Avatar]: ...

    def list_poses(self, avatar_id: str) -> list[Pose]: ...

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        """Start (remote) or run (local) a generation; returns the video record."""
        ...

    def get_video(self, video_id: str) -> Video: ...

    def list_videos(self, limit: int | None = None) -> list[Video]: ...

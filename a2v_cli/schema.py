"""Typed API objects: the `data` of the A2V API's envelopes, with the spec's field names.

`to_dict()` gives exactly what `--json` prints and what a server sends; `from_dict()` tolerates
fields it does not know, since another vendor's server may add some.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T")

VIDEO_STATUSES = ("pending", "processing", "finished", "failed")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Avatar:
    """A character. `preview_image_url` shows its first pose."""

    avatar_id: str
    name: str
    description: str = ""
    preview_image_url: str | None = None
    pose_ids: tuple[str, ...] | list[str] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pose_ids"] = list(self.pose_ids)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Avatar:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Pose:
    """One framing of an avatar; `video.generate` takes its `pose_id`. Frames are width x height at fps."""

    pose_id: str
    avatar_id: str
    name: str
    width: int
    height: int
    fps: int
    description: str = ""
    preview_image_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pose:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Video:
    """A generation job and its result.

    The spec's fields are `video_id`, `status`, `video_url`, `mask_video_url`; the rest are
    a2v extensions (documented in the README): the pose, timings, frame count, the reason of a
    failure, and the optional real-alpha file.
    """

    video_id: str
    status: str
    video_url: str | None = None
    mask_video_url: str | None = None
    pose_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    duration: float | None = None
    frame_count: int | None = None
    error: str | None = None
    alpha_video_url: str | None = None
    queue_state: str | None = None  # "unclaimed": pending longer than the server's claim timeout (no worker)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Video:
        return _from_dict(cls, data)

"""Pydantic models of the envelopes, for the OpenAPI document and request bodies.

Responses are built from `a2v_cli.schema` dataclasses and sent as JSON directly (cheaper than
validating them again); these models only describe them. `tests/test_server.py` checks that the
two agree field for field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EXTENSION = "a2v extension (not in the A2V spec)."


class AvatarData(BaseModel):
    avatar_id: str
    name: str
    description: str = ""
    preview_image_url: str | None = Field(
        None, description="Absolute URL of a PNG of the first pose (public; a signed, expiring link for the "
        "caller's own avatars)."
    )
    pose_ids: list[str] = Field(default_factory=list)


class PoseData(BaseModel):
    pose_id: str = Field(description="Give this to video.generate.")
    avatar_id: str
    name: str
    width: int
    height: int
    fps: int
    description: str = ""
    preview_image_url: str | None = Field(None, description="Absolute URL of a PNG of the pose (public).")


class VideoData(BaseModel):
    video_id: str
    status: str = Field(description="pending, processing, finished or failed.")
    video_url: str | None = Field(
        None,
        description="MP4 (H.264 + AAC), when finished. A signed URL on this server that needs no token, "
        "valid 24 h and signed afresh on every video.get / video.list; supports Range requests.",
    )
    mask_video_url: str | None = Field(
        None, description="The alpha mask (white = avatar) as MP4; signed like video_url."
    )
    pose_id: str | None = Field(None, description=EXTENSION)
    created_at: str | None = Field(None, description="ISO 8601, UTC. " + EXTENSION)
    updated_at: str | None = Field(None, description="ISO 8601, UTC. " + EXTENSION)
    duration: float | None = Field(None, description="Audio length in seconds, once decoded. " + EXTENSION)
    frame_count: int | None = Field(None, description="ceil(duration x fps), when finished. " + EXTENSION)
    error: str | None = Field(None, description="Why the video failed, for people. " + EXTENSION)
    alpha_video_url: str | None = Field(
        None,
        description="With alpha_format in video.generate: the real-alpha file (WebM VP9 yuva420p or ProRes 4444 "
        "MOV), signed like video_url. " + EXTENSION,
    )
    queue_state: str | None = Field(
        None, description="`unclaimed` while pending longer than the server's --claim-timeout: no worker has "
        "taken it yet. " + EXTENSION,
    )


class UploadData(BaseModel):
    audio_url: str = Field(description="Give this to video.generate; only the uploading token may use it.")


class Envelope(BaseModel):
    code: int = Field(0, description="0 on success.")
    message: str = "success"


class AvatarListResponse(Envelope):
    data: list[AvatarData]


class PoseListResponse(Envelope):
    data: list[PoseData]


class VideoResponse(Envelope):
    data: VideoData


class VideoListResponse(Envelope):
    data: list[VideoData]
    next_cursor: str | None = Field(
        None,
        description="Present only when `limit` cut the list short: pass it as `cursor` for the next page. "
        + EXTENSION,
    )


class UploadResponse(Envelope):
    data: UploadData


class ErrorResponse(BaseModel):
    code: int = Field(
        description="40000 bad request, 40100 unauthorized, 40300 forbidden (bad or expired signed URL), "
        "40400 not found, 40500 method not allowed, 40900 conflict (avatar.create: the id exists), 41300 payload "
        "too large, 50000 internal error, 50300 busy (retry)."
    )
    data: None = None
    message: str = Field(description="What is wrong, for people.")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pose_id: str = Field(min_length=1, max_length=200, description="From avatar-pose.list.")
    audio_url: str = Field(
        min_length=1,
        max_length=4096,
        description="http(s) URL of the speech, or an audio_url from audio.upload. Private, loopback, link-local "
        "and metadata addresses are refused unless the server runs with --allow-private-urls.",
    )
    alpha_format: Literal["webm", "mov"] | None = Field(
        None,
        description="Also render a file with real alpha: webm (VP9 yuva420p) or mov (ProRes 4444); its URL is "
        "alpha_video_url. " + EXTENSION,
    )


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video_id: str = Field(min_length=1, max_length=100, description="One of the caller's videos.")


class DeleteData(BaseModel):
    video_id: str
    deleted: bool = Field(description="False when the video had already been deleted (a repeat is harmless).")


class DeleteResponse(Envelope):
    data: DeleteData


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_seconds: float = Field(
        ge=0, allow_inf_nan=False, description="Delete finished and failed videos created before now - this."
    )


class PruneData(BaseModel):
    deleted: list[str] = Field(description="The ids deleted by this call.")
    count: int


class PruneResponse(Envelope):
    data: PruneData


class AvatarResponse(Envelope):
    data: AvatarData
    warnings: list[str] = Field(
        default_factory=list, description="avatar.create: things the caller should know (e.g. several faces, the "
        "largest used). " + EXTENSION,
    )


class AvatarDeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    avatar_id: str = Field(min_length=1, max_length=100, description="One of the caller's own avatars.")


class HealthData(BaseModel):
    status: str = Field(description="`ok` (healthz) or `ready` (readyz).")
    deployment: str = Field(description="`embedded` or `distributed`.")


class HealthResponse(Envelope):
    data: HealthData

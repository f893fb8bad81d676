"""Remote mode: the API operations against an A2V server over HTTP."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from a2v_cli.backend import GenerateOptions, ProgressFn
from a2v_cli.client import A2VClient, new_idempotency_key
from a2v_cli.errors import APINotFoundError, APIStatusError, InputError
from a2v_cli.schema import Avatar, Pose, Video

T = TypeVar("T")


class RemoteBackend:
    mode = "remote"

    def __init__(self, client: A2VClient) -> None:
        self.client = client

    def list_avatars(self) -> list[Avatar]:
        return [_build(Avatar, a, "avatar.list") for a in self.client.request("GET", "avatar.list", expect=list)]

    def list_poses(self, avatar_id: str) -> list[Pose]:
        data = self.client.request("GET", "avatar-pose.list", expect=list, params={"avatar_id": avatar_id})
        return [_build(Pose, p, "avatar-pose.list") for p in data]

    def get_video(self, video_id: str) -> Video:
        data = self.client.request("GET", "video.get", expect=dict, params={"video_id": video_id})
        return _build(Video, data, "video.get")

    def list_videos(self, limit: int | None = None) -> list[Video]:
        params = {"limit": limit} if limit else None
        return [_build(Video, v, "video.list") for v in self.client.request("GET", "video.list", expect=list,
                                                                             params=params)]

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        if options.model:
            raise InputError("--model works in local mode only", "drop --model, or add --local")
        if audio.lower().startswith(("http://", "https://")):
            audio_url = audio
        else:
            audio_url = self.upload(audio, options.stdin)
        data = self.client.request(
            "POST", "video.generate", expect=dict, json={"pose_id": pose_id, "audio_url": audio_url},
            idempotency_key=new_idempotency_key(),
        )
        return _build(Video, data, "video.generate")

    def upload(self, audio: str, stdin: BinaryIO | None) -> str:
        """Send a local file (or stdin) through the server's `audio.upload` extension."""
        import sys

        from a2v_cli.engine.audio import fetch_local

        with contextlib.ExitStack() as stack:
            if audio == "-":
                name, handle = "stdin", stdin or sys.stdin.buffer
            else:
                path = fetch_local(audio)
                name, handle = path.name, stack.enter_context(open(path, "rb"))
            try:
                data = self.client.request(
                    "POST", "audio.upload", expect=dict, files={"file": (name, handle, "application/octet-stream")},
                    idempotency_key=new_idempotency_key(),
                )
            except APINotFoundError:
                raise InputError(
                    "this server does not accept uploads (no audio.upload extension)",
                    "give --audio an http(s) URL the server can download",
                ) from None
        if not isinstance(data.get("audio_url"), str):
            raise APIStatusError("audio.upload: the server's answer has no audio_url")
        return data["audio_url"]

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None) -> Path:
        return self.client.download(url, dest, progress)


def _build(cls: type[T], data: dict[str, Any], path: str) -> T:
    """``cls.from_dict(data)``; an object without the fields the API promises is an APIStatusError."""
    try:
        return cls.from_dict(data)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise APIStatusError(f"{path}: the server's answer is not a valid {cls.__name__.lower()} ({err})") from None

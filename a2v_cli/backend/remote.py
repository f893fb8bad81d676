"""Remote mode: the API operations against an A2V server over HTTP."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO

from a2v_cli.backend import GenerateOptions, ProgressFn
from a2v_cli.client import A2VClient, new_idempotency_key
from a2v_cli.errors import APINotFoundError, InputError
from a2v_cli.schema import Avatar, Pose, Video


class RemoteBackend:
    mode = "remote"

    def __init__(self, client: A2VClient) -> None:
        self.client = client

    def list_avatars(self) -> list[Avatar]:
        return [Avatar.from_dict(a) for a in self.client.request("GET", "avatar.list")]

    def list_poses(self, avatar_id: str) -> list[Pose]:
        data = self.client.request("GET", "avatar-pose.list", params={"avatar_id": avatar_id})
        return [Pose.from_dict(p) for p in data]

    def add_avatar(self, request: Any, warn: Any) -> Avatar:
        raise InputError("`a2v avatars add` works in local mode only for now", "add --local to run it on this machine")

    def remove_avatar(self, avatar_id: str) -> Avatar:
        raise InputError("`a2v avatars remove` works in local mode only for now",
                         "add --local to run it on this machine")

    def get_video(self, video_id: str) -> Video:
        return Video.from_dict(self.client.request("GET", "video.get", params={"video_id": video_id}))

    def list_videos(self, limit: int | None = None) -> list[Video]:
        params = {"limit": limit} if limit else None
        return [Video.from_dict(v) for v in self.client.request("GET", "video.list", params=params)]

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        if options.model:
            raise InputError("--model works in local mode only", "drop --model, or add --local")
        if audio.lower().startswith(("http://", "https://")):
            audio_url = audio
        else:
            audio_url = self.upload(audio, options.stdin)
        data = self.client.request(
            "POST", "video.generate", json={"pose_id": pose_id, "audio_url": audio_url},
            idempotency_key=new_idempotency_key(),
        )
        return Video.from_dict(data)

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
                    "POST", "audio.upload", files={"file": (name, handle, "application/octet-stream")},
                    idempotency_key=new_idempotency_key(),
                )
            except APINotFoundError:
                raise InputError(
                    "this server does not accept uploads (no audio.upload extension)",
                    "give --audio an http(s) URL the server can download",
                ) from None
        return str(data["audio_url"])

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None) -> Path:
        return self.client.download(url, dest, progress)

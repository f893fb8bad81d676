"""Remote mode: the API operations against an A2V server over HTTP."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from a2v_cli.backend import GenerateOptions, ProgressFn
from a2v_cli.client import A2VClient, new_idempotency_key
from a2v_cli.errors import A2VError, APINotFoundError, APIStatusError, InputError, not_found
from a2v_cli.schema import Avatar, Pose, Video

T = TypeVar("T")


class RemoteBackend:
    mode = "remote"

    def __init__(self, client: A2VClient) -> None:
        self.client = client
        self._shown: str | None = None  # the user's name for the audio this process uploaded

    def list_avatars(self) -> list[Avatar]:
        return [_build(Avatar, a, "avatar.list") for a in self.client.request("GET", "avatar.list", expect=list)]

    def list_poses(self, avatar_id: str) -> list[Pose]:
        data = self.client.request("GET", "avatar-pose.list", expect=list, params={"avatar_id": avatar_id})
        return [_build(Pose, p, "avatar-pose.list") for p in data]

    def add_avatar(self, request: Any, warn: Any) -> Avatar:
        """`a2v avatars add` through the server's `avatar.create` extension (the avatar is this token's only)."""
        from a2v_cli.engine.ingest import BUILD_DEADLINE_S  # how long `a2v serve` may build it (its deadlines)

        if request.device != "auto":
            raise InputError("--device works in local mode only (the server chooses where its models run)",
                             "drop --device, or add --local")
        shown = request.image.name
        fields = {"size": str(request.size), "description": request.description or f"From {shown}"}
        for key, value in (("avatar_id", request.avatar_id), ("name", request.name), ("face", request.face)):
            if value is not None:
                fields[key] = str(value)
        with open(request.image, "rb") as handle:
            try:
                body = self.client.request_envelope(
                    "POST", "avatar.create", data=fields, idempotency_key=new_idempotency_key(),
                    files={request.kind: (shown, handle, "application/octet-stream")},
                    work_s=BUILD_DEADLINE_S[request.kind],
                )
            except APINotFoundError as err:
                if err.status_code == 404 and "no such endpoint" in err.message:
                    raise InputError("this server does not accept avatars (no avatar.create extension)",
                                     "add --local to make the avatar on this machine") from None
                raise
            except A2VError as err:
                _upload_error(err, shown, "use a smaller photo or a shorter clip, or add it on this machine with "
                              "--local")
                raise
        for line in body.get("warnings") or []:
            if isinstance(line, str):
                warn(_name_the_file(line, shown))
        if not isinstance(body.get("data"), dict):
            raise APIStatusError("avatar.create: the server's answer has no avatar")
        return _build(Avatar, body["data"], "avatar.create")

    def remove_avatar(self, avatar_id: str) -> Avatar:
        """`a2v avatars remove` through `avatar.delete` (only this token's own avatars)."""
        data = self.client.request("POST", "avatar.delete", expect=dict, json={"avatar_id": avatar_id},
                                   idempotency_key=new_idempotency_key())
        return _build(Avatar, data, "avatar.delete")

    def get_video(self, video_id: str) -> Video:
        data = self.client.request("GET", "video.get", expect=dict, params={"video_id": video_id})
        video = _build(Video, data, "video.get")
        if video.error and self._shown:  # a failure reason names the user's file, not the upload
            from dataclasses import replace

            video = replace(video, error=_name_the_file(video.error, self._shown))
        return video

    def list_videos(self, limit: int | None = None) -> list[Video]:
        params = {"limit": limit} if limit else None
        return [_build(Video, v, "video.list") for v in self.client.request("GET", "video.list", expect=list,
                                                                             params=params)]

    def check_options(self, options: GenerateOptions) -> None:
        """Options the server decides, refused (exit 2) rather than silently ignored."""
        if options.model:
            raise InputError(
                "--model works in local mode only (the server chooses its model)", "drop --model, or add --local"
            )
        if options.device is not None:
            raise InputError(
                "--device works in local mode only (the server chooses where it renders)",
                "drop --device, or add --local",
            )

    def check_pose(self, pose_id: str) -> None:
        """An unknown pose is exit 4 before any audio is uploaded (no orphan uploads for a typo)."""
        known = [p for a in self.list_avatars() for p in (a.pose_ids or [])]
        if pose_id not in known:
            raise not_found("pose", pose_id, known)

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        self.check_options(options)
        self.check_pose(pose_id)
        if audio.lower().startswith(("http://", "https://")):
            audio_url = audio
        else:
            audio_url = self.upload(audio, options.stdin)
        body = {"pose_id": pose_id, "audio_url": audio_url}
        if options.alpha_format:
            body["alpha_format"] = options.alpha_format
        data = self.client.request(
            "POST", "video.generate", expect=dict, json=body, idempotency_key=new_idempotency_key()
        )
        return _build(Video, data, "video.generate")

    def upload(self, audio: str, stdin: BinaryIO | None) -> str:
        """Send a local file (or stdin) through the server's `audio.upload` extension."""
        import sys

        from a2v_cli.engine.audio import copy_stream, fetch_local, is_stream

        with contextlib.ExitStack() as stack:
            if audio == "-":
                name, handle = "stdin", stdin or sys.stdin.buffer
            else:
                path = fetch_local(audio)
                name, handle = path.name, stack.enter_context(open(path, "rb"))
                if is_stream(path):  # a pipe cannot be rewound for a retry, nor measured: keep it in a temp file
                    import tempfile

                    spool = stack.enter_context(tempfile.TemporaryFile())
                    copy_stream(handle, spool, audio)
                    spool.seek(0)
                    handle = spool
            shown = "the audio from stdin" if audio == "-" else audio
            self._shown = shown
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
            except A2VError as err:
                _upload_error(err, shown, "compress it (FLAC, MP3 or Opus), or render it on this machine with --local")
                raise
        if not isinstance(data.get("audio_url"), str):
            raise APIStatusError("audio.upload: the server's answer has no audio_url")
        return data["audio_url"]

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None, force: bool = False) -> Path:
        """Fetch ``dest`` (resumable part beside it), then place it exclusively unless ``force``."""
        return self.client.download(url, dest, progress, force)

    def delete_video(self, video_id: str) -> dict[str, Any]:
        return dict(self.client.request("POST", "video.delete", expect=dict, json={"video_id": video_id},
                                        idempotency_key=new_idempotency_key()))

    def prune_videos(self, older_than_s: float) -> dict[str, Any]:
        return dict(self.client.request("POST", "video.prune", expect=dict,
                                        json={"older_than_seconds": older_than_s},
                                        idempotency_key=new_idempotency_key()))


def _upload_error(err: A2VError, shown: str, too_large_hint: str) -> None:
    """The server's error about an upload, naming the user's own file; over the server's cap (413), with what
    to do about it (the server's message states the cap in the unit of its docs)."""
    err.message = _name_the_file(err.message, shown)
    if getattr(err, "status_code", None) == 413:
        if shown not in err.message:  # a server that says "request body", not "the uploaded file"
            err.message = f"{shown} is too large for this server ({err.message})"
        err.hint = too_large_hint
    err.args = (err.message,)


def _name_the_file(message: str, shown: str) -> str:
    """The server speaks of "the uploaded file" or an upload id; the user knows their own file's name."""
    import re

    message = message.replace("the uploaded file", shown)
    return re.sub(r"upl_[0-9a-f]{24}", shown, message)


def _build(cls: type[T], data: dict[str, Any], path: str) -> T:
    """``cls.from_dict(data)``; an object without the fields the API promises is an APIStatusError."""
    try:
        return cls.from_dict(data)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise APIStatusError(f"{path}: the server's answer is not a valid {cls.__name__.lower()} ({err})") from None

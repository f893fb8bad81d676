"""The file routes (extensions): `audio.upload` and its download, signed result files, pose previews.

Uploads belong to the uploading token; result files are served behind signed, expiring URLs (no token,
so a browser or player can fetch them), with Range support and errors as envelopes. Where the storage is
a bucket, the checked link answers with a redirect (307) to a short-lived presigned URL of the object:
the API's links keep their form, lifetime and error envelopes, and `a2v video get -o` follows them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.types import Message, Receive, Scope, Send

from a2v_cli.engine import catalog
from a2v_cli.errors import NotFoundError
from a2v_cli.server import models
from a2v_cli.server.app import (
    API,
    AUDIO_UPLOAD,
    ERRORS,
    FILES,
    NOT_FOUND,
    VIDEO_ID,
    ForbiddenError,
    ServerState,
    envelope,
)
from a2v_cli.server.deps import get_state, owner

log = logging.getLogger("a2v.server")

MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}


class ResultFile(FileResponse):
    """A result file (with ETag, Range and If-Range, as Starlette serves them) whose range errors are
    envelopes like every other error: 416 (with ``Content-Range: bytes */SIZE``) or 400, not text."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = False

        async def enveloped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                replaced = True
                status = message["status"]
                why = "the Range header asks for bytes past the end of the file" if status == 416 else (
                    "the Range header is malformed")
                err = envelope(None, status=status, code=status * 100, message=why)
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-range":
                        err.headers["Content-Range"] = v.decode("latin-1")
                await err(scope, receive, send)
            elif not replaced:
                await send(message)

        await super().__call__(scope, receive, enveloped)


def _redirect(url: str) -> RedirectResponse:
    """To a presigned object URL: 307 keeps the method (HEAD stays HEAD); never cached past its short life."""
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


def router() -> APIRouter:
    r = APIRouter()

    @r.post(
        AUDIO_UPLOAD,
        response_model=models.UploadResponse,
        responses={**ERRORS, 413: {"model": models.ErrorResponse, "description": "Over the size cap (41300)."}},
        tags=["Extensions"],
    )
    def audio_upload(
        request: Request,
        file: UploadFile = File(description="The audio file (WAV, FLAC, OGG, MP3, M4A...)."),
        who: str = Depends(owner),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """Extension: store an audio file on this server; returns an audio_url for video.generate.

        Only the uploading token can use (or download) it. Over --max-upload-bytes: 41300 (HTTP 413).
        """
        upload_id = state.uploads.save(file.file, who, state.settings.max_upload_bytes)
        log.info("stored upload %s for %s", upload_id, who)
        return envelope({"audio_url": f"{state.base_url(request)}{API}/uploads/{upload_id}"})

    @r.get(
        f"{API}/uploads/{{upload_id}}",
        response_class=FileResponse,
        responses={**ERRORS, **NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}},
        tags=["Extensions"],
    )
    def upload_get(
        upload_id: str, who: str = Depends(owner), state: ServerState = Depends(get_state)
    ) -> Response:
        """Extension: download an upload again (its uploader only)."""
        where = state.uploads.path(upload_id, who)
        if isinstance(where, str):
            return _redirect(where)
        return FileResponse(where, media_type="application/octet-stream")

    @r.head(f"{API}/files/{{video_id}}/{{name}}", include_in_schema=False)
    @r.get(
        f"{API}/files/{{video_id}}/{{name}}",
        response_class=FileResponse,
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The file."},
            206: {"content": {"video/mp4": {}}, "description": "The requested byte range."},
            400: ERRORS[400],
            403: {"model": models.ErrorResponse, "description": "Bad or expired signature (40300)."},
            416: {"model": models.ErrorResponse, "description": "Range past the end of the file (41600)."},
            **NOT_FOUND,
        },
        tags=["Extensions"],
    )
    def video_file(
        request: Request,
        video_id: str,
        name: str,
        expires: str = Query("", max_length=20),
        signature: str = Query("", max_length=128),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """Extension: a result file behind a signed, expiring URL (no token needed). Supports Range."""
        if name not in FILES or not VIDEO_ID.fullmatch(video_id):
            raise NotFoundError(f"no such file: {video_id}/{name}")
        why = state.signer.check(video_id, name, expires, signature)
        if why:
            raise ForbiddenError(f"download link {why}", "get a fresh link from video.get")
        path = state.blobs.result_location(video_id, name, head=request.method == "HEAD")
        if path is None:
            raise NotFoundError(f"no such file: {video_id}/{name}")
        if isinstance(path, str):
            return _redirect(path)
        download = f"a2v-{video_id}.mp4" if name == "video.mp4" else f"a2v-{video_id}.{name}"
        return ResultFile(
            path, media_type=MEDIA_TYPES[Path(name).suffix], filename=download, content_disposition_type="inline",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @r.get(
        f"{API}/previews/{{pose_id}}.png",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
        tags=["Extensions"],
    )
    def preview(pose_id: str) -> FileResponse:
        """Extension: a pose's preview image (public: built-in art, no user data)."""
        path = catalog.packaged_previews().get(pose_id)
        if path is None:
            raise NotFoundError(f"no preview for pose {pose_id!r}")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    return r

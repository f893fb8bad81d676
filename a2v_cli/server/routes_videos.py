"""The video routes: `video.generate`, `video.get` and `video.list` (Offline Processing and Realtime API).

They only translate HTTP to the deployment's queue and state store; rendering happens in the workers.
Each is a plain `def`, so its database work and DNS lookups run in the thread pool, not on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import logging

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from a2v_cli.errors import InputError, NotFoundError
from a2v_cli.server import avatars as user_avatars
from a2v_cli.server import models
from a2v_cli.server.app import API, ERRORS, IDEMPOTENCY_KEY, NOT_FOUND, VIDEO_ID, ServerState, envelope
from a2v_cli.server.deployment import JobLimits
from a2v_cli.server.deps import get_state, owner
from a2v_cli.server.fetch import check_url
from a2v_cli.server.uploads import UPLOAD_SCHEME
from a2v_cli.wire import ascii_int

log = logging.getLogger("a2v.server")


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        seq = ascii_int(value)
        if kind != "seq" or seq is None:
            raise ValueError
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InputError("invalid cursor", "pass the next_cursor of a previous video.list answer") from None


def _own_upload_id(audio_url: str, bases: set[str]) -> str | None:
    """The upload id when ``audio_url`` is one of this server's upload URLs, else None."""
    for base in bases:
        prefix = f"{base}{API}/uploads/"
        if audio_url.startswith(prefix):
            return audio_url[len(prefix) :]
    return None


def router() -> APIRouter:
    r = APIRouter()

    @r.post(
        f"{API}/video.generate", response_model=models.VideoResponse, responses={**ERRORS, **NOT_FOUND}, tags=["A2V"]
    )
    def video_generate(
        body: models.GenerateRequest,
        request: Request,
        who: str = Depends(owner),
        idempotency_key: str | None = Header(
            None,
            alias="Idempotency-Key",
            max_length=255,
            description="Extension: the same key from the same token returns the first request's video "
            "instead of queueing another.",
        ),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """Queue a video (Offline Processing API). The job is on disk before this answers; poll video.get.

        Refused before queueing (40000): a scheme other than http/https, credentials in the URL, a host
        that does not resolve, or one that resolves to a private, loopback, link-local, multicast,
        reserved or metadata address. Problems found while downloading (redirects, size, time, not
        audio, too long) make the video `failed` with the reason in `error`.
        """
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InputError("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        user_avatars.check_pose(state, who, body.pose_id)  # built-ins and the caller's own; never another token's
        base = state.base_url(request)
        audio_url = body.audio_url.strip()
        upload_id = _own_upload_id(audio_url, {base})
        if upload_id is not None:
            state.uploads.path(upload_id, who)  # 40400 unless this token uploaded it
            audio_url = UPLOAD_SCHEME + upload_id
        else:
            check_url(audio_url, state.policy)
        video, job, created = state.deployment.submit(
            who, body.pose_id, audio_url, idempotency_key, body.alpha_format, JobLimits.of(state.settings)
        )
        asked = (body.pose_id, audio_url, body.alpha_format)
        if not created and (job.pose_id, job.audio_url, job.alpha_format) != asked:
            raise InputError(
                "this Idempotency-Key was already used with a different pose_id, audio_url or alpha_format",
                "use a new key for a new video",
            )
        if created:
            log.info("queued %s for %s (pose %s)", video.video_id, who, body.pose_id, extra={"job_id": video.video_id})
        return envelope(state.present(video, base))

    @r.get(f"{API}/video.get", response_model=models.VideoResponse, responses={**ERRORS, **NOT_FOUND}, tags=["A2V"])
    def video_get(
        request: Request, video_id: str = Query(max_length=100), who: str = Depends(owner),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """One video of the caller's (Realtime API); another token's video is 40400 like an unknown one."""
        video = state.store.get(video_id, owner=who) if VIDEO_ID.fullmatch(video_id) else None
        if video is None:
            raise NotFoundError(f"unknown video {video_id!r}")
        return envelope(state.present(video, state.base_url(request)))

    @r.get(f"{API}/video.list", response_model=models.VideoListResponse, responses=ERRORS, tags=["A2V"])
    def video_list(
        request: Request,
        limit: int | None = Query(
            None, ge=1, le=100, description="Extension: at most this many videos; more come with next_cursor."
        ),
        cursor: str | None = Query(
            None, max_length=200, description="Extension: the next_cursor of the previous page."
        ),
        who: str = Depends(owner),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """The caller's videos, newest first (Realtime API). Without `limit`, all of them."""
        before = _decode_cursor(cursor) if cursor else None
        videos, next_seq = state.store.page(who, limit, before)
        base = state.base_url(request)
        extra = {"next_cursor": _encode_cursor(next_seq)} if next_seq is not None else {}
        return envelope([state.present(v, base) for v in videos], **extra)

    return r

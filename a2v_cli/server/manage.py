"""Extensions for managing a tenant's history: `video.delete` and `video.prune`.

Why: a server that keeps every render forever only grows. These routes let each token remove its
own videos (and their files); another token's video answers 40400 like an unknown one. Kept out of
`app.py` so the core API module stays as the spec describes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response

from a2v_cli.errors import InputError, NotFoundError
from a2v_cli.server import models
from a2v_cli.store import iso_before

log = logging.getLogger("a2v.server")


class BusyError(InputError):
    """The video is still pending or processing."""

    api_code = 40900
    http_status = 409


def register(app: FastAPI, state: Any, owner: Callable[..., Awaitable[str]], errors: dict[int, Any]) -> None:
    """Add the routes to ``app``; ``owner`` is the app's bearer-token dependency."""
    from a2v_cli.server.app import API, VIDEO_ID, envelope

    def remove_files(video_id: str) -> None:
        state.blobs.delete_results(video_id)

    @app.post(
        f"{API}/video.delete",
        response_model=models.DeleteResponse,
        responses={**errors, 404: {"model": models.ErrorResponse, "description": "Unknown id (40400)."},
                   409: {"model": models.ErrorResponse, "description": "Still pending or processing (40900)."}},
        tags=["Extensions"],
    )
    def video_delete(body: models.DeleteRequest, who: str = Depends(owner)) -> Response:
        """Extension: delete one of the caller's videos and its files.

        Deleting an already deleted video answers `deleted: false` (safe to retry); a pending or
        processing video is refused with 40900.
        """
        outcome = state.store.delete(body.video_id, owner=who) if VIDEO_ID.fullmatch(body.video_id) else "unknown"
        if outcome == "unknown":
            raise NotFoundError(f"unknown video {body.video_id!r}")
        if outcome == "busy":
            raise BusyError(f"video {body.video_id} is still being rendered", "delete it once it is finished or failed")
        remove_files(body.video_id)
        if outcome == "deleted":
            log.info("deleted %s for %s", body.video_id, who)
        return envelope({"video_id": body.video_id, "deleted": outcome == "deleted"})

    @app.post(f"{API}/video.prune", response_model=models.PruneResponse, responses=errors, tags=["Extensions"])
    def video_prune(body: models.PruneRequest, who: str = Depends(owner)) -> Response:
        """Extension: delete the caller's finished and failed videos created more than `older_than_seconds` ago."""
        ids = state.store.prune(who, iso_before(body.older_than_seconds))
        for video_id in ids:
            remove_files(video_id)
        if ids:
            log.info("pruned %d video(s) for %s", len(ids), who)
        return envelope({"deleted": ids, "count": len(ids)})

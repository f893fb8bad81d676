"""The catalog routes: `avatar.list` and `avatar-pose.list` (Realtime API).

The built-ins are the same for every caller, so their lists are built once per base URL and served as
cached bytes; a caller with avatars of its own (server/avatars.py) gets them appended, never cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from a2v_cli.engine import catalog
from a2v_cli.server import avatars as user_avatars
from a2v_cli.server import models
from a2v_cli.server.app import API, ERRORS, NOT_FOUND, ServerState, envelope
from a2v_cli.server.deps import get_state, owner


def cached(state: ServerState, key: str, build: Callable[[], Any]) -> Response:
    """The envelope of ``build()``, built once per ``key`` (catalog ids only, so the cache is bounded)."""
    body = state.cache.get(key)
    if body is None:
        body = envelope(build()).body
        state.cache[key] = body
    return Response(body, media_type="application/json")


def preview_urls(base: str) -> dict[str, str]:
    return {pid: f"{base}{API}/previews/{pid}.png" for pid in catalog.packaged_previews()}


def router() -> APIRouter:
    r = APIRouter()

    @r.get(f"{API}/avatar.list", response_model=models.AvatarListResponse, responses=ERRORS, tags=["A2V"])
    def avatar_list(
        request: Request, who: str = Depends(owner), state: ServerState = Depends(get_state)
    ) -> Response:
        """Every avatar (Realtime API): the built-ins, then the caller's own (extension: avatar.create)."""
        base = state.base_url(request)
        own = user_avatars.own_avatars(state, who, base)
        if own:
            return envelope([a.to_dict() for a in catalog.avatars(preview_urls(base), include_user=False)] + own)
        return cached(
            state,
            f"avatars {base}",
            lambda: [a.to_dict() for a in catalog.avatars(preview_urls(base), include_user=False)],
        )

    @r.get(
        f"{API}/avatar-pose.list", response_model=models.PoseListResponse, responses={**ERRORS, **NOT_FOUND},
        tags=["A2V"],
    )
    def avatar_pose_list(
        request: Request, avatar_id: str = Query(max_length=200), who: str = Depends(owner),
        state: ServerState = Depends(get_state),
    ) -> Response:
        """The poses of one avatar (Realtime API); 40400 for an unknown avatar_id or another token's."""
        base = state.base_url(request)
        if avatar_id not in catalog.avatar_ids(include_user=False):
            return envelope(user_avatars.own_poses(state, who, avatar_id, base))  # NotFoundError if not the caller's
        return cached(
            state,
            f"poses {avatar_id} {base}",
            lambda: [p.to_dict() for p in catalog.poses(avatar_id, preview_urls(base), include_user=False)],
        )

    return r

"""The HTTP app: `create_app` opens the state, adds error envelopes and the body limit, includes the routers.

The routes live in routers named for what they hold (`routes_catalog`, `routes_videos`, `routes_files`,
`ops`, `manage`, `avatars`) and reach the shared `ServerState` and the caller's token through the
dependencies in `deps`, not through closures. Routes only translate HTTP to the job queue, the catalog
and the history; rendering happens in the workers' child processes (`jobs`, `render_worker`). Database
work, DNS lookups and uploads run in the thread pool (plain `def` routes), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from a2v_cli import __version__
from a2v_cli.errors import A2VError, AuthError, InputError
from a2v_cli.schema import Video
from a2v_cli.server import avatars as user_avatars
from a2v_cli.server import models
from a2v_cli.server.avatar_index import AvatarIndex
from a2v_cli.server.blobs import Blobs
from a2v_cli.server.deployment import Deployment, StateStore, open_deployment
from a2v_cli.server.fetch import FetchPolicy, human_size
from a2v_cli.server.security import Authenticator, UrlSigner
from a2v_cli.server.settings import ServerSettings
from a2v_cli.server.uploads import PayloadTooLargeError, UploadStore, too_large
from a2v_cli.store import VIDEO_ID, iso_before  # noqa: F401  (VIDEO_ID: imported from here by the routes)
from a2v_cli.wire import ascii_int

log = logging.getLogger("a2v.server")

API = "/v1/a2v"
AUDIO_UPLOAD = f"{API}/audio.upload"  # multipart (server/routes_files.py)
AVATAR_CREATE = f"{API}/avatar.create"  # multipart, like audio.upload (server/avatars.py)
JSON_BODY_LIMIT = 64 * 1024  # video.generate's body is two short strings
MULTIPART_SLACK = 1024 * 1024  # multipart headers and boundaries on top of the file itself
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
FILES = {  # file name -> Video field
    "video.mp4": "video_url", "mask.mp4": "mask_video_url", "alpha.webm": "alpha_video_url",
    "alpha.mov": "alpha_video_url",
}


class ForbiddenError(A2VError):
    """A signed download URL with a bad signature or past its expiry."""

    api_code = 40300
    http_status = 403


# --- state -----------------------------------------------------------------------------------------


@dataclass
class ServerState:
    """Everything the routes share, opened once per app: the settings and the `Deployment` behind them."""

    settings: ServerSettings
    deployment: Deployment
    policy: FetchPolicy
    public_base: str  # fixed at startup (see ServerSettings.public_base); run.serve sets the bound port
    cache: dict[str, bytes] = field(default_factory=dict)  # keyed by catalog ids only: bounded

    @classmethod
    def open(cls, settings: ServerSettings) -> ServerState:
        policy = FetchPolicy(max_bytes=settings.max_upload_bytes, allow_private=settings.allow_private_urls,
                             total_timeout=settings.download_timeout_s)
        return cls(settings=settings, deployment=open_deployment(settings), policy=policy,
                   public_base=settings.public_base())

    # the deployment's parts, by the names the routes use
    @property
    def data_dir(self) -> Path:
        """Where files live locally: the data dir, the shared directory, or a bucket's local copies."""
        return self.deployment.root

    @property
    def store(self) -> StateStore:
        return self.deployment.store

    @property
    def uploads(self) -> UploadStore:
        return self.deployment.uploads

    @property
    def blobs(self) -> Blobs:
        return self.deployment.blobs

    @property
    def signer(self) -> UrlSigner:
        signer = self.deployment.blobs.signer
        assert signer is not None, "a front end's storage signs links"
        return signer

    @property
    def tokens(self) -> Authenticator:
        return self.deployment.tokens

    @property
    def avatars(self) -> AvatarIndex:
        return self.deployment.avatars

    def lock(self) -> None:
        """Hold what only one server may use (idempotent; the embedded data dir only)."""
        self.deployment.lock()

    def unlock(self) -> None:
        self.deployment.unlock()

    def base_url(self, request: Request) -> str:
        """The absolute URL prefix for links: fixed at startup, never taken from the request's Host."""
        return self.public_base

    def present(self, video: Video, base: str) -> dict[str, Any]:
        """The API object of ``video``: result URLs are freshly signed links to this server; a job waiting
        longer than --claim-timeout for a worker says so (extension field ``queue_state``)."""
        d = video.to_dict()
        for key in set(FILES.values()):
            stored = d.get(key)
            name = stored.rsplit("/", 1)[-1] if stored else None
            done = name in FILES and video.status == "finished"
            d[key] = self.blobs.url(base, video.video_id, name) if done else None
        if video.status == "pending" and (video.updated_at or "") < iso_before(self.settings.claim_timeout_s):
            d["queue_state"] = "unclaimed"
        return d


# --- envelopes and errors --------------------------------------------------------------------------


def envelope(data: Any, status: int = 200, code: int = 0, message: str = "success", **extra: Any) -> Response:
    body = {"code": code, "data": data, "message": message, **extra}
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status, media_type="application/json")


def error_response(err: A2VError) -> Response:
    # `message` keeps the hint at its end (the spec's clients show only it); `hint` lets a2v show it apart
    extra = {"hint": err.hint} if err.hint else {}
    resp = envelope(None, status=err.http_status, code=err.api_code, message=str(err), **extra)
    if isinstance(err, AuthError):
        resp.headers["WWW-Authenticate"] = 'Bearer realm="a2v"'
    if getattr(err, "retry_after_s", None):  # e.g. an avatar.create still building for this Idempotency-Key
        resp.headers["Retry-After"] = str(err.retry_after_s)  # type: ignore[attr-defined]
    return resp


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "header"))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(A2VError)
    async def a2v_error(request: Request, exc: A2VError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return envelope(None, status=400, code=InputError.api_code, message=_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: 40400, 405: 40500, 413: 41300}
        code = codes.get(exc.status_code, exc.status_code * 100 if exc.status_code < 500 else 50000)
        message = {404: f"no such endpoint: {request.url.path}", 405: f"method {request.method} not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        resp = envelope(None, status=exc.status_code, code=code, message=message)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return envelope(None, status=500, code=50000, message=f"internal error: {exc.__class__.__name__}")


class BodyTooSlowError(InputError):
    """A request body that stopped arriving (a client dripping it a byte at a time)."""

    api_code = 40800
    http_status = 408


BODY_PROGRESS_BYTES = 1 << 16


class BodyLimit:
    """Refuse request bodies over a per-path cap (``limit_for``: the cap and the error that states it) with
    the 41300 envelope, whether declared or streamed, and bodies that take too long with the 40800 envelope.

    The cap is enforced on the bytes actually received (a client may lie in Content-Length or send
    chunked), before anything is parsed or spooled to disk beyond the cap. The body must keep arriving, 64 KiB
    at least per ``timeout_s`` (a client that drips bytes is cut off), and all of it within ``deadline_s`` (one
    that sends 64 KiB just inside every ``timeout_s`` is cut off too). A request whose cap is over
    ``small`` (an upload) first passes ``gate`` (its token), before a byte of its body is read.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, PayloadTooLargeError]],
                 timeout_s: float = 30.0, deadline_s: float = 600.0,
                 gate: Callable[[list[tuple[bytes, bytes]]], Awaitable[None]] | None = None,
                 small: int = JSON_BODY_LIMIT) -> None:  # fmt: skip
        self.app = app
        self.limit_for = limit_for
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.gate = gate
        self.small = small

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, too_big = self.limit_for(scope["path"])
        declared = ascii_int(dict(scope["headers"]).get(b"content-length"))
        if declared is not None and declared > limit:
            await error_response(too_big)(scope, receive, send)
            return
        if self.gate is not None and limit > self.small:
            try:
                await self.gate(scope["headers"])
            except A2VError as err:
                await error_response(err)(scope, receive, send)
                return
        too_slow = BodyTooSlowError(f"the request body did not arrive within {self.timeout_s:g} s")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        state: dict[str, Any] = {"received": 0, "error": None, "started": False, "done": False,
                                 "until": min(loop.time() + self.timeout_s, deadline), "moved": 0}

        async def limited_receive() -> Message:
            if state["done"]:  # the body is in: later receives wait for a disconnect, as long as they like
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, state["until"] - loop.time()))
            except TimeoutError:
                state["error"] = too_slow if loop.time() < deadline else BodyTooSlowError(
                    f"the request body did not arrive within {self.deadline_s:g} s in all")
                raise state["error"] from None
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                state["received"] += size
                state["moved"] += size
                if state["moved"] >= BODY_PROGRESS_BYTES:
                    state["moved"] = 0
                    state["until"] = min(loop.time() + self.timeout_s, deadline)
                state["done"] = not message.get("more_body", False)
                if state["received"] > limit:
                    state["error"] = too_big
                    raise too_big
            return message

        async def guarded_send(message: Message) -> None:
            if state["error"] is not None:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await error_response(state["error"])(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (PayloadTooLargeError, BodyTooSlowError) as err:
            if not state["started"]:
                state["started"] = True
                await error_response(state["error"] or err)(scope, receive, send)


# --- the app ---------------------------------------------------------------------------------------


ERRORS = {
    400: {"model": models.ErrorResponse, "description": "Bad request (code 40000)."},
    401: {"model": models.ErrorResponse, "description": "Missing or invalid bearer token (code 40100)."},
}
NOT_FOUND = {404: {"model": models.ErrorResponse, "description": "Unknown id (code 40400)."}}


def create_app(settings: ServerSettings) -> FastAPI:
    """A FastAPI app serving the A2V API from ``settings.data_dir``; workers run while the app's lifespan does."""
    state = ServerState.open(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.deployment.start)
        try:
            yield
        finally:
            await run_in_threadpool(state.deployment.stop, settings.shutdown_grace_s)

    app = FastAPI(
        title="A2V API (a2v server)",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.a2v = state
    _install_error_handlers(app)
    from a2v_cli.server import manage, ops, routes_catalog, routes_files, routes_videos
    from a2v_cli.server.deps import owner, upload_gate

    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: (settings.max_upload_bytes + MULTIPART_SLACK, too_large(settings.max_upload_bytes))
        if path in (AUDIO_UPLOAD, AVATAR_CREATE) else (JSON_BODY_LIMIT, PayloadTooLargeError(
            f"the request body is larger than the limit of {human_size(JSON_BODY_LIMIT)}")),
        timeout_s=settings.body_timeout_s,
        deadline_s=settings.body_deadline_s,
        gate=lambda headers: upload_gate(headers, state),
    )

    app.include_router(routes_catalog.router())
    app.include_router(routes_videos.router())
    app.include_router(routes_files.router())
    app.include_router(ops.router(state, owner, ERRORS))
    manage.register(app, state, owner, ERRORS)
    user_avatars.register(app, state, owner, ERRORS)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with its 422 answers replaced: this API answers validation errors with 400."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                op.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = doc
    return doc


DESCRIPTION = """
The A2V API as served by `a2v serve`. Every answer is an envelope `{code, data, message}`;
`code` 0 is success, otherwise one of 40000 (bad request, including invalid parameters),
40100 (missing/invalid token, HTTP 401), 40300 (bad or expired signed link, HTTP 403),
40400 (unknown id, HTTP 404), 40500 (method not allowed), 40900 (conflict, HTTP 409),
41300 (too large, HTTP 413),
41600 (a file's Range past its end, HTTP 416), 40800 (a request body that stopped arriving, HTTP 408),
50000 (internal error).

Every endpoint needs `Authorization: Bearer <token>` except the signed result files and avatar
previews, the built-in pose preview images and this document. Each token sees only its own videos
and its own avatars.

Extensions to the spec: `POST /v1/a2v/audio.upload`, `POST /v1/a2v/video.delete` and
`POST /v1/a2v/video.prune` (the caller's own videos), `limit` / `cursor` on video.list with
`next_cursor` in the envelope, `POST /v1/a2v/avatar.create` and `POST /v1/a2v/avatar.delete` (the
caller's own avatars, listed with the built-ins by avatar.list), the `Idempotency-Key` header on
video.generate and avatar.create, signed result
URLs under `/v1/a2v/files/`, preview images under `/v1/a2v/previews/`, and the extra video fields
(`pose_id`, `created_at`, `updated_at`, `duration`, `frame_count`, `error`, `alpha_video_url`).
""".strip()

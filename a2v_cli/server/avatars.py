"""Extensions for a tenant's own avatars: `avatar.create`, `avatar.delete` and their signed preview images.

Why here: each token (tenant) may add avatars from a photo or a short clip, kept under
``<data-dir>/avatars/<tenant>/avatars/<avatar_id>/`` (the bundle format of `$A2V_HOME/avatars`, 0700/0600,
built by `engine/ingest.py` in a folder of this request's own, then renamed into place). Which avatars a
tenant has is the deployment's `AvatarIndex` (the folder itself, or rows in PostgreSQL): the tenant's
avatars join the built-ins in its own `avatar.list`, `avatar-pose.list` and `video.generate`, never in
another token's; another tenant's avatar or pose answers 40400 exactly like an unknown one. The build runs
in a child process (`avatar_ingest`) under a whole-operation deadline; nothing half-built is left after a
failure. An id made from the file name never fails (one taken meanwhile becomes the next free one), and
an Idempotency-Key is the index's, so any front end answers a retry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from a2v_cli.engine import avatars as registry_mod
from a2v_cli.engine import catalog, ingest
from a2v_cli.errors import A2VError, InputError, NotFoundError, UnavailableError, not_found
from a2v_cli.schema import Avatar
from a2v_cli.server import models
from a2v_cli.server.avatar_index import (
    AvatarExistsError,
    AvatarRecord,
    KeyClaim,
    RetryLaterError,
    exists_error,
    key_busy_error,
    read_record,
)
from a2v_cli.server.tenants import TENANT_KEY, tenant_key
from a2v_cli.wire import ascii_int

log = logging.getLogger("a2v.server")

UPLOAD_NAME = "the uploaded file"  # how the child's messages name it; the client puts the user's file name back
PREVIEW = "preview.png"
KEY_LEASE_MARGIN_S = 30.0  # a create holds its Idempotency-Key for its deadline and this: past it, its holder died
BUILD_SLOTS = 2  # avatar builds at once, all tenants: each holds a server thread and a child for seconds


class TenantBusyError(RetryLaterError):
    """Another create or delete of this tenant runs on this front end: its staging and ids are one at a time."""

    retry_after_s = 3


class BusyError(UnavailableError):
    """Every build slot is taken: try again shortly (the client retries 503 by itself)."""

    retry_after_s = 3


class _Tenants:
    """One lock per tenant on this front end: its creates and deletes run one at a time (staging, ids); the
    `AvatarIndex` decides between front ends, and holds the idempotency keys.

    Nothing waits for a lock or a build slot: a waiting request would hold one of the server's threads,
    and a tenant sending many could starve everyone else's requests."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.slots = threading.BoundedSemaphore(BUILD_SLOTS)

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(owner, threading.Lock())
        if not lock.acquire(blocking=False):
            raise TenantBusyError("another avatar.create or avatar.delete of this token is still running",
                                  f"try again in {TenantBusyError.retry_after_s} s")
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def build_slot(self) -> Iterator[None]:
        if not self.slots.acquire(blocking=False):
            raise BusyError("the server is building other avatars", f"try again in {BusyError.retry_after_s} s")
        try:
            yield
        finally:
            self.slots.release()


def bundles_home(state: Any, owner: str) -> Path:
    """The tenant's folder on this host (``tenant_home``), current with the storage: where its bundles are read,
    built and removed (a bucket's bundles are copied here first)."""
    return Path(state.blobs.avatars_home(tenant_key(owner)))


def own_avatars(state: Any, owner: str, base: str) -> list[dict[str, Any]]:
    """The tenant's own avatars (its `AvatarIndex`) as API objects, previews as signed links; [] without any."""
    records = state.avatars.list(owner)
    urls = preview_urls(state, owner, records, base)
    return [Avatar(r.avatar_id, r.name, r.description, urls.get(r.pose_ids[0]), list(r.pose_ids)).to_dict()
            for r in records]


def own_poses(state: Any, owner: str, avatar_id: str, base: str) -> list[dict[str, Any]]:
    """The poses of one of the tenant's avatars, read from its bundle (NotFoundError, naming only ids it may
    see, otherwise)."""
    records = state.avatars.list(owner)
    mine = [r for r in records if r.avatar_id == avatar_id]
    if not mine:
        raise not_found("avatar", avatar_id, catalog.avatar_ids(include_user=False) + [r.avatar_id for r in records])
    reg = registry_mod.builtin_registry()
    folder = bundles_home(state, owner) / "avatars" / avatar_id
    try:
        entry, poses = registry_mod.read_bundle(folder, set(reg.avatars) | set(reg.poses))
    except (registry_mod.BundleError, OSError) as err:
        log.error("avatar %s of %s is recorded but its bundle cannot be read: %s", avatar_id, owner, err)
        raise A2VError(f"avatar {avatar_id!r} cannot be read") from None
    reg.avatars[entry.avatar_id] = entry
    reg.poses.update({p.pose_id: p for p in poses})
    return [p.to_dict() for p in catalog.poses(avatar_id, preview_urls(state, owner, mine, base), reg=reg)]


def check_pose(state: Any, owner: str, pose_id: str) -> None:
    """A built-in pose or one of the tenant's; another tenant's is 40400, exactly as an unknown id."""
    builtin = catalog.pose_ids(include_user=False)
    if pose_id in builtin:
        return
    own = [p for r in state.avatars.list(owner) for p in r.pose_ids]
    if pose_id not in own:
        raise not_found("pose", pose_id, builtin + own)


def preview_urls(state: Any, owner: str, records: list[AvatarRecord], base: str) -> dict[str, str]:
    """Pose id -> preview link: the public built-in PNGs, and signed, expiring links for the tenant's own."""
    from a2v_cli.server.app import API

    urls = {pid: f"{base}{API}/previews/{pid}.png" for pid in catalog.packaged_previews()}
    key = tenant_key(owner)
    for r in records:
        expires, sig = state.signer.sign(f"{key}/{r.avatar_id}", PREVIEW)
        url = f"{base}{API}/avatar-previews/{key}/{r.avatar_id}.png?expires={expires}&signature={sig}"
        urls.update({pid: url for pid in r.pose_ids})
    return urls


def _avatar_object(state: Any, owner: str, avatar_id: str, base: str) -> dict[str, Any] | None:
    """The API object of the tenant's avatar, None when it has none of that id."""
    return next((a for a in own_avatars(state, owner, base) if a["avatar_id"] == avatar_id), None)


def _copy_upload(upload: UploadFile, dest: Path, max_bytes: int) -> None:
    """The upload into ``dest`` (0600), at most ``max_bytes`` (the body limit already held it to about that)."""
    from a2v_cli.server.uploads import too_large

    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := upload.file.read(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
    if size == 0:
        raise InputError(f"{UPLOAD_NAME} is empty", "send a JPEG, PNG or WebP photo, or a short clip")


async def one_file(request: Request) -> None:
    """One file part in `image` and `video` together: with two, the handler saw only the last one of a field and
    built from it without a word; a part without a file name (a text field to the parser) was a validation error
    naming Python classes. The form is parsed once (cached on the request)."""
    form = await request.form()
    parts = form.getlist("image") + form.getlist("video")
    if len(parts) > 1:
        raise InputError("send one file: the request has more than one `image` or `video` part",
                         "multipart field `image` or `video`, once")
    if parts and isinstance(parts[0], str):
        raise InputError("the `image` or `video` part is not a file", "send it as a file part, with a file name")


def check_text(fields: dict[str, str | None]) -> None:
    """No NUL in what is stored (a PostgreSQL text column refuses it: a 500 in a distributed deployment). The id is
    `ingest.check_request`'s, in both modes."""
    for field, value in fields.items():
        if value and "\0" in value:
            raise InputError(f"the {field} contains a NUL character", f"send a {field} without control characters")


def deadline_s(settings: Any, kind: str) -> float:
    """How long one avatar.create may take, all of it."""
    return float(settings.avatar_timeout_s or ingest.BUILD_DEADLINE_S["video" if kind == "video" else "image"])


def _run_child(spec: dict[str, Any], started: float, limit: float) -> dict[str, Any]:
    """Build the bundle in `avatar_ingest` (scrubbed environment), killed ``limit`` s after ``started``."""
    from a2v_cli.server.render_worker import child_env

    left = started + limit - time.monotonic()
    timeout = InputError(f"building the avatar took longer than the server's limit of {limit:g} s",
                         "use a shorter clip or a smaller photo")
    if left <= 0:
        raise timeout
    # its own process group: on the deadline the ffmpeg processes it started go with it
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli.server.avatar_ingest"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, errors="replace", env=child_env(), start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(json.dumps(spec), timeout=left)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise timeout from None
    except BaseException:
        _kill_group(proc)
        raise
    try:
        answer = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        log.error("avatar build child exited %s without an answer: %s", proc.returncode, stderr[-2000:])
        raise A2VError("internal error: the avatar build stopped unexpectedly") from None
    if "error" in answer:
        e = answer["error"]
        if e.get("api_code") == InputError.api_code:
            raise InputError(str(e["message"]), e.get("hint"))
        log.error("avatar build failed: %s\n%s", e.get("message"), stderr[-4000:])
        raise A2VError(str(e["message"]))
    return answer


def _kill_group(proc: subprocess.Popen[str]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, AttributeError):  # gone already, or no process groups (Windows)
        proc.kill()
    proc.communicate()


def _build_and_add(state: Any, tenants: _Tenants, who: str, req: ingest.PhotoRequest, upload: UploadFile,
                   client_name: str, claim: KeyClaim | None, started: float) -> tuple[str, dict[str, Any]]:
    """Build the avatar in a folder of this request's own (front ends on other hosts may build for this tenant
    too), then record it and rename it into place through the deployment's `AvatarIndex`. A generated id
    that another create took meanwhile moves on to the next free one: only an id the caller gave can be
    "already exists"."""
    builtin = set(catalog.avatar_ids(include_user=False))
    home = bundles_home(state, who)
    avatars = ingest.avatars_dir(home)
    taken = {r.avatar_id for r in state.avatars.list(who)}
    if req.avatar_id is not None and req.avatar_id in taken:
        raise exists_error(req.avatar_id)
    stem = Path(client_name or "avatar").stem
    new_id = req.avatar_id or ingest.free_id(stem, avatars, builtin, taken)
    incoming = Path(tempfile.mkdtemp(prefix=".incoming.", dir=home))
    try:
        path = incoming / UPLOAD_NAME
        _copy_upload(upload, path, state.settings.max_upload_bytes)
        with tenants.build_slot():
            spec = {"path": str(path), "kind": req.kind, "avatar_id": new_id, "name": req.name,
                    "description": req.description, "size": req.size, "face": req.face, "device": req.device,
                    "home": str(incoming), "builtin": sorted(builtin)}
            answer = _run_child(spec, started, deadline_s(state.settings, req.kind))
        built = incoming / "avatars" / new_id
        while True:
            try:
                state.avatars.add(who, read_record(built),
                                  lambda src=built, dest=avatars / new_id: ingest.rename_new(src, dest), claim)
                return new_id, answer
            except AvatarExistsError:
                if req.avatar_id is not None:
                    raise
            taken = {r.avatar_id for r in state.avatars.list(who)}
            new_id = ingest.free_id(stem, avatars, builtin, taken)
            ingest.rename_bundle(built, new_id)
            built = built.rename(built.with_name(new_id))
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def register(app: FastAPI, state: Any, owner: Callable[..., Awaitable[str]], errors: dict[int, Any]) -> None:
    """Add the routes to ``app``; ``owner`` is the app's bearer-token dependency."""
    from a2v_cli.server.app import API, IDEMPOTENCY_KEY, ForbiddenError, envelope

    tenants = _Tenants()
    settings = state.settings
    unknown_avatar = {404: {"model": models.ErrorResponse, "description": "Unknown avatar (40400)."}}

    @app.post(
        f"{API}/avatar.create",
        response_model=models.AvatarResponse,
        responses={
            **errors,
            409: {"model": models.ErrorResponse, "description": "The caller already has this avatar id (40900), or "
                  "the first request with this Idempotency-Key or another create of the caller's is still "
                  "building (40900 with Retry-After: retry)."},
            413: {"model": models.ErrorResponse, "description": "Over --max-upload-bytes (41300)."},
            503: {"model": models.ErrorResponse, "description": "Every build slot is busy (50300, Retry-After)."},
        },
        tags=["Extensions"],
    )
    def avatar_create(
        image: UploadFile | None = File(None, description="A photo of one person facing the camera: JPEG, PNG "
                                        "(its alpha is the matte), WebP, AVIF or HEIC; at most 100 megapixels, one "
                                        "side at most 8 times the other."),
        video: UploadFile | None = File(None, description="Or a clip of them, 1-10 s, any format ffmpeg reads."),
        avatar_id: str | None = Form(None, max_length=32, description="The new id (default: from the file name)."),
        name: str | None = Form(None, max_length=200, description="Display name."),
        description: str | None = Form(None, max_length=1000, description="One line about the avatar."),
        size: str | None = Form(None, max_length=8, description="Pose width and height in px (even, 256-1024; "
                                "default 512)."),
        face: str | None = Form(None, max_length=8, description="Which face of several (1 = the largest)."),
        who: str = Depends(owner),
        _one: None = Depends(one_file),
        idempotency_key: str | None = Header(
            None, alias="Idempotency-Key", max_length=255,
            description="The same key from the same token, on any front end, returns the avatar the first "
            "request made (40900 with Retry-After while that one still builds; a new one once it was deleted).",
        ),
    ) -> Response:
        """Extension: make an avatar of the caller's from a photo or a short clip (as `a2v avatars add`).

        Only the caller sees it (avatar.list, avatar-pose.list) and can render it (video.generate).
        Limits: the body is at most --max-upload-bytes (41300); one file part; a photo at most 100 megapixels and
        one side at most 8 times the other; a clip 1-10 s; the whole build at most 60 s (photo) or 300 s (clip). A
        built-in id or bad input answers 40000; an id the caller already has, 40900 (never overwritten); another
        create or delete of the caller's still running, 40900 with Retry-After; two builds already running on the
        server, 50300 with Retry-After (the a2v CLI retries both within the build's deadline).
        Without `avatar_id` the id comes from the file name and is never "already exists": one taken
        meanwhile becomes the next free one (`me`, `me-2`...). A retry with the same Idempotency-Key
        answers the first request's avatar; while that request still builds it is 40900 with a
        `Retry-After` header (retry with the same key), and after the avatar was deleted it makes a new one.
        """
        started = time.monotonic()
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InputError("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        if (image is None) == (video is None):
            raise InputError("send either an image or a video file", "multipart field `image` or `video`")
        upload = image or video
        assert upload is not None
        kind = "image" if image is not None else "video"
        size_px = ingest.DEFAULT_SIZE if size in (None, "") else ascii_int(size)
        face_n = None if face in (None, "") else ascii_int(face)
        if size_px is None:
            raise InputError(f"size {size!r} is not a whole number", f"use an even size from {ingest.MIN_SIZE} "
                             f"to {ingest.MAX_SIZE}")
        if face is not None and face != "" and face_n is None:
            raise InputError(f"face {face!r} is not a whole number", "faces are numbered from 1 (the largest)")
        builtin = set(catalog.avatar_ids(include_user=False))
        client_name = Path((upload.filename or "").replace("\\", "/")).name[:200]
        check_text({"name": name, "description": description, "file name": client_name})
        if description is None and client_name:
            description = f"From {client_name}"  # as local mode says; the server's copy has no name of its own
        req = ingest.PhotoRequest(Path(UPLOAD_NAME), avatar_id or None, name, description, size_px, face_n,
                                  settings.device, kind)
        ingest.check_request(req, builtin)
        base = state.public_base
        claim = KeyClaim(idempotency_key, uuid.uuid4().hex) if idempotency_key else None
        if claim is not None:  # before the tenant's lock: a retry while the first one builds hears just that
            done = state.avatars.claim_key(who, claim, deadline_s(settings, kind) + KEY_LEASE_MARGIN_S)
            if done is not None:
                made = _avatar_object(state, who, done, base)
                if made is None:  # deleted this very moment: the retry will build afresh
                    raise key_busy_error()
                return envelope(made)
        try:
            with tenants.hold(who):
                new_id, answer = _build_and_add(state, tenants, who, req, upload, client_name, claim, started)
        except BaseException:
            if claim is not None:
                try:
                    state.avatars.release_key(who, claim)
                except Exception as err:  # the request's own error is the answer; the claim lapses with its lease
                    log.warning("could not release an idempotency key of %s: %s", who, err)
            raise
        log.info("created avatar %s for %s", new_id, who)
        made = _avatar_object(state, who, new_id, base)
        if made is None:  # recorded, then deleted at once by another request
            raise NotFoundError(f"avatar {new_id!r} was deleted while it was being created")
        return envelope(made, warnings=answer.get("warnings", []))

    @app.post(
        f"{API}/avatar.delete", response_model=models.AvatarResponse, responses={**errors, **unknown_avatar},
        tags=["Extensions"],
    )
    def avatar_delete(body: models.AvatarDeleteRequest, who: str = Depends(owner)) -> Response:
        """Extension: delete one of the caller's avatars (built-ins are refused with 40000; another token's
        avatar is 40400, like an unknown one). Videos already made with it are kept."""
        builtin = catalog.avatar_ids(include_user=False)
        if body.avatar_id in builtin:
            raise InputError(f"{body.avatar_id!r} is a built-in avatar and cannot be removed",
                             "only avatars added with `a2v avatars add` can be removed")

        def discard() -> None:
            try:
                ingest.remove(body.avatar_id, bundles_home(state, who), set(builtin))
            except NotFoundError:
                pass  # no files (a create that died before placing them): the record was all there was

        with tenants.hold(who):
            record = state.avatars.remove(who, body.avatar_id, discard)  # the record, then its files
            if record is None:
                raise not_found("avatar", body.avatar_id, builtin + [r.avatar_id for r in state.avatars.list(who)])
        log.info("deleted avatar %s for %s", body.avatar_id, who)
        return envelope(Avatar(avatar_id=record.avatar_id, name=record.name, description=record.description,
                               pose_ids=list(record.pose_ids)).to_dict())

    @app.get(
        f"{API}/avatar-previews/{{tenant}}/{{avatar_id}}.png",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, 403: {"model": models.ErrorResponse,
                   "description": "Bad or expired signature (40300)."}, **unknown_avatar},
        tags=["Extensions"],
    )
    def avatar_preview(
        tenant: str, avatar_id: str, expires: str = Query("", max_length=20), signature: str = Query("", max_length=128)
    ) -> FileResponse:
        """Extension: the preview of a tenant's own avatar, behind the signed, expiring link avatar.list gives."""
        if not TENANT_KEY.fullmatch(tenant) or not registry_mod.AVATAR_ID.fullmatch(avatar_id):
            raise NotFoundError(f"no preview for avatar {avatar_id!r}")
        why = state.signer.check(f"{tenant}/{avatar_id}", PREVIEW, expires, signature)
        if why:
            raise ForbiddenError(f"preview link {why}", "get a fresh link from avatar.list")
        path = state.blobs.avatars_home(tenant) / "avatars" / avatar_id / PREVIEW
        if not path.is_file():
            raise NotFoundError(f"no preview for avatar {avatar_id!r}")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

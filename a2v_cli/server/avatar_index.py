"""Which avatars a tenant has: the seam between the avatar routes and where that is recorded.

Why a seam: the embedded server's record is its folder of bundles (a scan, as `a2v avatars list` does);
the distributed deployment's is a table in PostgreSQL (`pg_avatars`), so every front end answers the
same at once and two creates of one id on two front ends give one avatar. The routes talk to an
`AvatarIndex` only and never ask which deployment runs. The index also keeps avatar.create's idempotency
keys (a folder of key files and the server's memory embedded, a table distributed), so a retry on any
front end answers the first request's avatar. The bundle files themselves stay in the
storage (`Blobs.avatars_home`: the data dir, the shared directory, or a bucket through a local copy),
for rendering and previews.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from a2v_cli.engine import avatars as registry_mod
from a2v_cli.errors import A2VError, InputError
from a2v_cli.server.tenants import tenant_avatars, tenant_home


class AvatarExistsError(InputError):
    """The tenant already has an avatar with this id (never overwritten)."""

    api_code = 40900
    http_status = 409


class RetryLaterError(AvatarExistsError):
    """A conflict that clears by itself: retry after ``Retry-After`` seconds (a waiting request would hold a
    server thread for as long as a build takes). The CLI retries it, up to the build's own deadline."""

    retry_after_s = 5


class KeyBusyError(RetryLaterError):
    """The first avatar.create with this Idempotency-Key is still building."""


def key_busy_error() -> KeyBusyError:
    return KeyBusyError("the avatar of this Idempotency-Key is still being created by an earlier request",
                        f"retry with the same key in {KeyBusyError.retry_after_s} s to get it")


@dataclass(frozen=True)
class KeyClaim:
    """One avatar.create's hold on its Idempotency-Key: ``claim_id`` is random per request."""

    key: str
    claim_id: str


def exists_error(avatar_id: str) -> AvatarExistsError:
    return AvatarExistsError(f"avatar {avatar_id!r} already exists",
                             f"choose another id, or remove it first: a2v avatars remove {avatar_id}")


@dataclass(frozen=True)
class AvatarRecord:
    """What avatar.list shows of a tenant's avatar, and the pose ids video.generate may render."""

    avatar_id: str
    name: str
    description: str
    kind: str  # photo or video: how it was made
    pose_ids: tuple[str, ...]


def read_record(folder: Path) -> AvatarRecord:
    """The record of the complete bundle in ``folder`` (A2VError when it cannot be read: never record it)."""
    builtin = registry_mod.builtin_registry()
    try:
        entry, poses = registry_mod.read_bundle(folder, set(builtin.avatars) | set(builtin.poses))
    except (registry_mod.BundleError, OSError) as err:
        raise A2VError(f"avatar {folder.name!r} was built but cannot be read back: {err}") from None
    return AvatarRecord(entry.avatar_id, entry.name, entry.description, poses[0].kind, entry.pose_ids)


class AvatarIndex(Protocol):
    def list(self, owner: str) -> list[AvatarRecord]:
        """The tenant's avatars, by id."""
        ...

    def claim_key(self, owner: str, claim: KeyClaim, lease_s: float) -> str | None:
        """The id of the avatar ``claim.key`` made (it still exists: a retry answers it), else None with the key
        held for this request for ``lease_s`` (a holder that died is taken over after it); `KeyBusyError` while
        another request holds it."""
        ...

    def release_key(self, owner: str, claim: KeyClaim) -> None:
        """A create that failed lets its key go, so that a retry builds afresh."""
        ...

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], bool], claim: KeyClaim | None = None) -> None:
        """Record the avatar (and ``claim``'s key as having made it), ``place()`` moving its complete bundle into
        the tenant's folder; the avatar is visible only once both are done. `AvatarExistsError` (and nothing
        placed) when the id is taken."""
        ...

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        """Forget the avatar (and any key that made it) and ``discard()`` its files while no create of that id
        can slip in between; None (and nothing discarded) when the tenant has no such avatar."""
        ...


def place_or_exists(place: Callable[[], bool], avatar_id: str) -> None:
    """``place()`` (a rename by `ingest.rename_new`: False when a bundle of that id is there already)."""
    if not place():
        raise exists_error(avatar_id)


class FolderAvatars:
    """The embedded `AvatarIndex`: the tenant's folder of bundles is the record (one server per data dir); a
    key that made an avatar is a file ``keys/<sha256 of the key>`` holding its id, a key being built is held
    in this process's memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}  # (owner, key) -> (claim id, until)
        self._guard = threading.Lock()

    def list(self, owner: str) -> list[AvatarRecord]:
        reg = registry_mod.load(tenant_avatars(self.root, owner))  # a damaged bundle is skipped, quietly
        return [AvatarRecord(a.avatar_id, a.name, a.description, reg.poses[a.pose_ids[0]].kind, a.pose_ids)
                for a in reg.avatars.values() if not a.builtin]

    def _key_file(self, owner: str, key: str) -> Path:
        return tenant_home(self.root, owner) / "keys" / hashlib.sha256(key.encode()).hexdigest()

    def claim_key(self, owner: str, claim: KeyClaim, lease_s: float) -> str | None:
        with self._guard:
            try:
                made = self._key_file(owner, claim.key).read_text().strip()
            except OSError:
                made = ""
            if made and (tenant_avatars(self.root, owner) / made / "avatar.json").is_file():
                return made
            held = self._claims.get((owner, claim.key))
            if held is not None and held[0] != claim.claim_id and held[1] > time.monotonic():
                raise key_busy_error()
            self._claims[(owner, claim.key)] = (claim.claim_id, time.monotonic() + lease_s)
            return None

    def release_key(self, owner: str, claim: KeyClaim) -> None:
        with self._guard:
            if self._claims.get((owner, claim.key), ("",))[0] == claim.claim_id:
                del self._claims[(owner, claim.key)]

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], bool], claim: KeyClaim | None = None) -> None:
        if (tenant_avatars(self.root, owner) / record.avatar_id).exists():
            raise exists_error(record.avatar_id)
        place_or_exists(place, record.avatar_id)
        if claim is not None:
            from a2v_cli.server.security import write_private_file

            path = self._key_file(owner, claim.key)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a key whose avatar was removed since
            write_private_file(path, record.avatar_id.encode())
            self.release_key(owner, claim)

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        record = next((r for r in self.list(owner) if r.avatar_id == avatar_id), None)
        if record is not None:
            discard()  # the files are the record
            keys = tenant_home(self.root, owner) / "keys"
            for path in keys.iterdir() if keys.is_dir() else ():  # a retry of the key that made it makes a new one
                try:
                    if path.read_text().strip() == avatar_id:
                        path.unlink()
                except OSError:
                    pass
        return record

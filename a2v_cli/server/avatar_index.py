"""Which avatars a tenant has: the seam between the avatar routes and where that is recorded.

Why a seam: the embedded server's record is its folder of bundles (a scan, as `a2v avatars list` does);
the distributed deployment's is a table in PostgreSQL (`pg_avatars`), so every front end answers the
same at once and two creates of one id on two front ends give one avatar. The routes talk to an
`AvatarIndex` only and never ask which deployment runs. The bundle files themselves stay in the
storage (`Blobs.avatars_home`: the data dir, the shared directory, or a bucket through a local copy),
for rendering and previews.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from a2v_cli.engine import avatars as registry_mod
from a2v_cli.errors import A2VError, InputError
from a2v_cli.server.tenants import tenant_avatars


class AvatarExistsError(InputError):
    """The tenant already has an avatar with this id (never overwritten)."""

    api_code = 40900
    http_status = 409


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

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], None]) -> None:
        """Record the avatar, ``place()`` moving its complete bundle into the tenant's folder; the avatar
        is visible only once both are done. `AvatarExistsError` (and nothing placed) when the id is taken."""
        ...

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        """Forget the avatar and ``discard()`` its files while no create of that id can slip in between;
        None (and nothing discarded) when the tenant has no such avatar."""
        ...


def place_or_exists(place: Callable[[], None], avatar_id: str) -> None:
    """``place()``; a rename onto a folder that is there already is the id being taken."""
    try:
        place()
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise exists_error(avatar_id) from None
        raise


class FolderAvatars:
    """The embedded `AvatarIndex`: the tenant's folder of bundles is the record (one server per data dir)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, owner: str) -> list[AvatarRecord]:
        reg = registry_mod.load(tenant_avatars(self.root, owner))  # a damaged bundle is skipped, quietly
        return [AvatarRecord(a.avatar_id, a.name, a.description, reg.poses[a.pose_ids[0]].kind, a.pose_ids)
                for a in reg.avatars.values() if not a.builtin]

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], None]) -> None:
        if (tenant_avatars(self.root, owner) / record.avatar_id).exists():
            raise exists_error(record.avatar_id)
        place_or_exists(place, record.avatar_id)

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        record = next((r for r in self.list(owner) if r.avatar_id == avatar_id), None)
        if record is not None:
            discard()  # the files are the record
        return record

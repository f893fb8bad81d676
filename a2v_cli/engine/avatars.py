"""The avatar registry: built-in (drawn) avatars and user bundles under `$A2V_HOME/avatars/`, by id.

A user bundle is a folder ``<avatar_id>/`` holding ``avatar.json`` and one folder per pose (see
docs/avatars.md for the format). Listing reads only the manifests and checks that the files they
name exist, so `avatars list` stays fast; a bundle that fails a check is skipped with a one-line
warning on stderr (once per process), never an error, so one broken folder cannot hide the rest.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2v_cli.config import DEFAULT_FPS

BUNDLE_FORMAT = 1
AVATAR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
POSE_KINDS = ("photo", "video")
MAX_SIDE = 4096
MAX_MANIFEST_BYTES = 1 << 20
_FILES = {"photo": ("image", "matte", "landmarks"), "video": ("frames", "matte", "landmarks")}


@dataclass(frozen=True)
class PoseEntry:
    """One pose, whatever made it: ``kind`` is "drawn" (built-in), "photo" or "video"."""

    pose_id: str
    avatar_id: str
    name: str
    description: str
    kind: str
    width: int
    height: int
    fps: int = DEFAULT_FPS
    folder: Path | None = None  # the avatar's bundle folder (user poses)
    manifest: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def file(self, key: str) -> Path:
        """A file of this pose named in the manifest (a path relative to the bundle folder)."""
        assert self.folder is not None
        return self.folder / str(self.manifest[key])


@dataclass(frozen=True)
class AvatarEntry:
    avatar_id: str
    name: str
    description: str
    pose_ids: tuple[str, ...]
    builtin: bool
    folder: Path | None = None

    @property
    def preview(self) -> Path | None:
        p = self.folder / "preview.png" if self.folder else None
        return p if p is not None and p.is_file() else None


@dataclass
class Registry:
    avatars: dict[str, AvatarEntry] = field(default_factory=dict)
    poses: dict[str, PoseEntry] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one line per bundle that was not loaded


_USER_DIR: dict[str, Path | None] = {}  # set by `use_user_dir` in a server's render child


def use_user_dir(folder: Path | None) -> None:
    """Read user bundles from ``folder`` (None: none at all) instead of `$A2V_HOME/avatars` in this process.

    Why: a server's render child renders for one tenant at a time, and must see that tenant's bundles
    only, never the host user's."""
    _USER_DIR["dir"] = folder


def home_avatars_dir() -> Path | None:
    """`$A2V_HOME/avatars` (or the platform default), without creating anything: listing needs no writable home."""
    if "dir" in _USER_DIR:
        return _USER_DIR["dir"]
    env = os.environ.get("A2V_HOME")
    if env:
        return Path(env).expanduser() / "avatars"
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return Path(platformdirs.user_data_dir("a2v", appauthor=False)) / "avatars"


def builtin_registry() -> Registry:
    from a2v_cli.engine import art

    reg = Registry()
    for a in art.AVATARS.values():
        reg.avatars[a.avatar_id] = AvatarEntry(a.avatar_id, a.name, a.description, tuple(a.pose_ids), True)
    for p in art.POSES.values():
        reg.poses[p.pose_id] = PoseEntry(p.pose_id, p.avatar_id, p.name, p.description, "drawn", p.width, p.height)
    return reg


class BundleError(ValueError):
    """A user bundle that cannot be used; the message says what is wrong with it."""


def _int(pose: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = pose.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BundleError(f"pose {pose.get('pose_id')!r}: {key} must be an integer in {lo}..{hi}")
    return v


def read_bundle(folder: Path, taken: set[str]) -> tuple[AvatarEntry, list[PoseEntry]]:
    """Check one bundle's manifest and that its files exist; BundleError says what is wrong."""
    try:
        path = folder / "avatar.json"
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"avatar.json is over {MAX_MANIFEST_BYTES // 1024} KiB")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError("no avatar.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"avatar.json is unreadable ({err.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"avatar.json is not bundle format {BUNDLE_FORMAT}")
    avatar_id = manifest.get("avatar_id")
    if avatar_id != folder.name or not isinstance(avatar_id, str) or not AVATAR_ID.fullmatch(avatar_id):
        raise BundleError(f"avatar_id {avatar_id!r} must match the folder name and [a-z0-9][a-z0-9_-]{{0,31}}")
    if avatar_id in taken:
        raise BundleError(f"avatar id {avatar_id!r} is already taken (built-in)")
    raw_poses = manifest.get("poses")
    if not isinstance(raw_poses, list) or not raw_poses:
        raise BundleError("no poses")
    poses: list[PoseEntry] = []
    for p in raw_poses:
        if not isinstance(p, dict):
            raise BundleError("a pose is not an object")
        pose_id, kind = p.get("pose_id"), p.get("kind")
        if not isinstance(pose_id, str) or not pose_id.startswith(f"{avatar_id}-") or pose_id in taken:
            raise BundleError(f"pose id {pose_id!r} must start with '{avatar_id}-' and be new")
        if kind not in POSE_KINDS:
            raise BundleError(f"pose {pose_id!r}: unknown kind {kind!r}")
        width, height = _int(p, "width", 16, MAX_SIDE), _int(p, "height", 16, MAX_SIDE)
        fps = _int(p, "fps", 1, 120)
        for key in _FILES[kind]:
            rel = p.get(key)
            if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise BundleError(f"pose {pose_id!r}: {key} must be a path inside the bundle")
            if not (folder / rel).is_file():
                raise BundleError(f"pose {pose_id!r}: missing {rel}")
        poses.append(
            PoseEntry(pose_id, avatar_id, str(p.get("name") or pose_id), str(p.get("description") or ""), kind,
                      width, height, fps, folder, p)
        )
    entry = AvatarEntry(avatar_id, str(manifest.get("name") or avatar_id), str(manifest.get("description") or ""),
                        tuple(p.pose_id for p in poses), False, folder)
    return entry, poses


def load(user_dir: Path | None) -> Registry:
    """Built-ins, then every valid bundle in ``user_dir`` (sorted by id); invalid ones are listed in ``skipped``."""
    reg = builtin_registry()
    if user_dir is None:
        return reg
    try:
        folders = sorted(p for p in user_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return reg  # no avatars folder (or unreadable): just the built-ins
    for folder in folders:
        try:
            entry, poses = read_bundle(folder, set(reg.avatars) | set(reg.poses))
        except (BundleError, OSError) as err:
            reg.skipped.append(f"skipping avatar bundle {folder}: {err}")
            continue
        reg.avatars[entry.avatar_id] = entry
        for p in poses:
            reg.poses[p.pose_id] = p
    return reg


_warned: set[str] = set()


def registry(include_user: bool = True, quiet: bool = False) -> Registry:
    """The registry as this process sees it now (user bundles are re-read: `avatars add` may have run).

    Skipped bundles are reported once per process on stderr, unless ``quiet`` (shell completion).
    """
    reg = load(home_avatars_dir() if include_user else None)
    for line in [] if quiet else reg.skipped:
        if line not in _warned:
            _warned.add(line)
            print(f"warning: {line}", file=sys.stderr)
    return reg

"""Avatars and poses as API objects (read from the registry), the drawn layers of built-ins, and previews."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from a2v_cli.config import DEFAULT_FPS
from a2v_cli.engine import avatars as avatars_mod
from a2v_cli.errors import A2VError, not_found
from a2v_cli.schema import Avatar, Pose

if TYPE_CHECKING:  # numpy and the layers only where a pose is rendered: `avatars list` stays light
    import numpy as np

    from a2v_cli.engine.drawn import PoseArt


def _registry(include_user: bool = True, quiet: bool = False) -> avatars_mod.Registry:
    return avatars_mod.registry(include_user, quiet)


def avatar_ids(include_user: bool = True, quiet: bool = False) -> list[str]:
    return list(_registry(include_user, quiet).avatars)


def pose_ids(include_user: bool = True, quiet: bool = False) -> list[str]:
    return list(_registry(include_user, quiet).poses)


def avatars(
    preview_url: dict[str, str] | None = None, include_user: bool = True, reg: avatars_mod.Registry | None = None
) -> list[Avatar]:
    """Every avatar (built-ins, then the user's bundles, or those of ``reg``: a server tenant's);
    ``preview_url`` maps pose ids to preview image URLs."""
    urls = preview_url or {}
    return [
        Avatar(
            avatar_id=a.avatar_id,
            name=a.name,
            description=a.description,
            preview_image_url=urls.get(a.pose_ids[0]),
            pose_ids=list(a.pose_ids),
        )
        for a in (reg or _registry(include_user)).avatars.values()
    ]


def poses(
    avatar_id: str, preview_url: dict[str, str] | None = None, include_user: bool = True,
    reg: avatars_mod.Registry | None = None,
) -> list[Pose]:
    """The poses of one avatar (of ``reg`` when given); NotFoundError (with suggestions) for an unknown avatar."""
    reg = reg or _registry(include_user)
    info = reg.avatars.get(avatar_id)
    if info is None:
        raise not_found("avatar", avatar_id, list(reg.avatars))
    return [_pose(reg.poses[pid], preview_url) for pid in info.pose_ids]


def pose_entry(
    pose_id: str, include_user: bool = True, reg: avatars_mod.Registry | None = None
) -> avatars_mod.PoseEntry:
    """The registry's entry for a pose; NotFoundError (with suggestions) for an unknown id."""
    reg = reg or _registry(include_user)
    p = reg.poses.get(pose_id)
    if p is None:
        raise not_found("pose", pose_id, list(reg.poses))
    return p


def pose(pose_id: str, preview_url: dict[str, str] | None = None, include_user: bool = True) -> Pose:
    return _pose(pose_entry(pose_id, include_user), preview_url)


def _pose(p: avatars_mod.PoseEntry, preview_url: dict[str, str] | None) -> Pose:
    return Pose(
        pose_id=p.pose_id,
        avatar_id=p.avatar_id,
        name=p.name,
        width=p.width,
        height=p.height,
        fps=DEFAULT_FPS,
        description=p.description,
        preview_image_url=(preview_url or {}).get(p.pose_id),
    )


@lru_cache(maxsize=4)
def pose_art(pose_id: str) -> PoseArt:
    """A built-in (drawn) pose's layers, read from its package bundle once per process."""
    from a2v_cli.engine.drawn import load_pose_art

    builtins = avatars_mod.builtin_registry().poses
    drawn = [pid for pid, p in builtins.items() if p.kind == "drawn"]
    if pose_id not in drawn:
        raise not_found("pose", pose_id, drawn)
    return load_pose_art(builtins[pose_id])


def preview_frame(pose: str | PoseArt) -> np.ndarray:
    """(H,W,4) uint8 RGBA still of a drawn pose (an id, or its layers) at rest, mouth closed, transparent background."""
    import numpy as np

    from a2v_cli.engine.compose import Compositor
    from a2v_cli.engine.features import MAX_ABS_VALUE
    from a2v_cli.engine.lipsync import BuiltinModel

    layers = pose_art(pose) if isinstance(pose, str) else pose
    comp = Compositor(layers, DEFAULT_FPS, straight_alpha=True)
    _, mask, straight, mouths = comp.compose(range(1))
    assert straight is not None
    silence = np.full((1, 1, 80, 16), -MAX_ABS_VALUE, dtype=np.float32)
    BuiltinModel(layers, "cpu").paint(silence, mouths, [straight])
    return np.concatenate([straight[0], mask[0][..., None]], axis=2)


def write_png(rgba: np.ndarray, dest: Path) -> Path:
    """Encode an RGBA image as PNG with the bundled ffmpeg (temp file, then rename)."""
    from a2v_cli.engine.audio import ffmpeg_exe

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h, w = rgba.shape[:2]
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{w}x{h}",
         "-i", "pipe:0", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(tmp)],
        input=rgba.tobytes(), capture_output=True, check=False,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise A2VError(f"could not write preview {dest.name}: {proc.stderr.decode(errors='replace').strip()}")
    tmp.replace(dest)
    return dest


def _previews(reg: avatars_mod.Registry) -> dict[str, Path]:
    """Each pose's preview PNG: its own (``preview`` in the manifest: built-ins), else its avatar's preview.png."""
    found: dict[str, Path] = {}
    for p in reg.poses.values():
        own = p.file("preview") if "preview" in p.manifest else None
        shared = reg.avatars[p.avatar_id].preview
        if own is not None or shared is not None:
            found[p.pose_id] = own or shared
    return found


def packaged_previews() -> dict[str, Path]:
    """Preview PNGs of the built-in poses, in their package bundles (built by `python scripts/build_assets.py`)."""
    return _previews(avatars_mod.builtin_registry())


def preview_files(include_user: bool = True) -> dict[str, Path]:
    """Preview PNG of every pose: the packaged ones, and each user avatar's preview.png for its poses."""
    return _previews(_registry(include_user))

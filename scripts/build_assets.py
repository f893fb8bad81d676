"""Build the built-in avatars' bundles (a2v_cli/assets/avatars/<id>/) from the drawing code in engine/art.py.

Run after changing a pose's art: `python scripts/build_assets.py`. tests/test_builtin_bundles.py fails
when a shipped bundle no longer matches what the code draws. The output is deterministic: an unchanged
avatar rebuilds to the same bytes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from a2v_cli.config import DEFAULT_FPS
from a2v_cli.engine import art, catalog, drawn
from a2v_cli.engine.avatars import BUILTIN_DIR, BUNDLE_FORMAT, AvatarEntry


def _write_avatar(avatar: AvatarEntry, stage: Path) -> None:
    """Draw every pose of ``avatar``; write its layers, preview and the manifest into ``stage``."""
    poses: list[dict[str, Any]] = []
    for pose_id in avatar.pose_ids:
        layers = art.draw_pose(pose_id)
        fields, arrays = drawn.pack(layers)
        (stage / pose_id).mkdir()
        drawn.write_layers(arrays, stage / fields["layers"])
        catalog.write_png(catalog.preview_frame(layers), stage / pose_id / "preview.png")
        info = layers.info
        poses.append({"pose_id": pose_id, "name": info.name, "description": info.description, "kind": "drawn",
                      "width": info.width, "height": info.height, "fps": DEFAULT_FPS, **fields,
                      "preview": f"{pose_id}/preview.png"})
    manifest = {"format": BUNDLE_FORMAT, "avatar_id": avatar.avatar_id, "name": avatar.name,
                "description": avatar.description,
                "source": {"kind": "drawn", "script": "scripts/build_assets.py"}, "poses": poses}
    text = json.dumps(manifest, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: f"[{' '.join(m.group(1).split())}]", text)  # [x, y] on one line
    (stage / "avatar.json").write_text(text + "\n", encoding="utf-8")


def build(root: Path) -> list[Path]:
    """Write every built-in avatar's bundle to ``root/<avatar_id>/`` (staged, then renamed into place);
    folders of avatars the code no longer draws are removed."""
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for avatar in art.AVATARS.values():
        dest = root / avatar.avatar_id
        stage, old = root / f".{avatar.avatar_id}.staging", root / f".{avatar.avatar_id}.old"
        for leftover in (stage, old):
            shutil.rmtree(leftover, ignore_errors=True)
        stage.mkdir()
        _write_avatar(avatar, stage)
        if dest.exists():
            dest.rename(old)
        stage.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        written.append(dest)
    for stale in root.iterdir():
        if stale.is_dir() and stale.name not in art.AVATARS:
            shutil.rmtree(stale)
    return written


def main() -> None:
    for folder in build(BUILTIN_DIR):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}  {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

"""A photo avatar bundle of the shipped astronaut portrait, written per the bundle contract from the bundled face
models: for the photo benchmarks and the tests (no dependency on `a2v avatars add`)."""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.png"


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def read_rgb(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def write_png(arr: np.ndarray, dest: Path) -> None:
    pix = {1: "gray", 3: "rgb24", 4: "rgba"}[1 if arr.ndim == 2 else arr.shape[2]]
    h, w = arr.shape[:2]
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix, "-s", f"{w}x{h}", "-i", "pipe:0",
                    "-frames:v", "1", str(dest)], input=np.ascontiguousarray(arr).tobytes(), check=True)


@lru_cache(maxsize=1)
def astronaut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The astronaut photo, its person matte and its 468 landmarks, from the bundled face models."""
    from a2v_cli.engine import face

    rgb = read_rgb(ASTRONAUT, 512, 512)
    found = face.detect_faces(rgb, "cpu")
    marks = face.face_landmarks(rgb, found[0], "cpu")
    matte = np.clip(face.segment_person(rgb, "cpu") * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, matte, marks.astype(np.float32)


def write_photo_bundle(home: Path, avatar_id: str = "astro") -> Path:
    """$A2V_HOME/avatars/<avatar_id>/ with one photo pose ``<avatar_id>-photo`` of the astronaut."""
    rgb, matte, marks = astronaut()
    folder = home / "avatars" / avatar_id
    pose_id = f"{avatar_id}-photo"
    (folder / pose_id).mkdir(parents=True)
    write_png(rgb, folder / pose_id / "image.png")
    write_png(matte, folder / pose_id / "matte.png")
    np.save(folder / pose_id / "landmarks.npy", marks[None])
    write_png(np.concatenate([rgb, matte[..., None]], axis=2), folder / "preview.png")
    manifest = {
        "format": 1, "avatar_id": avatar_id, "name": "Astronaut", "description": "NASA portrait (public domain)",
        "source": {"kind": "image", "file": "astronaut.png", "width": 512, "height": 512},
        "created": "2026-12-02T16:30:00Z",
        "poses": [{"pose_id": pose_id, "name": "Astronaut (photo)", "description": "", "kind": "photo",
                   "width": 512, "height": 512, "fps": 25, "frame_count": 1,
                   "image": f"{pose_id}/image.png", "matte": f"{pose_id}/matte.png",
                   "landmarks": f"{pose_id}/landmarks.npy"}],
    }  # fmt: skip
    (folder / "avatar.json").write_text(json.dumps(manifest))
    return folder

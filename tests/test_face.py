"""The bundled face models through engine/face.py, on a real portrait (the NASA astronaut) and a real cat."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2v_cli.engine import face as F
from tests.conftest import FIXTURES, ROOT

ASTRONAUT = ROOT / "examples" / "astronaut.png"
CAT = FIXTURES / "cat.jpg"


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def inside(point: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def test_models_are_the_committed_onnx_files() -> None:
    for name in (F.DETECTOR_FILE, F.MESH_FILE, F.SEGMENTER_FILE):
        path = F.model_dir() / name
        assert path.is_file() and 100_000 < path.stat().st_size < 5_000_000, path


def test_astronaut_has_one_face_and_the_mesh_lands_on_it() -> None:
    img = rgb(ASTRONAUT)
    faces = F.detect_faces(img, "cpu")
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    x0, y0, x1, y1 = face.box
    assert 60 < x1 - x0 < 160 and 60 < y1 - y0 < 160  # the face is ~95 px in this 512x512 portrait
    assert 150 < (x0 + x1) / 2 < 300 and 80 < (y0 + y1) / 2 < 200
    assert face.keypoints.shape == (6, 2)
    r_eye, l_eye, nose, mouth = face.keypoints[:4]
    assert r_eye[0] < l_eye[0] and max(r_eye[1], l_eye[1]) < nose[1] < mouth[1]

    lm = F.face_landmarks(img, face, "cpu")
    assert lm.shape == (468, 3) and lm.dtype == np.float32
    for i in (33, 263, 61, 291, 1):
        assert inside(lm[i], face.box), i
    # the person's right eye and mouth corner are on the image's left
    assert lm[33, 0] < lm[263, 0] and lm[61, 0] < lm[291, 0]
    assert lm[33, 1] < lm[61, 1] and lm[263, 1] < lm[291, 1]  # eyes above the mouth
    interocular = float(np.linalg.norm(lm[263, :2] - lm[33, :2]))
    assert 0.45 < interocular / (x1 - x0) < 0.85
    mouth_w = float(np.linalg.norm(lm[291, :2] - lm[61, :2]))
    assert 0.5 < mouth_w / interocular < 1.0
    assert lm[1, 2] < lm[234, 2]  # the nose tip is nearer the camera than the cheek


def test_a_cat_has_no_face() -> None:
    assert F.detect_faces(rgb(CAT), "cpu") == []


def test_segmentation_covers_the_person_and_not_the_background() -> None:
    img = rgb(ASTRONAUT)
    mask = F.segment_person(img, "cpu")
    assert mask.shape == img.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    face = F.detect_faces(img, "cpu")[0]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    assert mask[y0:y1, x0:x1].mean() > 0.9  # the face
    assert mask[420:, 120:330].mean() > 0.9  # the suit below it
    assert mask[:60, :100].mean() < 0.05 and mask[:60, 400:].mean() < 0.05  # the wall behind


def test_a_tilted_head_still_gets_its_landmarks() -> None:
    """The mesh crop is turned upright by the eye line, as MediaPipe does."""
    upright = F.face_landmarks(rgb(ASTRONAUT), F.detect_faces(rgb(ASTRONAUT), "cpu")[0], "cpu")
    base = math.degrees(math.atan2(*(upright[263, 1::-1] - upright[33, 1::-1])))
    tilted = np.asarray(Image.open(ASTRONAUT).convert("RGB").rotate(30, resample=Image.BILINEAR, center=(224, 128)))
    faces = F.detect_faces(tilted, "cpu")
    assert len(faces) == 1
    lm = F.face_landmarks(tilted, faces[0], "cpu")
    angle = math.degrees(math.atan2(*(lm[263, 1::-1] - lm[33, 1::-1])))
    assert abs((base - angle) - 30) < 5  # PIL turns counter-clockwise: the eye line rises by 30 degrees
    assert lm[61, 0] < lm[291, 0]


def test_several_faces_largest_first() -> None:
    img = Image.open(ASTRONAUT).convert("RGB")
    canvas = Image.new("RGB", (768 + 512, 768), (200, 200, 200))
    canvas.paste(img.resize((512, 512)), (0, 128))
    canvas.paste(img.resize((768, 768)), (512, 0))
    faces = F.detect_faces(np.asarray(canvas), "cpu")
    assert len(faces) == 2
    assert faces[0].width > faces[1].width * 1.3
    assert faces[0].box[0] > 512 and faces[1].box[2] < 512


def test_track_landmarks_follows_a_moving_face_smoothly() -> None:
    img = rgb(ASTRONAUT)
    shifts = [0, 2, 4, 6, 8, 10, 12, 14]
    frames = [np.ascontiguousarray(np.roll(img, s, axis=1)) for s in shifts]
    track = F.track_landmarks(frames, "cpu")
    assert track.shape == (len(frames), 468, 3) and track.dtype == np.float32
    nose_x = track[:, 1, 0]
    assert np.all(np.diff(nose_x) > 0)  # it moves with the face
    assert abs((nose_x[-1] - nose_x[0]) - 14) < 4
    with pytest.raises(Exception, match="face is lost in frame 3"):
        F.track_landmarks([img, img, rgb(CAT)], "cpu")


def _sample_by_neighbours(rgb: np.ndarray, rect: F._Rect, out: int) -> np.ndarray:
    """The mesh crop as four-neighbour bilinear interpolation in numpy (what face._sample did before it used
    Pillow's affine transform), zero outside the picture; no shrinking (the rects below do not need it)."""
    grid = (np.arange(out, dtype=np.float64) + 0.5) / out
    xs, ys = rect.to_image(*np.meshgrid(grid, grid))
    img = rgb.astype(np.float32)
    h, w = img.shape[:2]
    xs, ys = xs - 0.5, ys - 0.5
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)] * inside

    upper = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    lower = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return upper * (1 - fy) + lower * fy


def test_the_mesh_crop_is_exact_bilinear_sampling() -> None:
    """face._sample (Pillow's affine transform on float planes) gives the same crop as the four-neighbour
    reference, turned, scaled, and where the crop reaches past the picture's edge (which blends towards zero)."""
    img = rgb(ASTRONAUT)
    rects = (F._Rect(230.0, 130.0, 180.0, 0.1), F._Rect(40.5, 30.25, 200.0, -0.5), F._Rect(480.0, 500.0, 150.0, 2.5))
    for rect in rects:
        got = F._sample(img, rect, F.MESH_SIZE)
        assert got.shape == (F.MESH_SIZE, F.MESH_SIZE, 3) and got.dtype == np.float32
        assert np.abs(got - _sample_by_neighbours(img, rect, F.MESH_SIZE)).max() < 1e-3, rect
    assert not F._sample(img, F._Rect(5000.0, 5000.0, 100.0, 0.0), F.MESH_SIZE).any()


def test_the_model_card_names_each_committed_file_by_its_hash() -> None:
    import hashlib
    import re

    card = (ROOT / "models" / "MODEL_CARD.md").read_text()
    for name in (F.DETECTOR_FILE, F.MESH_FILE, F.SEGMENTER_FILE):
        found = re.search(rf"`{re.escape(name)}`: sha256 `([0-9a-f]{{64}})`", card)
        assert found, name
        digest = hashlib.sha256((ROOT / "models" / name).read_bytes()).hexdigest()
        assert found.group(1) == digest, f"{name} changed: rebuild with models/build_face_models.py, update the card"

"""Faces in photos and video frames: detection, the 468-point face mesh and a person matte.

Three of MediaPipe's Apache-2.0 models, converted to ONNX at build time by ``models/build_face_models.py``
(provenance in ``models/MODEL_CARD.md``), run through the project's one session factory so they follow
the same ``--device`` policy as rendering. The pre- and post-processing here follows MediaPipe's graphs
(``face_detection_short_range.pbtxt``, ``face_landmark_front_cpu.pbtxt``, ``selfie_segmentation_cpu.pbtxt``)
so the models see exactly what they were trained on: a letterboxed 128x128 image in [-1,1] with SSD anchors
for the detector, a square crop 1.5x the face box turned upright by the eye line for the mesh, and the whole
frame at 256x256 for the segmenter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from a2v_cli.engine.sessions import LoadedSession, load_session
from a2v_cli.errors import InputError

DETECTOR_FILE = "mediapipe-face-detection-short-range.onnx"
MESH_FILE = "mediapipe-face-landmark.onnx"
SEGMENTER_FILE = "mediapipe-selfie-segmentation.onnx"

DETECT_SIZE = 128
MESH_SIZE = 192
SEGMENT_SIZE = 256
MIN_SCORE = 0.5  # MediaPipe's min_score_thresh for the short-range detector
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold (weighted NMS)
# a box that holds this share of a better-scored box's area is the same face found at another scale: the whole-image
# pass, where a face is too small for the short-range model, can score a loose box around a face and its hair just
# above the threshold; by area it was "the largest face", its mesh misplaced (the mouth on the chin)
SAME_FACE_SHARE = 0.5
MESH_SCALE = 1.5  # face box -> mesh crop (RectTransformationCalculator scale_x/scale_y, square_long)
MIN_PRESENCE = 0.5  # the mesh's face-presence probability below which a tracked face counts as lost
VERIFY_PRESENCE = 0.9  # ... and the one a new detection needs (real faces: > 0.99; a cat's fur: 0.74)

# Landmark indices of the MediaPipe face-mesh topology used here
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # the person's right eye is on the image's left
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
NOSE_TIP = 1


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    keypoints: np.ndarray  # (6, 2) detector keypoints in image px: r-eye, l-eye, nose, mouth, r-ear, l-ear

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def model_dir() -> Path:
    """Where the face models are: inside the installed package, or ``models/`` of a checkout."""
    packaged = Path(str(resources.files("a2v_cli"))) / "_models"
    if (packaged / DETECTOR_FILE).is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


def _session(name: str, device: str) -> LoadedSession:
    return load_session(str(model_dir() / name), device)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an (H,W,3) uint8 RGB image, got {rgb.shape} {rgb.dtype}", "convert it to RGB")
    return rgb


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Antialiased bilinear resize (Pillow) of uint8 RGB or float32 single-channel arrays."""
    from PIL import Image

    if img.dtype == np.float32 and img.ndim == 2:
        return np.asarray(Image.fromarray(img, mode="F").resize((width, height), Image.BILINEAR), dtype=np.float32)
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


# ----------------------------------------------------------------------------------------------------------------------
# Detection: BlazeFace short range
# ----------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _anchors() -> np.ndarray:
    """The 896 SSD anchor centres (x, y in 0..1) of face_detection_short_range.pbtxt.

    num_layers 4, strides [8, 16, 16, 16], one aspect ratio plus the interpolated one (2 anchors per layer
    and cell), fixed anchor size: consecutive layers with the same stride share a grid, so the 16x16 grid
    has 2 anchors per cell and the 8x8 grid 6.
    """
    centres: list[tuple[float, float]] = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = DETECT_SIZE // stride
        for y in range(n):
            for x in range(n):
                centres += [((x + 0.5) / n, (y + 0.5) / n)] * per_cell
    return np.asarray(centres, dtype=np.float32)


def _letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit the image into size x size keeping its aspect (zero border); returns image, scale, pad x, pad y."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = _resize(rgb, nw, nh)
    return out, scale, px, py


def _intersection(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    inter = _intersection(box, boxes)
    return inter / np.maximum(_areas(box) + _areas(boxes) - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping candidates are merged, weighted by score."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    merged = []
    while remaining.size:
        first = remaining[0]
        overlap = _iou(boxes[first], boxes[remaining])
        group = remaining[overlap > NMS_IOU]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (keypoints[group].reshape(len(group), -1) * weights).sum(0) / weights.sum()
        merged.append((box, kps.reshape(-1, 2), float(scores[first])))
        remaining = remaining[overlap <= NMS_IOU]
    return merged


def _distinct(merged: list[tuple]) -> list[tuple]:
    """Drop a detection that mostly covers (or lies within) a better-scored one: one face, two scales."""
    kept: list[tuple] = []
    for cand in sorted(merged, key=lambda m: -m[2]):
        if kept:
            others = np.stack([k[0] for k in kept])
            smaller = np.maximum(np.minimum(_areas(cand[0]), _areas(others)), 1e-9)
            if (_intersection(cand[0], others) / smaller).max() > SAME_FACE_SHARE:
                continue
        kept.append(cand)
    return kept


def _detect_window(rgb: np.ndarray, x0: int, y0: int, side_x: int, side_y: int, device: str) -> list[tuple]:
    """Raw detections (box, keypoints, score) in one window of the image, in image pixels."""
    window = rgb[y0 : y0 + side_y, x0 : x0 + side_x]
    boxed, scale, px, py = _letterbox(window, DETECT_SIZE)
    x = boxed[None].astype(np.float32) / 127.5 - 1.0
    sess = _session(DETECTOR_FILE, device).session
    regressors, logits = sess.run(None, {sess.get_inputs()[0].name: x})
    raw = regressors[0].astype(np.float64)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0].astype(np.float64), -100, 100)))
    keep = scores >= MIN_SCORE
    if not keep.any():
        return []
    raw, scores, anchors = raw[keep], scores[keep], _anchors()[keep].astype(np.float64)
    # decode in letterbox pixels: offsets are in input pixels relative to the anchor centre
    cx = raw[:, 0] + anchors[:, 0] * DETECT_SIZE
    cy = raw[:, 1] + anchors[:, 1] * DETECT_SIZE
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :] * DETECT_SIZE
    boxes = (boxes - np.array([px, py, px, py])) / scale + np.array([x0, y0, x0, y0])  # undo the letterbox
    kps = (kps - np.array([px, py])) / scale + np.array([x0, y0])
    height, width = rgb.shape[:2]
    out = []
    margin = 0.02 * max(side_x, side_y)
    for box, kp, score in zip(boxes, kps, scores):
        # a face cut by a tile's inner edge is found whole in the overlapping tile: drop the partial one
        cut = ((x0 > 0 and box[0] < x0 + margin) or (y0 > 0 and box[1] < y0 + margin)
               or (x0 + side_x < width and box[2] > x0 + side_x - margin)
               or (y0 + side_y < height and box[3] > y0 + side_y - margin))
        if not cut:
            out.append((box, kp, float(score)))
    return out


def _windows(width: int, height: int, fraction: float) -> list[tuple[int, int, int, int]]:
    """Square tiles with side ``fraction`` of the short side, overlapping by half, covering the image."""
    side = max(1, round(min(width, height) * fraction))
    step = max(1, side // 2)
    xs = list(range(0, max(width - side, 0) + 1, step))
    ys = list(range(0, max(height - side, 0) + 1, step))
    if xs[-1] + side < width:
        xs.append(width - side)
    if ys[-1] + side < height:
        ys.append(height - side)
    return [(x, y, side, side) for y in ys for x in xs]


def detect_faces(rgb: np.ndarray, device: str = "auto", verify: bool = True) -> list[Face]:
    """Every face the short-range detector finds, largest first.

    The short-range model finds faces that fill roughly 15-70% of its square input, so it runs on the
    whole image and on overlapping half-size tiles (a head-and-shoulders portrait and a half-body shot),
    then on quarter-size tiles if that found nothing; overlapping finds are merged (weighted NMS).
    With ``verify`` each candidate must also convince the face mesh (its face-presence output): the
    detector alone scores a cat's face around its 0.5 threshold, the mesh gives it ~0.
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    faces: list[Face] = []
    for fractions in ((1.0, 0.5), (0.25,)):
        found: list[tuple] = []
        for fraction in fractions:
            if fraction == 1.0:
                found += _detect_window(rgb, 0, 0, width, height, device)
                continue
            # scale the whole image once so that each tile is the detector's input size: no per-tile resize
            k = min(1.0, DETECT_SIZE / (fraction * min(width, height)))
            small = _resize(rgb, max(1, round(width * k)), max(1, round(height * k))) if k < 1 else rgb
            sh, sw = small.shape[:2]
            for x0, y0, sx, sy in _windows(sw, sh, fraction):
                for box, kp, score in _detect_window(small, x0, y0, sx, sy, device):
                    found.append((box / k, kp / k, score))
        if not found:
            continue
        boxes = np.stack([f[0] for f in found])
        kps = np.stack([f[1] for f in found])
        scores = np.asarray([f[2] for f in found])
        for box, kp, score in _distinct(_weighted_nms(boxes, kps, scores)):
            b = np.clip(box, [0, 0, 0, 0], [width, height, width, height])
            if b[2] - b[0] < 2 or b[3] - b[1] < 2:
                continue
            face = Face(tuple(float(v) for v in b), score, kp.astype(np.float32))  # type: ignore[arg-type]
            if verify and _mesh(rgb, _face_rect(face), device)[1] < VERIFY_PRESENCE:
                continue
            faces.append(face)
        if faces:
            break
    faces.sort(key=lambda f: -(f.width * f.height))
    return faces


# ----------------------------------------------------------------------------------------------------------------------
# Face mesh
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rect:
    """A square crop: centre, side and rotation (radians; the crop's x axis is (cos, sin) in the image)."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_image(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop coordinates in 0..1 -> image pixels."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        du, dv = (u - 0.5) * self.size, (v - 0.5) * self.size
        return self.cx + c * du - s * dv, self.cy + s * du + c * dv


def _rect_from_eyes(cx: float, cy: float, side: float, right_eye: np.ndarray, left_eye: np.ndarray) -> _Rect:
    """MediaPipe's DetectionsToRects (rotation from the eye line, target angle 0) + RectTransformation."""
    angle = -math.atan2(-(float(left_eye[1]) - float(right_eye[1])), float(left_eye[0]) - float(right_eye[0]))
    return _Rect(cx, cy, side * MESH_SCALE, angle)


def _face_rect(face: Face) -> _Rect:
    x0, y0, x1, y1 = face.box
    return _rect_from_eyes((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0), face.keypoints[0], face.keypoints[1])


def _landmark_rect(landmarks: np.ndarray) -> _Rect:
    """The next frame's crop from this frame's mesh (MediaPipe's face_landmark_landmarks_to_roi)."""
    x0, y0 = landmarks[:, :2].min(0)
    x1, y1 = landmarks[:, :2].max(0)
    return _rect_from_eyes(
        (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0), landmarks[RIGHT_EYE_OUTER], landmarks[LEFT_EYE_OUTER]
    )


def _sample(rgb: np.ndarray, rect: _Rect, out: int) -> np.ndarray:
    """Bilinear sample of a rotated square of the image into out x out (zero outside the image).

    Only the part the square covers is converted, and it is first shrunk with a proper filter when the
    square is much larger than ``out`` (a face in a 12-MP photo), so the mesh does not see aliasing.
    The sampling itself is Pillow's affine transform on float planes (pixel centres at +0.5, as here): a
    third of the cost of gathering the four neighbours in numpy, the same values to 1e-5; the region gets a
    one-pixel zero border so that the image's edge blends towards zero as before.
    """
    from PIL import Image

    edge = np.array([0.5 / out, 1.0 - 0.5 / out, 0.5 / out, 1.0 - 0.5 / out])  # the outer pixel centres
    xs, ys = rect.to_image(edge, edge[[0, 0, 1, 1]])
    h, w = rgb.shape[:2]
    left, top = max(int(np.floor(xs.min())) - 1, 0), max(int(np.floor(ys.min())) - 1, 0)
    right, bottom = min(int(np.ceil(xs.max())) + 2, w), min(int(np.ceil(ys.max())) + 2, h)
    if right <= left or bottom <= top:
        return np.zeros((out, out, 3), np.float32)
    region = rgb[top:bottom, left:right]
    fx, fy = 1.0, 1.0
    shrink = out / max(rect.size, 1.0)
    if shrink < 0.66:
        rw, rh = max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))
        fx, fy = rw / region.shape[1], rh / region.shape[0]
        region = _resize(np.ascontiguousarray(region), rw, rh)
    img = np.pad(region, ((1, 1), (1, 1), (0, 0))).astype(np.float32)
    # output pixel centre (X, Y) -> region x = cx + c (X k - S/2) - s (Y k - S/2) - left, and y alike
    c, s, k, half = math.cos(rect.angle), math.sin(rect.angle), rect.size / out, rect.size / 2
    ax = (c * k * fx, -s * k * fx, (rect.cx - left - c * half + s * half) * fx + 1.0)
    ay = (s * k * fy, c * k * fy, (rect.cy - top - s * half - c * half) * fy + 1.0)
    planes = [Image.fromarray(np.ascontiguousarray(img[..., i]), mode="F") for i in range(3)]
    return np.stack([np.asarray(p.transform((out, out), Image.Transform.AFFINE, (*ax, *ay), Image.Resampling.BILINEAR))
                     for p in planes], axis=-1)


def _run_mesh(rgb: np.ndarray, rect: _Rect, device: str) -> tuple[np.ndarray, float]:
    """The mesh's raw landmarks (crop px) and its face-presence logit for one crop."""
    crop = _sample(rgb, rect, MESH_SIZE)[None] / 255.0
    sess = _session(MESH_FILE, device).session
    raw, presence = sess.run(None, {sess.get_inputs()[0].name: crop.astype(np.float32)})
    return raw, float(np.clip(presence.reshape(-1)[0], -100, 100))


def _mesh(rgb: np.ndarray, rect: _Rect, device: str) -> tuple[np.ndarray, float]:
    raw, logit = _run_mesh(rgb, rect, device)
    pts = raw.reshape(468, 3).astype(np.float64) / MESH_SIZE
    xs, ys = rect.to_image(pts[:, 0], pts[:, 1])
    z = pts[:, 2] * rect.size
    prob = 1.0 / (1.0 + math.exp(-logit))
    return np.stack([xs, ys, z], axis=1).astype(np.float32), prob


def upside_down(rgb: np.ndarray, landmarks: np.ndarray, device: str = "auto") -> bool:
    """True when the face is upside down in the picture.

    Why: the detector's eye keypoints assume an upright face, so on an upside-down one the mesh is fitted the
    wrong way round and its landmarks look upright. The mesh's presence logit tells them apart: ~27 for the
    crop turned the right way, ~6 for the same crop turned half a turn (a probability would be ~1 for both).
    """
    rect = _landmark_rect(landmarks)
    turned = _Rect(rect.cx, rect.cy, rect.size, rect.angle + math.pi)
    return _run_mesh(rgb, turned, device)[1] > _run_mesh(rgb, rect, device)[1]


def face_landmarks(rgb: np.ndarray, face: Face, device: str = "auto") -> np.ndarray:
    """The 468 face-mesh landmarks of one detected face: (468, 3) float32, x/y in image px, z in px-like units.

    Two passes, as MediaPipe's tracker does on consecutive frames: the detector's box gives a first crop,
    the first mesh a tighter, better-aligned one.
    """
    rgb = _check_rgb(rgb)
    first, _ = _mesh(rgb, _face_rect(face), device)
    second, _ = _mesh(rgb, _landmark_rect(first), device)
    return second


class _OneEuro:
    """The One Euro filter (Casiez et al. 2012): smooth when still, little lag when moving."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0, fps: float = 25.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff, self.fps = min_cutoff, beta, d_cutoff, fps
        self.prev: np.ndarray | None = None
        self.dprev: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * self.fps)

    def __call__(self, x: np.ndarray, scale: float) -> np.ndarray:
        if self.prev is None or self.dprev is None:
            self.prev, self.dprev = x, np.zeros_like(x)
            return x
        dx = (x - self.prev) * self.fps / scale  # in face widths per second: the same smoothing at any size
        a_d = self._alpha(self.d_cutoff)
        self.dprev = a_d * dx + (1 - a_d) * self.dprev
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dprev))
        self.prev = a * x + (1 - a) * self.prev
        return self.prev


class Tracker:
    """The main face followed from frame to frame, as MediaPipe's tracker does: each frame's mesh crop comes
    from the previous frame's mesh; the detector runs only on the first frame (unless ``start``, landmarks of the
    face to follow near the first frame, is given) and whenever the mesh loses the face."""

    def __init__(self, device: str = "auto", start: np.ndarray | None = None) -> None:
        self.device = device
        self.rect: _Rect | None = None if start is None else _landmark_rect(np.asarray(start, dtype=np.float64))

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """The raw (unsmoothed) landmarks in this frame, or None where no face is found."""
        frame = _check_rgb(frame)
        points = None
        if self.rect is not None:
            points, presence = _mesh(frame, self.rect, self.device)
            if presence < MIN_PRESENCE:
                points = None
        if points is None:
            faces = detect_faces(frame, self.device)
            if not faces:
                return None
            points = face_landmarks(frame, faces[0], self.device)
        self.rect = _landmark_rect(points)
        return points


class Smoother:
    """One Euro smoothing of a landmark track, in face widths per second (the same smoothing at any size)."""

    def __init__(self, fps: float = 25.0) -> None:
        self._filter = _OneEuro(min_cutoff=1.0, beta=4.0, fps=fps)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        scale = max(float(np.ptp(points[:, 0])), 1.0)
        return np.asarray(self._filter(points.astype(np.float64), scale), dtype=np.float32)


def face_lost(index: int) -> InputError:
    return InputError(f"the face is lost in frame {index + 1} of the clip",
                      "use a clip where the face stays in view, facing the camera")


def track_landmarks(
    frames: Iterable[np.ndarray], device: str = "auto", start: np.ndarray | None = None
) -> np.ndarray:
    """Landmarks of the main face in every frame, (F, 468, 3), smoothed over time (see Tracker); a frame with
    no face is an InputError naming the frame."""
    track, smooth = Tracker(device, start), Smoother()
    out: list[np.ndarray] = []
    for index, frame in enumerate(frames):
        points = track(frame)
        if points is None:
            raise face_lost(index)
        out.append(smooth(points))
    if not out:
        raise InputError("the clip has no frames", "use a clip ffmpeg can decode")
    return np.stack(out)


# ----------------------------------------------------------------------------------------------------------------------
# Person segmentation
# ----------------------------------------------------------------------------------------------------------------------


def segment_person(rgb: np.ndarray, device: str = "auto") -> np.ndarray:
    """Person probability per pixel, (H, W) float32 in 0..1 (1 = person), from the whole frame at 256x256."""
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    mask = segment_native(_resize(rgb, SEGMENT_SIZE, SEGMENT_SIZE), device)
    return np.clip(_resize(mask, w, h), 0.0, 1.0)


def segment_native(small: np.ndarray, device: str = "auto") -> np.ndarray:
    """``segment_person`` of a frame already resized to SEGMENT_SIZE square: the model's own output, (256, 256)
    float32, unclipped (for a caller that refines it at this size, as the video ingest does)."""
    x = small[None].astype(np.float32) / 255.0
    sess = _session(SEGMENTER_FILE, device).session
    (mask,) = sess.run(None, {sess.get_inputs()[0].name: x})
    return np.ascontiguousarray(mask.reshape(SEGMENT_SIZE, SEGMENT_SIZE), dtype=np.float32)

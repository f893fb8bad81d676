"""Photo and video poses: a portrait (or a short clip) whose own mouth, jaw and eyelids move, driven by the articulator.

From the pose's 468 face-mesh landmarks (MediaPipe topology) face_fields.py builds, once per pose (per
clip frame for a video pose), a few displacement fields over two small regions of the image: the mouth
and jaw (close the photo's own lips, open, spread, round, press) and the eyes (blink). Per frame, the warp graph
(``models/a2v-warp-v1.onnx``, GridSample, so it runs on the GPU when there is one) mixes the fields
by the articulation, samples the image, draws an inner mouth in the face's own colours where the lips
part, and shifts the result by the idle head offset. Everything else in the frame is the photo,
shifted by the same subpixel offset (cached per offset: the sway visits a few dozen positions), so
the warped regions meet the untouched image without a seam: every field is zero at a region's edge.

Coordinates are pixel-centre indices (pixel ``[y, x]`` is at ``(x, y)``); fields are backward: an
output pixel ``p`` shows the image at ``p + displacement``.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine import yuv
from a2v_cli.engine.avatars import PoseEntry
from a2v_cli.engine.compose import LOOP_SECONDS, IdleState, idle_state
from a2v_cli.engine.face_fields import (
    BLINK_LEVELS,
    MARGIN,
    SHIFT_PAD,
    TEETH_SHOWN,
    LipContour,
    MouthGeometry,
    Region,
    eye_region,
    face_palette,
    lip_edges,
    mouth_region,
    mouth_weights,
)
from a2v_cli.engine.lru import Lru
from a2v_cli.errors import InputError

WARP_FILE = "a2v-warp-v1.onnx"
N_LANDMARKS = 468
SWAY_SCALE = 0.6  # a photo sways less than a cartoon: 0.6 x the compositor's path, still on a 1/4 px grid
CACHE_ENTRIES = 96
# H.264 quality for photo and video poses: at the drawn poses' CRF 20 a photo's own detail loses more than the
# render changes (34 dB RGB PSNR on the astronaut's suit); CRF 16 keeps the untouched photo above 35 dB
PHOTO_CRF = 16
# The mouth warp runs once per distinct articulation at this precision (opening px, spread, round, press), at zero
# head offset, and the patch is moved with the head per frame: 1/2 px of opening and 1/16 of a shape weight
# (at most 1/4 px of lip motion either way) are below what a viewer can see (bench_mouth_psnr.py: the same PSNR
# against the unrounded warp as with 4x finer steps), and a minute of speech then needs about a quarter as many
# warps as frames
WARP_STEPS = np.array([2.0, 16.0, 16.0, 16.0], dtype=np.float32)
WARP_ENTRIES = 1024  # distinct mouths kept (uint8, ~30 KB each for a 512 px pose)

@dataclass(frozen=True)
class PhotoPose:
    pose_id: str
    image: np.ndarray  # (H, W, 3) uint8
    matte: np.ndarray  # (H, W) uint8, 255 = person
    landmarks: np.ndarray  # (468, 3) float32, x, y in image px


def _decode_png(path: Path, width: int, height: int, mode: str) -> np.ndarray:
    """A bundle's PNG, checked against its manifest's size before a pixel is decoded. Pillow, not an ffmpeg child:
    starting two of those was 0.2 s of every photo render's set-up, while nothing else ran."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below refuses it
            if img.format != "PNG" or img.size != (width, height):
                raise ValueError(f"{path.name} is not a {width}x{height} PNG")
            arr = np.asarray(img.convert(mode))
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # Pillow's ways to say "damaged"
        raise ValueError(f"{path.name} cannot be read ({err})") from None
    return np.ascontiguousarray(arr)  # (H, W, 3) for "RGB", (H, W) for "L"


def load_photo_pose(entry: PoseEntry) -> PhotoPose:
    """Read a photo pose's image, matte and landmarks; InputError says which file is bad and what to do."""
    try:
        image = _decode_png(entry.file("image"), entry.width, entry.height, "RGB")
        matte = _decode_png(entry.file("matte"), entry.width, entry.height, "L")
        marks = np.load(entry.file("landmarks"), allow_pickle=False)
        if marks.ndim == 2:
            marks = marks[None]
        if marks.shape[1:] != (N_LANDMARKS, 3) or len(marks) < 1 or not np.isfinite(marks).all():
            raise ValueError("landmarks.npy is not (F, 468, 3) finite numbers")
    except (OSError, ValueError) as err:
        raise InputError(f"avatar {entry.avatar_id}: pose {entry.pose_id} is damaged ({err})",
                         f"remove it and add it again: a2v avatars remove {entry.avatar_id}") from None
    return PhotoPose(entry.pose_id, image, matte, marks[0].astype(np.float32))




def padded(img: np.ndarray) -> np.ndarray:
    """The image as float32 with SHIFT_PAD px of held edge, ready for any number of ``shifted`` calls."""
    p = SHIFT_PAD
    return np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge").astype(np.float32)


def shifted(pad_img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Bilinear shift of a ``padded`` image by (dx, dy) as uint8: pixel (i, j) shows (i - dy, j - dx)."""
    p = SHIFT_PAD
    h, w = pad_img.shape[0] - 2 * p, pad_img.shape[1] - 2 * p
    ix, iy = math.floor(dx), math.floor(dy)
    if not (-p < ix and ix + 1 < p and -p < iy and iy + 1 < p):
        raise ValueError(f"shift ({dx}, {dy}) exceeds the padding")
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)

    def at(oy: int, ox: int) -> np.ndarray:  # the image shifted by whole pixels (oy, ox)
        return pad_img[p - oy : p - oy + h, p - ox : p - ox + w]

    out = at(iy, ix) * ((1 - fx) * (1 - fy))
    if fx:
        out += at(iy, ix + 1) * (fx * (1 - fy))
    if fy:
        out += at(iy + 1, ix) * ((1 - fx) * fy)
    if fx and fy:
        out += at(iy + 1, ix + 1) * (fx * fy)
    out += 0.5
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def move_inner(patch: np.ndarray, dx: float, dy: float, margin: int) -> np.ndarray:
    """The inside of an (h, w, C) uint8 patch (``margin`` px less on every side) moved by (dx, dy), bilinear as
    ``shifted``: pixel (i, j) shows (i - dy, j - dx). The margin must cover the shift plus one pixel."""
    h, w = patch.shape[:2]
    hi, wi = h - 2 * margin, w - 2 * margin
    if dx == 0 and dy == 0:
        return patch[margin : margin + hi, margin : margin + wi]
    ix, iy = math.floor(dx), math.floor(dy)
    if not (-margin <= iy and iy + 1 <= margin and -margin <= ix and ix + 1 <= margin):
        raise ValueError(f"shift ({dx}, {dy}) exceeds the margin")
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    y0, x0 = margin - iy - 1, margin - ix - 1  # the rows and columns (i - iy - 1, j - ix - 1) of the inside
    rows = patch[y0 : y0 + hi + 1, x0 : x0 + wi + 1].astype(np.float32)  # one extra row and column above-left
    # along x: (1 - fx) of column j - ix, fx of column j - ix - 1; then along y the same with rows
    cols = rows[:, 1:] * (1 - fx)
    cols += rows[:, :-1] * fx
    out = cols[1:] * (1 - fy)
    out += cols[:-1] * fy
    out += 0.5
    return out.astype(np.uint8)


def photo_idle_state(frame: int, fps: float, still: bool) -> IdleState:
    """The compositor's idle loop (same period, same blinks), with a smaller sway, on the same 1/4 px grid."""
    s = idle_state(frame, fps, still)
    return IdleState(round(s.dx * SWAY_SCALE * 4) / 4, round(s.dy * SWAY_SCALE * 4) / 4, s.blink)


class _OutputRing:
    """``ring`` sets of (rgb, mask, straight or None) output buffers, handed out in turn; a batch longer than
    the ones before gets fresh, longer ones. ``frame``: one video frame's shape, when not (height, width, 3)."""

    def __init__(self, ring: int, height: int, width: int, straight_alpha: bool,
                 frame: tuple[int, ...] | None = None) -> None:  # fmt: skip
        self.ring, self.height, self.width, self.straight_alpha = ring, height, width, straight_alpha
        self.frame = frame or (height, width, 3)
        self._bufs: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._size = 0
        self._next = 0

    @classmethod
    def i420(cls, ring: int, height: int, width: int) -> _OutputRing:
        """Frames as I420 (yuv.py), (B, H * W * 3 / 2), and masks; no straight-alpha frames. Nothing is allocated
        before the first batch: a source whose frames cannot be I420 (odd sides) never asks for one."""
        return cls(ring, height, width, False, (height * width * 3 // 2,))

    def next(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._size < n:
            self._bufs, self._size = [], n
        if len(self._bufs) < self.ring:
            shape = (self._size, self.height, self.width)
            straight = np.empty((*shape, 3), np.uint8) if self.straight_alpha else None
            self._bufs.append((np.empty((self._size, *self.frame), np.uint8), np.empty(shape, np.uint8), straight))
        bufs = self._bufs[self._next % len(self._bufs)]
        self._next += 1
        return bufs


class PhotoSource:
    """The frame source of a photo pose (see the module docstring)."""

    kind = "photo"
    draws_mouth = True
    crf = PHOTO_CRF

    def __init__(self, pose: PhotoPose, fps: float, straight_alpha: bool = False, ring: int = 4,
                 still: bool = False, device: str = "auto") -> None:  # fmt: skip
        from a2v_cli.engine.lipsync import model_dir
        from a2v_cli.engine.sessions import load_session

        self.pose = pose
        self.fps = fps
        self.still = still
        self.ring = ring
        self.straight_alpha = straight_alpha
        self.height, self.width = pose.image.shape[:2]
        self.geometry = MouthGeometry.of(pose.landmarks)
        self.mouth = mouth_region(pose.landmarks, (self.height, self.width), lip_edges(pose.image, pose.landmarks))
        self.eyes = eye_region(pose.landmarks, (self.height, self.width), pose.image)
        self.palette = face_palette(pose.image, pose.landmarks)
        rgba = np.concatenate([pose.image, pose.matte[..., None]], axis=2)
        self._image = np.ascontiguousarray((rgba.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
        self.loaded = load_session(str(model_dir() / WARP_FILE), device)
        self._cache: Lru[tuple[float, float], tuple[np.ndarray, np.ndarray]] = Lru(CACHE_ENTRIES)
        self._padded: np.ndarray | None = None
        self._mouths: Lru[tuple[int, ...], np.ndarray] = Lru(WARP_ENTRIES)
        self._lids: dict[float, np.ndarray] = {}
        self._out = _OutputRing(ring, self.height, self.width, straight_alpha)
        self.loop = max(1, round(LOOP_SECONDS * fps))
        self._i420: Lru[tuple[float, float, float], tuple[np.ndarray, np.ndarray]] = Lru(CACHE_ENTRIES)
        self._i420_out = _OutputRing.i420(ring, self.height, self.width)
        self._converter = yuv.Converter((self.height, self.width))
        rects = [yuv.even_rect(*_inner_rect(r)) for r in (self.mouth, self.eyes)]
        # I420 frames are assembled from cached whole frames and the pasted rectangles, widened to whole chroma
        # blocks: exact where the sides are even and the mouth's and the eyes' widened rectangles do not meet
        self.i420 = self.height % 2 == 0 and self.width % 2 == 0 and not _overlap(*rects)

    @property
    def provider(self) -> str:
        return self.loaded.provider

    def face_boxes(self, mouths: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.geometry.face_box
        d = np.asarray(mouths, dtype=np.float32) - np.array([self.geometry.cx, self.geometry.cy], np.float32)
        return np.stack([x0 + d[:, 0], y0 + d[:, 1], x1 + d[:, 0], y1 + d[:, 1]], axis=1).astype(np.float32)

    def _shifted(self, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
        """(H,W,3) image and (H,W) matte shifted by the head offset, cached per offset."""
        key = (dx, dy)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if dx == 0 and dy == 0:
            out = (self.pose.image, self.pose.matte)
        else:
            if self._padded is None:
                self._padded = padded(np.concatenate([self.pose.image, self.pose.matte[..., None]], axis=2))
            rgba = shifted(self._padded, dx, dy)
            out = (np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
        return self._cache.put(key, out)

    def warp(self, region: Region, weights: np.ndarray, offsets: np.ndarray, opening: np.ndarray) -> np.ndarray:
        """(B, h, w, 4) uint8 of ``region`` for these weights, head offsets and openings (px)."""
        out = self.loaded.session.run(None, {
            "image": self._image, "grid": region.grid, "basis": region.basis,
            "weights": weights.astype(np.float32), "offset": offsets.astype(np.float32), "maps": region.maps,
            "opening": opening.astype(np.float32)[:, None], "palette": self.palette,
        })[0]  # fmt: skip
        return np.clip(out.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def _paste(self, rgb: np.ndarray, mask: np.ndarray, rows: list[int], region: Region, patch: np.ndarray) -> None:
        m = MARGIN
        h, w = patch.shape[1:3]
        ys, xs = slice(region.y0 + m, region.y0 + h - m), slice(region.x0 + m, region.x0 + w - m)
        for k, i in enumerate(rows):
            rgb[i, ys, xs] = patch[k, m:-m, m:-m, :3]
            mask[i, ys, xs] = patch[k, m:-m, m:-m, 3]

    def articulation_weights(self, articulation: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        return mouth_weights(articulation, self.geometry.max_open, n)

    def mouth_patches(self, weights: np.ndarray, opening: np.ndarray) -> list[np.ndarray]:
        """The mouth region at zero head offset, (h, w, 4) uint8 per frame, warped once per distinct articulation.

        Each frame's weights are rounded to WARP_STEPS and the warp is run with the rounded ones, so a frame's
        pixels depend on its own articulation only, never on what was cached before.
        """
        keys = [tuple(k) for k in np.rint(np.column_stack([opening, weights[:, 2:]]) * WARP_STEPS).astype(int)]
        patches = [self._mouths.get(k) for k in keys]
        missing = list(dict.fromkeys(k for k, p in zip(keys, patches, strict=True) if p is None))
        if missing:
            q = np.array(missing, dtype=np.float32) / WARP_STEPS
            w = np.column_stack([np.ones(len(q), np.float32), q])
            warped = self.warp(self.mouth, w, np.zeros((len(q), 2), np.float32), q[:, 0])
            new = {key: self._mouths.put(key, patch) for key, patch in zip(missing, warped, strict=True)}
            patches = [new[k] if p is None else p for k, p in zip(keys, patches, strict=True)]
        return patches  # type: ignore[return-value]

    def _paste_moved(self, rgb: np.ndarray, mask: np.ndarray, i: int, region: Region, patch: np.ndarray,
                     dx: float, dy: float) -> None:  # fmt: skip
        """Paste a zero-offset patch of ``region`` into frame ``i``, moved with the head by (dx, dy).

        The fields are zero at the region's edge, so there the patch is the photo, moved as the rest of the frame
        (``shifted``, the same bilinear weights): no seam.
        """
        m = MARGIN
        h, w = patch.shape[:2]
        inner = move_inner(patch, dx, dy, m)
        ys, xs = slice(region.y0 + m, region.y0 + h - m), slice(region.x0 + m, region.x0 + w - m)
        rgb[i, ys, xs] = inner[..., :3]
        mask[i, ys, xs] = inner[..., 3]

    def _eye_patch(self, blink: float) -> np.ndarray:
        """The eye region at zero head offset with the lids at ``blink`` (one of BLINK_LEVELS), warped once."""
        hit = self._lids.get(blink)
        if hit is None:
            k = BLINK_LEVELS.index(blink)
            lids = np.array([[float(i == k) for i in range(len(BLINK_LEVELS))], [0.0] * len(BLINK_LEVELS)])
            lidded, photo = self.warp(self.eyes, lids, np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
            cover = self.eyes.cover[k, ..., None] if self.eyes.cover is not None else 1.0
            hit = np.rint(lidded * cover + photo * (1.0 - cover)).astype(np.uint8)
            self._lids[blink] = hit
        return hit

    def compose(self, frames: range, articulation: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:  # fmt: skip
        n = len(frames)
        rgb_all, mask_all, straight_all = self._out.next(n)
        rgb, mask = rgb_all[:n], mask_all[:n]
        states = [photo_idle_state(f, self.fps, self.still) for f in frames]
        offsets = np.array([[s.dx, s.dy] for s in states], dtype=np.float32)
        for i, s in enumerate(states):
            rgb[i], mask[i] = self._shifted(s.dx, s.dy)
        weights, opening = self.articulation_weights(articulation, n)
        for i, patch in enumerate(self.mouth_patches(weights, opening)):
            self._paste_moved(rgb, mask, i, self.mouth, patch, states[i].dx, states[i].dy)
        for i, s in enumerate(states):
            if s.blink > 0:
                self._paste_moved(rgb, mask, i, self.eyes, self._eye_patch(s.blink), s.dx, s.dy)
        straight = None
        if straight_all is not None:
            straight = straight_all[:n]
            straight[...] = rgb
        mouths = offsets + np.array([self.geometry.cx, self.geometry.cy], dtype=np.float32)
        return rgb, mask, straight, mouths


    def _still_i420(self, state: IdleState) -> tuple[np.ndarray, np.ndarray]:
        """The shifted image (``_shifted``) as one I420 frame, with the eyes at this blink level, and its matte:
        cached per (offset, blink), so a blink costs nothing from the idle loop's second round on."""
        key = (state.dx, state.dy, state.blink)
        hit = self._i420.get(key)
        if hit is not None:
            return hit
        if state.blink > 0:  # the open-eyed frame at this offset, with the lids pasted
            frame, matte = (a.copy() for a in self._still_i420(IdleState(state.dx, state.dy, 0.0)))
            self._paste_i420(frame[None], matte[None], self.eyes, [self._eye_patch(state.blink)], [state])
        else:
            rgb, matte = self._shifted(state.dx, state.dy)
            frame = yuv.to_i420(rgb)
        return self._i420.put(key, (frame, matte))

    def _paste_i420(self, frames: np.ndarray, mask: np.ndarray, region: Region, patches: list[np.ndarray],
                    states: list[IdleState]) -> None:  # fmt: skip
        """``_paste_moved`` for every I420 frame of ``frames``: each frame's patch goes onto its shifted image's
        pixels around it, in a rectangle of whole chroma blocks, and the rectangles are converted at once."""
        ys0, ys1, xs0, xs1 = _inner_rect(region)
        y0, y1, x0, x1 = yuv.even_rect(ys0, ys1, xs0, xs1)
        rect = np.empty((len(frames), y1 - y0, x1 - x0, 3), np.uint8)
        inside = (slice(ys0 - y0, ys1 - y0), slice(xs0 - x0, xs1 - x0))
        for i, (patch, s) in enumerate(zip(patches, states, strict=True)):
            rect[i] = self._shifted(s.dx, s.dy)[0][y0:y1, x0:x1]
            inner = move_inner(patch, s.dx, s.dy, MARGIN)
            rect[i][inside] = inner[..., :3]
            mask[i, ys0:ys1, xs0:xs1] = inner[..., 3]
        self._converter.write_rect(frames, rect, y0, x0)

    def compose_i420(self, frames: range, articulation: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, None, np.ndarray]:  # fmt: skip
        """``compose`` with the frames as I420 (yuv.py), (B, H * W * 3 / 2) uint8, for an encoder that reads them
        as they are: exactly ``compose``'s pictures converted, for a fraction of the encoder's conversion cost.
        Only where ``self.i420``; no straight-alpha frames."""
        n = len(frames)
        out_all, mask_all, _ = self._i420_out.next(n)
        out, mask = out_all[:n], mask_all[:n]
        states = [photo_idle_state(f, self.fps, self.still) for f in frames]
        for i, s in enumerate(states):
            out[i], mask[i] = self._still_i420(s)
        weights, opening = self.articulation_weights(articulation, n)
        self._paste_i420(out, mask, self.mouth, self.mouth_patches(weights, opening), states)
        offsets = np.array([[s.dx, s.dy] for s in states], dtype=np.float32)
        return out, mask, None, offsets + np.array([self.geometry.cx, self.geometry.cy], dtype=np.float32)


def _inner_rect(region: Region) -> tuple[int, int, int, int]:
    """Rows y0:y1 and columns x0:x1 of the frame that a patch of ``region`` is pasted on (its margin left out)."""
    h, w = region.grid.shape[1:3]
    return region.y0 + MARGIN, region.y0 + h - MARGIN, region.x0 + MARGIN, region.x0 + w - MARGIN


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


# ----------------------------------------------------------------------------------------------------------------------
# Video poses
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPose:
    pose_id: str
    frames: np.ndarray  # (F, H, W, 3) uint8
    mattes: np.ndarray  # (F, H, W) uint8
    landmarks: np.ndarray  # (F, 468, 3) float32, tracked and smoothed


def _decode_video(path: Path, width: int, height: int, pix_fmt: str, channels: int, limit: int) -> np.ndarray:
    from a2v_cli.engine.audio import ffmpeg_exe

    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-frames:v", str(limit), "-f", "rawvideo",
         "-pix_fmt", pix_fmt, "pipe:1"],
        capture_output=True, check=False,
    )  # fmt: skip
    size = width * height * channels
    if proc.returncode != 0 or not proc.stdout or len(proc.stdout) % size:
        raise ValueError(f"{path.name} is not a {width}x{height} video")
    arr = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(-1, height, width, channels)
    return arr[..., 0] if channels == 1 else arr


MAX_VIDEO_FRAMES = 20 * 25  # the ingest caps clips at 10 s; a bundle claiming more is not read past this


def load_video_pose(entry: PoseEntry) -> VideoPose:
    """Read a video pose's frames, mattes and landmark track; InputError says what is damaged and what to do."""
    try:
        marks = np.load(entry.file("landmarks"), allow_pickle=False)
        if marks.ndim != 3 or marks.shape[1:] != (N_LANDMARKS, 3) or not np.isfinite(marks).all():
            raise ValueError("landmarks.npy is not (F, 468, 3) finite numbers")
        frames = _decode_video(entry.file("frames"), entry.width, entry.height, "rgb24", 3, MAX_VIDEO_FRAMES)
        mattes = _decode_video(entry.file("matte"), entry.width, entry.height, "gray", 1, MAX_VIDEO_FRAMES)
        n = min(len(frames), len(mattes), len(marks))
        if n < 1:
            raise ValueError("no frames")
    except (OSError, ValueError) as err:
        raise InputError(f"avatar {entry.avatar_id}: pose {entry.pose_id} is damaged ({err})",
                         f"remove it and add it again: a2v avatars remove {entry.avatar_id}") from None
    return VideoPose(entry.pose_id, frames[:n], mattes[:n], marks[:n].astype(np.float32))


def ping_pong(frame: int, count: int) -> int:
    """The clip's frame for output frame ``frame``: forward, then backward, so the loop has no jump."""
    if count <= 1:
        return 0
    k = frame % (2 * count - 2)
    return k if k < count else 2 * count - 2 - k


TEETH_FRAMES = 2  # a clip frame's mouth shows teeth where most of it and this many frames either side do
FIELD_BUDGET = 256 * 2**20  # bytes of per-clip-frame mouth fields a video source keeps: all frames of a 5 s clip at
# 512 px (~2 MB each), so the ping-pong loop computes each frame's fields once, not once a pass
# bytes of clip frames kept converted for the encoder (yuv.py), 0.4 MB each at 512 px: a 10 s clip (the ingest's cap)
# at 512 px. A clip that does not fit is handed over as RGB: converting whole frames again on every pass (3 ms of CPU
# a 512 px frame) would cost more than the encoder's own conversion (about 1 ms)
I420_BUDGET = 100 * 2**20


Patch = tuple[np.ndarray, int, int]  # (h, w, 4) uint8 RGBA and the frame row and column of its corner


@dataclass(frozen=True)
class _Fields:
    """One clip frame's mouth fields, as the warp graph reads them, on the pixels they can change only.

    ``mouth_region`` less what a clip frame does not need: the MARGIN ring (a photo's head sway samples it; a clip
    frame is pasted where it is) and every pixel that no field moves and no inner mouth can cover (a fifth of the
    region): the warp leaves those as they are, so the graph runs on a list of the others (it works pixel by
    pixel; an (h, w) grid is a (1, N) one to it) and the rest of the patch is the frame's own pixels.

    Per frame only the pixels of the fields in use need the warp: the closing field's (always), the opening's with
    the inner mouth's (a mouth not closed), the shapes' (spread, round, press). The list is ordered so that each
    of those unions is one run of it, ``spans`` (a slice, not a gather: numpy's gather cost as much as it saved):
    opening only, opening and shapes, closing, shapes only. A closed mouth warps a third of the region.
    """

    y0: int  # the region's corner, ring included: the image the warp samples is cut from here
    x0: int
    shape: tuple[int, int]  # the region's size, ring included
    rgba: np.ndarray  # (h, w, 4) uint8: the frame and matte under the region, what a patch starts from
    image: np.ndarray  # (1, 4, h, w) float32 RGBA 0..1: the same, as the warp samples it
    grid: np.ndarray  # (N, 2) float32: x, y in the crop of each pixel the warp may change
    basis: np.ndarray  # (K, N, 2) float32, at those pixels
    maps: np.ndarray  # (5, N) float32
    spans: tuple[int, int, int, int]  # where the four runs of ``grid`` end (see above)
    # per (opens, shapes): x0, y0, x1, y1 (ends excluded) in the crop of that span's pixels; an empty one: 0, 0, 0, 0
    boxes: dict[tuple[bool, bool], tuple[int, int, int, int]]
    geometry: MouthGeometry

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rgba, self.image, self.grid, self.basis, self.maps))

    @staticmethod
    def span_of(spans: tuple[int, int, int, int], opens: bool, shapes: bool) -> slice:
        a, b, c, d = spans
        return slice(0 if opens else (a if shapes else b), d if shapes else c)

    def span(self, q: np.ndarray) -> tuple[slice, tuple[int, int, int, int]]:
        """The run of ``grid`` that articulation ``q`` (open px, spread, round, press) can change, and its box."""
        key = (bool(q[0] != 0), bool(np.any(q[1:] != 0)))
        return self.span_of(self.spans, *key), self.boxes[key]


class VideoSource:
    """The frame source of a video pose: the clip's frames played forward and back, the mouth driven on each.

    Each clip frame gets its own mouth fields from its own landmarks, computed once (``FIELD_BUDGET``); the clip
    brings its own head motion and blinks, so nothing is added; ``still`` holds the first frame. Where the encoder
    reads I420 (``compose_i420``), each clip frame is converted once (``I420_BUDGET``) and per frame only the
    rectangle around the warped mouth is, as a photo pose does.
    """

    kind = "video"
    draws_mouth = True
    crf = PHOTO_CRF

    def __init__(self, pose: VideoPose, fps: float, straight_alpha: bool = False, ring: int = 4,
                 still: bool = False, device: str = "auto") -> None:  # fmt: skip
        from a2v_cli.engine.lipsync import model_dir
        from a2v_cli.engine.sessions import load_session

        self.pose = pose
        self.fps = fps
        self.still = still
        self.ring = ring
        self.straight_alpha = straight_alpha
        self.count = len(pose.frames)
        self.height, self.width = pose.frames.shape[1:3]
        self.geometry = MouthGeometry.of(pose.landmarks[0])
        self.palette = face_palette(pose.frames[0], pose.landmarks[0])
        self.loaded = load_session(str(model_dir() / WARP_FILE), device)
        self._fields: Lru[int, _Fields] | None = None
        self._lips: dict[int, LipContour] = {}
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._patches: Lru[tuple[int, ...], Patch] = Lru(WARP_ENTRIES // 2)  # larger than a photo's
        self._out = _OutputRing(ring, self.height, self.width, straight_alpha)
        even = self.height % 2 == 0 and self.width % 2 == 0
        self.i420 = even and self.count * yuv.frame_size(self.height, self.width) <= I420_BUDGET
        self._i420: dict[int, np.ndarray] = {}  # every clip frame fits (I420_BUDGET)
        self._i420_out = _OutputRing.i420(ring, self.height, self.width)
        self._converter = yuv.Converter((self.height, self.width))

    @property
    def provider(self) -> str:
        return self.loaded.provider

    def clip_frame(self, frame: int) -> int:
        return 0 if self.still else ping_pong(frame, self.count)

    def face_boxes(self, mouths: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.geometry.face_box
        d = np.asarray(mouths, dtype=np.float32) - np.array([self.geometry.cx, self.geometry.cy], np.float32)
        return np.stack([x0 + d[:, 0], y0 + d[:, 1], x1 + d[:, 0], y1 + d[:, 1]], axis=1).astype(np.float32)

    def _grid(self, shape: tuple[int, int]) -> np.ndarray:
        """(h' w', 2) x, y of the inside's pixels in the crop's coordinates, row after row (one per region size)."""
        grid = self._grids.get(shape)
        if grid is None:
            h, w, m = *shape, MARGIN
            xs, ys = np.meshgrid(np.arange(m, w - m, dtype=np.float32), np.arange(m, h - m, dtype=np.float32))
            grid = self._grids[shape] = np.stack([xs.ravel(), ys.ravel()], axis=-1)
        return grid

    def lips(self, idx: int) -> LipContour | None:
        """Clip frame ``idx``'s lips' own inner edges (``lip_edges``) where most frames around it show teeth, else
        None (the mesh's contour). Decided over idx +- TEETH_FRAMES, not frame by frame: on a mouth that hardly moves
        a share of teeth near the threshold would switch the closing's contour on and off with the encoder's noise."""
        near = range(max(0, idx - TEETH_FRAMES), min(self.count, idx + TEETH_FRAMES + 1))
        if 2 * sum(self._edges(k).teeth >= TEETH_SHOWN for k in near) <= len(near):
            return None
        return self._edges(idx)

    def _edges(self, idx: int) -> LipContour:
        """Clip frame ``idx``'s lips' own edges and its share of teeth, found once per frame (2 ms at 512 px)."""
        edges = self._lips.get(idx)
        if edges is None:
            edges = self._lips[idx] = lip_edges(self.pose.frames[idx], self.pose.landmarks[idx], shown=0.0)
        return edges

    def fields(self, idx: int) -> _Fields:
        """The mouth fields of clip frame ``idx`` (computed once while the budget holds them all)."""
        hit = None if self._fields is None else self._fields.get(idx)
        if hit is not None:
            return hit
        marks = self.pose.landmarks[idx]
        region = mouth_region(marks, (self.height, self.width), self.lips(idx))
        m = MARGIN
        h, w = region.grid.shape[1:3]
        basis = np.ascontiguousarray(region.basis[:, m:-m, m:-m]).reshape(len(region.basis), -1, 2)
        maps = np.ascontiguousarray(region.maps[:, m:-m, m:-m]).reshape(len(region.maps), -1)
        moves = (basis[..., 0] != 0) | (basis[..., 1] != 0)  # not .any(axis=2): numpy is slow on a 2-long axis
        closes, shapes = moves[0], moves[2] | moves[3] | moves[4]
        opens = (moves[1] | (maps[1] > 0)) & ~closes  # the inner mouth is drawn where the opening's profile is
        runs = [np.flatnonzero(r) for r in (opens & ~shapes, opens & shapes, closes, shapes & ~closes & ~opens)]
        pixels = np.concatenate(runs)
        a, b, c, d = np.cumsum([len(r) for r in runs]).tolist()
        spans = (a, b, c, d)
        inner_w = w - 2 * m
        # each run's box (x0, y0, x1, y1 in the crop), from its flat indices (ascending: the rows are the ends')
        run_boxes = [(int((r % inner_w).min()) + m, int(r[0] // inner_w) + m, int((r % inner_w).max()) + m + 1,
                      int(r[-1] // inner_w) + m + 1) if len(r) else None for r in runs]  # fmt: skip
        boxes: dict[tuple[bool, bool], tuple[int, int, int, int]] = {}
        for key in ((False, False), (False, True), (True, False), (True, True)):
            run = _Fields.span_of(spans, *key)  # one or more whole runs
            inside = [bx for bx, lo, hi in zip(run_boxes, (0, a, b, c), (a, b, c, d), strict=True)
                      if bx is not None and run.start <= lo and hi <= run.stop]  # fmt: skip
            boxes[key] = (min(bx[0] for bx in inside), min(bx[1] for bx in inside), max(bx[2] for bx in inside),
                          max(bx[3] for bx in inside)) if inside else (0, 0, 0, 0)  # fmt: skip
        grid = self._grid((h, w))[pixels]
        ys, xs = slice(region.y0, region.y0 + h), slice(region.x0, region.x0 + w)
        rgba = np.concatenate([self.pose.frames[idx, ys, xs], self.pose.mattes[idx, ys, xs, None]], axis=2)
        image = np.ascontiguousarray(rgba.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        flat = basis.view(np.complex64)[..., 0]  # (K, M): a gather of 8-byte items, not of 4-byte pairs
        hit = _Fields(region.y0, region.x0, (h, w), rgba, image, grid,
                      np.take(flat, pixels, axis=1).view(np.float32).reshape(len(basis), -1, 2),
                      np.take(maps, pixels, axis=1), spans, boxes, MouthGeometry.of(marks))  # fmt: skip
        if self._fields is None:
            self._fields = Lru(max(8, FIELD_BUDGET // hit.nbytes))
        return self._fields.put(idx, hit)

    def _warp(self, idx: int, fields: _Fields, q: np.ndarray) -> Patch:
        """Clip frame ``idx``'s mouth warped for one rounded articulation ``q`` (open px, spread, round, press).

        The fields never sample outside their region (they fade to 0 at its edge), so a crop of the frame is all
        the warp reads; only the pixels that the fields in use (the first, closing the clip's own lips, always) or
        the inner mouth can change are warped, and the patch is the frame's rectangle of whole 2x2 blocks around
        them, which an I420 frame converts as it is (a closed mouth's is a third of the region's).
        """
        run, (bx0, by0, bx1, by1) = fields.span(q)
        grid = fields.grid[run]
        if not len(grid):
            return np.empty((0, 0, 4), np.uint8), 0, 0
        y0, y1, x0, x1 = yuv.even_rect(fields.y0 + by0, fields.y0 + by1, fields.x0 + bx0, fields.x0 + bx1)
        # widened to whole 2x2 blocks, the rectangle stays inside the region: the MARGIN ring is around the pixels
        patch = fields.rgba[y0 - fields.y0 : y1 - fields.y0, x0 - fields.x0 : x1 - fields.x0].copy()
        out = self.loaded.session.run(None, {
            "image": fields.image, "grid": grid[None, None],
            "basis": np.ascontiguousarray(fields.basis[:, None, run]), "weights": np.array([[1.0, *q]], np.float32),
            "offset": np.zeros((1, 2), np.float32), "maps": np.ascontiguousarray(fields.maps[:, None, run]),
            "opening": q[None, :1], "palette": self.palette,
        })[0]  # fmt: skip
        at = (grid[:, 1] + (fields.y0 - y0)) * (x1 - x0) + (grid[:, 0] + (fields.x0 - x0))  # whole numbers
        rgba = np.ascontiguousarray(np.clip(out[0, :, 0].T * 255.0 + 0.5, 0, 255).astype(np.uint8))
        patch.view(np.uint32).reshape(-1)[at.astype(np.intp)] = rgba.view(np.uint32).reshape(-1)  # a pixel a word
        return patch, y0, x0

    def _mouths(self, frames: range, articulation: np.ndarray | None
                ) -> tuple[list[int], list[Patch], np.ndarray]:  # fmt: skip
        """Per frame: its clip frame, its warped mouth and the mouth centre."""
        n = len(frames)
        weights, opening = mouth_weights(articulation, self.geometry.max_open, n)
        mouths = np.empty((n, 2), dtype=np.float32)
        order, patches = [], []
        for i, f in enumerate(frames):
            idx = self.clip_frame(f)
            fields = self.fields(idx)
            geo = fields.geometry
            mouths[i] = (geo.cx, geo.cy)
            scaled = max(opening[i] * geo.max_open / self.geometry.max_open, 0.0)
            # as a photo pose's: warped once per clip frame and rounded articulation (a pause, a held vowel)
            key = (idx, *np.rint(np.array([scaled, *weights[i, 2:]], np.float32) * WARP_STEPS).astype(int).tolist())
            patch = self._patches.get(key)
            if patch is None:
                patch = self._patches.put(key, self._warp(idx, fields, np.array(key[1:], np.float32) / WARP_STEPS))
            order.append(idx)
            patches.append(patch)
        return order, patches, mouths

    def _compose(self, ring: _OutputRing, frames: range, articulation: np.ndarray | None, i420: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:  # fmt: skip
        n = len(frames)
        out_all, mask_all, straight_all = ring.next(n)
        out, mask = out_all[:n], mask_all[:n]
        order, patches, mouths = self._mouths(frames, articulation)
        for i, (idx, (patch, y, x)) in enumerate(zip(order, patches, strict=True)):
            h, w = patch.shape[:2]
            mask[i] = self.pose.mattes[idx]
            mask[i, y : y + h, x : x + w] = patch[..., 3]
            if not i420:
                out[i] = self.pose.frames[idx]
                out[i, y : y + h, x : x + w] = patch[..., :3]
                continue
            out[i] = self._frame_i420(idx)
            if h:  # the patch is whole chroma blocks of the composed frame: it converts as it is
                self._converter.write_rect(out[i], patch[..., :3], y, x)
        straight = None
        if straight_all is not None:
            straight = straight_all[:n]
            straight[...] = out
        return out, mask, straight, mouths

    def compose(self, frames: range, articulation: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:  # fmt: skip
        return self._compose(self._out, frames, articulation, False)

    def _frame_i420(self, idx: int) -> np.ndarray:
        """Clip frame ``idx`` as I420, converted once."""
        hit = self._i420.get(idx)
        if hit is None:
            hit = self._i420[idx] = np.empty(yuv.frame_size(self.height, self.width), np.uint8)
            self._converter.write_rect(hit, self.pose.frames[idx], 0, 0)
        return hit

    def compose_i420(self, frames: range, articulation: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, None, np.ndarray]:  # fmt: skip
        """``compose`` with the frames as I420 (yuv.py), exactly its pictures converted, as PhotoSource's: only
        where ``self.i420``; no straight-alpha frames."""
        out, mask, _, mouths = self._compose(self._i420_out, frames, articulation, True)
        return out, mask, None, mouths

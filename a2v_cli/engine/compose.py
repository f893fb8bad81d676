"""The compositor: turns a pose's layers into idle-animated frames and their alpha mask.

Idle motion (head sway and blinks) is a pure function of the frame index with period
``LOOP_SECONDS``, so it loops seamlessly for any audio length and two renders of the same
pose agree frame for frame. Head positions are quantized to 1/``SUBPIXEL`` px and placed with
bilinear interpolation: fine enough that the head glides (a step between frames is the sway's own
speed, under 0.15 px, never a visible jump), coarse enough that one loop has a bounded number of
distinct positions. Each distinct (position, blink) head box is blended once and cached, and the
cache holds a whole loop at any frame rate, so a frame costs two array copies and memory is flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from a2v_cli.engine.drawn import PoseArt
from a2v_cli.engine.lru import Lru

LOOP_SECONDS = 8.0
SUBPIXEL = 16  # head positions on a 1/16 px grid: a 1/4 px grid stepped visibly (0.25 px jumps every 3-23 frames)
MAX_SWAY = 3  # px; the head box margin must cover it
BLINKS = ((0.14, (0.5, 1.0, 1.0, 0.5)), (0.52, (0.5, 1.0, 1.0, 0.5)), (0.80, (0.5, 1.0, 0.5)),
          (0.835, (0.5, 1.0, 1.0, 0.5)))  # (loop phase, blink levels per frame)
# a loop visits at most ~190 positions on the 1/16 px grid (its path is ~12 px long) plus ~15 blink
# frames, whatever the fps; fewer entries would evict every box before the loop comes back to it
CACHE_ENTRIES = 256


@dataclass(frozen=True)
class IdleState:
    dx: float  # head offset, px, on the 1/SUBPIXEL grid
    dy: float
    blink: float  # 0 open, 0.5 half, 1 closed


STILL = IdleState(0.0, 0.0, 0.0)


def idle_state(frame: int, fps: float, still: bool = False) -> IdleState:
    """Head sway and blink at ``frame``; periodic in LOOP_SECONDS so it loops without a seam."""
    if still:
        return STILL
    loop = max(1, round(LOOP_SECONDS * fps))
    ph = 2 * math.pi * (frame % loop) / loop
    dx = 1.5 * math.sin(ph + 0.3) + 0.5 * math.sin(3 * ph + 1.1)
    dy = 0.8 * math.sin(2 * ph + 0.7) + 0.4 * math.sin(ph + 2.0)
    q = SUBPIXEL
    blink = 0.0
    pos = frame % loop
    for phase, levels in BLINKS:
        start = round(phase * loop)
        if start <= pos < start + len(levels):
            blink = levels[pos - start]
    return IdleState(round(dx * q) / q, round(dy * q) / q, blink)


def _to_u8(x: np.ndarray) -> np.ndarray:
    y = x * np.float32(255.0)
    y += np.float32(0.5)
    return np.clip(y, 0, 255, out=y).astype(np.uint8)


def _shift(sprite: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Bilinear sub-pixel shift of a premultiplied sprite by (fx, fy) in [0, 1); output is 1 px larger."""
    h, w, c = sprite.shape
    p = np.zeros((h + 2, w + 2, c), dtype=np.float32)
    p[1:-1, 1:-1] = sprite
    # separable: two lerps per pixel instead of four products (a cache miss is mostly this)
    t = p[:, 1:] * np.float32(1 - fx)
    t += p[:, :-1] * np.float32(fx)
    a = t[1:] * np.float32(1 - fy)
    a += t[:-1] * np.float32(fy)
    return a  # (h+1, w+1): pixel (i, j) is the sprite's pixel (i - fy, j - fx)


class Compositor:
    """The frame source of a drawn pose: frames (RGB over the pose's background) and masks for any frame indices.

    The head has no mouth: the built-in model's mouth renderer paints one at the mouth centre.
    """

    kind = "drawn"
    draws_mouth = False  # the lip-sync model paints the mouth

    def __init__(
        self, art: PoseArt, fps: float, straight_alpha: bool = False, ring: int = 4, still: bool = False
    ) -> None:
        self.art = art
        self.still = still
        self.ring = ring
        self._ring: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._ring_size = 0
        self._next = 0
        self.fps = fps
        self.height, self.width = art.background.shape[:2]
        self.straight_alpha = straight_alpha
        body = art.body.astype(np.float32)
        bg = art.background.astype(np.float32)
        self._bg = bg
        self._body = body
        self._base = body[..., :3] + bg * (1 - body[..., 3:])  # body over background, premultiplied floats
        self.base_rgb = _to_u8(self._base)
        self.base_mask = _to_u8(body[..., 3])
        self.base_straight = _to_u8(_unpremultiply(body)) if straight_alpha else None
        hh, hw = next(iter(art.heads.values())).shape[:2]
        ox, oy = art.head_origin
        m = MAX_SWAY + 1
        # the head box: every pixel a swaying head can touch, clipped to the frame
        self.box = (max(oy - m, 0), min(oy + hh + m, self.height), max(ox - m, 0), min(ox + hw + m, self.width))
        self._cache: Lru[tuple[float, float, float], tuple[np.ndarray, ...]] = Lru(CACHE_ENTRIES)
        # the head box's static layers and the head sprites' colour and coverage as separate contiguous arrays:
        # a strided view of 3 of 4 channels costs numpy 10x a contiguous one, and a miss is mostly such passes
        y0, y1, x0, x1 = self.box
        self._base_box = np.ascontiguousarray(self._base[y0:y1, x0:x1])
        self._body_alpha_box = np.ascontiguousarray(self._body[y0:y1, x0:x1, 3])
        self._sprites = {k: (np.ascontiguousarray(v[..., :3]), np.ascontiguousarray(v[..., 3:]))
                         for k, v in art.heads.items()}  # fmt: skip

    def mouth_position(self, state: IdleState) -> tuple[float, float]:
        """Frame coordinates of the mouth centre for this idle state."""
        ox, oy = self.art.head_origin
        mx, my = self.art.mouth_center
        return ox + mx + state.dx, oy + my + state.dy

    def _head_box(self, state: IdleState) -> tuple[np.ndarray, ...]:
        key = (state.dx, state.dy, state.blink)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        y0, y1, x0, x1 = self.box
        ox, oy = self.art.head_origin
        ix, iy = math.floor(state.dx), math.floor(state.dy)
        fx, fy = state.dx - ix, state.dy - iy
        colour, cover = self._sprites[state.blink]
        # place the shifted sprite (top-left at frame ox+ix, oy+iy) inside the box, clipped
        top, left = oy + iy - y0, ox + ix - x0
        sh, sw = colour.shape[0] + 1, colour.shape[1] + 1  # _shift's output is 1 px larger
        ys, xs = max(top, 0), max(left, 0)
        ye, xe = min(top + sh, y1 - y0), min(left + sw, x1 - x0)
        inside = (slice(ys - top, ye - top), slice(xs - left, xe - left))
        head_rgb = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.float32)
        head_rgb[ys:ye, xs:xe] = _shift(colour, fx, fy)[inside]
        head_a = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        head_a[ys:ye, xs:xe] = _shift(cover, fx, fy)[inside][..., 0]
        under = 1 - head_a
        # head over (body over background): the same sum as head over body over background, one pass less
        rgb = self._base_box * np.repeat(under[..., None], 3, axis=2)
        rgb += head_rgb
        alpha = self._body_alpha_box * under
        alpha += head_a
        entry: tuple[np.ndarray, ...] = (_to_u8(rgb), _to_u8(alpha))
        if self.straight_alpha:
            head = np.concatenate([head_rgb, head_a[..., None]], axis=2)
            entry += (_to_u8(_unpremultiply(head + self._body[y0:y1, x0:x1] * under[..., None])),)
        return self._cache.put(key, entry)

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The next set of output buffers, filled with the static base once when first allocated.

        Only the head box ever changes between frames, so a reused buffer needs no base copy; that
        and not faulting in fresh pages for every batch is most of the compositor's speed.
        """
        if self._ring_size < n or not self._ring:
            self._ring = []
            self._ring_size = n
        if len(self._ring) < self.ring:
            shape = (self._ring_size, self.height, self.width)
            rgb = np.empty((*shape, 3), dtype=np.uint8)
            rgb[:] = self.base_rgb
            mask = np.empty(shape, dtype=np.uint8)
            mask[:] = self.base_mask
            straight = None
            if self.straight_alpha:
                straight = np.empty_like(rgb)
                straight[:] = self.base_straight
            self._ring.append((rgb, mask, straight))
        bufs = self._ring[self._next % len(self._ring)]
        self._next += 1
        return bufs

    def face_boxes(self, mouths: np.ndarray) -> np.ndarray:
        """(B,4) square face boxes x0, y0, x1, y1 for Wav2Lip: about a face wide, the mouth 70% down."""
        size = round(self.art.mouth_style.half_width * 6.4)
        size += size % 2
        x0 = mouths[:, 0] - size / 2
        y0 = mouths[:, 1] - round(size * 0.70)
        return np.stack([x0, y0, x0 + size, y0 + size], axis=1).astype(np.float32)

    def compose(
        self, frames: range, articulation: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """RGB (B,H,W,3), mask (B,H,W), straight-alpha RGB or None, and mouth centres (B,2) for ``frames``.

        ``articulation`` is ignored: a drawn head has no mouth of its own.

        The arrays are reused every ``ring`` calls: a consumer must be done with a batch by then
        (the encoder's bounded queues guarantee it).
        """
        n = len(frames)
        rgb_all, mask_all, straight_all = self._buffers(n)
        rgb, mask = rgb_all[:n], mask_all[:n]
        straight = straight_all[:n] if straight_all is not None else None
        mouths = np.empty((n, 2), dtype=np.float32)
        y0, y1, x0, x1 = self.box
        for i, f in enumerate(frames):
            state = idle_state(f, self.fps, self.still)
            entry = self._head_box(state)
            rgb[i, y0:y1, x0:x1] = entry[0]
            mask[i, y0:y1, x0:x1] = entry[1]
            if straight is not None:
                straight[i, y0:y1, x0:x1] = entry[2]
            mouths[i] = self.mouth_position(state)
        return rgb, mask, straight, mouths


def _unpremultiply(premul: np.ndarray) -> np.ndarray:
    a = premul[..., 3:]
    return np.where(a > 1e-4, premul[..., :3] / np.maximum(a, 1e-4), 0.0)

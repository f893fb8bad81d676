"""Procedurally drawn cartoon avatars: layered RGBA sprites for the compositor (build-time code).

Every built-in avatar is drawn here from signed-distance functions (SDFs) evaluated on the pixel grid, by
``python scripts/build_assets.py``, which stores the layers in the package's bundles
(a2v_cli/assets/avatars/); a render reads them from there (engine/drawn.py) and never imports this
module, and tests/test_builtin_bundles.py fails when the bundles and this code disagree. A shape's coverage of a
pixel is ``clip(0.5 - d, 0, 1)`` where ``d`` is the signed distance (in pixels) from the pixel centre to
the shape's edge: this is analytic antialiasing, so edges are clean and the alpha matte is smooth.

Layer model (all float32, premultiplied RGBA, composed with the "over" operator, back to front):

1. ``background`` -- opaque (H, W, 3) backdrop, a soft gradient that differs per pose.
2. ``body`` -- everything that does not move with the head: long back hair, neck, shoulders and
   clothes. The neck reaches up under the jaw so idle head sway of +/-3 px never opens a gap.
3. head sprite (``heads[blink]``) at ``head_origin`` (+ sway) -- face, ears, eyes, brows, nose and the
   hair that frames the face. It has no mouth: the lip renderer draws one at ``mouth_center`` on the
   plain skin left for it. One sprite per blink level (0 open, 0.5 half, 1 closed); they differ only
   inside the eyes, so the compositor can blend or switch between them freely.
4. the mouth, drawn by the lip renderer with ``mouth_style``.

Pixel coordinates are pixel-centre indices: pixel ``[y, x]`` sits at ``(x, y)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from a2v_cli.engine.avatars import AvatarEntry
from a2v_cli.engine.drawn import MouthStyle, PoseArt, PoseInfo

Color = tuple[float, float, float]
Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]
ColorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
BBox = tuple[float, float, float, float]

SIZE = 512
BLINK_LEVELS = (0.0, 0.5, 1.0)
HEAD_MARGIN = 8
_F32 = np.float32


# ----------------------------------------------------------------------------------------------------------------------
# SDF primitives (X is a (1, w) row of x coordinates, Y a (h, 1) column; results broadcast to (h, w))
# ----------------------------------------------------------------------------------------------------------------------


def _rot(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Move to a local frame centred on (cx, cy) and rotated by ang (radians), so shapes can tilt."""
    dx, dy = x - cx, y - cy
    if ang == 0.0:
        return dx, dy
    c, s = math.cos(ang), math.sin(ang)
    return c * dx + s * dy, -s * dx + c * dy


def sd_circle(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Exact distance to a circle."""
    return np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def sd_ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, ang: float = 0.0
) -> np.ndarray:
    """Ellipse distance (Quilez's first-order estimate): exact on the edge, which is all antialiasing needs."""
    px, py = _rot(x, y, cx, cy, ang)
    k0 = np.sqrt((px / rx) ** 2 + (py / ry) ** 2)
    k1 = np.sqrt((px / (rx * rx)) ** 2 + (py / (ry * ry)) ** 2)
    return np.where(k1 > 1e-6, k0 * (k0 - 1.0) / np.maximum(k1, 1e-6), -min(rx, ry))


def sd_round_box(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, hw: float, hh: float, r: float, ang: float = 0.0
) -> np.ndarray:
    """Exact distance to a rounded rectangle (half sizes hw, hh, corner radius r)."""
    px, py = _rot(x, y, cx, cy, ang)
    qx = np.abs(px) - (hw - r)
    qy = np.abs(py) - (hh - r)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def sd_superellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, n: float
) -> np.ndarray:
    """Superellipse |x/a|^n + |y/b|^n = 1 with a gradient-normalised distance: squarer than an ellipse."""
    u = np.abs(x - cx) / a + 1e-6
    v = np.abs(y - cy) / b + 1e-6
    un, vn = u**n, v**n
    s = un + vn
    f = s ** (1.0 / n)
    grad = s ** (1.0 / n - 1.0) * np.sqrt((un / u / a) ** 2 + (vn / v / b) ** 2)
    return (f - 1.0) / np.maximum(grad, 1e-6)


def sd_polygon(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Exact distance to a simple polygon (Quilez's winding form), for collars and lapels."""
    vx0, vy0 = pts[0]
    d = (x - vx0) ** 2 + (y - vy0) ** 2
    sign = np.ones(np.broadcast_shapes(x.shape, y.shape), dtype=_F32)
    n = len(pts)
    for i in range(n):
        ax, ay = pts[i]
        bx, by = pts[i - 1]
        ex, ey = bx - ax, by - ay
        wx, wy = x - ax, y - ay
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.minimum(d, (wx - ex * h) ** 2 + (wy - ey * h) ** 2)
        c1 = y >= ay
        c2 = y < by
        c3 = ex * wy > ey * wx
        flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
        sign = np.where(flip, -sign, sign)
    return sign * np.sqrt(d)


def sd_stroke(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]], radii: list[float]) -> np.ndarray:
    """Distance to a polyline whose half-thickness varies per vertex: tapered brush strokes."""
    d: np.ndarray | None = None
    for (ax, ay), (bx, by), ra, rb in zip(pts[:-1], pts[1:], radii[:-1], radii[1:], strict=True):
        ex, ey = bx - ax, by - ay
        wx, wy = x - ax, y - ay
        h = np.clip((wx * ex + wy * ey) / max(ex * ex + ey * ey, 1e-9), 0.0, 1.0)
        dd = np.sqrt((wx - ex * h) ** 2 + (wy - ey * h) ** 2) - (ra + (rb - ra) * h)
        d = dd if d is None else np.minimum(d, dd)
    assert d is not None
    return d


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union: blends two shapes with a fillet of size k, for organic joins."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def bezier(
    p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], p3: tuple[float, float], n: int = 12
) -> list[tuple[float, float]]:
    """Sample a cubic Bezier into n points, to feed sd_stroke."""
    out = []
    for i in range(n):
        t = i / (n - 1)
        a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
        out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def taper(n: int, r0: float, r_mid: float, r1: float) -> list[float]:
    """Brush radii along a stroke: r0 at the start, swelling to r_mid, r1 at the end."""
    out = []
    for i in range(n):
        t = i / (n - 1)
        base = r0 + (r1 - r0) * t
        out.append(base + (r_mid - 0.5 * (r0 + r1)) * math.sin(math.pi * t))
    return out


def _scale(a: Color, k: float) -> Color:
    """Darken (k < 1) or lighten a colour, clamped to 0..1."""
    return (min(a[0] * k, 1.0), min(a[1] * k, 1.0), min(a[2] * k, 1.0))


# ----------------------------------------------------------------------------------------------------------------------
# Canvas
# ----------------------------------------------------------------------------------------------------------------------


class _Canvas:
    """A premultiplied RGBA buffer covering a window of frame coordinates; shapes are painted 'over' it."""

    def __init__(self, x0: int, y0: int, w: int, h: int) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.rgba = np.zeros((h, w, 4), dtype=_F32)

    def grid(self, bbox: BBox | None) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Frame coordinates of the pixels inside bbox (clipped to the canvas), so SDFs run only where needed."""
        if bbox is None:
            ix0, iy0, ix1, iy1 = 0, 0, self.w, self.h
        else:
            ix0 = max(math.floor(bbox[0]) - 2 - self.x0, 0)
            iy0 = max(math.floor(bbox[1]) - 2 - self.y0, 0)
            ix1 = min(math.ceil(bbox[2]) + 3 - self.x0, self.w)
            iy1 = min(math.ceil(bbox[3]) + 3 - self.y0, self.h)
            if ix1 <= ix0 or iy1 <= iy0:
                return None
        xs = np.arange(ix0 + self.x0, ix1 + self.x0, dtype=_F32)[None, :]
        ys = np.arange(iy0 + self.y0, iy1 + self.y0, dtype=_F32)[:, None]
        return slice(iy0, iy1), slice(ix0, ix1), xs, ys

    def paint(
        self,
        shape: Shape,
        color: Color | ColorFn,
        bbox: BBox | None = None,
        opacity: float = 1.0,
        feather: float = 1.0,
        clip: Shape | None = None,
    ) -> None:
        """Composite a shape over the canvas; feather > 1 makes a soft edge (blush, shadows)."""
        g = self.grid(bbox)
        if g is None:
            return
        sy, sx, xs, ys = g
        d = shape(xs, ys)
        cov = np.clip(0.5 - d / feather, 0.0, 1.0)
        if clip is not None:
            cov = cov * np.clip(0.5 - clip(xs, ys), 0.0, 1.0)
        a = (cov * opacity).astype(_F32)
        a = np.broadcast_to(a, (sy.stop - sy.start, sx.stop - sx.start))
        col = color(xs, ys) if callable(color) else np.asarray(color, dtype=_F32)
        dst = self.rgba[sy, sx]
        dst *= (1.0 - a)[..., None]
        dst[..., :3] += col * a[..., None]
        dst[..., 3] += a

    def over(self, top: np.ndarray) -> None:
        """Composite a same-sized premultiplied layer over this canvas."""
        self.rgba *= 1.0 - top[..., 3:4]
        self.rgba += top


# ----------------------------------------------------------------------------------------------------------------------
# Avatar and pose specifications
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    """Palette and proportions of one character."""

    skin: Color
    hair: Color
    hair_hi: Color
    brow: Color
    iris: Color
    cloth: Color
    cloth2: Color
    cloth3: Color
    blush: Color
    hair_style: str  # "long", "short" or "curly"
    feminine: bool
    glasses: bool
    earrings: str  # "", "stud" or "hoop"
    jaw_hw: float
    neck_hw: float
    shoulder_hw: float
    mouth: MouthStyle


@dataclass(frozen=True)
class _PoseSpec:
    """Framing of one pose: head yaw (radians, + turns the face to the viewer's right) and backdrop."""

    avatar_id: str
    suffix: str
    name: str
    description: str
    yaw: float
    bg_top: Color
    bg_bottom: Color
    bg_glow: Color


_INNER = (0.36, 0.10, 0.12)
_TEETH = (0.97, 0.96, 0.93)

_LOOKS: dict[str, _Look] = {
    "ava": _Look(
        skin=(0.98, 0.84, 0.74),
        hair=(0.47, 0.25, 0.15),
        hair_hi=(0.70, 0.45, 0.28),
        brow=(0.40, 0.22, 0.14),
        iris=(0.28, 0.52, 0.40),
        cloth=(0.09, 0.55, 0.56),
        cloth2=(0.06, 0.41, 0.43),
        cloth3=(0.90, 0.74, 0.38),
        blush=(0.96, 0.52, 0.52),
        hair_style="long",
        feminine=True,
        glasses=False,
        earrings="stud",
        jaw_hw=62.0,
        neck_hw=30.0,
        shoulder_hw=188.0,
        mouth=MouthStyle((0.82, 0.38, 0.43), _INNER, _TEETH, 24.0, 5.5, 19.0),
    ),
    "leo": _Look(
        skin=(0.93, 0.75, 0.61),
        hair=(0.17, 0.13, 0.11),
        hair_hi=(0.36, 0.29, 0.24),
        brow=(0.16, 0.12, 0.10),
        iris=(0.27, 0.44, 0.64),
        cloth=(0.16, 0.22, 0.36),
        cloth2=(0.86, 0.91, 0.97),
        cloth3=(0.12, 0.17, 0.29),
        blush=(0.92, 0.55, 0.50),
        hair_style="short",
        feminine=False,
        glasses=True,
        earrings="",
        jaw_hw=67.0,
        neck_hw=37.0,
        shoulder_hw=206.0,
        mouth=MouthStyle((0.74, 0.47, 0.44), _INNER, _TEETH, 26.0, 5.0, 20.0),
    ),
    "mika": _Look(
        skin=(0.58, 0.38, 0.26),
        hair=(0.12, 0.08, 0.07),
        hair_hi=(0.30, 0.21, 0.16),
        brow=(0.10, 0.07, 0.06),
        iris=(0.30, 0.17, 0.09),
        cloth=(0.93, 0.46, 0.38),
        cloth2=(0.80, 0.34, 0.29),
        cloth3=(0.95, 0.76, 0.30),
        blush=(0.78, 0.36, 0.32),
        hair_style="curly",
        feminine=True,
        glasses=False,
        earrings="hoop",
        jaw_hw=64.0,
        neck_hw=31.0,
        shoulder_hw=190.0,
        mouth=MouthStyle((0.55, 0.25, 0.24), _INNER, _TEETH, 25.0, 6.0, 20.0),
    ),
}

_YAW = math.radians(24.0)

_POSE_SPECS: tuple[_PoseSpec, ...] = (
    _PoseSpec("ava", "front", "Ava, front", "Ava facing the camera, warm peach backdrop", 0.0,
              (0.99, 0.91, 0.85), (0.95, 0.76, 0.72), (1.0, 0.97, 0.93)),
    _PoseSpec("ava", "side", "Ava, three-quarter", "Ava turned to her left, lavender backdrop", _YAW,
              (0.90, 0.89, 0.98), (0.72, 0.74, 0.92), (0.98, 0.97, 1.0)),
    _PoseSpec("leo", "front", "Leo, front", "Leo facing the camera, sky-blue backdrop", 0.0,
              (0.87, 0.93, 0.98), (0.64, 0.77, 0.88), (0.97, 0.99, 1.0)),
    _PoseSpec("leo", "side", "Leo, three-quarter", "Leo turned to his right, warm sand backdrop", -_YAW,
              (0.95, 0.92, 0.86), (0.80, 0.75, 0.66), (1.0, 0.98, 0.94)),
    _PoseSpec("mika", "front", "Mika, front", "Mika facing the camera, mint backdrop", 0.0,
              (0.87, 0.96, 0.91), (0.60, 0.83, 0.75), (0.96, 1.0, 0.97)),
    _PoseSpec("mika", "side", "Mika, three-quarter", "Mika turned to her left, apricot backdrop", _YAW,
              (0.99, 0.94, 0.82), (0.96, 0.77, 0.62), (1.0, 0.98, 0.92)),
)

POSES: dict[str, PoseInfo] = {
    f"{p.avatar_id}-{p.suffix}": PoseInfo(f"{p.avatar_id}-{p.suffix}", p.avatar_id, p.name, p.description, SIZE, SIZE)
    for p in _POSE_SPECS
}
_SPEC_BY_ID: dict[str, _PoseSpec] = {f"{p.avatar_id}-{p.suffix}": p for p in _POSE_SPECS}

AVATARS: dict[str, AvatarEntry] = {
    "ava": AvatarEntry("ava", "Ava", "Young woman with long auburn hair and a teal top",
                      tuple(k for k in POSES if POSES[k].avatar_id == "ava"), builtin=True),
    "leo": AvatarEntry("leo", "Leo", "Man with short dark hair and glasses, in a navy blazer",
                      tuple(k for k in POSES if POSES[k].avatar_id == "leo"), builtin=True),
    "mika": AvatarEntry("mika", "Mika", "Woman with dark curly hair, gold hoops and a coral sweater",
                       tuple(k for k in POSES if POSES[k].avatar_id == "mika"), builtin=True),
}


# ----------------------------------------------------------------------------------------------------------------------
# Head geometry (shared by head and body so they line up)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geo:
    """Key points of a posed head in frame coordinates; yaw maps face-surface angles to screen x."""

    look: _Look
    yaw: float
    hx: float = 256.0
    crown_y: float = 200.0
    skull_rx: float = 84.0
    skull_ry: float = 100.0
    jaw_y: float = 266.0
    jaw_ry: float = 58.0
    eye_y: float = 230.0
    nose_y: float = 264.0
    mouth_y: float = 292.0
    face_r: float = 86.0

    def fx(self, u: float, r: float | None = None) -> float:
        """Screen x of a point at face angle u (radians from the face's midline) on a sphere of radius r."""
        return self.hx + (self.face_r if r is None else r) * math.sin(u + self.yaw)

    def squash(self, u: float) -> float:
        """Horizontal foreshortening of a feature at face angle u."""
        return max(math.cos(u + self.yaw), 0.35)

    @property
    def turn(self) -> float:
        """sin(yaw): how far face-anchored features slide sideways."""
        return math.sin(self.yaw)

    @property
    def skull_cx(self) -> float:
        """The cranium slides a little opposite to the face when the head turns (the back of the head shows)."""
        return self.hx - 10.0 * self.turn

    @property
    def skull_w(self) -> float:
        """Projected half-width of an ellipsoidal cranium that is deeper than it is wide."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return math.sqrt((self.skull_rx * c) ** 2 + (self.skull_rx * 1.14 * s) ** 2)

    @property
    def jaw_cx(self) -> float:
        """The jaw and chin sit at the front of the head, so they follow the face."""
        return self.hx + 44.0 * self.turn

    @property
    def mouth_x(self) -> float:
        """Mouth centre, on the face's midline."""
        return self.fx(0.0, 80.0)

    def head_sd(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Head silhouette: a cranium ellipse smoothly joined to a jaw shape (squarer for Leo)."""
        skull = sd_ellipse(x, y, self.skull_cx, self.crown_y, self.skull_w, self.skull_ry)
        hw = self.look.jaw_hw * (1.0 - 0.08 * abs(self.turn))
        if self.look.feminine:
            jaw = sd_ellipse(x, y, self.jaw_cx, self.jaw_y, hw, self.jaw_ry)
        else:
            jaw = sd_round_box(x, y, self.jaw_cx, self.jaw_y + 4.0, hw, self.jaw_ry - 4.0, 42.0)
        d = smin(skull, jaw, 26.0)
        if self.yaw != 0.0 and self.look.feminine:
            # the chin leads toward the side the face turns to
            cx = self.jaw_cx + 24.0 * self.turn
            d = smin(d, sd_ellipse(x, y, cx, self.jaw_y + 28.0, 30.0, 28.0), 18.0)
        return d

    @property
    def bbox(self) -> BBox:
        """Generous box around everything the head sprite may contain."""
        return (self.hx - 175.0, 40.0, self.hx + 175.0, 420.0)


# ----------------------------------------------------------------------------------------------------------------------
# Background
# ----------------------------------------------------------------------------------------------------------------------


def _draw_background(spec: _PoseSpec) -> np.ndarray:
    """Vertical gradient with a soft glow behind the head and a faint vignette: a calm studio backdrop."""
    ys = np.linspace(0.0, 1.0, SIZE, dtype=_F32)[:, None, None]
    top = np.asarray(spec.bg_top, dtype=_F32)
    bottom = np.asarray(spec.bg_bottom, dtype=_F32)
    t = ys * ys * (3.0 - 2.0 * ys)
    img = np.broadcast_to(top + (bottom - top) * t, (SIZE, SIZE, 3)).copy()
    x = np.arange(SIZE, dtype=_F32)[None, :]
    y = np.arange(SIZE, dtype=_F32)[:, None]
    cx = 256.0 - 40.0 * math.sin(spec.yaw)
    r = np.sqrt(((x - cx) / 230.0) ** 2 + ((y - 210.0) / 210.0) ** 2)
    glow = (np.clip(1.0 - r, 0.0, 1.0) ** 2 * 0.55)[..., None]
    img += (np.asarray(spec.bg_glow, dtype=_F32) - img) * glow
    vr = np.sqrt(((x - 256.0) / 300.0) ** 2 + ((y - 256.0) / 300.0) ** 2)
    img *= (1.0 - 0.08 * np.clip(vr - 0.6, 0.0, 1.0) * 2.0)[..., None]
    return np.clip(img, 0.0, 1.0).astype(_F32)


# ----------------------------------------------------------------------------------------------------------------------
# Body layer
# ----------------------------------------------------------------------------------------------------------------------


def _vgrad(c_top: Color, c_bottom: Color, y0: float, y1: float) -> ColorFn:
    """Colour function: a vertical gradient between y0 and y1, for gentle clothing shading."""
    a = np.asarray(c_top, dtype=_F32)
    b = np.asarray(c_bottom, dtype=_F32)

    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        t = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)[..., None]
        return np.broadcast_to(a + (b - a) * t, (y.shape[0], x.shape[1], 3))

    return fn


def _draw_body(g: _Geo) -> np.ndarray:
    """Back hair, neck, shoulders and clothes: the part of the figure that stays still."""
    look = g.look
    cv = _Canvas(0, 0, SIZE, SIZE)
    hx = g.hx
    byaw = 0.55 * g.yaw  # the body turns less than the head
    bturn = math.sin(byaw)
    bx = hx + 6.0 * bturn  # body centre
    sh_hw = look.shoulder_hw * (0.9 + 0.1 * math.cos(byaw)) - 10.0 * abs(bturn)
    neck_top = g.eye_y + 10.0
    shoulder_y = 378.0 if look.feminine else 374.0

    def torso(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # rounded shoulders (a superellipse) over a straight-sided chest
        top = sd_superellipse(x, y, bx, shoulder_y + 130.0, sh_hw, 130.0, 3.0)
        return np.minimum(top, sd_round_box(x, y, bx, shoulder_y + 280.0, sh_hw, 150.0, 4.0))

    neck_cx = hx + 4.0 * math.sin(g.yaw)

    def neck(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_round_box(x, y, neck_cx, (neck_top + shoulder_y + 30.0) / 2, look.neck_hw,
                            (shoulder_y + 30.0 - neck_top) / 2, 14.0)

    def skin_body(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return smin(neck(x, y), torso(x, y), 34.0)

    # long hair falling behind the shoulders
    if look.hair_style == "long":
        back_cx = g.skull_cx - 6.0 * g.turn

        def back_hair(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            main = sd_round_box(x, y, back_cx, 330.0, 112.0, 150.0, 70.0)
            tips = np.minimum(sd_circle(x, y, back_cx - 62.0, 448.0, 46.0),
                              sd_circle(x, y, back_cx + 62.0, 448.0, 46.0))
            return smin(main, tips, 12.0)

        cv.paint(back_hair, _hair_color(look), (back_cx - 140, 170, back_cx + 140, 500))
        # inner shadow where the hair falls behind the neck
        cv.paint(lambda x, y: sd_round_box(x, y, neck_cx, 360.0, look.neck_hw + 16.0, 60.0, 20.0),
                 _scale(look.hair, 0.6), (neck_cx - 70, 290, neck_cx + 70, 430), opacity=0.35, feather=14.0,
                 clip=back_hair)
        _draw_strands(cv, g, back_hair)

    skin = look.skin
    neck_col = _scale(skin, 0.93)
    if look.hair_style == "short":
        # the shirt collar wraps around the back of the neck
        cv.paint(lambda x, y: sd_ellipse(x, y, neck_cx, shoulder_y - 18.0, look.neck_hw + 6.0, 18.0),
                 _scale(look.cloth2, 0.85), (neck_cx - 60, shoulder_y - 50, neck_cx + 60, shoulder_y + 10))
    cv.paint(skin_body, neck_col, (bx - sh_hw - 4, neck_top - 4, bx + sh_hw + 4, SIZE))
    # shadow cast by the jaw on the neck (head covers its top half)
    cv.paint(lambda x, y: sd_ellipse(x, y, g.jaw_cx, g.jaw_y + 30.0, look.jaw_hw * 0.9, g.jaw_ry),
             _scale(skin, 0.72), (hx - 110, neck_top, hx + 110, 380), opacity=0.55, feather=10.0, clip=neck)
    cv.paint(lambda x, y: sd_round_box(x, y, neck_cx + 18.0, 330.0, 10.0, 60.0, 10.0),
             _scale(skin, 0.8), (neck_cx - 20, 250, neck_cx + 60, 420), opacity=0.25, feather=16.0, clip=neck)

    if look.hair_style == "long":
        _clothes_top(cv, g, torso, bx, bturn, shoulder_y)
    elif look.hair_style == "short":
        _clothes_blazer(cv, g, torso, bx, bturn, shoulder_y)
    else:
        _clothes_sweater(cv, g, torso, bx, bturn, shoulder_y)
    return cv.rgba


def _clothes_top(cv: _Canvas, g: _Geo, torso: Shape, bx: float, bturn: float, sy: float) -> None:
    """Ava: a teal top with a scoop neckline and a fine gold necklace."""
    look = g.look
    ncx = bx + 26.0 * bturn

    def neckline(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_ellipse(x, y, ncx, sy - 6.0, 68.0 - 8.0 * abs(bturn), 56.0)

    def top(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(torso(x, y), -neckline(x, y))

    bb = (0.0, sy - 30, SIZE, SIZE)
    # necklace under the top's edge
    chain = bezier((ncx - 40, sy + 2), (ncx - 26, sy + 40), (ncx + 26, sy + 40), (ncx + 40, sy + 2), 16)
    cv.paint(lambda x, y: sd_stroke(x, y, chain, [1.1] * 16), look.cloth3, (ncx - 50, sy - 10, ncx + 50, sy + 50))
    cv.paint(lambda x, y: sd_circle(x, y, ncx, sy + 36.0, 4.2), look.cloth3, (ncx - 8, sy + 28, ncx + 8, sy + 44))
    cv.paint(lambda x, y: sd_circle(x, y, ncx - 1.2, sy + 34.6, 1.4), (1.0, 0.95, 0.8),
             (ncx - 4, sy + 31, ncx + 2, sy + 38))
    cv.paint(top, _vgrad(look.cloth, look.cloth2, sy, SIZE), bb)
    # hem of the neckline
    cv.paint(lambda x, y: np.abs(neckline(x, y) + 3.0) - 1.6, look.cloth2, bb, clip=torso)
    # soft fold shadows under the arms
    for sgn in (-1.0, 1.0):
        cx = bx + sgn * (g.look.shoulder_hw - 30.0)
        cv.paint(lambda x, y, cx=cx: sd_round_box(x, y, cx, 500.0, 18.0, 70.0, 18.0), look.cloth2,
                 (cx - 60, 400, cx + 60, SIZE), opacity=0.6, feather=24.0, clip=top)


def _clothes_blazer(cv: _Canvas, g: _Geo, torso: Shape, bx: float, bturn: float, sy: float) -> None:
    """Leo: light shirt with an open collar under a navy blazer with lapels."""
    look = g.look
    ncx = bx + 30.0 * bturn
    nhw = look.neck_hw

    def opening(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_polygon(x, y, [(ncx - nhw - 2, sy - 30), (ncx + nhw + 2, sy - 30), (ncx, sy + 40)]) - 3.0

    def shirt(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(torso(x, y), -opening(x, y))

    bb = (0.0, sy - 40, SIZE, SIZE)
    cv.paint(shirt, _vgrad(look.cloth2, _scale(look.cloth2, 0.9), sy, SIZE), bb)
    # jacket: torso minus a deep V
    v = [(ncx - 74, sy - 40), (ncx + 74, sy - 40), (ncx + 26, SIZE + 40), (ncx - 26, SIZE + 40)]

    def jacket(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(torso(x, y), -sd_polygon(x, y, v))

    cv.paint(jacket, _vgrad(look.cloth, _scale(look.cloth, 0.8), sy, SIZE), bb)
    # lapels
    for sgn in (-1.0, 1.0):
        lap = [(ncx + sgn * 44, sy - 4), (ncx + sgn * 80, sy + 2), (ncx + sgn * 62, sy + 40),
               (ncx + sgn * 74, sy + 52), (ncx + sgn * 30, SIZE + 10), (ncx + sgn * 26, SIZE + 10)]
        if sgn > 0:
            lap.reverse()
        cv.paint(lambda x, y, lap=lap: sd_polygon(x, y, lap) - 1.0, look.cloth3, bb, clip=torso)
        cv.paint(lambda x, y, lap=lap: np.abs(sd_polygon(x, y, lap) - 1.0) - 0.8, _scale(look.cloth3, 0.7), bb,
                 clip=torso)
    # shirt collar points
    for sgn in (-1.0, 1.0):
        col = [(ncx + sgn * (nhw + 2), sy - 36), (ncx + sgn * (nhw + 20), sy + 2), (ncx + sgn * 16, sy + 34),
               (ncx + sgn * 1, sy + 8)]
        if sgn > 0:
            col.reverse()
        cv.paint(lambda x, y, col=col: sd_polygon(x, y, col) - 2.0, look.cloth2, bb)
        cv.paint(lambda x, y, col=col: np.abs(sd_polygon(x, y, col) - 2.0) - 0.7, _scale(look.cloth2, 0.78), bb)
    # a button
    cv.paint(lambda x, y: sd_circle(x, y, ncx, sy + 62.0, 2.6), _scale(look.cloth2, 0.75),
             (ncx - 6, sy + 55, ncx + 6, sy + 70))


def _clothes_sweater(cv: _Canvas, g: _Geo, torso: Shape, bx: float, bturn: float, sy: float) -> None:
    """Mika: coral crew-neck sweater with a ribbed collar."""
    look = g.look
    ncx = bx + 20.0 * bturn

    def neckline(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_ellipse(x, y, ncx, sy - 20.0, look.neck_hw + 12.0, 30.0)

    def sweater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(torso(x, y), -neckline(x, y))

    bb = (0.0, sy - 60, SIZE, SIZE)
    cv.paint(sweater, _vgrad(look.cloth, look.cloth2, sy, SIZE), bb)

    def band(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.abs(neckline(x, y) - 6.0) - 6.0

    def ribs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        base = np.asarray(look.cloth2, dtype=_F32)
        k = (0.5 + 0.5 * np.cos((x - ncx) * 0.9))[..., None] * 0.12
        return np.broadcast_to(base * (1.0 - k), (y.shape[0], x.shape[1], 3))

    cv.paint(band, ribs, bb, clip=torso)
    for sgn in (-1.0, 1.0):
        cx = bx + sgn * (look.shoulder_hw - 30.0)
        cv.paint(lambda x, y, cx=cx: sd_round_box(x, y, cx, 500.0, 18.0, 70.0, 18.0), look.cloth2,
                 (cx - 60, 400, cx + 60, SIZE), opacity=0.6, feather=24.0, clip=sweater)


# ----------------------------------------------------------------------------------------------------------------------
# Head layer
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Eye:
    """One eye: almond outline between two curves, in frame coordinates."""

    cx: float
    cy: float
    hw: float
    top_h: float
    bot_h: float
    outer: float  # +1 if the outer corner is at larger x
    lift: float

    def curves(self, x: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Upper contour, lower contour and lid edge (upper lid lowered by level) at columns x."""
        t = (x - self.cx) / self.hw
        to = t * self.outer
        base = np.clip(1.0 - t * t, 0.0, None) ** 0.75
        corner = self.cy - self.lift * to
        top = corner - self.top_h * base * (1.0 - 0.12 * to)
        bot = corner + self.bot_h * base * (1.0 + 0.1 * to)
        lid = top + (bot - top) * level
        return top, bot, lid

    @property
    def bbox(self) -> BBox:
        """Box around the eye and its lash line."""
        return (self.cx - self.hw - 8, self.cy - self.top_h - self.lift - 8,
                self.cx + self.hw + 8, self.cy + self.bot_h + self.lift + 6)


def _curve_dist(y: np.ndarray, curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Signed vertical distance to y = curve(x), normalised by the slope so antialiasing stays 1 px wide."""
    xr = x[0]
    c1 = curve[0] if curve.ndim == 2 else curve
    slope = np.gradient(c1, xr) if xr.size > 1 else np.zeros_like(c1)
    norm = np.sqrt(1.0 + np.minimum(slope * slope, 16.0)).astype(_F32)
    return (y - curve) / norm


def _eye_region(e: _Eye) -> Shape:
    """Inside of the eye (negative inside)."""
    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        top, bot, _ = e.curves(x)
        return np.maximum(np.maximum(-_curve_dist(y, top, x), _curve_dist(y, bot, x)), np.abs(x - e.cx) - e.hw)
    return fn


def _make_eyes(g: _Geo) -> list[_Eye]:
    """Both eyes, placed on the face sphere and foreshortened by the yaw."""
    look = g.look
    hw = 18.5 if look.feminine else 16.5
    out = []
    for sgn in (-1.0, 1.0):
        u = sgn * 0.42
        k = g.squash(u)
        out.append(_Eye(g.fx(u), g.eye_y, hw * k, 12.5 if look.feminine else 10.0, 8.0 if look.feminine else 7.0,
                        sgn, 2.5 if look.feminine else 1.0))
    return out


def _draw_eye(cv: _Canvas, g: _Geo, e: _Eye, level: float) -> None:
    """Eye white, iris, pupil, highlights, then the upper lid lowered by level and its lash line."""
    look = g.look
    region = _eye_region(e)
    bb = e.bbox
    cv.paint(region, (0.99, 0.98, 0.97), bb)
    k = e.hw / (18.5 if look.feminine else 16.5)
    ir = 10.5 if look.feminine else 9.0
    # irises look slightly toward the camera in the three-quarter view
    icx = e.cx - 2.0 * g.turn
    icy = e.cy + 0.5
    irx = ir * (0.55 + 0.45 * k)

    def iris(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_ellipse(x, y, icx, icy, irx, ir)

    iris_col = np.asarray(look.iris, dtype=_F32)
    dark = np.asarray(_scale(look.iris, 0.55), dtype=_F32)

    def iris_color(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.sqrt(((x - icx) / irx) ** 2 + ((y - icy) / ir) ** 2)
        t = np.clip((r - 0.55) / 0.45, 0.0, 1.0)[..., None]
        up = np.clip((icy - y) / ir, 0.0, 1.0)[..., None] * 0.5
        return np.clip(iris_col + (dark - iris_col) * np.maximum(t, up), 0.0, 1.0)

    cv.paint(iris, iris_color, bb, clip=region)
    cv.paint(lambda x, y: sd_ellipse(x, y, icx, icy, irx * 0.5, ir * 0.5), (0.05, 0.04, 0.04), bb, clip=region)
    cv.paint(lambda x, y: sd_circle(x, y, icx + 3.5 * k, icy - 3.8, 2.8), (1.0, 1.0, 1.0), bb, clip=region)
    cv.paint(lambda x, y: sd_circle(x, y, icx - 3.0 * k, icy + 3.6, 1.3), (1.0, 1.0, 1.0), bb, opacity=0.8,
             clip=region)
    # shadow of the upper lid on the eyeball
    lid_shadow = _scale(look.skin, 0.55)
    cv.paint(lambda x, y: _curve_dist(y, e.curves(x)[0] + 4.0, x), lid_shadow, bb, opacity=0.25, feather=4.0,
             clip=region)
    lid_col = _scale(look.skin, 0.97)
    if level > 0.0:
        def lid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            _, _, edge = e.curves(x, level)
            return np.maximum(_curve_dist(y, edge, x), region(x, y) - 1.0)
        cv.paint(lid, lid_col, bb)
    # lash line along the lid edge; a little flick at the outer corner for the women
    n = 14
    pts = []
    for i in range(n):
        t = -1.04 + 2.08 * i / (n - 1)
        xx = np.asarray([[e.cx + e.outer * t * e.hw]], dtype=_F32)
        _, _, edge = e.curves(xx, level)
        pts.append((float(xx[0, 0]), float(edge[0, 0])))
    if e.outer < 0:
        pts.reverse()
    thick = 2.2 if look.feminine else 1.6
    thick *= 1.0 - 0.25 * level
    radii = taper(n, 0.7, thick, thick * 0.9)
    if look.feminine:
        ox, oy = pts[-1]
        pts.append((ox + e.outer * 5.0, oy - 4.5 + 2.5 * level))
        radii.append(0.6)
    lash_col = (0.13, 0.08, 0.07)
    cv.paint(lambda x, y: sd_stroke(x, y, pts, radii), lash_col, bb)


def _draw_eye_static(cv: _Canvas, g: _Geo, e: _Eye) -> None:
    """Parts around an eye that do not blink: lower lash line and the lid crease."""
    look = g.look
    n = 10
    low = []
    crease = []
    for i in range(n):
        t = -0.2 + 1.2 * i / (n - 1)
        xx = np.asarray([[e.cx + e.outer * t * e.hw]], dtype=_F32)
        top, bot, _ = e.curves(xx)
        low.append((float(xx[0, 0]), float(bot[0, 0]) + 0.6))
    for i in range(n):
        t = -0.75 + 1.6 * i / (n - 1)
        xx = np.asarray([[e.cx + e.outer * t * e.hw]], dtype=_F32)
        top, _, _ = e.curves(xx)
        crease.append((float(xx[0, 0]), float(top[0, 0]) - 5.5 - 1.5 * (1 - t * t)))
    bb = (e.bbox[0], e.bbox[1] - 10, e.bbox[2], e.bbox[3] + 4)
    cv.paint(lambda x, y: sd_stroke(x, y, low, taper(n, 0.2, 0.8, 0.6)), _scale(look.skin, 0.6), bb, opacity=0.7)
    cv.paint(lambda x, y: sd_stroke(x, y, crease, taper(n, 0.3, 1.0, 0.3)), _scale(look.skin, 0.72), bb,
             opacity=0.8)


def _draw_brows(cv: _Canvas, g: _Geo, eyes: list[_Eye]) -> None:
    """Tapered brow strokes above each eye, thicker for Leo."""
    look = g.look
    for e in eyes:
        k = e.hw / (18.5 if look.feminine else 16.5)
        y0 = e.cy - (25.0 if look.feminine else 22.0)
        inner = (e.cx - e.outer * e.hw * 0.95, y0 + 3.0)
        outer = (e.cx + e.outer * e.hw * 1.15, y0 + 2.0)
        c1 = (e.cx - e.outer * e.hw * 0.3, y0 - 3.5)
        c2 = (e.cx + e.outer * e.hw * 0.6, y0 - 4.5)
        pts = bezier(inner, c1, c2, outer, 12)
        r0, rm, r1 = (2.6, 2.4, 0.7) if look.feminine else (3.6, 3.4, 1.2)
        radii = taper(12, r0 * (0.7 + 0.3 * k), rm, r1)
        bb = (min(inner[0], outer[0]) - 8, y0 - 10, max(inner[0], outer[0]) + 8, y0 + 10)
        cv.paint(lambda x, y, pts=pts, radii=radii: sd_stroke(x, y, pts, radii), look.brow, bb)


def _draw_nose(cv: _Canvas, g: _Geo) -> None:
    """A light cartoon nose: shading on one side and a small tip curve (profile line when turned)."""
    look = g.look
    dark = _scale(look.skin, 0.72)
    ny = g.nose_y
    tip_x = g.fx(0.0, 96.0)
    bb = (tip_x - 30, g.eye_y, tip_x + 30, ny + 14)
    if g.yaw == 0.0:
        pts = bezier((tip_x - 8, ny - 1), (tip_x - 4, ny + 5), (tip_x + 4, ny + 5), (tip_x + 8, ny - 1), 10)
        cv.paint(lambda x, y: sd_stroke(x, y, pts, taper(10, 0.4, 1.5, 0.4)), dark, bb, opacity=0.85)
        ridge = bezier((tip_x + 4, g.eye_y + 8), (tip_x + 6, ny - 18), (tip_x + 8, ny - 10), (tip_x + 9, ny - 3), 8)
        cv.paint(lambda x, y: sd_stroke(x, y, ridge, taper(8, 0.2, 1.0, 0.6)), dark, bb, opacity=0.35)
        cv.paint(lambda x, y: sd_ellipse(x, y, tip_x - 2, ny - 7, 4.0, 3.0), (1.0, 1.0, 1.0), bb, opacity=0.18,
                 feather=4.0)
        return
    s = 1.0 if g.yaw > 0 else -1.0
    root = (g.fx(0.0, 86.0) - s * 2.0, g.eye_y + 6.0)
    tip = (tip_x + s * 5.0, ny)
    base = (tip_x - s * 5.0, ny + 5.0)
    line = bezier(root, (root[0] + s * 2.0, ny - 22), (tip[0], ny - 12), tip, 10)
    line += bezier(tip, (tip[0] + s * 1.0, ny + 5), (base[0] + s * 4.0, ny + 6), base, 6)[1:]
    radii = taper(10, 0.3, 1.0, 1.5) + taper(5, 1.5, 1.6, 0.5)
    cv.paint(lambda x, y: sd_stroke(x, y, line, radii), dark, bb, opacity=0.8)
    # nose side plane in shade
    cv.paint(lambda x, y: sd_ellipse(x, y, tip_x - s * 3.0, ny - 6, 5.0, 9.0), dark, bb, opacity=0.2, feather=6.0)


def _draw_ear(cv: _Canvas, g: _Geo, x0: float, side: float, outline: bool) -> None:
    """An ear at x0 (side = -1 left, +1 right); its outer rim pokes out of the head silhouette."""
    look = g.look
    ey = g.eye_y + 14.0
    rx, ry = (11.5, 20.0) if look.feminine else (13.0, 22.0)
    cx = x0 + side * 3.0

    def ear(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_ellipse(x, y, cx, ey, rx, ry, side * 0.12)

    bb = (cx - rx - 4, ey - ry - 4, cx + rx + 4, ey + ry + 12)
    if outline:
        shape: Shape = ear
    else:
        def shape(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.maximum(ear(x, y), -(g.head_sd(x, y) + 1.5))
    cv.paint(shape, look.skin, bb)
    inner = _scale(look.skin, 0.8)
    cv.paint(lambda x, y: sd_ellipse(x, y, cx + side * 1.5, ey + 1.0, rx * 0.5, ry * 0.62, side * 0.12), inner, bb,
             opacity=0.8, feather=2.5, clip=shape)
    if outline:
        cv.paint(lambda x, y: np.abs(ear(x, y) + 0.8) - 0.8, _scale(look.skin, 0.75), bb, opacity=0.9)
    if look.earrings == "stud":
        cv.paint(lambda x, y: sd_circle(x, y, cx + side * 1.0, ey + ry - 4.0, 2.8), look.cloth3, bb)
        cv.paint(lambda x, y: sd_circle(x, y, cx + side * 0.2, ey + ry - 5.0, 1.0), (1.0, 0.97, 0.85), bb)
    elif look.earrings == "hoop":
        hb = (cx - 16, ey + ry - 8, cx + 16, ey + ry + 26)
        cv.paint(lambda x, y: np.abs(sd_circle(x, y, cx + side * 1.0, ey + ry + 9.0, 11.0)) - 1.5, look.cloth3, hb)


def _hair_color(look: _Look) -> ColorFn:
    """One hair gradient for head and body layers, so hair pieces that meet match exactly."""
    return _vgrad(look.hair_hi if look.hair_style == "long" else look.hair, _scale(look.hair, 0.8), 60.0, 470.0)


def _face_window(g: _Geo, cy: float, rx: float, ry: float) -> Shape:
    """Region of the face left bare by the front hair; it widens toward the side the face turns to."""
    fx = g.fx(0.0, 40.0)
    shift = 26.0 * g.turn

    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = sd_ellipse(x, y, fx, cy, rx, ry)
        if shift != 0.0:
            d = smin(d, sd_ellipse(x, y, fx + shift, cy + 6.0, rx, ry), 10.0)
        # below the temples the bare region flares out to the silhouette, so side hair tapers off smoothly
        lower = sd_ellipse(x, y, g.skull_cx + 4.0 * g.turn, g.eye_y + 58.0, g.skull_w * 1.22, 100.0)
        return np.minimum(d, lower)

    return fn


def _hair_long(g: _Geo) -> tuple[Shape, Shape, BBox]:
    """Ava: volume around the skull with curtains down past the jaw (back), and a side-swept fringe (front)."""
    cx = g.skull_cx - 4.0 * g.turn
    w = g.skull_w
    fx = g.fx(0.0, 40.0)
    win = _face_window(g, 270.0, 79.0, 124.0)

    def cap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sd_ellipse(x, y, cx, g.crown_y - 4.0, w + 13.0, g.skull_ry + 11.0)

    def back(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sides = sd_round_box(x, y, cx, 300.0, w + 18.0, 72.0, 44.0)
        return smin(cap(x, y) - 1.0, sides, 30.0)

    def front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c = cap(x, y)
        hair = np.maximum(c, -win(x, y))
        # a soft lock swept from the side parting across the forehead
        lock = sd_ellipse(x, y, fx - 26.0, 158.0, 70.0, 25.0, -0.42)
        lock = smin(lock, sd_ellipse(x, y, fx - 64.0, 186.0, 22.0, 26.0, 0.3), 10.0)
        hair = np.minimum(hair, np.maximum(lock, c - 2.0))
        return np.maximum(hair, y - (g.eye_y + 4.0))

    return back, front, (g.hx - 130, 70, g.hx + 130, 380)


def _hair_short(g: _Geo) -> tuple[Shape, Shape, BBox]:
    """Leo: short crop with a little volume on top and trimmed sides."""
    cx = g.skull_cx - 3.0 * g.turn
    w = g.skull_w
    fx = g.fx(0.0, 40.0)
    win = _face_window(g, 268.0, 76.0, 120.0)

    def cap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c = sd_ellipse(x, y, cx, g.crown_y - 6.0, w + 6.0, g.skull_ry + 6.0)
        top = sd_ellipse(x, y, cx + 6.0 * g.turn, 116.0, 64.0, 20.0, -0.05)
        return smin(c, top, 18.0)

    def back(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(cap(x, y), y - (g.eye_y + 10.0))

    def front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        temple = sd_round_box(x, y, fx + 10.0 * g.turn, 256.0, 80.0 - 4.0 * abs(g.turn), 92.0, 56.0)
        bare = smin(win(x, y), temple, 16.0)
        c = cap(x, y)
        hair = np.maximum(c, -bare)
        # the fringe is combed from a left parting across to the right
        lock = sd_ellipse(x, y, fx + 22.0, 150.0, 58.0, 17.0, 0.3)
        hair = np.minimum(hair, np.maximum(lock, c - 1.0))
        return np.maximum(hair, y - (g.eye_y + 8.0))

    return back, front, (g.hx - 120, 70, g.hx + 120, 260)


_CURLS = [(math.cos(a), math.sin(a)) for a in np.linspace(0.0, 2.0 * math.pi, 26, endpoint=False)]


def _hair_curly(g: _Geo) -> tuple[Shape, Shape, BBox]:
    """Mika: a big cloud of curls (scalloped outline) with a curly hairline."""
    cx = g.skull_cx - 10.0 * g.turn
    cy = g.crown_y - 22.0
    rx, ry = g.skull_w + 34.0, g.skull_ry + 10.0
    fx = g.fx(0.0, 40.0)
    wcy, wrx, wry = 274.0, 72.0, 124.0
    win = _face_window(g, wcy, wrx, wry)

    def cloud(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = sd_ellipse(x, y, cx, cy, rx, ry)
        for ca, sa in _CURLS:
            if sa > 0.55:
                continue
            d = np.minimum(d, sd_circle(x, y, cx + ca * (rx - 8.0), cy + sa * (ry - 8.0), 19.0))
        return d

    def back(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return cloud(x, y)

    def front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        bare = win(x, y)
        for i in range(7):
            a = -0.8 + 1.6 * i / 6
            px = fx + wrx * math.sin(a) + 26.0 * g.turn * (a > 0)
            py = wcy - wry * math.sqrt(max(1.0 - math.sin(a) ** 2, 0.0)) + 2.0
            bare = np.maximum(bare, -sd_circle(x, y, px, py, 10.0))
        return np.maximum(np.maximum(cloud(x, y), -bare), y - (g.eye_y + 2.0))

    return back, front, (g.hx - 160, 40, g.hx + 160, 300)


def _draw_strands(cv: _Canvas, g: _Geo, shape: Shape) -> None:
    """Faint sheen lines down the long side hair (same curves in head and body layers, so they join)."""
    cx = g.skull_cx - 4.0 * g.turn
    y0, y1 = 190.0, 470.0
    for sgn in (-1.0, 1.0):
        for off, op in ((0.0, 0.22), (12.0, 0.14)):
            xa = cx + sgn * (g.skull_w + 4.0 - off)
            pts = bezier((xa, y0), (xa + sgn * 6.0, y0 + 0.3 * (y1 - y0)), (xa + sgn * 2.0, y0 + 0.7 * (y1 - y0)),
                         (xa + sgn * 8.0, y1), 16)
            bb = (xa - 20, y0 - 4, xa + 20, y1 + 4)
            cv.paint(lambda x, y, pts=pts: sd_stroke(x, y, pts, taper(16, 0.4, 1.8, 0.4)), g.look.hair_hi, bb,
                     opacity=op, clip=shape)


def _draw_hair_shading(cv: _Canvas, g: _Geo, shape: Shape, bb: BBox) -> None:
    """Sheen strands and curl marks on top of the front hair, clipped to it."""
    look = g.look
    cx = g.skull_cx
    hi = look.hair_hi
    if look.hair_style == "curly":
        for i, (ca, sa) in enumerate(_CURLS):
            if sa > 0.3:
                continue
            for ring, k in ((10.0, 1.0), (-14.0, 0.8)):
                px = cx + ca * (g.skull_w + ring) * k
                py = g.crown_y - 22.0 + sa * (g.skull_ry + ring * 0.6) * k
                r = 6.0 + ((i * 7 + int(ring)) % 4) * 1.5
                ang = 0.9 * ((i * 5) % 7) - 2.7
                arc_bb = (px - r - 3, py - r - 3, px + r + 3, py + r + 3)
                nx, ny = math.cos(ang), math.sin(ang)

                def arc(x: np.ndarray, y: np.ndarray, px: float = px, py: float = py, r: float = r, nx: float = nx,
                        ny: float = ny) -> np.ndarray:
                    d = np.abs(sd_circle(x, y, px, py, r)) - 1.2
                    return np.maximum(d, (x - px) * nx + (y - py) * ny - 1.0)

                cv.paint(arc, hi, arc_bb, opacity=0.35, clip=shape)
        return
    top_y = g.crown_y - g.skull_ry
    if look.hair_style == "long":
        fx = g.fx(0.0, 40.0)
        for off, op in ((0.0, 0.35), (14.0, 0.25), (28.0, 0.18)):
            pts = bezier((fx + 30 - off * 0.3, top_y + 8 + off * 0.5), (fx + 10, top_y + 40 + off),
                         (fx - 50, top_y + 44 + off), (fx - 90 + off * 0.4, top_y + 100 + off), 14)
            cv.paint(lambda x, y, pts=pts: sd_stroke(x, y, pts, taper(14, 0.4, 2.6, 0.4)), hi, bb, opacity=op,
                     clip=shape)
        return
    fx = g.fx(0.0, 40.0)
    for off, op in ((0.0, 0.35), (12.0, 0.22)):
        pts = bezier((fx - 40 + off, top_y + 4 + off * 0.3), (fx - 10 + off, top_y - 2), (fx + 30 + off, top_y + 2),
                     (fx + 64 + off, top_y + 20), 12)
        cv.paint(lambda x, y, pts=pts: sd_stroke(x, y, pts, taper(12, 0.4, 2.8, 0.4)), hi, bb, opacity=op,
                 clip=shape)


def _draw_head(g: _Geo) -> tuple[dict[float, np.ndarray], tuple[int, int]]:
    """Draw the head at every blink level; returns the sprites and their frame origin (top-left)."""
    look = g.look
    x0, y0, x1, y1 = (int(v) for v in g.bbox)
    base = _Canvas(x0, y0, x1 - x0, y1 - y0)
    hairs = {"long": _hair_long, "short": _hair_short, "curly": _hair_curly}
    hair_back, hair_front, hair_bb = hairs[look.hair_style](g)
    hair_col = _hair_color(look)

    base.paint(hair_back, hair_col, hair_bb)
    if look.hair_style == "long":
        # a darker inner layer behind the face gives the hair depth
        base.paint(lambda x, y: sd_ellipse(x, y, g.jaw_cx, 272.0, look.jaw_hw + 22.0, 80.0), _scale(look.hair, 0.7),
                   hair_bb, opacity=0.25, feather=14.0, clip=hair_back)
        _draw_strands(base, g, hair_back)
    head_bb = (g.hx - 110, g.crown_y - g.skull_ry - 4, g.hx + 110, g.jaw_y + g.jaw_ry + 30)
    base.paint(g.head_sd, look.skin, head_bb)
    # soft form shading: the side away from the light, under the cheekbones, forehead under the hair
    shade = _scale(look.skin, 0.84)
    sx = g.hx + 70.0 if g.yaw <= 0 else g.skull_cx - 78.0
    base.paint(lambda x, y: sd_ellipse(x, y, sx, 250.0, 26.0, 90.0), shade, head_bb, opacity=0.45, feather=30.0,
               clip=g.head_sd)
    base.paint(lambda x, y: sd_ellipse(x, y, g.jaw_cx + 12.0 * g.turn, g.jaw_y + 52.0, 40.0, 10.0), shade, head_bb,
               opacity=0.3, feather=14.0, clip=g.head_sd)
    base.paint(lambda x, y: hair_front(x, y - 7.0), _scale(look.skin, 0.8), hair_bb, opacity=0.5, feather=8.0,
               clip=g.head_sd)
    # cheeks
    for sgn in (-1.0, 1.0):
        u = sgn * 0.55
        bx = g.fx(u, 84.0)
        k = g.squash(u)
        base.paint(lambda x, y, bx=bx, k=k: sd_ellipse(x, y, bx, g.nose_y + 4.0, 16.0 * k, 10.0), look.blush,
                   head_bb, opacity=0.35 if look.feminine else 0.18, feather=14.0, clip=g.head_sd)
    eyes = _make_eyes(g)
    for e in eyes:
        _draw_eye_static(base, g, e)
    _draw_brows(base, g, eyes)
    _draw_nose(base, g)

    # everything drawn over the eyes goes to its own layer (premultiplied "over" is associative)
    top = _Canvas(x0, y0, x1 - x0, y1 - y0)
    top.paint(hair_front, hair_col, hair_bb)
    _draw_hair_shading(top, g, hair_front, hair_bb)
    ear_x = g.skull_w * math.cos(g.yaw)
    if g.yaw == 0.0:
        for sgn in (-1.0, 1.0):
            _draw_ear(top, g, g.hx + sgn * (g.skull_rx - 4.0), sgn, outline=False)
    else:
        side = -1.0 if g.yaw > 0 else 1.0
        _draw_ear(top, g, g.skull_cx + side * (ear_x - 14.0), side, outline=True)
    if look.glasses:
        _draw_glasses(top, g, eyes)

    heads: dict[float, np.ndarray] = {}
    for level in BLINK_LEVELS:
        cv = _Canvas(x0, y0, x1 - x0, y1 - y0)
        cv.rgba[:] = base.rgba
        for e in eyes:
            _draw_eye(cv, g, e, level)
        cv.over(top.rgba)
        heads[level] = cv.rgba
    # crop to the content plus a transparent margin, identically for every blink level
    alpha = heads[0.0][..., 3]
    rows = np.nonzero(alpha.max(axis=1) > 0.0)[0]
    cols = np.nonzero(alpha.max(axis=0) > 0.0)[0]
    r0, r1 = max(rows[0] - HEAD_MARGIN, 0), min(rows[-1] + 1 + HEAD_MARGIN, alpha.shape[0])
    c0, c1 = max(cols[0] - HEAD_MARGIN, 0), min(cols[-1] + 1 + HEAD_MARGIN, alpha.shape[1])
    out = {k: np.ascontiguousarray(v[r0:r1, c0:c1]) for k, v in heads.items()}
    return out, (x0 + int(c0), y0 + int(r0))


def _draw_glasses(cv: _Canvas, g: _Geo, eyes: list[_Eye]) -> None:
    """Leo's rounded-rectangle frames with a bridge and temple arms."""
    frame = (0.18, 0.14, 0.13)
    rims = []
    for e in eyes:
        hw = e.hw + 9.0 * (e.hw / 16.5)
        rims.append((e.cx, e.cy + 1.0, hw, 16.0))
    for cx, cy, hw, hh in rims:
        bb = (cx - hw - 4, cy - hh - 4, cx + hw + 4, cy + hh + 4)
        cv.paint(lambda x, y, cx=cx, cy=cy, hw=hw, hh=hh: sd_round_box(x, y, cx, cy, hw, hh, 9.0), (0.85, 0.92, 1.0),
                 bb, opacity=0.12)
        cv.paint(lambda x, y, cx=cx, cy=cy, hw=hw, hh=hh: np.abs(sd_round_box(x, y, cx, cy, hw, hh, 9.0)) - 1.8, frame,
                 bb)
    (lx, ly, lhw, _), (rx, ry, rhw, _) = rims
    a = (lx + lhw - 1.0, ly - 5.0)
    b = (rx - rhw + 1.0, ry - 5.0)
    mid = ((a[0] + b[0]) / 2, a[1] - 4.0)
    bridge = bezier(a, (a[0] + 4, mid[1]), (b[0] - 4, mid[1]), b, 8)
    cv.paint(lambda x, y: sd_stroke(x, y, bridge, [1.6] * 8), frame, (a[0] - 4, a[1] - 10, b[0] + 4, b[1] + 4))
    # temple arms run back to the ears
    if g.yaw == 0.0:
        arms = [(lx - lhw, ly - 6.0, g.hx - g.skull_rx + 2.0), (rx + rhw, ry - 6.0, g.hx + g.skull_rx - 2.0)]
    else:
        side = -1.0 if g.yaw > 0 else 1.0
        ex = g.skull_cx + side * (g.skull_w * math.cos(g.yaw) - 14.0)
        near = rims[0] if side < 0 else rims[1]
        arms = [(near[0] + side * near[2], near[1] - 6.0, ex)]
    for ax, ay, ex in arms:
        pts = [(ax, ay), (ex, ay + 3.0)]
        cv.paint(lambda x, y, pts=pts: sd_stroke(x, y, pts, [1.8, 1.5]), frame,
                 (min(ax, ex) - 4, ay - 6, max(ax, ex) + 4, ay + 8))


# ----------------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------------


def _tidy(rgba: np.ndarray) -> np.ndarray:
    """Remove float round-off so layers are exactly in 0..1 and premultiplied (rgb <= alpha)."""
    out = np.clip(rgba, 0.0, 1.0)
    np.minimum(out[..., :3], out[..., 3:4], out=out[..., :3])
    return np.ascontiguousarray(out, dtype=_F32)


def draw_pose(pose_id: str) -> PoseArt:
    """Draw every layer of a pose from scratch (deterministic; about 0.1 s)."""
    if pose_id not in _SPEC_BY_ID:
        raise KeyError(f"unknown pose {pose_id!r}; known: {', '.join(POSES)}")
    spec = _SPEC_BY_ID[pose_id]
    look = _LOOKS[spec.avatar_id]
    g = _Geo(look=look, yaw=spec.yaw)
    heads, origin = _draw_head(g)
    ms = look.mouth
    k = 0.5 + 0.5 * math.cos(spec.yaw)  # the mouth foreshortens with the head turn
    style = MouthStyle(ms.lip, ms.inner, ms.teeth, round(ms.half_width * k, 2), ms.lip_thickness, round(ms.max_open, 2))
    mouth = (g.mouth_x - origin[0], g.mouth_y - origin[1])
    return PoseArt(
        info=POSES[pose_id],
        background=_draw_background(spec),
        body=_tidy(_draw_body(g)),
        heads={k: _tidy(v) for k, v in heads.items()},
        head_origin=origin,
        mouth_center=(float(mouth[0]), float(mouth[1])),
        mouth_style=style,
    )

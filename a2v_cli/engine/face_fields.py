"""The displacement fields that animate a face in a photo, built once per pose from its 468 face-mesh landmarks.

Two small regions of the image get a few fields each: the mouth and jaw (close the photo's own lips, open per px,
spread, round, press) and the eyes (one per blink level). ``mouth_weights`` turns an articulation into the mouth's
field weights and ``face_palette`` gives the inner mouth its colours; the warp graph (``models/a2v-warp-v1.onnx``)
mixes the fields and draws the inner mouth, and photo_pose.py runs it per frame. Every field is zero at its region's
edge, so a warped region meets the untouched image without a seam.

Coordinates are pixel-centre indices (pixel ``[y, x]`` is at ``(x, y)``); fields are backward: an output pixel ``p``
shows the image at ``p + displacement``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SHIFT_PAD = 4  # px of held edge around the image: the head's sway never exceeds it
MARGIN = 3  # px around a warped region, sampled for the subpixel shift but not pasted

MAX_OPEN = 0.8  # opening at open = 1, in mouth half widths (the cartoon mouths' ratio)
OPEN_TOP = 0.34  # share of the opening above the lip line (as the warp graph draws the inner mouth)
SPREAD_WIDTH = 0.12  # the spread field widens the mouth by about this much: the opening grows with it
PRESS_CLOSE = 0.05  # press takes this much `open` away: closes a barely open mouth, hardly changes an open one
# press shuts a nearly open mouth: below open 0.17 it takes this much more `open` away, fading out by 0.3. p/b/m
# on voices never trained on come with open ~0.14 and press ~0.5 (Flite slt; espeak ~0.01 and 0.9), which the onset
# lift showed as parted lips (bench_photo, face mesh, p/b/m closed: Flite 0.547 -> 0.762, MBROLA us2 0.518 -> 0.818;
# MODEL_CARD.md)
PRESS_SHUT, PRESS_SHUT_BELOW = 0.45, (0.3, 0.17)
# the shapes fade out as the mouth opens, spread and round as (1 - open)^3, press as (1 - open)^4: on an open mouth they
# move the inner-lip contour, noise in what a landmark model reads as the opening
SHAPE_FADE = 3.0
# A mouth that starts to open parts its lips visibly at once: a parting of 1-2 px (more under bright teeth) is a line a
# landmark model reads as the closed seam, yet the frames with open 0.02-0.12 are speech (consonants); so over that
# range (below it: pauses and p/b/m) this much opening is added, in mouth half widths, and kept above it
# (bench_photo, face mesh r: held-out Grace Hopper 0.853 -> 0.863, astronaut 0.844 -> 0.845; MODEL_CARD.md)
ONSET_LIFT = 0.07
ONSET = (0.02, 0.12)
CAVITY_RIM = 0.6  # the cavity rim's brightness relative to the lips' colour in shadow
# The teeth are lit by the light that lights the cheeks: at most this many times the cheeks' luminance. Normally lit
# portraits come out at 1.1-1.4 (held-out set), which this leaves alone; a low-light photo's teeth were 2.5x
# (the 0.45 floor, kept for dark skin in good light, made them glow white on a dim face)
TEETH_OVER_SKIN = 1.5
SKIN_SATURATION = 0.12  # skin at least this saturated ((max - min) / max) is a colour photo's; below, less colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 luminance of RGB
TOOTH_EDGES = (0.0, 0.21, 0.37, 0.52, 0.65, 0.77)  # |x - centre| / half width where upper teeth meet
TOOTH_LINE = 0.02  # the line where two teeth meet: this share of the half width wide (0.7 px at least)
TOOTH_LINE_DARK = 0.7  # its darkness, and that of a tooth's sides, as shares of the graph's teeth_gap
TOOTH_SIDE_DARK = 0.5

# MediaPipe face-mesh indices
MOUTH_CORNERS = (61, 291)
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17
OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
CHIN, NOSE_BOTTOM = 152, 2
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYES = (  # (corner, corner, upper lid, lower lid) for the subject's right and left eye
    ((33, 133), (246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155)),
    ((362, 263), (398, 384, 385, 386, 387, 388, 466), (382, 381, 380, 374, 373, 390, 249)),
)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 at x <= lo, 1 at x >= hi (lo > hi flips it), smooth in between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _curve(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of a polyline through ``points`` (x, y) at ``x``, held constant beyond its ends."""
    order = np.argsort(points[:, 0], kind="stable")
    return np.interp(x, points[order, 0], points[order, 1]).astype(np.float32)


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame the warp graph redraws: its grid, fields and inner-mouth maps."""

    y0: int
    x0: int
    grid: np.ndarray  # (1, h, w, 2) x, y of each pixel
    basis: np.ndarray  # (K, h, w, 2) backward displacement per unit weight
    maps: np.ndarray  # (5, h, w): v below the lip line, opening, teeth and tongue profiles, teeth gaps (0: no mouth)
    cover: np.ndarray | None = None  # (K, h, w): share of each pixel the warped image covers, 1 where None


def _region(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int]) -> tuple[int, int, np.ndarray, np.ndarray]:
    h, w = shape
    y0, x0 = max(y0 - MARGIN, 0), max(x0 - MARGIN, 0)
    y1, x1 = min(y1 + MARGIN, h), min(x1 + MARGIN, w)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return y0, x0, xs, ys


@dataclass(frozen=True)
class MouthGeometry:
    """Where the mouth is, from the landmarks: what the fields, the Wav2Lip box and the benchmark need."""

    cx: float
    cy: float  # lip line at the centre
    half_width: float  # half the corner-to-corner distance
    max_open: float  # px of opening at open = 1
    face_box: tuple[float, float, float, float]  # square, x0, y0, x1, y1

    @staticmethod
    def of(marks: np.ndarray) -> MouthGeometry:
        left, right = marks[MOUTH_CORNERS[0], :2], marks[MOUTH_CORNERS[1], :2]
        cx = float(left[0] + right[0]) / 2
        hw = max(float(np.hypot(*(right - left))) / 2, 4.0)  # a tilted head's mouth is as wide as an upright one
        cy = (marks[INNER_UPPER[5], 1] + marks[INNER_LOWER[5], 1]) / 2
        oval = marks[list(FACE_OVAL), :2]
        fx0, fx1 = float(oval[:, 0].min()), float(oval[:, 0].max())
        chin = float(marks[CHIN, 1])
        side = max(fx1 - fx0, 8.0)
        y1 = chin + 0.06 * side  # Wav2Lip pads the detector's box 10 px down (at 96 px: about 6 %)
        box = ((fx0 + fx1) / 2 - side / 2, y1 - side, (fx0 + fx1) / 2 + side / 2, y1)
        return MouthGeometry(float(cx), float(cy), float(hw), float(MAX_OPEN * hw), tuple(float(v) for v in box))


@dataclass(frozen=True)
class Upright:
    """The face's own axes: image coordinates turned by the head's roll (the eye line's angle) about the mouth.

    Why: a tilted head (a phone snapshot, a head on one side) opens its mouth along its own vertical, not the
    image's; the fields are built in these axes and their displacements turned back, so a 30 degree tilt moves
    lips and lids as an upright face does. With no roll it is the identity.
    """

    cx: float
    cy: float
    cos: float
    sin: float

    @staticmethod
    def of(marks: np.ndarray) -> Upright:
        eyes = [marks[list(corners), :2].mean(axis=0) for corners, _, _ in EYES]
        angle = math.atan2(float(eyes[1][1] - eyes[0][1]), float(eyes[1][0] - eyes[0][0]))
        centre = marks[list(MOUTH_CORNERS), :2].mean(axis=0)
        return Upright(float(centre[0]), float(centre[1]), math.cos(angle), math.sin(angle))

    def points(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates -> upright ones."""
        dx, dy = x - self.cx, y - self.cy
        return self.cx + self.cos * dx + self.sin * dy, self.cy - self.sin * dx + self.cos * dy

    def marks(self, marks: np.ndarray) -> np.ndarray:
        out = marks.astype(np.float32).copy()
        out[:, 0], out[:, 1] = self.points(marks[:, 0], marks[:, 1])
        return out

    def image_points(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upright coordinates -> image ones (``points`` inverted)."""
        dx, dy = x - self.cx, y - self.cy
        return self.cx + self.cos * dx - self.sin * dy, self.cy + self.sin * dx + self.cos * dy

    def image_box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[int, int, int, int]:
        """The image rectangle (y0, y1, x0, x1) around an upright one."""
        xs, ys = self.image_points(np.array([x0, x1, x0, x1], np.float64), np.array([y0, y0, y1, y1], np.float64))
        return math.floor(ys.min()), math.ceil(ys.max()), math.floor(xs.min()), math.ceil(xs.max())

    def field(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """An upright displacement field in image axes, (h, w, 2)."""
        return np.stack([self.cos * dx - self.sin * dy, self.sin * dx + self.cos * dy], axis=-1).astype(np.float32)


# The photo's own lip edges (``lip_edges``): a pixel inside the lips is teeth (brighter and whiter than the lips) or
# the cavity (darker); lips are judged against their own colour, sampled from their middle bands
TEETH_LIGHTER, CAVITY_DARKER = 1.3, 0.6  # luminance against the lip's median (each lip its own)
TEETH_WHITER = 0.75  # redness ((R - B) / luminance) at most this share of the lip's
GREY_RED, GREY_TEETH_LIGHTER = 0.1, 1.6  # lips this little redder than blue: a grey photo, judged by lightness
TEETH_SHOWN = 0.5  # share of the mouth's middle columns with teeth in the photo before its edges are looked for
EDGE_MIN_RUN = 2  # px of interior beyond the mesh's contour before it is moved (a closed mouth's crease is less)
LIP_KEEP = 0.3  # the edges never take more than 1 - this of a lip's thickness from the mesh's outer contour
EDGE_BLEND = 1.0  # px more where the contour moves: the edge pixel itself is half lip, half teeth or shadow
EDGE_ROOM = 1.25  # near the image's edge a field moves a pixel at most 1 / this of its distance to the edge
EDGE_SMOOTH = 0.1  # the edges are smoothed along the mouth over +-this share of its half width


@dataclass(frozen=True)
class LipContour:
    """The lips' inner edges, corner to corner, in image px: (N, 2) x, y each; one point per upright column.
    ``teeth``: the share of the mouth's middle columns that show teeth in the image (0 where not looked at)."""

    upper: np.ndarray
    lower: np.ndarray
    teeth: float = 0.0


def lip_edges(image: np.ndarray, marks: np.ndarray, shown: float = TEETH_SHOWN) -> LipContour:
    """The lips' inner edges in the photo itself: the mesh's inner-lip contour where the mouth is closed.

    Why: on a photo whose mouth is open (someone mid-word, a smile with teeth) the face mesh puts the inner lips on
    the teeth, a few px inside the lips, and its inner corners short of the dark corners; closing the mouth along
    that contour left a band of the photo's teeth visible (above the drawn ones, and in silence) and the corners
    dark. In every column between the mouth's corners the contour is moved out to where the photo stops being teeth
    or cavity (against each lip's own colours), never into more than 1 - LIP_KEEP of a lip. Only where at least
    ``shown`` of the middle columns show teeth (else the mesh's contour, with that share: a video pose decides on a
    few frames together, not frame by frame).
    """
    frame = Upright.of(marks)
    um = frame.marks(marks)
    up, lo = um[list(INNER_UPPER), :2], um[list(INNER_LOWER), :2]
    top, bottom = um[list(OUTER_UPPER), :2], um[list(OUTER_LOWER), :2]
    (left, ly), (right, ry) = um[MOUTH_CORNERS[0], :2], um[MOUTH_CORNERS[1], :2]
    xs = np.arange(math.ceil(left), math.floor(right) + 1, dtype=np.float32)
    # the mesh's contour, continued from its inner corners straight to the mouth's corners
    corners = np.array([[left, ly], [right, ry]], np.float32)
    base_up = _curve(np.concatenate([up, corners]), xs)
    base_lo = _curve(np.concatenate([lo, corners]), xs)
    mesh = LipContour(*(_stacked(frame.image_points(xs, y)) for y in (base_up, base_lo)))
    hw = float(right - left) / 2
    y0 = math.floor(float(top[:, 1].min())) - 1
    ys = np.arange(y0, math.ceil(float(bottom[:, 1].max())) + 2, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    ix, iy = (np.rint(v).astype(np.int64) for v in frame.image_points(gx, gy))
    h, w = image.shape[:2]
    if hw < 4 or len(xs) < 8 or ix.min() < 0 or iy.min() < 0 or ix.max() >= w or iy.max() >= h:
        return mesh
    rgb = image[iy, ix].astype(np.float32)
    lum = rgb @ LUMA + 1.0
    red = (rgb[..., 0] - rgb[..., 2]) / lum
    t_top, t_bot = _curve(top, xs), _curve(bottom, xs)
    off_centre = np.abs(xs - (left + right) / 2)
    centre = (off_centre < 0.7 * hw)[None, :]
    yy = ys[:, None]
    upper_band = (yy > t_top + 0.25 * (base_up - t_top)) & (yy < t_top + 0.6 * (base_up - t_top)) & centre
    lower_band = (yy > base_lo + 0.4 * (t_bot - base_lo)) & (yy < base_lo + 0.75 * (t_bot - base_lo)) & centre
    if min(upper_band.sum(), lower_band.sum()) < 10:
        return mesh

    def against(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(teeth, teeth or cavity) judged against the lip sampled in ``band`` (the two lips differ in light):
        teeth are brighter and, in colour, whiter; the cavity is darker."""
        lip_lum, lip_red = float(np.median(lum[band])), float(np.median(red[band]))
        if lip_red < GREY_RED:  # a grey photo: lightness alone
            teeth = lum > GREY_TEETH_LIGHTER * lip_lum
        else:
            teeth = (lum > TEETH_LIGHTER * lip_lum) & (red < TEETH_WHITER * lip_red)
        return teeth, teeth | (lum < CAVITY_DARKER * lip_lum)

    (teeth_up, inside_up), (teeth_lo, inside_lo) = against(upper_band), against(lower_band)
    # only a photo that shows teeth is changed: a closed mouth's crease and the shadow under the lower lip are as
    # dark as a cavity, and the mesh finds the inner lips of a closed or a toothless open mouth well
    between = (yy > t_top) & (yy < t_bot) & (off_centre < 0.5 * hw)[None, :]
    columns = between.any(axis=0)
    runs = (teeth_up & teeth_lo & between).sum(axis=0)[columns]
    share = float((runs >= EDGE_MIN_RUN).mean()) if len(runs) else 0.0
    if share < shown:
        return LipContour(mesh.upper, mesh.lower, share)
    cols = np.arange(len(xs))
    reach = np.arange(1, len(ys) + 1)[:, None]

    k = max(2, round(EDGE_SMOOTH * hw))

    def window(a: np.ndarray, reduce: Callable[..., np.ndarray]) -> np.ndarray:
        padded_a = np.pad(a, k, mode="edge")
        return reduce(np.stack([padded_a[i : i + len(a)] for i in range(2 * k + 1)]), axis=0)

    def extent(inside: np.ndarray, start: np.ndarray, stop: np.ndarray, step: int) -> np.ndarray:
        """Per column, how many px the interior runs on from ``start`` (row) in ``step`` direction, short of
        ``stop``; under EDGE_MIN_RUN (a closed mouth's crease) it is 0. Smoothed along the mouth without giving any
        back: a lone column's spike is dropped (median), then the widest of its neighbours, averaged."""
        rows = np.rint(start - y0).astype(np.int64)[None, :] + step * reach
        ok = (rows >= 0) & (rows < len(ys)) & ((ys[np.clip(rows, 0, len(ys) - 1)] - stop[None, :]) * step < 0)
        run = np.cumprod(ok & inside[np.clip(rows, 0, len(ys) - 1), cols[None, :]], axis=0).sum(axis=0)
        run = np.where(run >= EDGE_MIN_RUN, run + EDGE_BLEND, 0).astype(np.float32)
        run = window(window(window(run, np.median), np.max), np.mean)
        return np.minimum(run, np.abs(start - stop))

    new_up = base_up - extent(inside_up, base_up, t_top + LIP_KEEP * (base_up - t_top), -1)
    new_lo = base_lo + extent(inside_lo, base_lo, t_bot - LIP_KEEP * (t_bot - base_lo), 1)
    return LipContour(_stacked(frame.image_points(xs, new_up)), _stacked(frame.image_points(xs, new_lo)), share)


def _stacked(xy: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.stack(xy, axis=-1).astype(np.float32)


def mouth_region(marks: np.ndarray, shape: tuple[int, int], lips: LipContour | None = None) -> Region:
    """Fields over the mouth and jaw: close the photo's lips, open (per px), spread, round, press.

    ``lips``: the lips' inner edges (``lip_edges``) where they differ from the mesh's contour."""
    up_frame = Upright.of(marks)
    marks = up_frame.marks(marks)
    g = MouthGeometry.of(marks)
    hw, cx = g.half_width, g.cx
    if lips is None:
        up = marks[list(INNER_UPPER), :2]
        lo = marks[list(INNER_LOWER), :2]
    else:
        up, lo = (np.stack(up_frame.points(c[:, 0], c[:, 1]), axis=-1) for c in (lips.upper, lips.lower))
    corners = marks[list(MOUTH_CORNERS), :2]
    mids = np.concatenate([(up + lo) / 2, corners])
    nose_v = float(marks[NOSE_BOTTOM, 1] - g.cy)  # < 0
    chin_v = float(marks[CHIN, 1] - g.cy)  # > 0
    if lips is None:
        inner_up, inner_lo = float(marks[INNER_UPPER[5], 1]), float(marks[INNER_LOWER[5], 1])
    else:
        inner_up, inner_lo = (float(_curve(c, np.array([cx], np.float32))[0]) for c in (up, lo))
    upper_t = max(inner_up - float(marks[UPPER_LIP_TOP, 1]), 2.0)
    lower_t = max(float(marks[LOWER_LIP_BOTTOM, 1]) - inner_lo, 2.0)
    nose_v = min(nose_v, -upper_t - 4.0)
    chin_v = max(chin_v, lower_t + 6.0)
    band = max(0.9 * hw, 8.0)  # below the chin the jaw's motion fades out over this (no fold: slope < 1)
    # the fields follow the lip line, which curves (a smile lifts the corners): the region spans the whole line's
    # range, so that every field is zero at its edge (else a rounded mouth tears a seam across the cheeks)
    top_y, bottom_y = float(mids[:, 1].min()), float(mids[:, 1].max())
    y0, x0, xs, ys = _region(*up_frame.image_box(math.floor(top_y + nose_v), math.ceil(bottom_y + chin_v + band + 1),
                                                 math.floor(cx - 2.0 * hw), math.ceil(cx + 2.0 * hw) + 1), shape)
    ux, uy = up_frame.points(xs, ys)  # each pixel in the face's own axes
    line = _curve(mids, ux)  # lip line y per (upright) column
    gap = np.maximum(_curve(lo, ux) - _curve(up, ux), 0.0)
    gap = np.where((ux > corners[:, 0].min()) & (ux < corners[:, 0].max()), gap, 0.0)
    v = uy - line
    t = (ux - cx) / hw
    to2 = (t / 0.9) ** 2
    lens = np.clip(1.0 - to2, 0.0, None) * (1.0 + 0.45 * to2)  # the opening's profile along the mouth
    jaw = 1.0 - _smoothstep(np.abs(t), 0.9, 1.9)  # the jaw moves as a block, fading out beside the chin
    above = v < 0
    w_up = _smoothstep(v, nose_v + 2.0, -upper_t - 1.0)  # the upper lip, fading out under the nose
    w_dn = 1.0 - _smoothstep(v, chin_v, chin_v + band)  # the lower lip and the jaw, fading out below the chin
    # right under the lips the jaw follows the opening's profile (so the inner mouth's bottom edge is exact), lower
    # down it moves as a block
    open_px = MAX_OPEN * hw
    prof_dn = lens + (jaw - lens) * _smoothstep(v, (1 - OPEN_TOP) * open_px + 2.0, chin_v + band / 2)
    zero = np.zeros_like(xs)
    field = up_frame.field
    # closing an open photo's mouth lifts the chin by half the gap: the neck takes the stretch right under it (no
    # fold: 3x the lift), so a collar below stays where it is
    close_band = min(band, max(8.0, 1.5 * float(gap.max())))
    close = field(zero, np.where(above, -gap / 2 * w_up, gap / 2 * (1.0 - _smoothstep(v, chin_v, chin_v + close_band))))
    opening = field(zero, np.where(above, OPEN_TOP * lens * w_up, -(1 - OPEN_TOP) * prof_dn * w_dn))
    lateral = 1.0 - _smoothstep(np.abs(t), 1.0, 1.9)
    lips_v = _smoothstep(v, nose_v, -upper_t - 2.0) * (1.0 - _smoothstep(v, lower_t + 2.0, chin_v * 0.8))
    around = lateral * lips_v
    lip_band = lateral * _smoothstep(v, -upper_t - 8.0, -upper_t - 1.0) * (1.0 - _smoothstep(v, lower_t + 1.0,
                                                                                              lower_t + 8.0))
    spread = field(-(ux - cx) * 0.12 * around, zero)
    rounded = field((ux - cx) * 0.25 * around, -v * 0.12 * lip_band)
    press = field(zero, v * 0.25 * lip_band)
    basis = _inside_the_image(np.stack([close, opening, spread, rounded, press]), xs, ys, shape,
                              np.array([1.0, (MAX_OPEN + ONSET_LIFT) * hw * (1.0 + SPREAD_WIDTH), 1.0, 1.0, 1.0]))
    teeth = np.clip(1.0 - (t / 0.75) ** 4, 0.0, 1.0)
    tongue = np.clip(1.0 - (t / 0.6) ** 2, 0.0, 1.0)
    # where one upper tooth meets the next: a faint shadow line (incisors, laterals, canines, premolars), so the
    # band reads as teeth, not as a strip
    gaps = np.zeros_like(ux)
    line = max(0.7, TOOTH_LINE * hw)
    for edge in TOOTH_EDGES:
        gaps = np.maximum(gaps, np.exp(-(((np.abs(ux - cx) - edge * hw) / line) ** 2)))
    # each tooth's face is rounded: a little darker towards its sides (so a large mouth's teeth are not a flat white
    # block ruled by lines)
    edges = np.array([-1.0, *(-e for e in TOOTH_EDGES[:0:-1]), *TOOTH_EDGES, 1.0], np.float32) * hw
    at = np.clip(np.searchsorted(edges, ux - cx) - 1, 0, len(edges) - 2)
    lo, hi = edges[at], edges[at + 1]
    side = np.clip(((ux - cx) - (lo + hi) / 2) / np.maximum((hi - lo) / 2, 1e-3), -1.0, 1.0) ** 2
    sep = 1.0 - np.maximum(gaps * TOOTH_LINE_DARK, side * TOOTH_SIDE_DARK)
    maps = np.stack([v, lens, teeth, tongue, sep]).astype(np.float32)
    return Region(y0, x0, np.stack([xs, ys], axis=-1)[None].astype(np.float32), basis, maps)


def _inside_the_image(basis: np.ndarray, xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int],
                      most: np.ndarray) -> np.ndarray:
    """The fields, each damped where it could sample from beyond the image's edge (at its largest weight, ``most``,
    plus the head's sway): there a pixel moves at most 1 / EDGE_ROOM of its distance to the edge, so no fold.

    Why: a tight headshot's chin is near the photo's bottom edge; closing its open mouth lifts the jaw, and the rows
    under the chin were sampled from below the photo: the edge row smeared into streaks. A field that moves pixels
    away from that edge (the jaw dropping) is untouched, and so is every field far from the edges.
    """
    h, w = shape
    reach = float((np.abs(basis).reshape(len(basis), -1).max(axis=1) * most).sum()) + SHIFT_PAD
    if min(float(xs.min()), float(ys.min()), w - 1 - float(xs.max()), h - 1 - float(ys.max())) > EDGE_ROOM * reach:
        return basis  # far from every edge (most photos): nothing to damp
    out = basis.astype(np.float32).copy()
    for axis, room, sign in ((1, h - 1 - ys, 1), (1, ys, -1), (0, w - 1 - xs, 1), (0, xs, -1)):
        for k in range(len(out)):
            outward = np.maximum(out[k, ..., axis] * sign, 0.0) * most[k]
            damp = np.where(outward > 0, np.clip(room / (EDGE_ROOM * (outward + SHIFT_PAD)), 0.0, 1.0), 1.0)
            if damp.min() < 1.0:
                out[k] *= damp[..., None]
    return out


BLINK_LEVELS = (0.5, 1.0)  # the idle loop's blink levels: one field each
FOLD = 1.3  # the lid skin stretches from this many eye heights above the lid's edge (the crease)
LASH = 0.55  # eye heights above the lid's edge that move down as they are: the lashes, whole, even long ones
OVERLAP = 0.15  # eye heights a closed lid comes down past the lower lid, so no sliver of the eye shows
BROW_ROOM = 0.8  # ... but at most this share of the way up to the brow's lower edge (a brow close to the eye
FOLD_MIN = 0.5  # was pulled down into the lid), and at least this many eye heights
SKIN_MIN = 0.3  # eye heights of lid skin left to stretch between the lashes and the crease, where a brow is close
BROWS = ((46, 53, 52, 65, 55), (276, 283, 282, 295, 285))  # the brows' lower edges, as EYES' order
# A glasses rim across the lid skin: a thin line standing out from the skin on both sides (darker or brighter by at
# least RIM_LEVELS of luma, at one of RIM_SCALES eye heights above and below it) over at least RIM_SHARE of the eye's
# width, between RIM_CLEAR eye heights above the lid (lashes, liner) and the top of the stretch. The stretch stops
# below it, as under a brow: stretched, the rim bent down into the closed lid in a V
RIM_LEVELS = 60.0
RIM_SCALES = (0.12, 0.3)
RIM_SHARE = 0.5
RIM_CLEAR = 0.35


def eye_region(marks: np.ndarray, shape: tuple[int, int], image: np.ndarray | None = None) -> Region:
    """Fields over both eyes, one per blink level: each upper lid comes down over the eye.

    The lash line and the lashes move down as they are, the lid skin between the crease and the lashes
    stretches to cover the eye, and the crease and all above it stay where they are (a stretch, never a
    fold in the mapping). A stretched lash would be a streak over the lid, so the whole lash band moves.
    The lid's new edge is anti-aliased in colour (``cover``): a field that blends displacements there
    samples the eye between lid and lid, and shows its iris and white as specks along the edge.
    In the face's own axes, like the mouth: a tilted head's lids close along its own vertical. With the ``image``,
    the stretch also stops below a glasses rim across the lid skin (RIM_LEVELS).
    """
    up_frame = Upright.of(marks)
    marks = up_frame.marks(marks)
    boxes = []
    for corners, upper, lower in EYES:
        pts = marks[[*corners, *upper, *lower], :2]
        height = float(max(_curve(marks[list(lower), :2], pts[:, 0]) - _curve(marks[list(upper), :2], pts[:, 0])))
        boxes.append((pts[:, 0].min(), pts[:, 1].min() - (FOLD + 0.6) * max(height, 2.0), pts[:, 0].max(),
                      pts[:, 1].max() + OVERLAP * max(height, 2.0)))  # fmt: skip
    bx = np.array(boxes)
    ew = float(max(bx[:, 2] - bx[:, 0]))
    y0, x0, xs, ys = _region(*up_frame.image_box(math.floor(bx[:, 1].min()) - 1, math.ceil(bx[:, 3].max()) + 3,
                                                 math.floor(bx[:, 0].min() - 0.25 * ew),
                                                 math.ceil(bx[:, 2].max() + 0.25 * ew) + 1), shape)
    ux, uy = up_frame.points(xs, ys)
    luma = None if image is None else image[y0 : y0 + xs.shape[0], x0 : x0 + xs.shape[1]].astype(np.float32) @ LUMA
    lids = [_Lid.of(marks, eye, brow, ux, uy, luma) for eye, brow in zip(EYES, BROWS, strict=True)]
    fields, covers = [], []
    for level in BLINK_LEVELS:
        dy = np.zeros_like(xs)
        cover = np.ones_like(xs)
        for lid in lids:
            yu, h, fold, lash = lid.yu, lid.h, lid.fold, lid.lash
            drop = level * (h + OVERLAP * np.sqrt(h * lid.hmax))  # past the lower lid, tapering to the corners
            edge = yu + drop  # the lid's new edge
            stretch = (uy - yu + fold) * ((fold - lash) / (fold + drop - lash) - 1.0)
            # one px below the edge the lid goes on (its edge row, held): the colour blend needs it there
            shut = np.where(uy < edge, -drop, yu - 0.5 - uy)
            d = np.where(uy < yu - fold, 0.0, np.where(uy < edge - lash, stretch, shut))
            dy += np.where((uy < edge + 1.0) & (drop > 0), d, 0.0)
            cover = np.where(lid.inside_x & (uy > yu - fold), np.minimum(cover, np.clip(edge + 0.5 - uy, 0.0, 1.0)),
                             cover)  # fmt: skip
        fields.append(up_frame.field(np.zeros_like(xs), dy))
        covers.append(cover)
    maps = np.zeros((5, *xs.shape), dtype=np.float32)
    return Region(y0, x0, np.stack([xs, ys], axis=-1)[None].astype(np.float32),
                  np.stack(fields).astype(np.float32), maps, np.stack(covers).astype(np.float32))


@dataclass(frozen=True)
class _Lid:
    """One upper lid over the eye region's pixels (upright px), the same for every blink level."""

    yu: np.ndarray  # the lid's edge
    inside_x: np.ndarray  # between the eye's corners
    h: np.ndarray  # the eye's opening
    hmax: float
    fold: np.ndarray  # px above the edge where the lid skin starts to stretch
    lash: np.ndarray  # px above the edge that move down as they are (the lashes)

    @classmethod
    def of(cls, marks: np.ndarray, eye: tuple[tuple[int, ...], ...], brow: tuple[int, ...], ux: np.ndarray,
           uy: np.ndarray, luma: np.ndarray | None) -> _Lid:  # fmt: skip
        corners, upper, lower = eye
        xa, xb = sorted(marks[list(corners), 0])
        yu = _curve(np.concatenate([marks[list(upper), :2], marks[list(corners), :2]]), ux)
        yl = _curve(np.concatenate([marks[list(lower), :2], marks[list(corners), :2]]), ux)
        inside_x = (ux > xa) & (ux < xb)
        h = np.where(inside_x, np.maximum(yl - yu, 0.0), 0.0)
        hmax = max(float(h.max()), 1.0)
        # never into the brow (eyes close under it), nor into a glasses rim
        room = np.maximum(yu - _curve(marks[list(brow), :2], ux), 0.0)
        fold = np.minimum(FOLD * hmax, BROW_ROOM * room)
        rim = None if luma is None else _rim_room(luma, uy, yu, inside_x, hmax)
        if rim is not None:
            fold = np.minimum(fold, rim)
        fold = np.maximum(fold, max(FOLD_MIN * hmax, 3.0))
        # the lashes, leaving some skin to stretch
        lash = np.minimum(LASH * hmax, np.maximum(fold - SKIN_MIN * hmax, np.minimum(1.5, fold - 1.0)))
        return cls(yu, inside_x, h, hmax, fold, lash)


def _rim_room(luma: np.ndarray, uy: np.ndarray, yu: np.ndarray, inside_x: np.ndarray, hmax: float
              ) -> np.ndarray | None:  # fmt: skip
    """Px above the lid's edge ``yu``, per region pixel, that the lid skin may stretch from without reaching a glasses
    rim (RIM_LEVELS) in the region's ``luma``; None where there is none. Found along the image's columns: the fields
    allow a head tilted by a few degrees, and a rim tilted with it is still a line across them."""
    ridge = np.zeros_like(luma)
    scales = sorted({max(1, round(k * hmax)) for k in RIM_SCALES})
    for k in scales:
        padded = np.pad(luma, ((k, k), (0, 0)), mode="edge")
        above, below = padded[: -2 * k], padded[2 * k :]
        ridge = np.maximum(ridge, np.maximum(np.minimum(above, below) - luma, luma - np.maximum(above, below)))
    band = inside_x & (uy < yu - RIM_CLEAR * hmax) & (uy > yu - FOLD * hmax) & (ridge >= RIM_LEVELS)
    lowest = np.where(band, uy, -np.inf).max(axis=0)  # per column: the line nearest the lid
    columns = inside_x.any(axis=0)
    found = np.isfinite(lowest) & columns
    if found.sum() < max(RIM_SHARE * columns.sum(), 2):
        return None
    cols = np.arange(luma.shape[1], dtype=np.float32)
    line = np.interp(cols, cols[found], lowest[found]).astype(np.float32)  # across a gap (a glint), along the rim
    return np.maximum(yu - line[None, :] - scales[-1], 0.0)


def face_palette(image: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """(3,3) RGB 0..1 of the inner mouth: a dark cavity, upper teeth and a tongue hint, in the face's own colours."""
    h, w = image.shape[:2]

    def sample(idx: tuple[int, ...]) -> np.ndarray:
        pts = np.rint(marks[list(idx), :2]).astype(int)
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        return image[pts[:, 1], pts[:, 0]].astype(np.float32).mean(axis=0) / 255.0

    lip = sample((0, 37, 267, 17, 84, 314, 40, 270))  # outer lips, away from the parting
    skin = sample((50, 280, 101, 330, 205, 425))  # cheeks
    light = float(np.clip(skin.mean() / 0.6, 0.45, 1.0))  # a dim photo gets dim teeth
    # the cavity's rim (the graph darkens it towards the back): the lips' own colour in deep shadow, a little redder,
    # so the lips' inner contour stands out against it on any face (a paler rim read as lip on a landmark model)
    cavity = lip * np.array([0.62, 0.4, 0.4], dtype=np.float32) + np.array([0.04, 0.0, 0.0], dtype=np.float32)
    cavity = cavity * CAVITY_RIM
    teeth = (np.array([0.93, 0.91, 0.86], dtype=np.float32) * 0.8 + skin * 0.2) * light
    teeth = teeth * min(1.0, TEETH_OVER_SKIN * float(skin @ LUMA) / max(float(teeth @ LUMA), 1e-6))
    tongue = lip * np.array([0.85, 0.6, 0.6], dtype=np.float32) + np.array([0.08, 0.01, 0.01], dtype=np.float32)
    palette = np.stack([cavity, teeth, tongue])
    # a black-and-white (or faded) photo gets an inner mouth as grey as its face: a red mouth on a grey face is not
    # the person; every colour photo's skin is saturated enough to keep the palette as it is
    colour = float(np.clip((skin.max() - skin.min()) / max(float(skin.max()), 1e-6) / SKIN_SATURATION, 0.0, 1.0))
    if colour < 1.0:
        grey = (palette @ LUMA)[:, None]
        palette = grey + (palette - grey) * colour
    return np.clip(palette, 0.0, 1.0).astype(np.float32)


def mouth_weights(articulation: np.ndarray | None, max_open: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Field weights (B,5: close, open px, spread, round, press) and opening px (B,) for the articulation."""
    if articulation is None:
        art = np.zeros((n, 4), dtype=np.float32)
    else:
        art = np.clip(np.asarray(articulation, dtype=np.float32), 0.0, 1.0)
    o, s, r, p = art.T
    o = np.maximum(o - PRESS_SHUT * p * _smoothstep(o, *PRESS_SHUT_BELOW), 0.0)
    # What a viewer (and a landmark model) reads is the opening over the mouth width: it must follow `open` alone.
    # The shape fields confound it on an open mouth (press thins the lips, round fills them: the inner-lip contour
    # moves, so a rounded or pressed open mouth read 0.7x as open as drawn), so the shapes act on a closing mouth
    # and fade out as it opens (SHAPE_FADE), and press closes a mouth that is barely open (p/b/m) instead of scaling
    # every opening (bench_photo, face mesh r on the astronaut 0.823 -> 0.837; MODEL_CARD.md).
    closing = (1.0 - o) ** SHAPE_FADE
    spread = s * closing
    # the onset lift (ONSET_LIFT): openings too thin to see are lifted to visible ones, closed stays closed
    net = o - PRESS_CLOSE * p
    drawn = net * max_open + ONSET_LIFT * (max_open / MAX_OPEN) * _smoothstep(net, *ONSET)
    opening = np.maximum(drawn * (1.0 + SPREAD_WIDTH * spread) - 0.5, 0.0)
    weights = np.stack([np.ones(n, np.float32), opening, spread, r * closing, p * closing * (1.0 - o)], axis=1)
    return weights.astype(np.float32), opening.astype(np.float32)

"""`a2v avatars add` / `remove`: a photo or a short clip becomes an avatar bundle in ``$A2V_HOME/avatars/<id>/``.

The bundle format is the contract between this module and the avatar registry (docs/avatars.md):
``avatar.json``, one pose folder with ``image.png`` (the head-and-shoulders crop), ``matte.png`` and
``landmarks.npy``, and ``preview.png``. A bundle is assembled in a staging folder outside ``avatars/`` and
renamed into place only when complete, so a half-built bundle is never visible; folders are 0700 and
files 0600 (a face is personal data).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from a2v_cli.engine.avatars import AVATAR_ID
from a2v_cli.errors import InputError, not_found

if TYPE_CHECKING:
    from a2v_cli.engine.clip import ClipInfo

FORMAT = 1
DEFAULT_SIZE = 512
MIN_SIZE, MAX_SIZE = 256, 1024
FPS = 25
# the whole avatar.create on a server, by kind: a photo (copy, decode, face models, bundle) or a clip (at most
# clip.MAX_SECONDS long: every frame is tracked and matted); a remote client waits this long on top of its timeout
BUILD_DEADLINE_S = {"image": 60.0, "video": 300.0}
FACE_SHARE = 0.34  # face width (cheek to cheek, mesh points 234-454) over crop width: the head-and-shoulders framing
FACE_SHARE_MAX = 0.45  # how far the framing may tighten to stay inside the photo (a close-up selfie)
FACE_Y = 0.42  # face centre (between eyes and mouth) from the crop's top, as a share of its height
MAX_SHIFT = 0.08  # how far the face may move off its place (share of the crop) to stay inside the photo
# a close-up whose head fills the photo (a selfie at arm's length, a passport-style crop) cannot be framed to the
# shoulders: the framing tightens further and the face may sit lower, up to this share and shift, before it
# reaches past the photo's edge (what lies there is made up: streaks of the edge's pixels under the chin)
CLOSE_SHARE_MAX = 0.70
CLOSE_MAX_SHIFT = 0.30
MAX_PAD = 0.30  # the crop may reach this far (share of its side) past the photo's edge; filled by edge extension
MIN_YAW_RATIO = 0.25  # near over far nose-to-cheek distance: below it (~35-40 degrees of turn) it is a profile
MAX_CLEAR_FACE = 0.02  # share of face-mesh points the photo's own alpha may leave transparent
MAX_ROLL_DEG = 60.0  # the face's own axis against the picture's: past it the face lies on its side (a photo that
# lost its orientation tag), and the head-and-shoulders framing, which puts the body below the face, is wrong
EDGE_GAIN = 1.8  # matte contrast around 0.5 after the guided filter
RIGHT_CHEEK, LEFT_CHEEK = 234, 454
NOSE_TIP = 1
MOUTH_POINTS = (61, 291, 13, 14)  # mouth corners and inner-lip midpoints


def min_face_px(size: int) -> int:
    """Smallest face width in source px, cheek to cheek (``face_width``, the width the framing scales by; below it
    the face is enlarged more than ~2.7x into the crop): a photo's, and a clip's in its first frame."""
    return max(48, round(size / 8))


def face_width(landmarks: np.ndarray) -> float:
    """Cheek to cheek (points 234-454), in the landmarks' px: the mesh's measure of the face's size. The detector's
    box is not one: it is 0.9-1.2x this on a frontal face, up to 1.7x on a turned one, and moves with the scale it
    was found at."""
    return float(np.linalg.norm(landmarks[LEFT_CHEEK, :2] - landmarks[RIGHT_CHEEK, :2]))


@dataclass
class PhotoRequest:
    image: Path
    avatar_id: str | None = None
    name: str | None = None
    description: str | None = None
    size: int = DEFAULT_SIZE
    face: int | None = None  # 1 = the largest face
    device: str = "auto"
    kind: str = "image"  # or "video": `image` is then a short clip


def check_id(avatar_id: str, builtin: set[str]) -> str:
    if not AVATAR_ID.fullmatch(avatar_id):
        control = any(ord(c) < 32 or ord(c) == 127 for c in avatar_id)  # "me\n": a typo no one sees
        raise InputError(f"invalid avatar id {avatar_id!r}" + (": it contains a control character" if control else ""),
                         "use 1-32 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit")
    if avatar_id in builtin:
        raise InputError(f"{avatar_id!r} is a built-in avatar", "choose another --id")
    return avatar_id


def check_request(req: PhotoRequest, builtin: set[str]) -> None:
    """Option checks shared by local and remote mode, before any work."""
    if req.avatar_id is not None:
        check_id(req.avatar_id, builtin)
    if not MIN_SIZE <= req.size <= MAX_SIZE or req.size % 2:
        raise InputError(f"--size {req.size} is not supported", f"use an even size from {MIN_SIZE} to {MAX_SIZE}")
    if req.face is not None and req.face < 1:
        raise InputError(f"--face {req.face} is not valid", "faces are numbered from 1 (the largest)")


def check_source(req: PhotoRequest) -> None:
    """The photo or clip exists, is a readable file and is under its size cap: checked once, before any work
    or upload, in both modes (the decoders check again: the server gets files from elsewhere too)."""
    from a2v_cli.engine import clip, photo

    path = req.image
    (photo.check_photo_file if req.kind == "image" else clip.check_clip_file)(path)
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}", "check the file's permissions") from None


def _slug(stem: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return slug[:32].rstrip("-_") or "avatar"


def free_id(stem: str, avatars: Path, builtin: set[str], taken: Collection[str] = ()) -> str:
    """The first of ``stem``'s slug, slug-2, slug-3... that is not built in, in ``taken`` or in ``avatars``.

    Only a proposal: another add may take it before this one publishes. The publishing rename (`_publish`)
    or a server's index insert decides, and a generated id that lost moves on to the next free one."""
    base = _slug(stem)
    candidate, n = base, 1
    while candidate in builtin or candidate in taken or (avatars / candidate).exists():
        n += 1
        suffix = f"-{n}"
        candidate = base[: 32 - len(suffix)] + suffix
    return candidate


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _unwritable(what: str, err: OSError) -> InputError:
    """The one error for an A2V_HOME that cannot be written: ``what: reason``, pointing at A2V_HOME."""
    return InputError(f"{what}: {err.strerror or err}", "set A2V_HOME to a writable directory")


def _writable_dir(path: Path, what: str) -> None:
    """``_mkdir_private``, failing as ``_unwritable``."""
    try:
        _mkdir_private(path)
    except OSError as err:
        raise _unwritable(what, err) from None


def _open_private(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    with _open_private(path) as handle:
        Image.fromarray(array).save(handle, format="PNG", compress_level=3)


# ----------------------------------------------------------------------------------------------------------------------
# Framing
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    x0: float
    y0: float
    side: float  # the square crop in source px
    pad: float  # the largest distance past the photo's edge, as a share of side


def frame_face(landmarks: np.ndarray, width: int, height: int) -> Framing:
    """Head-and-shoulders square: face ~34% of its width, centred, a bit above the middle; inside the photo
    if a slightly tighter framing or a small shift allows, then if a close-up's framing (the face up to 70% of
    the width, off its place by up to 30%) does, else the smallest overhang."""
    face_w = face_width(landmarks)
    eyes = (landmarks[33, :2] + landmarks[263, :2]) / 2
    mouth = landmarks[list(MOUTH_POINTS), :2].mean(0)
    cx, cy = float((eyes[0] + mouth[0]) / 2), float((eyes[1] + mouth[1]) / 2)
    best: Framing | None = None
    close = np.linspace(0.0, 1.0, 13)[1:]
    steps = [(share, MAX_SHIFT) for share in np.linspace(FACE_SHARE, FACE_SHARE_MAX, 12)]
    steps += [(FACE_SHARE_MAX + t * (CLOSE_SHARE_MAX - FACE_SHARE_MAX), MAX_SHIFT + t * (CLOSE_MAX_SHIFT - MAX_SHIFT))
              for t in close]
    for share, shift in steps:
        side = face_w / share
        x0, y0 = cx - side / 2, cy - FACE_Y * side
        span = shift * side
        # shift toward the inside, at most `span`
        x0 = _fit(x0, side, width, span)
        y0 = _fit(y0, side, height, span)
        over = max(-x0, -y0, x0 + side - width, y0 + side - height, 0.0) / side
        framing = Framing(x0, y0, side, over)
        if best is None or framing.pad < best.pad - 1e-9:
            best = framing
        if over <= 0:
            break
    assert best is not None
    return best


def _fit(start: float, side: float, limit: float, span: float) -> float:
    if side >= limit:  # cannot fit: centre the overhang within what the shift allows
        ideal = (limit - side) / 2
    elif start < 0:
        ideal = 0.0
    elif start + side > limit:
        ideal = limit - side
    else:
        return start
    return min(max(ideal, start - span), start + span)


def crop(image: np.ndarray, framing: Framing, size: int) -> np.ndarray:
    """The framing's square, resampled to size x size.

    The part past the photo's edge repeats the edge, blurred with the distance from it, so it reads as an
    out-of-focus continuation rather than streaks."""
    from PIL import Image

    h, w = image.shape[:2]
    ix0, iy0 = math.floor(framing.x0), math.floor(framing.y0)
    ix1, iy1 = math.ceil(framing.x0 + framing.side) + 1, math.ceil(framing.y0 + framing.side) + 1
    inside = image[max(iy0, 0) : min(iy1, h), max(ix0, 0) : min(ix1, w)]
    pads = ((max(-iy0, 0), max(iy1 - h, 0)), (max(-ix0, 0), max(ix1 - w, 0)))
    if image.ndim == 3:
        pads += ((0, 0),)
    padded = any(p for pair in pads for p in pair)
    region = np.pad(inside, pads, mode="edge") if padded else inside
    box = (framing.x0 - ix0, framing.y0 - iy0, framing.x0 - ix0 + framing.side, framing.y0 - iy0 + framing.side)
    out = np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize((size, size), Image.LANCZOS, box=box))
    if not padded or image.ndim != 3:
        return out
    side_d, bottom_d = outside_distance(framing, w, h, size)
    dist = np.maximum(side_d, bottom_d)
    weight = np.clip(dist / max(size / 24, 1.0), 0.0, 1.0)[..., None]
    blurred = _box_blur(out.astype(np.float32), max(2, size // 24))
    return np.clip(out * (1 - weight) + blurred * weight + 0.5, 0, 255).astype(np.uint8)


def outside_distance(framing: Framing, width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """How far (in output px) each output pixel lies past the photo's top/left/right edges, and its bottom."""
    k = framing.side / size
    grid = np.arange(size, dtype=np.float32) + 0.5
    xs, ys = framing.x0 + grid * k, framing.y0 + grid * k
    dx = np.maximum(np.maximum(-xs, xs - width), 0) / k
    top = np.maximum(-ys, 0) / k
    bottom = np.maximum(ys - height, 0) / k
    return np.maximum(dx[None, :], top[:, None]), np.broadcast_to(bottom[:, None], (size, size))


def edge_fade(framing: Framing, width: int, height: int, size: int) -> np.ndarray:
    """Matte factor: 1 inside the photo, fading to 0 past its top and sides (made-up background), kept below
    (the body goes on past the bottom edge)."""
    side_d, _ = outside_distance(framing, width, height, size)
    return np.clip(1.0 - side_d / max(size / 12, 1.0), 0.0, 1.0).astype(np.float32)


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    pad = ((radius + 1, radius), (radius + 1, radius)) + (((0, 0),) if x.ndim == 3 else ())
    c = np.pad(x, pad, mode="edge").cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def yaw_ratio(landmarks: np.ndarray) -> float:
    """Near-side over far-side nose-to-cheek distance along the eye line: 1 frontal, toward 0 in profile."""
    axis = landmarks[263, :2] - landmarks[33, :2]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    nose = float(landmarks[NOSE_TIP, :2] @ axis)
    right = nose - float(landmarks[RIGHT_CHEEK, :2] @ axis)
    left = float(landmarks[LEFT_CHEEK, :2] @ axis) - nose
    if right <= 0 or left <= 0:
        return 0.0
    return min(right, left) / max(right, left)


# Exposure, for the person matte only. In an underexposed photo a dark suit and a dark background are the same few
# levels, and the segmenter gives the suit up (and the ear, the hair's edge). What tells underexposure from a dark
# scene is the highlights: the crop's 99th-percentile luminance is 0.84-1.0 in every lit held-out portrait, 0.34 in
# the low-light one.
LIT_HIGHLIGHTS = 0.6  # at and above it the photo is lit: its matte is the segmenter's on the photo alone
DARK_HIGHLIGHTS = 0.4  # at and below it the brightened copies are at full strength (in between, in proportion)
LIFT_GAMMAS = (0.8, 0.6)  # the two brightened copies at full strength (the photo's levels to this power)


def segment_exposed(image: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    """The segmenter's person probability for the pose image, and the guide to refine it with.

    An underexposed photo is also segmented as two brightened copies, and each pixel takes the median of the three:
    on dark copies of six portraits (six darkenings each) that kept more of the person than the photo alone
    (IoU against the lit photo's matte 0.954 -> 0.970 on average, 0.856 -> 0.886 at worst), where one brightened
    copy alone sometimes lost the person entirely (the segmenter read a lifted, noisy face as nothing). The pose
    keeps the photo's own pixels: only the matte sees the copies."""
    from a2v_cli.engine.face import segment_person
    from a2v_cli.engine.face_fields import LUMA

    grey = image[::2, ::2].astype(np.float32) @ LUMA / 255.0
    strength = (LIT_HIGHLIGHTS - float(np.percentile(grey, 99))) / (LIT_HIGHLIGHTS - DARK_HIGHLIGHTS)
    if strength <= 0:
        return segment_person(image, device), image
    levels = np.arange(256, dtype=np.float32) / 255.0
    copies = [image]
    for gamma in LIFT_GAMMAS:
        lut = np.clip(levels ** (1.0 - min(strength, 1.0) * (1.0 - gamma)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        copies.append(lut[image])
    probability = np.median(np.stack([segment_person(c, device) for c in copies]), axis=0)
    return probability, copies[1]


def refine_matte(matte: np.ndarray, rgb: np.ndarray, radius: int = 4, eps: float = 2e-3) -> np.ndarray:
    """Guided filter (He et al. 2010) with the photo as guide: the segmenter's soft, low-resolution edge is
    pulled onto the photo's own edges (hair, shoulders) without inventing detail."""
    guide = rgb.astype(np.float32).mean(axis=2) / 255.0
    p = matte.astype(np.float32)

    def box(x: np.ndarray) -> np.ndarray:
        k = 2 * radius + 1
        c = np.pad(x, radius + 1, mode="edge").cumsum(0).cumsum(1)
        return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k])[: x.shape[0], : x.shape[1]] / (k * k)

    mean_i, mean_p = box(guide), box(p)
    cov = box(guide * p) - mean_i * mean_p
    var = box(guide * guide) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    refined = box(a) * guide + box(b)
    # the filtered edge is about as wide as the segmenter's; narrowing it around 0.5 keeps the background's
    # colour out of the hair's fringe (a light halo on a dark backdrop otherwise)
    return np.clip((refined - 0.5) * EDGE_GAIN + 0.5, 0.0, 1.0)


ISLAND_BLOCK = 4  # px per cell of the grid on which the matte's islands are found
ISLAND_REACH = 1 / 40  # share of the pose's side: how far from the person the matte's soft edge is kept
# A person's envelope, in face widths (cheek to cheek) from the face's centre (between the eyes and the mouth): head and
# hair within HEAD_HALF either side and HEAD_TOP above, the chin CHIN below, the body widening from there to BODY_HALF
# either side SHOULDERS further down (the held-out portraits' mattes: hair within 0.5-0.86 either side at eye level,
# the shoulders at 1.2-1.6 by 0.2 below the chin).
HEAD_HALF, HEAD_TOP, CHIN, SHOULDERS, BODY_HALF = 0.8, 1.4, 0.6, 0.6, 1.5
OWN_CORE = 0.65  # the share of the subject's envelope that is never given to a neighbour (face, hair, neck, chest)
# a neighbour claims what is nearer to them than this share of its distance to the subject: the subject is the largest
# face (or the one asked for), most often the nearest to the camera, in front where two people overlap
NEIGHBOUR_BIAS = 0.85
NEARER = 1.15  # a face this much larger (detector box) than the subject's is nearer the camera: its body is in front
BOX_PER_FACE = 1.1  # the detector's box width over the cheek-to-cheek width of a frontal face (measured 1.07-1.21)


@dataclass(frozen=True)
class Person:
    """Where a face's owner stands in the pose: the face's centre and width (cheek to cheek), and the detector's box
    width (the one measure every face has: the larger face is the nearer), in pose px."""

    x: float
    y: float
    width: float
    box: float

    @classmethod
    def of_mesh(cls, points: np.ndarray, face: Any, framing: Framing, size: int) -> Person:
        centre = (points[[33, 263], :2].mean(0) + points[[13, 14], :2].mean(0)) / 2
        return cls(float(centre[0]), float(centre[1]), face_width(points), face.width * size / framing.side)

    @classmethod
    def of_face(cls, face: Any, framing: Framing, size: int) -> Person:
        """A detected face (picture px; its keypoints: eyes 0-1, mouth 3) in the pose: no mesh needed for a face
        that only bounds the matte."""
        k = size / framing.side
        eyes, mouth = face.keypoints[:2].mean(0), face.keypoints[3]
        centre = (eyes + mouth) / 2
        return cls(float((centre[0] - framing.x0) * k), float((centre[1] - framing.y0) * k),
                   face.width / BOX_PER_FACE * k, face.width * k)

    def envelope(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """How far each (ys x xs) point lies from this person, as a share of the envelope there (< 1 inside)."""
        dx = np.abs(xs[None, :] - self.x) / self.width
        dy = (ys[:, None] - self.y) / self.width
        half = HEAD_HALF + np.clip((dy - CHIN) / SHOULDERS, 0.0, 1.0) * (BODY_HALF - HEAD_HALF)
        return np.hypot(dx / half, np.minimum(dy, 0.0) / HEAD_TOP)


SEED_BIAS = 0.6  # a neighbour's own cells: inside its head's envelope and clearly nearer to it than to the subject
COLOUR_COST = 0.3  # a step from cell to cell costs its length plus this per level of colour change (RGB distance)


def others_claim(subject: Person, others: Sequence[Person], colours: np.ndarray, solid: np.ndarray,
                 block: int) -> np.ndarray:
    """The cells of a ``block``-px grid over the pose (``colours``: each cell's mean RGB; ``solid``: the person
    matte's cells) that belong to someone else. A neighbour pressed against the subject is one shape to the
    segmenter; the faces say where one person ends. Each solid cell goes to whoever reaches it more cheaply through
    the shape (NEIGHBOUR_BIAS in the subject's favour), a step costing more across a change of colour: the subject
    from her head, neck and chest (OWN_CORE, never given away), a neighbour from its head. On the envelopes alone
    (each cell to the nearer face, in face widths) the line between two people was straight: through the subject's
    hair or ponytail where it reached past it, through the neighbour's hair where it did not (three of five held-out
    group photos). A face not clearly larger than the subject's (NEARER: not clearly nearer the camera) claims its
    head only: its body may be behind the subject's where they overlap, and the segmenter's shape cannot tell where
    it shows (t1.jpg: the woman behind him took his raised shoulder)."""
    gh, gw = solid.shape
    xs, ys = (np.arange(gw) + 0.5) * block, (np.arange(gh) + 0.5) * block
    own = subject.envelope(xs, ys)
    free = own > OWN_CORE
    steps = _steps(colours)
    mine = _path_cost(own <= OWN_CORE, solid, steps)
    claimed = np.zeros(solid.shape, bool)
    for other in others:
        head = ys[:, None] < other.y + CHIN * other.width
        seed = (other.envelope(xs, ys) < np.minimum(SEED_BIAS * own, 1.0)) & head & free
        theirs = _path_cost(seed, solid, steps) < NEIGHBOUR_BIAS * mine
        claimed |= theirs if other.box >= NEARER * subject.box else theirs & head
    return _majority(claimed) & free


_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def _steps(colours: np.ndarray) -> list[tuple[slice, slice, slice, slice, np.ndarray]]:
    """Per direction: the target and source cells and the cost of the step between them."""
    h, w = colours.shape[:2]
    out = []
    for dy, dx in _NEIGHBOURS:
        to = (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
        src = (slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
        change = np.linalg.norm(colours[to] - colours[src], axis=-1)
        out.append((*to, *src, (math.hypot(dy, dx) + COLOUR_COST * change).astype(np.float32)))
    return out


def _path_cost(seed: np.ndarray, solid: np.ndarray, steps: list[tuple[slice, slice, slice, slice, np.ndarray]]
               ) -> np.ndarray:
    """The cheapest path from ``seed`` to every cell through ``solid`` cells (inf where there is none): relaxed in
    all eight directions until nothing changes, a few hundred array passes on the 128x128 grid of a 512 pose."""
    cost = np.where(seed & solid, 0.0, np.inf).astype(np.float32)
    blocked = ~solid
    for _ in range(4 * sum(solid.shape)):
        before = cost.copy()
        for ty, tx, sy, sx, step in steps:
            np.minimum(cost[ty, tx], cost[sy, sx] + step, out=cost[ty, tx])
        cost[blocked] = np.inf
        if np.array_equal(cost, before):
            break
    return cost


def _majority(cells: np.ndarray) -> np.ndarray:
    """3x3 majority vote: the cut's edge without single-cell steps from the colours' noise."""
    padded = np.pad(cells, 1).astype(np.int8)
    h, w = cells.shape
    votes = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return votes >= 5


def person_only(matte: np.ndarray, points: np.ndarray, image: np.ndarray, subject: Person | None = None,
                others: Sequence[Person] = ()) -> np.ndarray:
    """The matte without its islands: what is connected neither to the face nor to the bottom edge (where the body
    leaves the frame) is background the segmenter half took for a person (a neighbour's hand, a lamp, a face in a
    poster), and so is faint haze away from the person. ``others``, the other faces in the photo, claim what is
    theirs from the ``subject``'s first (``others_claim``), and what that leaves unconnected goes too. Found on a
    coarse grid, so that a hair's width gap does not cut the person in two and the search stays cheap (8 ms of CPU
    at 512 px; 45-65 ms with 3-4 other faces, 0.2-0.35 s at 1024)."""
    b = ISLAND_BLOCK
    h, w = matte.shape
    gh, gw = -(-h // b), -(-w // b)
    cells = np.zeros((gh * b, gw * b), np.float32)
    cells[:h, :w] = matte
    solid = cells.reshape(gh, b, gw, b).max(axis=(1, 3)) > 0.5
    claimed = np.zeros_like(solid)
    if subject is not None and others:
        px = np.zeros((gh * b, gw * b, 3), np.float32)
        px[:h, :w] = image
        claimed = others_claim(subject, others, px.reshape(gh, b, gw, b, 3).mean(axis=(1, 3)), solid, b)
    solid &= ~claimed
    seed = np.zeros_like(solid)
    xs = np.clip((points[:, 0] / b).astype(int), 0, gw - 1)
    ys = np.clip((points[:, 1] / b).astype(int), 0, gh - 1)
    seed[ys, xs] = True
    seed[-1] = True
    reach = seed & solid
    while True:
        grown = _grow(reach) & solid
        if (grown == reach).all():
            break
        reach = grown
    for _ in range(max(1, round(ISLAND_REACH * max(h, w) / b))):
        reach = _grow(reach) & ~claimed
    keep = np.repeat(np.repeat(reach, b, axis=0), b, axis=1)[:h, :w].astype(np.float32)
    return matte * _box_blur(keep, max(1, b // 2))


def _grow(cells: np.ndarray) -> np.ndarray:
    """One step of 8-connected dilation."""
    out = cells.copy()
    out[1:] |= cells[:-1]
    out[:-1] |= cells[1:]
    row = out.copy()
    out[:, 1:] |= row[:, :-1]
    out[:, :-1] |= row[:, 1:]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# add / remove
# ----------------------------------------------------------------------------------------------------------------------


def avatars_dir(home: Path) -> Path:
    path = home / "avatars"
    _writable_dir(path, f"cannot write avatars into {path}")
    return path


def _start(req: PhotoRequest, home: Path, builtin: set[str]) -> Path:
    check_request(req, builtin)
    avatars = avatars_dir(home)
    if req.avatar_id is not None and (avatars / req.avatar_id).exists():
        raise InputError(f"avatar {req.avatar_id!r} already exists",
                         f"choose another --id, or remove it first: a2v avatars remove {req.avatar_id}")
    return avatars


def _choose(rgb: np.ndarray, req: PhotoRequest, what: str) -> tuple[Any, list[Any]]:
    """The face to use (largest, or --face N) and every face found, largest first."""
    from a2v_cli.engine.face import detect_faces

    faces = detect_faces(rgb, req.device)
    if not faces:
        raise InputError(f"no face found in {what}",
                         "use a picture of one person facing the camera, head and shoulders in view")
    if req.face is not None:
        if req.face > len(faces):
            raise InputError(f"--face {req.face}: {what} has {len(faces)} face(s)",
                             f"use --face 1 to {len(faces)} (1 = the largest)")
        return faces[req.face - 1], faces
    return faces[0], faces


def _too_small(what: str, width: float, minimum: int) -> InputError:
    return InputError(f"the face in {what} is {width:.0f} px wide (cheek to cheek); at least {minimum} px is needed",
                      "use a closer or higher-resolution photo")


@dataclass(frozen=True)
class Picked:
    face: Any  # face.Face
    landmarks: np.ndarray  # its face mesh, in the picture's px
    faces: list[Any]  # every face found, largest first (the picked one among them)


def _pick(rgb: np.ndarray, req: PhotoRequest, what: str, scale: float) -> Picked:
    """The face (``_choose``) and its face mesh, checked for size in the mesh's terms (``face_width``): a photo's,
    and a clip's in its first frame; ``scale`` maps ``rgb`` px to the source's."""
    from a2v_cli.engine.face import face_landmarks

    face, faces = _choose(rgb, req, what)
    landmarks = face_landmarks(rgb, face, req.device)
    minimum, width = min_face_px(req.size), face_width(landmarks) * scale
    if width < minimum:
        raise _too_small(what, width, minimum)
    return Picked(face, landmarks, faces)


def _other_faces(count: int) -> str:
    return "--face 2" if count == 2 else f"--face 2 to --face {count}"


def _note_faces(what: str, req: PhotoRequest, count: int, warn: Callable[[str], None]) -> None:
    if req.face is None and count > 1:
        warn(f"{what} has {count} faces; using the largest (pick another with {_other_faces(count)})")


def _or_another_face(err: InputError, req: PhotoRequest, count: int) -> InputError:
    """A refusal of the largest face of several (a profile, cut off...) says, in its one line, that the others can
    be picked: in a group photo the person the user wants is often not the largest face."""
    if req.face is not None or count < 2:
        return err
    return InputError(err.message, f"{err.hint}, or pick another of the {count} faces with {_other_faces(count)}")


def roll_degrees(landmarks: np.ndarray) -> float:
    """How far the face's own down (between the eyes, 33 and 263, to the inner-lip midpoints, 13 and 14) is
    turned from the picture's down, in -180..180: 0 upright, about +-90 lying sideways, about 180 upside down
    (also a mirrored one, where the eye line alone would still look level)."""
    eyes = (landmarks[33, :2] + landmarks[263, :2]) / 2
    mouth = (landmarks[13, :2] + landmarks[14, :2]) / 2
    dx, dy = mouth - eyes
    return float(np.degrees(np.arctan2(-dx, dy)))


def _check_frontal(landmarks: np.ndarray, what: str, rgb: np.ndarray, device: str) -> None:
    """Upright first (an upside-down face would read as a profile), then facing the camera."""
    from a2v_cli.engine.face import upside_down

    turn = 180.0 if upside_down(rgb, landmarks, device) else abs(roll_degrees(landmarks))
    if turn > MAX_ROLL_DEG:
        how = "upside down" if turn > 135 else "lying sideways" if turn > 70 else f"tilted {turn:.0f} degrees"
        fix = (f"straighten the picture so the eyes are level (within {MAX_ROLL_DEG:.0f} degrees)" if turn <= 70
               else "rotate the picture so the face is upright (a phone photo may have lost its orientation tag)")
        raise InputError(f"the face in {what} is {how}; a2v animates an upright face", fix)
    if yaw_ratio(landmarks) < MIN_YAW_RATIO:
        raise InputError(f"the face in {what} is turned too far to the side (a profile)",
                         "use a photo where the person faces the camera")


def _check_face_opaque(alpha: np.ndarray, landmarks: np.ndarray, what: str, kind: str = "photo") -> None:
    """The photo's alpha becomes the matte, so it must keep the face: a PNG saved fully transparent (or with a
    hole over the face) used to make an avatar whose mask hides the person, with exit 0."""
    h, w = alpha.shape[:2]
    xs = np.clip(np.round(landmarks[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(landmarks[:, 1]).astype(int), 0, h - 1)
    if (alpha[ys, xs] < 128).mean() > MAX_CLEAR_FACE:
        raise InputError(f"the face in {what} is transparent in its alpha channel, which a2v uses as the cut-out",
                         f"save the {kind} with the person opaque, or without transparency")


def _check_whole(landmarks: np.ndarray, width: int, height: int, what: str) -> None:
    """The face itself must be in the picture: a cheek or the chin past the edge cannot be animated."""
    x, y = landmarks[:, 0], landmarks[:, 1]
    outside = (x < -1) | (y < -1) | (x > width + 1) | (y > height + 1)
    if outside.mean() > 0.01:
        raise InputError(f"the face in {what} is cut off by the edge of the picture",
                         "use a picture with the whole face and some space around the head in view")


def _check_framing(framing: Framing, what: str) -> None:
    if framing.pad > MAX_PAD:
        raise InputError(f"the face in {what} is too close to the edge for a head-and-shoulders framing",
                         "use a picture with some space around the head and the shoulders in view")


def _to_pose(points: np.ndarray, framing: Framing, size: int) -> np.ndarray:
    """Landmarks from source px to pose px (the crop is a square scaled to size x size)."""
    k = size / framing.side
    out = points.astype(np.float32).copy()
    out[..., 0] = (out[..., 0] - framing.x0) * k
    out[..., 1] = (out[..., 1] - framing.y0) * k
    out[..., 2] *= k
    return out


def _geometry(points: np.ndarray, box: list[float]) -> dict[str, Any]:
    return {
        "face_box": [round(float(v), 2) for v in box],
        "mouth_anchor": [round(float(v), 2) for v in points[list(MOUTH_POINTS), :2].mean(0)],
        "face_width": round(face_width(points), 2),
    }


def _default_name(avatar_id: str) -> str:
    return avatar_id.replace("-", " ").replace("_", " ").title()


def _manifest(req: PhotoRequest, avatar_id: str, source: dict[str, Any], pose: dict[str, Any]) -> dict[str, Any]:
    name = req.name or _default_name(avatar_id)
    description = req.description or f"From {source['file']}"
    kind = pose["kind"]
    return {
        "format": FORMAT,
        "avatar_id": avatar_id,
        "name": name,
        "description": description,
        "source": source,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "poses": [{"pose_id": pose["pose_id"], "name": f"{name} ({kind})", "description": description, **pose}],
    }


# The face mesh's inner-lip gap over mouth width on the pose's closed mouth, above which the lips did not close: on
# held-out portraits every mouth that closed read <= 0.062, a laugh, a shout and a wide-open surprise 0.103-0.325
CLOSED_READS_OPEN = 0.085


def _note_closure(image: np.ndarray, matte: np.ndarray, points: np.ndarray, what: str, device: str,
                  warn: Callable[[str], None]) -> None:  # fmt: skip
    """A photo with the mouth open wide (a laugh, a shout) may not close in pauses: say so now, not in the video.

    The pose's closed mouth, drawn as a render draws it, read by the face mesh as the lip-sync benchmark reads it."""
    from a2v_cli.engine import face
    from a2v_cli.engine.photo_pose import PhotoPose, PhotoSource

    closed = PhotoSource(PhotoPose("check", image, matte, points), FPS, still=True, device=device).compose(
        range(1), np.zeros((1, 4), np.float32))[0][0].copy()  # fmt: skip
    found = face.detect_faces(closed, device)
    if not found:
        return
    m = face.face_landmarks(closed, found[0], device)
    gap = float(np.linalg.norm(m[13, :2] - m[14, :2]) / max(float(np.linalg.norm(m[61, :2] - m[291, :2])), 1e-6))
    if gap > CLOSED_READS_OPEN:
        warn(f"the mouth in {what} is open wide and may not close fully in pauses; "
             "a photo with the mouth closed or at rest lip-syncs best")  # fmt: skip


def add_photo(
    req: PhotoRequest, home: Path, builtin: set[str], warn: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Build the bundle for one photo and move it into place; returns its avatar.json."""
    from a2v_cli.engine.photo import load_photo

    avatars = _start(req, home, builtin)
    what = req.image.name
    photo = load_photo(req.image)
    scale = max(photo.width, photo.height) / max(photo.rgb.shape[:2])  # working copy -> original px
    picked = _pick(photo.rgb, req, what, scale)
    face, landmarks, count = picked.face, picked.landmarks, len(picked.faces)
    h, w = photo.rgb.shape[:2]
    try:
        _check_frontal(landmarks, what, photo.rgb, req.device)
        _check_whole(landmarks, w, h, what)
        if photo.alpha is not None:
            _check_face_opaque(photo.alpha, landmarks, what)
        framing = frame_face(landmarks, w, h)
        _check_framing(framing, what)
    except InputError as err:
        raise _or_another_face(err, req, count) from None
    _note_faces(what, req, count, warn)
    size = req.size
    image = crop(photo.rgb, framing, size)
    points = _to_pose(landmarks, framing, size)
    others = [Person.of_face(f, framing, size) for f in picked.faces if f is not face]
    subject = Person.of_mesh(points, face, framing, size)
    if photo.alpha is not None:
        matte = crop(photo.alpha, framing, size).astype(np.float32) / 255.0
        if others:  # a cut-out of several people: the others go, as from a photo without alpha
            matte = person_only(matte, points, image, subject, others)
    else:
        matte = person_only(refine_matte(*segment_exposed(image, req.device)), points, image, subject, others)
    if framing.pad > 0:
        matte = matte * edge_fade(framing, w, h, size)
    matte8 = np.clip(matte * 255 + 0.5, 0, 255).astype(np.uint8)
    _note_closure(image, matte8, points, what, req.device, warn)
    box = _to_pose(np.asarray([[face.box[0], face.box[1], 0], [face.box[2], face.box[3], 0]]), framing, size)
    avatar_id = req.avatar_id or free_id(req.image.stem, avatars, builtin)
    pose_id = f"{avatar_id}-photo"
    source = {"kind": "image", "file": req.image.name, "sha256": _sha256(req.image),
              "width": photo.width, "height": photo.height}
    pose = {"pose_id": pose_id, "kind": "photo", "width": size, "height": size, "fps": FPS, "frame_count": 1,
            "image": f"{pose_id}/image.png", "matte": f"{pose_id}/matte.png",
            "landmarks": f"{pose_id}/landmarks.npy", **_geometry(points, list(box[:, :2].reshape(-1)))}
    manifest = _manifest(req, avatar_id, source, pose)

    def write(stage: Path) -> None:
        pose_dir = stage / pose_id
        _mkdir_private(pose_dir)
        _save_png(image, pose_dir / "image.png")
        _save_png(matte8, pose_dir / "matte.png")
        with _open_private(pose_dir / "landmarks.npy") as handle:
            np.save(handle, points[None].astype(np.float32))
        _save_png(np.dstack([image, matte8]), stage / "preview.png")

    _publish(home, avatars, avatar_id, manifest, write, _next_id(req, avatars, builtin))
    return manifest


VIDEO_WORK_SIDE = 640  # the first pass (finding and framing the face) reads the clip at this long side
FRAMING_STEP = 5  # ... and only every 5th frame (5 a second): the head's average place needs no more
MATTE_MEMORY = 0.35  # share of the previous frame's matte kept in the next: no flicker at the edge
MATTE_RADIUS = 4  # the guided filter's radius in pose px at 512 (as refine_matte's)
AHEAD = 8  # frames the tracker may run ahead of the matting thread (memory stays flat)
# Lossless codecs of a video pose's frames and matte. UtVideo (planar RGB, median prediction) encodes a 512 px frame in
# a quarter of FFV1's CPU time and decodes in a fifth (every render of the pose decodes the whole clip first), for
# ~20% more bytes; bundles made before hold FFV1 frames, which the same reader (ffmpeg) decodes. The grey matte
# stays FFV1 (UtVideo has no grey format, and FFV1's grey is cheap).
FRAMES_CODEC = ["-c:v", "utvideo", "-pred", "median", "-pix_fmt", "gbrp"]
MATTE_CODEC = ["-c:v", "ffv1", "-level", "3", "-g", "1", "-pix_fmt", "gray"]


@dataclass(frozen=True)
class ClipFraming:
    """How the pose's frames are cut from the clip: a square of ``side`` source px at (x0, y0), ``size`` px wide.

    Inside the picture ffmpeg crops and scales it in its own process (``crop``: whole, even source px); past an
    edge (``pad`` > 0) the frames are scaled whole and ``ingest.crop`` extends the edge, as for a photo."""

    x0: float
    y0: float
    side: float
    pad: float
    size: int
    crop: tuple[int, int, int, int] | None

    def to_pose(self, points: np.ndarray) -> np.ndarray:
        """Source px -> pose px (x, y; z scales with them)."""
        k = self.size / self.side
        out = np.asarray(points, dtype=np.float32).copy()
        out[..., 0] = (out[..., 0] - self.x0) * k
        out[..., 1] = (out[..., 1] - self.y0) * k
        out[..., 2] *= k
        return out


def clip_framing(framing: Framing, scale: tuple[float, float], info: ClipInfo, size: int) -> ClipFraming:
    """The pass-1 framing (in frames scaled by ``scale`` from the source) in source px, as whole, even px where
    the square lies inside the picture (an offset of at most one source px: the framing is a choice, the
    landmarks are tracked on what is cut)."""
    kx, ky = scale
    x0, y0, side = framing.x0 / kx, framing.y0 / ky, framing.side * (1 / kx + 1 / ky) / 2
    if framing.pad > 0:
        return ClipFraming(x0, y0, side, framing.pad, size, None)

    def even(v: float) -> int:
        return 2 * round(v / 2)

    whole = min(max(even(side), 2), info.width - info.width % 2, info.height - info.height % 2)
    cx = min(max(even(x0), 0), info.width - whole)
    cy = min(max(even(y0), 0), info.height - whole)
    cx, cy = cx - cx % 2, cy - cy % 2
    return ClipFraming(float(cx), float(cy), float(whole), 0.0, size, (cx, cy, whole, whole))


def _guided(guide: np.ndarray, p: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The guided filter's smoothed coefficients (mean a, mean b): the output is ``a * guide + b``."""
    mean_i, mean_p = _box_small(guide, radius), _box_small(p, radius)
    a = (_box_small(guide * p, radius) - mean_i * mean_p) / (_box_small(guide * guide, radius) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return _box_small(a, radius), _box_small(b, radius)


def _box_small(x: np.ndarray, radius: int) -> np.ndarray:
    """``_box_blur`` of a 2-D float32 array for a small radius: 2 x 2r shifted adds cost less than two running sums
    (and round less)."""
    k = 2 * radius + 1
    c = np.pad(x, radius, mode="edge")
    h, w = x.shape
    rows = c[:h].copy()
    for i in range(1, k):
        rows += c[i : i + h]
    out = rows[:, :w].copy()
    for j in range(1, k):
        out += rows[:, j : j + w]
    out *= np.float32(1 / (k * k))
    return out


class VideoMatte:
    """The matte of each pose frame, in clip order: the segmenter at its own 256x256, refined by the fast guided
    filter (He & Sun 2015: the coefficients at 256, upsampled, applied to the full frame), so the edge still
    follows the frame's own hair and shoulders at a quarter of the cost; faded past the clip's edge and mixed
    with the previous frame's (MATTE_MEMORY)."""

    def __init__(self, size: int, fade: np.ndarray | float, device: str) -> None:
        from a2v_cli.engine.face import SEGMENT_SIZE

        self.size, self.fade, self.device = size, fade, device
        self.low = SEGMENT_SIZE
        self.radius = max(1, round(MATTE_RADIUS * SEGMENT_SIZE / size))
        self.previous: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        from a2v_cli.engine.face import segment_native

        small = np.asarray(Image.fromarray(image).resize((self.low, self.low), Image.BILINEAR))
        p = np.clip(segment_native(small, self.device), 0.0, 1.0)
        mean_a, mean_b = _guided(_grey(small), p, self.radius, 2e-3)

        def up(x: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize((self.size, self.size),
                                                                                    Image.BILINEAR))

        matte = up(mean_a) * _grey(image) + up(mean_b)
        matte = np.clip((matte - 0.5) * EDGE_GAIN + 0.5, 0.0, 1.0) * self.fade
        if self.previous is not None:
            matte = (1 - MATTE_MEMORY) * matte + MATTE_MEMORY * self.previous
        self.previous = matte
        return np.clip(matte * 255 + 0.5, 0, 255).astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The channel mean in 0..1, float32 (refine_matte's guide), without a float64 temporary."""
    total = rgb[..., 0].astype(np.float32)
    total += rgb[..., 1]
    total += rgb[..., 2]
    total *= np.float32(1 / 765)
    return total


def add_video(
    req: PhotoRequest, home: Path, builtin: set[str], warn: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Build a video pose from a short clip: one fixed head-and-shoulders framing for the whole clip, its frames
    and per-frame matte losslessly (FRAMES_CODEC, MATTE_CODEC), and the face mesh tracked and smoothed over
    every frame.

    Two passes over the clip: a small, sparse one finds the face and the head's average place (the framing),
    then one at the pose's size tracks the mesh from frame to frame (the detector only where the face is lost)
    while a second thread mattes the frames and feeds the encoders, and ffmpeg decodes, crops and scales the clip
    in its own process."""
    from a2v_cli.engine import clip
    from a2v_cli.engine.face import Smoother, Tracker, face_lost
    from a2v_cli.engine.photo import cuts_out

    avatars = _start(req, home, builtin)
    what = req.image.name
    info = clip.probe_clip(req.image)
    # pass 1, small and sparse: the face in the first frame, then where the head goes, for one framing
    k1 = min(1.0, VIDEO_WORK_SIDE / max(info.width, info.height))
    w1, h1 = _even(info.width * k1), _even(info.height * k1)
    with closing(clip.read_frames(req.image, info, w1, h1, step=FRAMING_STEP)) as samples:  # ffmpeg ends with it
        first_rgba = next(samples)
        first = np.ascontiguousarray(first_rgba[..., :3])
        picked = _pick(first, req, f"the first frame of {what}", info.width / w1)
        face, start = picked.face, picked.landmarks
        _note_faces(f"the first frame of {what}", req, len(picked.faces), warn)
        _check_frontal(start, what, first, req.device)
        _check_whole(start, w1, h1, what)
        own_alpha = info.alpha and cuts_out(first_rgba[..., 3])  # the clip's own cut-out is the matte, as a photo's
        if own_alpha:
            _check_face_opaque(first_rgba[..., 3], start, f"the first frame of {what}", "clip")
        follow = Tracker(req.device, start)
        # a sample where the face is lost is left out: pass 2 sees every frame and names the one where it is lost
        path = [start, *(p for p in map(follow, (f[..., :3] for f in samples)) if p is not None)]
    framing1 = frame_face(np.mean(path, axis=0), w1, h1)
    _check_framing(framing1, what)
    size = req.size
    scale = (w1 / info.width, h1 / info.height)
    cut = clip_framing(framing1, scale, info, size)

    def to_pose(points: np.ndarray) -> np.ndarray:  # pass-1 px -> pose px
        src = np.asarray(points, dtype=np.float32).copy()
        src[..., 0] /= scale[0]
        src[..., 1] /= scale[1]
        return cut.to_pose(src)

    if cut.crop is not None:
        fade: np.ndarray | float = 1.0

        def frames() -> Any:
            return clip.read_frames(req.image, info, size, size, crop=cut.crop)
    else:  # past the picture's edge: whole frames at the pose's scale, cut and edge-extended here
        k2 = size / cut.side
        w2, h2 = _even(info.width * k2), _even(info.height * k2)
        sx, sy = w2 / info.width, h2 / info.height
        framing = Framing(cut.x0 * sx, cut.y0 * sy, cut.side * (sx + sy) / 2, cut.pad)
        fade = edge_fade(framing, w2, h2, size)

        def frames() -> Any:
            return (crop(frame, framing, size) for frame in clip.read_frames(req.image, info, w2, h2))

    avatar_id = req.avatar_id or free_id(req.image.stem, avatars, builtin)
    pose_id = f"{avatar_id}-video"
    box_first = to_pose(np.asarray([[face.box[0], face.box[1], 0], [face.box[2], face.box[3], 0]]))
    start_pose = to_pose(start)
    result: dict[str, Any] = {}

    def write(stage: Path) -> None:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        from a2v_cli.engine.encode import FfmpegWriter, OutputSpec

        pose_dir = stage / pose_id
        _mkdir_private(pose_dir)
        frames_out = FfmpegWriter(OutputSpec(pose_dir / "frames.mkv", "rgb24", FRAMES_CODEC, False, fmt="matroska"),
                                  size, size, clip.FPS, None)
        matte_out = FfmpegWriter(OutputSpec(pose_dir / "matte.mkv", "gray", MATTE_CODEC, False, fmt="matroska"),
                                 size, size, clip.FPS, None)
        matte = VideoMatte(size, fade, req.device)

        def finish(index: int, image: np.ndarray, alpha: np.ndarray | None) -> None:  # on the matting thread, in order
            if alpha is None:
                matte8 = matte(image)
            else:  # the clip's own cut-out, faded past the clip's edge as the segmenter's is
                matte8 = alpha if isinstance(fade, float) else np.clip(alpha * fade + 0.5, 0, 255).astype(np.uint8)
            frames_out.write(image[None])
            matte_out.write(matte8[None])
            if index == 0:
                _save_png(np.dstack([image, matte8]), stage / "preview.png")

        track, smooth = Tracker(req.device, start_pose), Smoother(clip.FPS)
        points: list[np.ndarray] = []
        pending: deque[Future[None]] = deque()
        pool = ThreadPoolExecutor(1, thread_name_prefix="a2v-matte")
        try:
            try:
                with closing(frames()) as stream:
                    for index, pixels in enumerate(stream):
                        image = np.ascontiguousarray(pixels[..., :3]) if info.alpha else pixels
                        alpha = np.ascontiguousarray(pixels[..., 3]) if own_alpha else None
                        raw = track(image)
                        if raw is None:
                            raise face_lost(index)
                        points.append(smooth(raw))
                        pending.append(pool.submit(finish, index, image, alpha))
                        while pending and (len(pending) > AHEAD or pending[0].done()):
                            pending.popleft().result()  # the matting thread's error, if any, surfaces here
                while pending:
                    pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True)
            if not points:
                raise InputError("the clip has no frames", "use a clip ffmpeg can decode")
            for writer in (frames_out, matte_out):
                writer.close()
                os.chmod(writer.commit(), 0o600)
        except BaseException:
            frames_out.abort()
            matte_out.abort()
            raise
        track_px = np.stack(points)
        with _open_private(pose_dir / "landmarks.npy") as handle:
            np.save(handle, track_px.astype(np.float32))
        source = {"kind": "video", "file": req.image.name, "sha256": _sha256(req.image),
                  "width": info.width, "height": info.height}
        pose = {"pose_id": pose_id, "kind": "video", "width": size, "height": size, "fps": clip.FPS,
                "frame_count": int(track_px.shape[0]), "frames": f"{pose_id}/frames.mkv",
                "matte": f"{pose_id}/matte.mkv", "landmarks": f"{pose_id}/landmarks.npy",
                **_geometry(track_px[0], list(box_first[:, :2].reshape(-1)))}
        result.update(_manifest(req, avatar_id, source, pose))

    _publish(home, avatars, avatar_id, result, write, _next_id(req, avatars, builtin))
    return result


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


STALE_SECONDS = 6 * 3600  # a staging folder this old was left by a killed process (no add takes that long)


def _staging(home: Path) -> Path:
    """Bundles are assembled here (same filesystem as avatars/, never read by the registry)."""
    import time

    path = home / ".avatars-staging"
    _writable_dir(path, f"cannot write into {home}")
    for entry in path.iterdir():  # what a `kill -9` left behind
        try:
            if time.time() - entry.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
    return path


def _next_id(req: PhotoRequest, avatars: Path, builtin: set[str]) -> Callable[[], str] | None:
    """How a generated id moves on when another add took it meanwhile; None for an id the user gave (--id)."""
    return None if req.avatar_id else lambda: free_id(req.image.stem, avatars, builtin)


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    with _open_private(folder / "avatar.json") as handle:
        handle.write((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())


def rename_new(src: Path, dest: Path) -> bool:
    """Rename the folder ``src`` to ``dest`` unless ``dest`` is taken (a bundle there): False then, nothing moved.

    The rename is the point of truth between adds running at once: a check before it would be stale."""
    try:
        os.rename(src, dest)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            return False
        raise
    return True


def rename_bundle(folder: Path, avatar_id: str) -> dict[str, Any]:
    """Give the complete, unpublished bundle in ``folder`` the id ``avatar_id``: its manifest, its pose ids and
    their folders (a name made from the old id follows it); returns the new manifest. For a generated id that
    another add published first."""
    manifest = json.loads((folder / "avatar.json").read_text(encoding="utf-8"))
    old = manifest["avatar_id"]
    renamed = manifest.get("name") == _default_name(old)
    if renamed:
        manifest["name"] = _default_name(avatar_id)
    for pose in manifest["poses"]:
        old_pose = pose["pose_id"]
        new_pose = avatar_id + old_pose[len(old):]
        if (folder / old_pose).is_dir():
            os.rename(folder / old_pose, folder / new_pose)
        for key, value in pose.items():
            if isinstance(value, str) and value.startswith(f"{old_pose}/"):
                pose[key] = new_pose + value[len(old_pose):]
        pose["pose_id"] = new_pose
        if renamed and pose.get("name") == f"{_default_name(old)} ({pose.get('kind')})":
            pose["name"] = f"{manifest['name']} ({pose.get('kind')})"
    manifest["avatar_id"] = avatar_id
    (folder / "avatar.json").unlink()
    _write_manifest(folder, manifest)
    return manifest


def _publish(home: Path, avatars: Path, avatar_id: str, manifest: dict[str, Any],
             write: Callable[[Path], None], next_id: Callable[[], str] | None = None) -> None:
    """Write the bundle in staging, then rename it into ``avatars/<id>``; with ``next_id`` (a generated id) an id
    taken meanwhile becomes the next free one (``manifest`` is updated), else it is "already exists"."""
    staging = _staging(home)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f"{avatar_id}.", dir=staging))
    except OSError as err:
        raise _unwritable(f"cannot write into {staging}", err) from None
    try:
        write(stage)
        _write_manifest(stage, manifest)
        while not rename_new(stage, avatars / avatar_id):
            if next_id is None:
                raise InputError(f"avatar {avatar_id!r} already exists", "choose another --id")
            avatar_id = next_id()
            manifest.clear()
            manifest.update(rename_bundle(stage, avatar_id))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        try:
            staging.rmdir()  # only when empty: nothing else is in flight
        except OSError:
            pass


def user_avatar_ids(home: Path) -> list[str]:
    folder = home / "avatars"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if AVATAR_ID.fullmatch(p.name) and (p / "avatar.json").is_file())


def remove(avatar_id: str, home: Path, builtin: set[str]) -> dict[str, Any]:
    """Delete a user avatar: it disappears at once (a rename), then its files go. Built-ins are refused."""
    if avatar_id in builtin:
        raise InputError(f"{avatar_id!r} is a built-in avatar and cannot be removed",
                         "only avatars added with `a2v avatars add` can be removed")
    folder = home / "avatars" / avatar_id
    if not AVATAR_ID.fullmatch(avatar_id) or not (folder / "avatar.json").is_file():
        raise not_found("avatar", avatar_id, user_avatar_ids(home))
    try:
        manifest = json.loads((folder / "avatar.json").read_text())
    except (OSError, ValueError):
        manifest = {"avatar_id": avatar_id}
    staging = _staging(home)
    trash = staging / f"{avatar_id}.removed.{os.getpid()}"
    try:
        os.rename(folder, trash)
    except OSError as err:
        raise InputError(f"cannot remove {folder}: {err.strerror or err}", "check A2V_HOME's permissions") from None
    shutil.rmtree(trash, ignore_errors=True)
    try:
        staging.rmdir()
    except OSError:
        pass
    return manifest

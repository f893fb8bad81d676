"""A drawn (built-in) pose: its layers (``PoseArt``) and how a bundle stores them.

engine/art.py draws the layers once, at build time (``python scripts/build_assets.py``); a render reads
them back from the pose's ``layers.npz``, bit for bit the float32 arrays that were drawn, so the video is
the same as drawing them and no drawing code runs (or is imported) at run time. The layer model is
described in engine/art.py; the bundle format in docs/avatars.md ("Built-in avatars").
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from a2v_cli.engine.avatars import PoseEntry

Color = tuple[float, float, float]
LAYERS_FILE = "layers.npz"
OPEN = 0.0  # the blink level stored whole; the others are stored as the rectangle where they differ from it


@dataclass(frozen=True)
class MouthStyle:
    """How the lip renderer should draw this pose's mouth (colours RGB 0..1, sizes in pixels)."""

    lip: Color
    inner: Color
    teeth: Color
    half_width: float
    lip_thickness: float
    max_open: float


@dataclass(frozen=True)
class PoseInfo:
    """One drawable framing of an avatar."""

    pose_id: str
    avatar_id: str
    name: str
    description: str
    width: int
    height: int


@dataclass(frozen=True)
class PoseArt:
    """All layers of one pose, ready to composite (see engine/art.py for the layer model)."""

    info: PoseInfo
    background: np.ndarray
    body: np.ndarray
    heads: dict[float, np.ndarray]
    head_origin: tuple[int, int]
    mouth_center: tuple[float, float]
    mouth_style: MouthStyle


# ----------------------------------------------------------------------------------------------------------------------
# Packing (build time) and loading (run time)
# ----------------------------------------------------------------------------------------------------------------------


def _planes(smooth: np.ndarray) -> np.ndarray:
    """A smooth float32 image as uint8 (4, H, W, C): the byte planes (least significant first) of the 2-D second
    difference of its bit patterns. Lossless, and it deflates 4x smaller than the floats (a backdrop: ~0.4 MB)."""
    bits = smooth.view(np.int32)
    d = np.diff(np.diff(bits, axis=0, prepend=0), axis=1, prepend=0).astype("<i4")  # wraps: exact modulo 2**32
    return np.ascontiguousarray(np.moveaxis(d[..., None].view(np.uint8), -1, 0))


def _unplanes(planes: np.ndarray) -> np.ndarray:
    d = np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view("<i4")[..., 0]
    return np.cumsum(np.cumsum(d, axis=0, dtype=np.int32), axis=1, dtype=np.int32).view(np.float32)


def _diff_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of the smallest rectangle outside which ``a`` equals ``b``."""
    rows = np.nonzero((a != b).any(axis=(1, 2)))[0]
    cols = np.nonzero((a != b).any(axis=(0, 2)))[0]
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def pack(art: PoseArt) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The pose manifest's drawn-pose fields and the arrays of its ``layers.npz`` (build time)."""
    open_head = art.heads[OPEN]
    arrays = {"background": _planes(art.background), "body": art.body, f"head_{OPEN}": open_head}
    heads: dict[str, list[int]] = {}
    for level, head in art.heads.items():
        r0, r1, c0, c1 = _diff_box(head, open_head) if level != OPEN else (0, 0, 0, 0)
        heads[str(level)] = [r0, c0]
        if level != OPEN:
            arrays[f"head_{level}"] = head[r0:r1, c0:c1]
    ox, oy = art.head_origin
    mx, my = art.mouth_center
    style = art.mouth_style
    fields = {
        "layers": f"{art.info.pose_id}/{LAYERS_FILE}",
        "head_origin": [ox, oy],
        "mouth_center": [mx, my],
        "heads": heads,
        "mouth_style": {k: list(v) if isinstance(v, tuple) else v for k, v in zip(
            ("lip", "inner", "teeth", "half_width", "lip_thickness", "max_open"), astuple(style))},
        "mouth_anchor": [ox + mx, oy + my],
    }
    return fields, arrays


def write_layers(arrays: dict[str, np.ndarray], dest: Any) -> None:
    """Write ``arrays`` as an .npz with fixed timestamps, so an unchanged pose rebuilds to the same bytes."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", (1980, 1, 1, 0, 0, 0)), buf.getvalue(), zipfile.ZIP_DEFLATED, 9)


def read_layers(path: Any) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def unpack(entry: PoseEntry, arrays: dict[str, np.ndarray]) -> PoseArt:
    """The PoseArt of a drawn pose from its manifest entry and its layer arrays."""
    m = entry.manifest
    background = _unplanes(arrays["background"])
    open_head = arrays[f"head_{OPEN}"]
    heads: dict[float, np.ndarray] = {}
    for key, (r0, c0) in m["heads"].items():
        level = float(key)
        if level == OPEN:
            heads[level] = open_head
            continue
        head = open_head.copy()
        patch = arrays[f"head_{level}"]
        head[r0 : r0 + patch.shape[0], c0 : c0 + patch.shape[1]] = patch
        heads[level] = head
    s = m["mouth_style"]
    style = MouthStyle(tuple(s["lip"]), tuple(s["inner"]), tuple(s["teeth"]), s["half_width"], s["lip_thickness"],
                       s["max_open"])
    body = arrays["body"]
    for name, a, shape in (("background", background, (entry.height, entry.width, 3)),
                           ("body", body, (entry.height, entry.width, 4))):
        if a.shape != shape or a.dtype != np.float32:
            raise ValueError(f"pose {entry.pose_id!r}: layer {name} is {a.dtype} {a.shape}, not float32 {shape}")
    info = PoseInfo(entry.pose_id, entry.avatar_id, entry.name, entry.description, entry.width, entry.height)
    ox, oy = m["head_origin"]
    mx, my = m["mouth_center"]
    return PoseArt(info, background, body, heads, (int(ox), int(oy)), (float(mx), float(my)), style)


def load_pose_art(entry: PoseEntry) -> PoseArt:
    """Read a drawn pose's layers from its bundle: a quarter of the time drawing them takes."""
    return unpack(entry, read_layers(entry.file("layers")))

"""Matrix/TRC ICC profiles made from primaries, for the colour-management tests: no profile file ships with the
system or with Pillow but sRGB, and a phone's Display P3 is only its primaries and sRGB's curve."""

from __future__ import annotations

import struct

import numpy as np

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _tag_xyz(v: np.ndarray) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in v)


def _tag_curve_srgb() -> bytes:
    """sRGB's curve as a parametric curve (type 3), as Apple's Display P3 profile has it."""
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)


def _tag_desc(text: str) -> bytes:
    raw = text.encode("ascii") + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(raw)) + raw + b"\0" * (4 + 4 + 2 + 1 + 67)


def rgb_profile(primaries: tuple[tuple[float, float], ...], name: str) -> bytes:
    """An ICC v2 display profile with these primaries, a D65 white and sRGB's curve."""
    rgb = np.stack([_xyz(p) for p in primaries], axis=1)
    white = _xyz(D65)
    scale = np.linalg.solve(rgb, white)
    to_xyz = rgb * scale  # columns: the primaries' XYZ, white at Y = 1
    cone = BRADFORD @ white, BRADFORD @ D50_XYZ
    adapt = np.linalg.inv(BRADFORD) @ np.diag(cone[1] / cone[0]) @ BRADFORD
    cols = adapt @ to_xyz
    curve = _tag_curve_srgb()
    tags = [(b"desc", _tag_desc(name)), (b"wtpt", _tag_xyz(D50_XYZ)), (b"rXYZ", _tag_xyz(cols[:, 0])),
            (b"gXYZ", _tag_xyz(cols[:, 1])), (b"bXYZ", _tag_xyz(cols[:, 2])), (b"rTRC", curve), (b"gTRC", curve),
            (b"bTRC", curve), (b"cprt", b"text" + b"\0" * 4 + b"public domain\0")]
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"APPL" + b"\0" * 4 + b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
              + b"".join(_s15(c) for c in D50_XYZ) + b"lcms" + b"\0" * 44)  # fmt: skip
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + body

"""RGB to the video encoder's own input, YUV 4:2:0 (BT.709, limited range), in numpy.

ffmpeg's conversion of a 512 px RGB frame costs about as much as a quarter of x264's work on it. A photo
pose's frames are a few dozen cached images with a small mouth (and eyes) pasted in, so the source can
convert each cached image once and then only the pasted rectangles: the encoder then reads I420 frames
as they are. Chroma is the mean of each 2x2 block (centre-sited, as ffmpeg's scaler places it), so a
rectangle aligned to even rows and columns converts exactly as it would within the whole frame.

A frame is one flat uint8 array of H * W * 3 / 2 bytes: the Y plane, then U and V, each (H / 2, W / 2), row
after row (ffmpeg's ``yuv420p`` raw layout); a batch of them is (B, H * W * 3 / 2).
"""

from __future__ import annotations

import numpy as np

KR, KB = 0.2126, 0.0722  # BT.709
_LUMA = np.array([KR, 1.0 - KR - KB, KB])
# (3, 3): RGB 0..255 -> Y, U, V offsets from 16, 128, 128, limited range (Y 219 levels, chroma 224)
MATRIX = np.stack([
    _LUMA * 219 / 255,
    (np.array([0.0, 0.0, 1.0]) - _LUMA) * (224 / 255) / (2 * (1 - KB)),
    (np.array([1.0, 0.0, 0.0]) - _LUMA) * (224 / 255) / (2 * (1 - KR)),
], axis=1).astype(np.float32)  # fmt: skip
# per-channel coefficients as float32 scalars: each value is three products and two sums in float32, element by
# element, the same wherever a pixel sits and on every CPU (a matmul's kernels sum in an order, with or without
# FMA, that depends on the array's length and the CPU: a rectangle came out a level off its whole frame's value)
_Y = tuple(np.float32(c) for c in MATRIX[:, 0])
_U = tuple(np.float32(c * 0.25) for c in MATRIX[:, 1])  # of a 2x2 block's sum
_V = tuple(np.float32(c * 0.25) for c in MATRIX[:, 2])
OFFSET = np.array([16.5, 128.5, 128.5], dtype=np.float32)  # + 0.5: rounded by the truncation to uint8


def frame_size(height: int, width: int) -> int:
    """Bytes of one I420 frame; both sides must be even."""
    if height % 2 or width % 2:
        raise ValueError(f"I420 needs even sides, not {width}x{height}")
    return height * width * 3 // 2


def planes(frames: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (..., H, W), U and V (..., H/2, W/2) planes of an I420 frame (N,) or batch (B, N)."""
    if frames.shape[-1] != frame_size(height, width) or frames.strides[-1] != 1:
        raise ValueError(f"not I420 frames of {width}x{height}")
    lead, luma, quarter = frames.shape[:-1], height * width, height * width // 4
    y = frames[..., :luma].reshape(*lead, height, width)
    u = frames[..., luma : luma + quarter].reshape(*lead, height // 2, width // 2)
    v = frames[..., luma + quarter :].reshape(*lead, height // 2, width // 2)
    if not all(np.may_share_memory(p, frames) for p in (y, u, v)):  # reshape copied: writes would be lost
        raise ValueError("I420 frames must be contiguous within each frame")
    return y, u, v


def to_i420(rgb: np.ndarray) -> np.ndarray:
    """A whole (H, W, 3) uint8 RGB frame as I420."""
    frame = np.empty(frame_size(*rgb.shape[:2]), dtype=np.uint8)
    Converter((rgb.shape[0], rgb.shape[1])).write_rect(frame, rgb, 0, 0)
    return frame


class Converter:
    """Converts RGB rectangles into I420 planes, with its scratch arrays kept between calls: fresh multi-megabyte
    temporaries per batch were faulted in page by page, 5x the arithmetic's cost. The scratch is sized for the
    largest rectangle (batch) so far and viewed in the shape of each call: a video pose converts a rectangle of
    another size for nearly every frame."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.height, self.width = size  # of the frames
        self._flat: tuple[np.ndarray, ...] = ()

    def _buffers(self, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        *lead, h, w, _ = shape
        n = int(np.prod(lead, dtype=np.int64)) * h * w
        sizes = (n, n, n, n // 2 * 3, n // 4 * 3, n // 4, n // 4)
        types = (np.float32, np.float32, np.uint8, np.uint16, np.uint16, np.float32, np.float32)
        if not self._flat or self._flat[0].size < sizes[0]:
            self._flat = tuple(np.empty(k, dt) for k, dt in zip(sizes, types))
        shapes = ((*lead, h, w), (*lead, h, w), (*lead, h, w), (*lead, h // 2, w, 3), (*lead, h // 2, w // 2, 3),
                  (*lead, h // 2, w // 2), (*lead, h // 2, w // 2))  # fmt: skip
        return tuple(buf[:k].reshape(s) for buf, k, s in zip(self._flat, sizes, shapes, strict=True))

    def write_rect(self, frames: np.ndarray, rgb: np.ndarray, y0: int, x0: int) -> None:
        """Convert (..., h, w, 3) uint8 RGB rectangles into the planes of I420 ``frames`` (..., N) at (y0, x0).

        h, w, y0 and x0 must be even. One call for a whole batch: per frame, numpy's overhead would be most of it.
        """
        h, w = rgb.shape[-3:-1]
        if (h | w | y0 | x0) % 2:
            raise ValueError("an I420 rectangle must start and end on even rows and columns")
        y_plane, u_plane, v_plane = planes(frames, self.height, self.width)
        acc, term, luma8, rows, block, cacc, cterm = self._buffers(rgb.shape)
        _weigh(rgb, _Y, OFFSET[0], acc, term)
        np.copyto(luma8, acc, casting="unsafe")  # within 16..235: truncation rounds (the offset holds + 0.5)
        y_plane[..., y0 : y0 + h, x0 : x0 + w] = luma8
        np.add(rgb[..., 0::2, :, :], rgb[..., 1::2, :, :], out=rows, dtype=np.uint16)  # 2x2 sums: exact in uint16
        np.add(rows[..., 0::2, :], rows[..., 1::2, :], out=block)
        ys, xs = slice(y0 // 2, (y0 + h) // 2), slice(x0 // 2, (x0 + w) // 2)
        for plane, coefs, offset in ((u_plane, _U, OFFSET[1]), (v_plane, _V, OFFSET[2])):
            _weigh(block, coefs, offset, cacc, cterm)
            np.copyto(plane[..., ys, xs], cacc, casting="unsafe")


def _weigh(pixels: np.ndarray, coefs: tuple[np.float32, ...], offset: np.float32, out: np.ndarray,
           term: np.ndarray) -> None:  # fmt: skip
    """out = r * c0 + g * c1 + b * c2 + offset, in float32, in that order for every element."""
    np.multiply(pixels[..., 0], coefs[0], out=out, dtype=np.float32)
    for c in (1, 2):
        np.multiply(pixels[..., c], coefs[c], out=term, dtype=np.float32)
        out += term
    out += offset


def even_rect(y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
    """The smallest rectangle of whole 2x2 chroma blocks that holds rows y0:y1 and columns x0:x1."""
    return y0 & ~1, (y1 + 1) & ~1, x0 & ~1, (x1 + 1) & ~1

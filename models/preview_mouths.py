"""Render a contact sheet of the mouth renderer for a grid of articulations, to look at.

    python -m models.preview_mouths [--out /tmp/mouths.png] [--zoom 2] [--model models/a2v-mouth-v3.onnx]
    python -m models.preview_mouths --time     # B=64 render time on onnxruntime CPU, 2 threads

Rows: open = 0, 0.25, 0.5, 0.75, 1. Columns: neutral, spread, round, press, spread+press, half round, then the
same articulations with a wide, thick-lipped style. Each 128x96 patch is composited over a skin colour
(premultiplied ``over``), with a thin grey frame around every cell. PNG is written with zlib + struct only.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SKIN = np.array([0.96, 0.80, 0.69], dtype=np.float32)
STYLES = (
    (0.82, 0.38, 0.43, 0.36, 0.10, 0.12, 0.97, 0.96, 0.93, 24.0, 5.5, 19.0),
    (0.55, 0.25, 0.24, 0.30, 0.08, 0.10, 0.97, 0.96, 0.93, 32.0, 7.0, 26.0),
)
SHAPES = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0, 0.5), (0, 0.5, 0))  # spread, round, press
OPENS = (0.0, 0.25, 0.5, 0.75, 1.0)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """(H, W, 3) uint8 -> PNG, no dependencies."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def full_patch(sess: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` plus the whole 128x96 patch as the ``window`` of a windowed renderer (v3, the shipped one)."""
    if "window" in {i.name for i in sess.get_inputs()}:  # type: ignore[attr-defined]
        return {**feeds, "window": np.array([0, 0, 128, 96], dtype=np.float32)}
    return feeds


def render(model: str | Path | bytes, articulation: np.ndarray, style: np.ndarray, offset: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rgb, alpha = sess.run(None, full_patch(sess, {"articulation": articulation, "style": style, "offset": offset}))
    over = rgb + SKIN[None, :, None, None] * (1.0 - alpha)
    return over.transpose(0, 2, 3, 1)  # (B, 96, 128, 3)


def sheet(model: str | Path | bytes, zoom: int = 1) -> np.ndarray:
    arts, styles = [], []
    for o in OPENS:
        for st in STYLES:
            for s, r, p in SHAPES:
                arts.append((o, s, r, p))
                styles.append(st)
    art = np.array(arts, dtype=np.float32)
    sty = np.array(styles, dtype=np.float32)
    off = np.zeros((len(art), 2), dtype=np.float32)
    tiles = render(model, art, sty, off)
    cols = len(STYLES) * len(SHAPES)
    tiles[:, 0, :, :] = tiles[:, -1, :, :] = 0.6
    tiles[:, :, 0, :] = tiles[:, :, -1, :] = 0.6
    rows = [np.concatenate(list(tiles[i * cols : (i + 1) * cols]), axis=1) for i in range(len(OPENS))]
    img = np.concatenate(rows, axis=0)
    if zoom > 1:
        img = img.repeat(zoom, axis=0).repeat(zoom, axis=1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def time_renderer(model: str | Path | bytes, batch: int = 64, runs: int = 50) -> tuple[float, float]:
    """(median, min) seconds of one B=``batch`` run on CPUExecutionProvider with 2 intra-op threads."""
    import time

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = full_patch(sess, {
        "articulation": rng.uniform(0, 1, (batch, 4)).astype(np.float32),
        "style": np.tile(np.array(STYLES[0], dtype=np.float32), (batch, 1)),
        "offset": rng.uniform(0, 1, (batch, 2)).astype(np.float32),
    })
    for _ in range(5):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/mouths.png")
    ap.add_argument("--zoom", type=int, default=1)
    ap.add_argument("--model", default=str(HERE / "a2v-mouth-v3.onnx"),
                    help="mouth renderer .onnx (default: the shipped one; v2: build_models.py --reference DIR)")
    ap.add_argument("--fresh", action="store_true", help="render build_models.build_mouth() instead of the file")
    ap.add_argument("--time", action="store_true", help="time B=64 on 2 CPU threads instead of drawing")
    args = ap.parse_args()
    model: str | bytes = args.model
    if args.fresh:
        from models import build_models  # models/ is on the path of a script run from it

        model = build_models.build_mouth(windowed=True).SerializeToString()
    if args.time:
        median, best = time_renderer(model)
        print(f"mouth renderer, B=64, CPU, 2 threads: median {median * 1000:.1f} ms, best {best * 1000:.1f} ms")
        return
    write_png(args.out, sheet(model, args.zoom))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

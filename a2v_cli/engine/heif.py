"""HEIC/HEIF photos (an iPhone's default format) through the bundled ffmpeg, which reads them: tile grids stitched,
the rotation applied. Pillow reads them only through a plug-in that bundles its own HEVC libraries; a2v ships ffmpeg
already.

ffmpeg leaves the photo's colour profile aside (an iPhone's is Display P3), so it is read here from the file's
boxes and handed on with the pixels, for ``photo.to_srgb``.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a2v_cli.errors import InputError

BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevx", b"mif1", b"msf1")
DECODE_TIMEOUT_S = 120  # a 48 MP iPhone photo decodes in a few seconds; a file that makes ffmpeg hang does not wait
META_MAX_BYTES = 16 * 2**20  # the meta box holds item headers and properties only (the pixels are in mdat)


def is_heif(head: bytes) -> bool:
    """``head``: a file's first 12 bytes."""
    return head[4:8] == b"ftyp" and head[8:12] in BRANDS


@dataclass(frozen=True)
class Probe:
    width: int  # of the primary image as shown (rotated)
    height: int
    source: str  # ffmpeg's label for it: "0:g:N", a tile grid (how phones store a photo), or "0:N", one image


def probe(path: Path) -> Probe:
    """The primary image's size and ffmpeg label, from `ffmpeg -i`."""
    from a2v_cli.engine.audio import ffmpeg_listing

    try:
        text = ffmpeg_listing(path, DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"{path.name} took over {DECODE_TIMEOUT_S} s to read", "export the photo as JPEG") from None
    return parse_probe(text, path.name)


def parse_probe(text: str, name: str) -> Probe:
    """The default image in `ffmpeg -i`'s listing (a tile grid's "Stream group", else a stream), its size turned by
    its display matrix."""
    entries = list(re.finditer(r"^\s*Stream (group )?#0:(\d+)\S*: (?:Tile Grid|Video): .*?(\d{2,5})x(\d{2,5})(.*)$",
                               text, re.MULTILINE))  # fmt: skip
    if not entries:
        raise InputError(f"{name} is a HEIC/HEIF file without an image ffmpeg can read",
                         "export the photo as JPEG (iPhone: Settings > Camera > Formats > Most Compatible)")
    chosen = next((e for e in entries if "(default)" in e.group(5)), entries[0])
    width, height = int(chosen.group(3)), int(chosen.group(4))
    following = re.search(r"^\s*Stream ", text[chosen.end() :], re.MULTILINE)
    block = text[chosen.end() : chosen.end() + following.start()] if following else text[chosen.end() :]
    turn = re.search(r"rotation of (-?[\d.]+) degrees", block)
    if turn and round(abs(float(turn.group(1)))) % 180 == 90:
        width, height = height, width
    return Probe(width, height, f"0:{'g:' if chosen.group(1) else ''}{chosen.group(2)}")


def decode(path: Path, found: Probe, max_side: int) -> Any:
    """The ``found`` image of the photo as a loaded PIL image (RGB), at most ``max_side`` px on its long side, with
    its ICC profile (if any) in ``info["icc_profile"]``; InputError where ffmpeg cannot decode it, or only a small
    part of it. Where it needs no scaling, its size is the decoded one (an odd-sized image's listing may give the
    coded size, padded)."""
    from PIL import Image

    from a2v_cli.engine.audio import ffmpeg_exe

    k = min(1.0, max_side / max(found.width, found.height))
    expected = (found.width * k, found.height * k)
    # a tile grid is stitched by a filter graph of ffmpeg's own, so the scaling is one too (-vf would be refused)
    fit = f"scale=w='min(iw,{max_side})':h='min(ih,{max_side})':force_original_aspect_ratio=decrease:flags=area"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-filter_complex", f"[{found.source}]{fit},format=rgb24[out]", "-map", "[out]", "-frames:v", "1",
           "-c:v", "png", "-compression_level", "0", "-f", "image2pipe", "pipe:1"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"{path.name} took over {DECODE_TIMEOUT_S} s to decode", "export the photo as JPEG") from None
    if proc.returncode != 0 or not proc.stdout:  # ffmpeg's own words are a decoder thread's return code
        raise InputError(f"{path.name} is damaged or truncated (its image cannot be decoded)",
                         "export or download the photo again")
    img = Image.open(io.BytesIO(proc.stdout))
    img.load()
    if k == 1.0 and img.size[0] >= found.width and img.size[1] >= found.height:
        # an odd-sized image is coded padded on the right and bottom, with a crop box ffmpeg does not apply
        img = img.crop((0, 0, found.width, found.height))
    if img.size[0] * img.size[1] < expected[0] * expected[1] / 4:  # truncated: ffmpeg decodes what it can
        raise InputError(f"{path.name} is damaged or truncated (its image decodes at {img.size[0]}x{img.size[1]}, not "
                         f"{round(expected[0])}x{round(expected[1])})", "export or download the photo again")
    icc = icc_profile(path)
    if icc:
        img.info["icc_profile"] = icc
    return img


def icc_profile(path: Path) -> bytes | None:
    """The ICC profile of the primary image ('colr' of type 'prof' among its properties), else the first one in the
    file; None where there is none or the boxes cannot be read."""
    try:
        with open(path, "rb") as handle:
            meta = _find(handle, b"meta", path.stat().st_size)
            if meta is None or meta[1] > META_MAX_BYTES:
                return None
            handle.seek(meta[0])
            body = handle.read(meta[1])
    except (OSError, struct.error, ValueError):
        return None
    try:
        return _meta_icc(body[4:])  # meta is a full box: version and flags first
    except (struct.error, ValueError, IndexError):
        return None


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each box in ``data``, in order."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < head or pos + size > len(data):
            raise ValueError("a box runs past its parent")
        out.append((kind, data[pos + head : pos + size]))
        pos += size
    return out


def _find(handle: Any, kind: bytes, end: int) -> tuple[int, int] | None:
    """Offset and length of the payload of the first top-level box ``kind``, reading only the box headers."""
    pos = 0
    while pos + 8 <= end:
        handle.seek(pos)
        size, found = struct.unpack(">I4s", handle.read(8))
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", handle.read(8))[0], 16
        elif size == 0:
            size = end - pos
        if size < head:
            return None
        if found == kind:
            return pos + head, size - head
        pos += size
    return None


def _meta_icc(meta: bytes) -> bytes | None:
    boxes = dict(_boxes(meta))
    iprp = boxes.get(b"iprp")
    if iprp is None:
        return None
    parts = dict(_boxes(iprp))
    props = _boxes(parts.get(b"ipco", b""))
    profiles = {i + 1: p[4:] for i, (kind, p) in enumerate(props) if kind == b"colr" and p[:4] in (b"prof", b"rICC")}
    if not profiles:
        return None
    primary = _primary(boxes.get(b"pitm"))
    for index in _associations(parts.get(b"ipma", b"")).get(primary, []) if primary is not None else []:
        if index in profiles:
            return profiles[index]
    return profiles[min(profiles)]


def _primary(pitm: bytes | None) -> int | None:
    if pitm is None or len(pitm) < 6:
        return None
    return struct.unpack(">H", pitm[4:6])[0] if pitm[0] == 0 else struct.unpack(">I", pitm[4:8])[0]


def _associations(ipma: bytes) -> dict[int, list[int]]:
    """item id -> its property indices (1-based into ipco), from an 'ipma' box."""
    if len(ipma) < 8:
        return {}
    version, flags = ipma[0], int.from_bytes(ipma[1:4], "big")
    count = struct.unpack(">I", ipma[4:8])[0]
    pos, out = 8, {}
    for _ in range(count):
        if version < 1:
            item, pos = struct.unpack(">H", ipma[pos : pos + 2])[0], pos + 2
        else:
            item, pos = struct.unpack(">I", ipma[pos : pos + 4])[0], pos + 4
        n, pos = ipma[pos], pos + 1
        indices = []
        for _ in range(n):
            if flags & 1:
                value, pos = struct.unpack(">H", ipma[pos : pos + 2])[0] & 0x7FFF, pos + 2
            else:
                value, pos = ipma[pos] & 0x7F, pos + 1
            indices.append(value)
        out[item] = indices
    return out

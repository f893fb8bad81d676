"""Reading a user's short video clip through the bundled ffmpeg: its facts, then its frames at 25 fps.

Any container and codec ffmpeg reads will do; the clip is capped (``MAX_SECONDS``, ``MAX_BYTES``) because
every frame becomes part of the avatar, kept losslessly. ffmpeg applies the clip's rotation metadata itself.
An HDR clip (HLG, what a phone records by default, or PQ) or one in BT.2020 colours is tone-mapped to SDR
BT.709 on the way, as a player would show it: read as SDR numbers it came out washed out and dark.
A clip with an alpha channel (ProRes 4444, PNG or QuickTime Animation in MOV, VP8/VP9 WebM with alpha: a
cut-out made in an editor) is read with it, so its own cut-out can be the matte, as a PNG's alpha is.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine.audio import ffmpeg_exe, ffmpeg_last_line, ffmpeg_listing
from a2v_cli.errors import InputError
from a2v_cli.files import check_input

MAX_SECONDS = 10.0
MIN_SECONDS = 1.0
# a cap on the file, besides the one on its length: a keyed cut-out exported as ProRes 4444 runs ~45 MB a second at
# 1080p (100 MiB, the cap before, refused anything over 2 s of it); ffmpeg streams the file whatever its size
MAX_BYTES = 1024 * 1024 * 1024
FPS = 25


# HDR or wide-gamut to SDR: linear light with HDR's reference white (BT.2408: 203 nits) at 1.0, BT.709 primaries,
# highlights above 0.8 of that white rolled off (mobius) rather than clipped, sRGB's curve as a photo has it. On the
# astronaut encoded as 10-bit HLG and PQ in BT.2020 (white at 203 nits), the mean error against the photo is 2.2 and
# 2.4 levels (20 and 37 read as SDR; hable's curve, 38: it darkens faces to save highlights)
# The clip's own colour description (as `ffmpeg -i` reads it, container or stream) is handed to zscale, with BT.2020's
# where it is missing (in and out of the first zscale): frames whose stream leaves a field unspecified made zscale
# fail ("no path between colorspaces"), and the clip read as damaged.
TONE_MAP = ("zscale=tin={transfer}:pin={primaries}:min={matrix}:rin={range}:t=linear:p={primaries}:npl=203,"
            "format=gbrpf32le,"
            "zscale=p=bt709,tonemap=mobius:param=0.8:desat=0,zscale=t=iec61966-2-1:m=bt709:r=pc")
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")
WIDE_TRANSFERS = ("bt2020-10", "bt2020-12", "bt709", "smpte170m", "bt470bg", *HDR_TRANSFERS)  # as zscale reads them
PRIMARIES = ("bt2020", "bt709", "smpte432", "smpte431")  # BT.2020, BT.709, P3-D65, DCI-P3
MATRICES = ("bt2020nc", "bt709", "smpte170m", "bt470bg")


@dataclass(frozen=True)
class ClipInfo:
    width: int  # as shown (after rotation)
    height: int
    duration: float
    tone_map: str | None = None  # HDR (PQ, HLG) or BT.2020 colours: TONE_MAP for this clip, on the way to RGB
    alpha: bool = False  # the stream carries an alpha channel: frames are read as RGBA
    decoder: tuple[str, ...] = ()  # input options that choose the decoder (libvpx: ffmpeg's own VP9 drops alpha)
    anamorphic: bool = False  # non-square pixels (HDV, DV, some phone exports): width is the shown one


ALPHA_FORMATS = re.compile(r"\b(?:yuva|rgba|argb|bgra|abgr|gbrap|ya8|ya16|rgba64|bgra64)\w*\(?")


def check_clip_file(path: Path) -> None:
    """The clip exists, is a file and is under ``MAX_BYTES`` (InputError otherwise)."""
    check_input(path, MAX_BYTES, "the limit for a clip", "give the path of a short video clip",
                f"trim it to a few seconds (at most {MAX_SECONDS:g} s)")


def probe_clip(path: Path) -> ClipInfo:
    """Size and duration from `ffmpeg -i` (the bundle has no ffprobe); InputError for anything unusable."""
    check_clip_file(path)
    text = ffmpeg_listing(path)
    video = re.search(r"Stream #\S+.*Video: .*?(\d{2,5})x(\d{2,5})", text)
    if video is None:
        raise InputError(f"{path.name} is not a video ffmpeg can read", "use an MP4, MOV, WebM or MKV clip")
    width, height = int(video.group(1)), int(video.group(2))
    line = text[video.start() : text.find("\n", video.start())]
    sar = re.search(r"\[SAR (\d+):(\d+) DAR", line)
    anamorphic = sar is not None and int(sar.group(2)) > 0 and sar.group(1) != sar.group(2) and int(sar.group(1)) > 0
    if anamorphic:  # as shown: a 1440x1080 HDV frame at SAR 4:3 is 1920x1080 (faces must keep their shape)
        width = max(2, round(width * int(sar.group(1)) / int(sar.group(2)) / 2) * 2)
    tone_map = _tone_map(line)
    following = re.search(r"\n\s*Stream #", text[video.end() :])
    block = text[video.start() : video.end() + (following.start() if following else len(text))]
    webm_alpha = re.search(r"alpha_mode\s*:\s*1", block) is not None and re.search(r"Video: vp[89]\b", line) is not None
    decoder: tuple[str, ...] = ()
    if webm_alpha:
        decoder = ("-c:v", "libvpx-vp9" if "Video: vp9" in line else "libvpx")
    # an HDR clip with alpha is read as RGB (the tone map works on colour only); the segmenter mattes it
    alpha = (webm_alpha or ALPHA_FORMATS.search(line) is not None) and tone_map is None
    if re.search(r"rotate\s*:\s*-?(90|270)|rotation of -?(90|270)", text):
        width, height = height, width
    found = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if found is None:
        raise InputError(f"{path.name} has no duration (a still image or a live stream?)",
                         "use a recorded video clip, or --image for a photo")
    duration = int(found.group(1)) * 3600 + int(found.group(2)) * 60 + float(found.group(3))
    if duration > MAX_SECONDS + 0.05:
        raise InputError(f"{path.name} is {duration:.1f} s long; the limit is {MAX_SECONDS:g} s",
                         "trim it, e.g. ffmpeg -i IN -t 5 -c copy OUT")
    if duration < MIN_SECONDS:
        raise InputError(f"{path.name} is {duration:.1f} s long; at least {MIN_SECONDS:g} s is needed",
                         "use a clip of 2-10 s")
    return ClipInfo(width, height, duration, tone_map, alpha, decoder, anamorphic)


def _tone_map(stream: str) -> str | None:
    """TONE_MAP for a clip whose video stream line (``yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, ...)``) says HDR
    or BT.2020 primaries; None for SDR."""
    found = re.search(r"\b(?:yuv|yuva|gbr|rgb|p0|nv|x2)\w*\(([^)]*)\)", stream)
    if found is None:
        return None
    parts = [p.strip() for p in found.group(1).split(",")]
    full = "pc" in parts
    colour = next((p for p in parts if p not in ("tv", "pc", "progressive") and not p.startswith(("top", "bottom"))),
                  "")  # fmt: skip
    fields = colour.split("/") if "/" in colour else [colour] * 3
    matrix, primaries, transfer = [*fields, "", "", ""][:3]
    if transfer not in HDR_TRANSFERS and primaries != "bt2020":
        return None
    return TONE_MAP.format(transfer=transfer if transfer in WIDE_TRANSFERS else "bt2020-10",
                           primaries=primaries if primaries in PRIMARIES else "bt2020",
                           matrix=matrix if matrix in MATRICES else "bt2020nc", range="full" if full else "limited")


def read_frames(path: Path, info: ClipInfo, width: int, height: int, crop: tuple[int, int, int, int] | None = None,
                step: int = 1) -> Iterator[np.ndarray]:
    """The clip's frames at 25 fps (``step`` > 1: only every step-th of them), scaled to width x height, as
    (H, W, 3) uint8 RGB, or (H, W, 4) RGBA where ``info.alpha``; ``crop`` (x, y, w, h in the clip's px, as shown)
    first cuts that rectangle out; ``info.tone_map`` runs after the scaling (a fraction of the pixels of a 4K clip).

    ffmpeg does the cropping and scaling in its own process, beside the caller's work, and only the pixels the
    caller keeps cross the pipe."""
    chain = [f"fps={FPS}"]
    if info.anamorphic:  # to square pixels first, so the crop is in shown px
        chain.append(f"scale={info.width}:{info.height},setsar=1")
    if step > 1:
        chain.append(f"framestep={step}")
    if crop is not None:
        x, y, w, h = crop
        chain.append(f"crop={w}:{h}:{x}:{y}")
    src = max(crop[2:]) if crop is not None else None
    chain.append(f"scale={width}:{height}:flags={'lanczos' if src is not None and src < width else 'area'}")
    if info.tone_map:
        chain.append(info.tone_map)
    channels = 4 if info.alpha else 3
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", *info.decoder, "-i", str(path), "-an", "-sn",
           "-vf", ",".join(chain), "-f", "rawvideo", "-pix_fmt", "rgba" if info.alpha else "rgb24", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    frame_bytes = width * height * channels
    count = 0
    try:
        while count < MAX_SECONDS * FPS + 2:
            raw = proc.stdout.read(frame_bytes)
            if len(raw) < frame_bytes:
                break
            count += 1
            yield np.frombuffer(raw, np.uint8).reshape(height, width, channels)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stdout.close()
        proc.stderr.close()
    if count == 0:
        last = ffmpeg_last_line(err, "no frames")
        raise InputError(f"cannot decode {path.name}, a damaged or truncated file? ({last})",
                         "use an MP4, MOV, WebM or MKV clip")

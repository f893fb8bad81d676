"""Video encoding through the bundled ffmpeg, one process per output file.

Frames are handed to a writer thread through a short queue, so Python composes the next batch
while ffmpeg encodes the last one; memory stays bounded whatever the video's length. Output goes
to a temp file beside the destination, renamed only when ffmpeg succeeded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from a2v_cli.engine.audio import ffmpeg_exe, ffmpeg_last_line
from a2v_cli.errors import A2VError

QUEUE_BATCHES = 2


@dataclass
class OutputSpec:
    """One file to write: its codec arguments and whether the soundtrack goes in."""

    path: Path
    pix_fmt: str  # raw input layout: rgb24, gray or rgba
    codec_args: list[str]
    with_audio: bool
    audio_args: list[str] = field(default_factory=list)
    fmt: str = "mp4"


# Every output is converted with, and tagged as, BT.709 (matrix, primaries, transfer; limited range),
# so players and editors convert colours back exactly as we did. The tags go on the frames
# (setparams) and on the stream, since some muxers read one and some the other.
COLOUR_TAGS = "-colorspace bt709 -color_primaries bt709 -color_trc bt709 -color_range tv".split()


COLOUR_PARAMS = "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"


def colour_filter(pix_fmt: str) -> list[str]:
    return ["-vf", f"scale=out_color_matrix=bt709:out_range=tv,format={pix_fmt},{COLOUR_PARAMS}"]


# The mask (gray, full range) to limited-range luma: a grey image has no colour matrix, and naming one
# (out_color_matrix) sent swscale down its generic path, 2.5x the CPU of the rest of the mask's encoding.
# Without it every level is exactly round(16 + 219 x / 255) (the old path was off by one on some levels).
MASK_FILTER = ["-vf", f"scale=in_range=pc:out_range=tv,format=yuv420p,{COLOUR_PARAMS}"]


# H.264 yuv420p, veryfast. MB-tree is off: with it x264 coded a 2-frame blink so coarsely that the open eye
# showed through the closed lid (an iris ghost, tests/test_idle_video.py); of veryfast, faster, superfast,
# -tune animation, aq-mode 3, qcomp 0.7, rc-lookahead 4, no B-frames and CRF 18 with MB-tree, only MB-tree off
# was clean. CRF 21 without it: 136 kb/s and 43.5 dB on a minute of ava-front speech (MB-tree at CRF 20:
# 73 kb/s, 43.0 dB, the ghost), 10 % less encoder CPU. The mask is flat and compresses well at ultrafast
# (superfast and veryfast are 3-5x smaller but err by up to 46-60 levels at its edges).
# The mask's encoder runs on one thread: at ultrafast it needs a fifth of the video's CPU, so it never holds the
# render up, and x264's frame threads cost it CPU for nothing (1 of 2 cores is the video encoder's anyway).
VIDEO_CODEC = "-c:v libx264 -preset veryfast -crf 21 -x264-params mbtree=0".split()
MASK_CODEC = "-c:v libx264 -preset ultrafast -crf 16 -threads 1".split()
VIDEO_ARGS = [*colour_filter("yuv420p"), *VIDEO_CODEC, *COLOUR_TAGS]
MASK_ARGS = [*MASK_FILTER, *MASK_CODEC, *COLOUR_TAGS]
# NVENC (an NVIDIA GPU's encoder, in the bundled ffmpeg) for both outputs when the render runs on such a GPU: the
# same colour handling, constant quality at x264's CRF, the GPU's high-quality preset for the video and its
# fastest one at a lower QP for the flat mask. Never measured on a GPU in this project's CI: a failure to open
# falls back to x264 (render.py), and every output is checked like x264's.
NVENC_VIDEO = "-c:v h264_nvenc -preset p5 -tune hq -rc vbr -cq 21 -b:v 0".split()
NVENC_MASK = "-c:v h264_nvenc -preset p1 -rc constqp -qp 16".split()
MP4_FLAGS = ["-movflags", "+faststart+use_metadata_tags"]
# The soundtrack: AAC at 160 kb/s with ffmpeg's fast coder. Its default (twoloop) cost 0.9 s of CPU per minute of
# 22 kHz mono speech (2.9 s at 48 kHz stereo), as much as a fifth of the video's encoder; fast takes 0.36 (1.8) s
# and at this rate is as clean (SNR against the source 42.6 vs 39.2 dB mono, 52.3 vs 30.7 dB stereo).
AAC_ARGS = ["-c:a", "aac", "-b:a", "160k", "-aac_coder", "fast"]
WEBM_ARGS = [
    *colour_filter("yuva420p"),
    *"-c:v libvpx-vp9 -pix_fmt yuva420p -b:v 0 -crf 30 -deadline realtime -cpu-used 8 -row-mt 1".split(),
    *COLOUR_TAGS,
]
PRORES_ARGS = [
    *colour_filter("yuva444p10le"),
    *"-c:v prores_ks -profile:v 4444 -pix_fmt yuva444p10le -vendor apl0".split(),
    *COLOUR_TAGS,
    "-movflags",
    "+use_metadata_tags",  # keeps the synthetic and a2v_pose tags, as in the MP4s
]


# Photo and video poses (a CRF of their own): x264's diamond motion search instead of veryfast's hexagon, and no
# intra 4x4/8x8 partitions. A photo swaying on a sub-pixel grid is textured everywhere, and these searches were the
# encoder's largest avoidable cost: on 30 s of the swaying astronaut at CRF 16, 14 % less encoder CPU (median of 3,
# 2.91 -> 2.49 s), 1.7 % more bytes, the same PSNR (37.66 -> 37.67 dB; the still photo 37.02 dB either way).
# subme 1 (veryfast's is 2): on 30 s of it re-encoded from near-lossless frames, 10 % less encoder CPU (2.69-2.90 ->
# 2.43-2.69 s), 33 % more bytes, +1.0 dB against those frames (47.5 -> 48.6); the still photo's worst frame over the
# person against the source 35.51 -> 35.49 dB. CRF 17 with it would save 17 % but take that frame to 35.30 dB.
PHOTO_X264_PARAMS = "mbtree=0:me=dia:partitions=none:subme=1"


def h264_video(metadata: dict[str, str], crf: int | None = None, nvenc: bool = False, pix_fmt: str = "rgb24"
               ) -> OutputSpec:  # fmt: skip
    """``crf``: another quality than VIDEO_ARGS' (photo poses: the photo's detail must survive the encoder).

    ``pix_fmt`` yuv420p: the frames come converted already (yuv.py: BT.709, limited range), and are only tagged.
    """
    convert = ["-vf", COLOUR_PARAMS] if pix_fmt == "yuv420p" else colour_filter("yuv420p")
    args = [*convert, *(NVENC_VIDEO if nvenc else VIDEO_CODEC), *COLOUR_TAGS]
    if crf is not None:
        args[args.index("-cq" if nvenc else "-crf") + 1] = str(crf)
        if not nvenc:
            args[args.index("-x264-params") + 1] = PHOTO_X264_PARAMS
    return OutputSpec(
        path=Path(),
        pix_fmt=pix_fmt,
        codec_args=[*args, *_metadata_args(metadata), *MP4_FLAGS],
        with_audio=True,
        audio_args=AAC_ARGS,
    )


def h264_mask(metadata: dict[str, str], nvenc: bool = False) -> OutputSpec:
    args = [*MASK_FILTER, *(NVENC_MASK if nvenc else MASK_CODEC), *COLOUR_TAGS]
    return OutputSpec(
        path=Path(), pix_fmt="gray", codec_args=[*args, *_metadata_args(metadata), *MP4_FLAGS], with_audio=False
    )


def nvidia_driver() -> bool:
    """An NVIDIA driver's kernel module answers here (also inside a container given the GPU)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


@lru_cache(maxsize=1)
def nvenc_opens() -> bool:
    """The bundled ffmpeg's h264_nvenc opens on this machine: one black frame encoded to nowhere (about 40 ms)."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-f", "lavfi", "-i", "color=black:s=256x256",
           "-frames:v", "1", "-c:v", "h264_nvenc", "-f", "null", "-"]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def use_nvenc(device: str) -> bool:
    """NVENC for ``--device cuda``, and for ``auto`` where an NVIDIA driver is installed, if it opens; else x264.

    The CPU default pays nothing: without a driver ``auto`` does not even try the encoder."""
    if device == "cpu" or (device == "auto" and not nvidia_driver()):
        return False
    return nvenc_opens()


def alpha_video(kind: str, metadata: dict[str, str]) -> OutputSpec:
    """Real alpha for video editors: VP9 yuva420p in WebM, or ProRes 4444 in QuickTime."""
    if kind == "webm":
        return OutputSpec(
            path=Path(), pix_fmt="rgba", fmt="webm", with_audio=True, audio_args=["-c:a", "libopus", "-b:a", "128k"],
            codec_args=[*WEBM_ARGS, *_metadata_args(metadata)],
        )
    return OutputSpec(
        path=Path(), pix_fmt="rgba", fmt="mov", with_audio=True, audio_args=["-c:a", "pcm_s16le"],
        codec_args=[*PRORES_ARGS, *_metadata_args(metadata)],
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _metadata_args(metadata: dict[str, str]) -> list[str]:
    args: list[str] = []
    for k, v in metadata.items():
        args += ["-metadata", f"{k}={v}"]
    return args


PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged process (/proc/sys/fs/pipe-max-size)


def _widen_pipe(stream: object) -> None:
    """A 1 MiB pipe to ffmpeg instead of 64 KiB: a 512 px batch is 20 MB, handed over in 16x fewer wake-ups of the
    writer and of ffmpeg (1500 frames through a bare ffmpeg: 0.2-0.3 s less CPU on the two sides together, within
    the shared machine's noise). Best effort: elsewhere (or past a lower ceiling) the pipe stays as it is."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None or stream is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), set_size, PIPE_BYTES)  # type: ignore[attr-defined]


class EncodeError(A2VError):
    """An ffmpeg writer failed (it would not open its encoder, or it stopped): render.py may retry on x264."""


class FfmpegWriter:
    """Feeds raw frames to one ffmpeg process writing ``spec.path`` (via a temp file)."""

    def __init__(self, spec: OutputSpec, width: int, height: int, fps: float, audio: Path | None) -> None:
        self.spec = spec
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{spec.path.name}.", suffix=".part", dir=spec.path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the finished video private
        os.close(fd)
        self.tmp = Path(tmp)
        self._log = tempfile.TemporaryFile()
        cmd = [
            ffmpeg_exe(),
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            spec.pix_fmt,
            "-s",
            f"{width}x{height}",
            "-r",
            f"{fps:g}",
            "-i",
            "pipe:0",
        ]
        if spec.with_audio and audio is not None:
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", *spec.audio_args]
        cmd += [*spec.codec_args, "-f", spec.fmt, str(self.tmp)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        _widen_pipe(self.proc.stdin)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"ffmpeg-{spec.path.name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdin is not None
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    break
                self.proc.stdin.write(memoryview(np.ascontiguousarray(batch)).cast("B"))
        except BaseException as err:
            self._error = err
            # keep draining so the producer never blocks on a dead consumer
            while self._queue.get() is not None:
                pass

    def write(self, batch: np.ndarray) -> None:
        if self._error is not None:
            raise self._failure()
        self._queue.put(batch)

    def close(self) -> None:
        """Wait for ffmpeg to finish the temp file; raise if it failed."""
        self._queue.put(None)
        self._thread.join()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait()
        if rc != 0 or self._error is not None:
            raise self._failure()

    def commit(self) -> Path:
        """Move the finished temp file onto the destination."""
        os.replace(self.tmp, self.spec.path)
        self._log.close()
        return self.spec.path

    def _failure(self) -> EncodeError:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        last = ffmpeg_last_line(text, str(self._error or "unknown error"))
        return EncodeError(f"ffmpeg could not write {self.spec.path.name}: {last}")

    def abort(self) -> None:
        """Stop ffmpeg and remove the temp file; the destination is never touched."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self._thread.is_alive():
            while True:  # make room for the pump's stop mark: the batches it holds will never be written
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
            self._thread.join(timeout=5)
        if self.proc.stdin is not None and not self._thread.is_alive():
            try:
                self.proc.stdin.close()
            except OSError:  # the unwritten rest of a dead ffmpeg's pipe
                pass
        self.tmp.unlink(missing_ok=True)
        if not self._log.closed:
            self._log.close()

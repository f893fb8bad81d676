"""Audio input: fetch (file, stdin, http URL), decode, resample to 16 kHz mono, measure level.

Decoding streams into a raw float32 file on disk, so a one-hour recording costs as much memory
as a one-second one; the renderer reads back only the window it needs for each batch.
WAV, FLAC, OGG/Vorbis/Opus and MP3 go through soundfile; everything else (M4A/AAC, the audio
track of a video) through the bundled ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from a2v_cli.engine.features import SAMPLE_RATE, LevelMeter
from a2v_cli.errors import InputError, UnavailableError

DOWNLOAD_MAX_BYTES = 200 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30.0
BLOCK = 1 << 16
MAX_MUX_CHANNELS = 8  # AAC in MP4 takes up to 7.1; a recording with more is mixed down for the soundtrack
STREAM_MAX_BYTES = 4 * 1024**3  # stdin or a pipe: over an hour of 48 kHz 6-channel PCM; /dev/zero never ends


@dataclass(frozen=True)
class PreparedAudio:
    """Decoded audio ready for rendering.

    ``pcm_path`` holds 16 kHz mono float32 samples (raw, little-endian); ``mux_path`` is the file
    ffmpeg reads for the soundtrack (the user's file, or a temp copy of stdin or a download).
    """

    mux_path: Path
    pcm_path: Path
    num_samples: int
    duration: float
    gain: float
    source_rate: int
    source_channels: int


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_listing(path: Path, timeout: float | None = None) -> str:
    """What `ffmpeg -i` says of ``path`` (its streams, sizes, colours, rotation): the bundle has no ffprobe.
    subprocess.TimeoutExpired past ``timeout``."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=timeout, check=False)  # fmt: skip
    return proc.stderr


def ffmpeg_last_line(stderr: str, fallback: str) -> str:
    """ffmpeg's last error line for a person: without its ``[out#0/rawvideo @ 0x5565...]`` prefix, an address that
    says nothing to them (it reached avatar.create's answer for a truncated clip)."""
    import re

    lines = stderr.strip().splitlines()
    return re.sub(r"^\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*", "", lines[-1]) if lines else fallback


def fetch(source: str, workdir: Path, stdin: BinaryIO | None = None) -> Path:
    """Return a local path for ``source``: a file path, ``-`` for stdin, or an http(s) URL."""
    if source == "-":
        dest = workdir / "stdin-audio"
        with open(dest, "wb") as out:
            copy_stream(stdin if stdin is not None else sys.stdin.buffer, out, "stdin")
        return dest
    lowered = source.lower()
    if lowered.startswith(("http://", "https://")):
        return _download(source, workdir)
    path = fetch_local(source)
    if is_stream(path):
        dest = workdir / "piped-audio"
        with open(path, "rb") as stream, open(dest, "wb") as out:
            copy_stream(stream, out, source)
        return dest
    return path


def is_stream(path: Path) -> bool:
    """A pipe (`--audio <(sox ...)`, a FIFO) or a device: read once, to its end, like stdin; no size to check."""
    import stat

    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def copy_stream(stream: BinaryIO, out: BinaryIO, what: str) -> int:
    """Copy ``stream`` (stdin, a pipe) to ``out``, a regular file that can then be probed, seeked and retried.

    Capped at STREAM_MAX_BYTES: a stream that never ends (`< /dev/zero`) must not fill the disk.
    """
    size = 0
    while chunk := stream.read(BLOCK):
        size += len(chunk)
        if size > STREAM_MAX_BYTES:
            raise InputError(f"{what} goes on past {STREAM_MAX_BYTES // 1024**3} GiB without ending",
                             "give a recording that ends (or a file)")
        out.write(chunk)
    return size


def fetch_local(source: str) -> Path:
    """``source`` as a readable local file path, or a clear InputError."""
    if "://" in source:
        raise InputError(f"unsupported audio URL {source!r}", "give a file path, '-' for stdin, or an http(s) URL")
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"audio file not found: {source}", "check the path")
    if path.is_dir():
        raise InputError(f"{source} is a directory, not an audio file", "give an audio file")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {source}: permission denied", "check the file's permissions")
    return path


def _download(url: str, workdir: Path) -> Path:
    """``url`` into ``workdir``; DOWNLOAD_TIMEOUT_S bounds the whole request (renewed per 64 KiB moved),
    not each read, so a host that drips bytes cannot hold the command."""
    import httpx

    from a2v_cli import http_deadline

    dest = workdir / "downloaded-audio"
    try:
        with (
            httpx.Client(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True) as http,
            http_deadline.budget(DOWNLOAD_TIMEOUT_S),
        ):
            http_deadline.install(http)
            with http.stream("GET", url) as resp:
                if resp.status_code >= 400:
                    raise InputError(f"could not download {url}: HTTP {resp.status_code}", "check the URL")
                size = 0
                with open(dest, "wb") as out:
                    for chunk in resp.iter_bytes(BLOCK):
                        size += len(chunk)
                        if size > DOWNLOAD_MAX_BYTES:
                            raise InputError(
                                f"audio at {url} is larger than {DOWNLOAD_MAX_BYTES // (1024 * 1024)} MB",
                                "download it and pass a shorter file",
                            )
                        out.write(chunk)
    except httpx.HTTPError as err:
        raise UnavailableError(
            f"could not download {url}: {err.__class__.__name__}: {err}", "check the network"
        ) from err
    return dest


def shown_name(source: str) -> str:
    """What messages call an audio argument: the file's name, the URL's file name, or stdin."""
    if source == "-":
        return "stdin"
    if "://" in source:
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(source).path)).name or source
    path = Path(source)
    return source if path.name and is_stream(path) else path.name or source  # `63` would say nothing of /dev/fd/63


def decode(path: Path, workdir: Path, max_seconds: float, name: str | None = None) -> PreparedAudio:
    """Decode ``path`` into ``workdir``/audio16k.f32 and measure its speech level.

    ``name`` is what messages call the audio (default: the file's name; temp copies have internal names).
    """
    pcm_path = workdir / "audio16k.f32"
    name = name or path.name
    if path.stat().st_size == 0:
        raise InputError(f"{name} is empty (0 bytes)", "give a recording with sound in it")
    meter = LevelMeter()
    n = 0
    # libsndfile's MP3 decoder (libmpg123) prints to fd 2 on damaged or odd files; that is not a2v's voice
    with native_stderr_captured(), open(pcm_path, "wb") as out:
        opened = _open_soundfile(path)
        if opened is not None:
            blocks, rate, channels = _soundfile_blocks(opened, max_seconds, name)
        else:
            blocks, rate, channels = _ffmpeg_blocks(path, max_seconds, name)
        for block in blocks:
            meter.add(block)
            out.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
            n += len(block)
            if n > max_seconds * SAMPLE_RATE:
                raise _too_long(name, max_seconds)
    if n == 0:
        raise InputError(f"{name} holds no audio samples (zero length)", "give a recording with sound in it")
    return PreparedAudio(
        mux_path=path if channels <= MAX_MUX_CHANNELS else _downmix(path, workdir, channels, name),
        pcm_path=pcm_path,
        num_samples=n,
        duration=n / SAMPLE_RATE,
        gain=meter.gain(),
        source_rate=rate,
        source_channels=channels,
    )


def _downmix(path: Path, workdir: Path, channels: int, name: str) -> Path:
    """The soundtrack of a recording with more channels than an MP4's AAC takes (a multitrack recorder's 16 or
    32, ambisonics): the mean of all channels, losslessly (FLAC). Without it the render ran to the end and
    then failed in the muxer (exit 1, ffmpeg's own words)."""
    mix = "+".join(f"{1 / channels:.8f}*c{i}" for i in range(channels))
    dest = workdir / "soundtrack.flac"
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", "0:a:0",
           "-af", f"pan=mono|c0={mix}", "-c:a", "flac", str(dest)]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0 or not dest.is_file() or dest.stat().st_size == 0:
        raise InputError(f"{name} has {channels} channels and its audio cannot be mixed down for the soundtrack "
                         "(a damaged or mislabelled file?)", "give a mono or stereo recording")
    return dest


@contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Point file descriptor 2 at a temp file while native code runs, then restore it.

    Python-level redirection cannot catch C libraries that write to fd 2 themselves. The yielded
    list holds the captured lines once the block has ended (for callers that want to report them).
    """
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            with suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read(1 << 16).decode(errors="replace").splitlines())


def _too_long(name: str, max_seconds: float) -> InputError:
    return InputError(
        f"{name} is longer than the {max_seconds:g} s limit",
        "cut it, or raise the limit with A2V_MAX_AUDIO_SECONDS",
    )


def _open_soundfile(path: Path):  # type: ignore[no-untyped-def]
    import soundfile as sf

    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None


def _soundfile_blocks(f, max_seconds: float, name: str) -> tuple[Iterator[np.ndarray], int, int]:  # type: ignore[no-untyped-def]
    rate, channels = int(f.samplerate), int(f.channels)
    if f.frames > 0 and f.frames / rate > max_seconds:
        f.close()
        raise _too_long(name, max_seconds)

    def gen() -> Iterator[np.ndarray]:
        import soxr

        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
        with f:
            while True:
                data = f.read(BLOCK, dtype="float32", always_2d=True)
                last = len(data) < BLOCK
                mono = data.mean(axis=1) if len(data) else np.zeros(0, np.float32)
                out = resampler.resample_chunk(mono, last=last) if resampler else mono
                if len(out):
                    yield np.asarray(out, dtype=np.float32)
                if last:
                    return

    return gen(), rate, channels


def _ffmpeg_blocks(path: Path, max_seconds: float, name: str) -> tuple[Iterator[np.ndarray], int, int]:
    rate, channels = _ffmpeg_stream_info(path, name)
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-vn",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "pipe:1",
    ]

    def gen() -> Iterator[np.ndarray]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            rest = b""
            while True:
                chunk = proc.stdout.read(BLOCK * 4)
                if not chunk:
                    break
                chunk = rest + chunk
                usable = len(chunk) - len(chunk) % 4
                rest = chunk[usable:]
                yield np.frombuffer(chunk[:usable], dtype="<f4")
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                last = ffmpeg_last_line(err, f"ffmpeg exited with {proc.returncode}")
                raise InputError(
                    f"{name} could not be decoded as audio ({last})", "give a WAV, MP3, FLAC, OGG or M4A"
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return gen(), rate, channels


def _ffmpeg_stream_info(path: Path, name: str) -> tuple[int, int]:
    """Sample rate and channels of the first audio stream; InputError when there is none."""
    import re

    for line in ffmpeg_listing(path).splitlines():
        if "Audio:" in line and "Stream #" in line:
            rate = re.search(r"(\d+) Hz", line)
            ch = 2 if "stereo" in line else 1 if "mono" in line else 2
            m = re.search(r"(\d+) channels", line)
            if m:
                ch = int(m.group(1))
            return (int(rate.group(1)) if rate else SAMPLE_RATE), ch
    raise InputError(f"{name} is not an audio file (no audio stream found)", "give a WAV, MP3, FLAC, OGG or M4A")


class PcmReader:
    """Random access to the decoded 16 kHz samples, zero outside the recording."""

    def __init__(self, audio: PreparedAudio) -> None:
        self.n = audio.num_samples
        self.gain = audio.gain
        self._f = open(audio.pcm_path, "rb")

    def read(self, start: int, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.float32)
        lo, hi = max(start, 0), min(start + count, self.n)
        if hi > lo:
            self._f.seek(lo * 4)
            out[lo - start : hi - start] = np.frombuffer(self._f.read((hi - lo) * 4), dtype="<f4")
        return out * np.float32(self.gain)

    def close(self) -> None:
        self._f.close()

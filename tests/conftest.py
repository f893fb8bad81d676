"""Shared test helpers: run the real CLI in a subprocess and decode its output with the bundled ffmpeg."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from services import database, postgres_server, redis_server, s3_server  # noqa: F401  (fixtures: tests/services.py)

# The CLIs the tests start get Ctrl-C as from a terminal, however pytest was started: a shell script's `pytest ... &`
# runs it with SIGINT ignored, every child inherits that, and a2v (as POSIX asks, like Python itself) keeps ignoring
# it, so the interrupt tests saw a render run to its end (exit 0, outputs saved). A Python handler here is reset to
# the default in each child at exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SPEECH = FIXTURES / "speech_en.wav"
SPEECH_PAUSE = FIXTURES / "speech_pause.wav"


def load_script(relpath: str) -> object:
    """A repository script (scripts/, models/: not packages) loaded as a module by its path, no sys.path edit."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own A2V_HOME and working directory, and no server or token settings."""
    home = tmp_path / "a2v-home"
    monkeypatch.setenv("A2V_HOME", str(home))
    for var in ("A2V_SERVER", "A2V_TOKEN", "A2V_DEBUG", "A2V_MAX_AUDIO_SECONDS", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def run_cli(*args: str, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """Run `python -m a2v_cli ARGS` as a user would, capturing exit code, stdout and stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "a2v_cli", *args],
        input=input,
        capture_output=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


def one_error_line(stderr: str, *words: str) -> None:
    """stderr is one `error:` line (no traceback) holding every one of ``words``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr
    for w in words:
        assert w in stderr, stderr


def long_speech(directory: Path, seconds: float = 40.0) -> Path:
    """``seconds`` of the speech fixture repeated, as ``directory/long.wav``: a render that takes a while."""
    import soundfile as sf

    data, rate = sf.read(SPEECH, dtype="float32")
    reps = int(np.ceil(seconds * rate / len(data)))
    path = directory / "long.wav"
    sf.write(path, np.tile(data, (reps,) + (1,) * (data.ndim - 1))[: int(seconds * rate)], rate)
    return path


def start_long_render(directory: Path, pose: str, output: str) -> subprocess.Popen[bytes]:
    """`a2v generate -p POSE -o OUTPUT` of 40 s of speech in a child, returned once its render has begun (its
    history folder exists, or after 60 s); the child must still be running then."""
    audio = long_speech(directory)
    home = Path(os.environ["A2V_HOME"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "generate", "-p", pose, "-a", str(audio), "-o", output],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while not list((home / "videos").glob("vid_*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc


def decode_frames(path: Path, pix_fmt: str = "rgb24", codec: str | None = None) -> np.ndarray:
    """Every frame of a video as (N, H, W, C) uint8, decoded by the bundled ffmpeg."""
    info = probe(path)
    w, h = info.width, info.height
    channels = {"rgb24": 3, "gray": 1, "rgba": 4}[pix_fmt]
    cmd = [ffmpeg(), "-v", "error"]
    if codec:
        cmd += ["-c:v", codec]
    cmd += ["-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, channels)


def decode_audio(path: Path, rate: int = 16000) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, dtype="<f4")


@dataclass
class Probe:
    width: int
    height: int
    fps: float
    video_codec: str
    pix_fmt: str
    audio_codec: str | None
    duration: float
    metadata: dict[str, str]
    text: str


def probe(path: Path) -> Probe:
    """Stream facts from `ffmpeg -i` (the bundle has no ffprobe)."""
    text = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    v = re.search(r"Stream #\S+.*Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?, ([\d.]+) fps", text)
    a = re.search(r"Stream #\S+.*Audio: (\w+)", text)
    d = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    assert v, text
    meta = dict(re.findall(r"^\s{4}(\w+)\s*: (.*)$", text, flags=re.M))
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else 0.0
    return Probe(int(v.group(3)), int(v.group(4)), float(v.group(5)), v.group(1), v.group(2),
                 a.group(1) if a else None, duration, meta, text)


def wav_duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


@contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A quiet local HTTP server for ``directory`` on 127.0.0.1; yields its base URL."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(directory), **k)

        def log_message(self, *a) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def synthetic_vowel(
    formants: tuple[float, float, float], seconds: float = 0.6, f0: float = 120.0, rate: int = 16000
) -> np.ndarray:
    """A glottal-like harmonic series (1/k) through three formant resonances: a steady synthetic vowel."""
    import math

    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        f = k * f0
        gain = 1.0 / k
        for formant, bw in zip(formants, (80.0, 100.0, 120.0), strict=True):
            gain /= math.sqrt((1 - (f / formant) ** 2) ** 2 + (f * bw / formant**2) ** 2)
        x += gain * np.sin(2 * np.pi * f * t + 0.3 * k)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)

"""What a new user tried that broke, through the real CLI: each test failed before its fix."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from conftest import SPEECH, decode_audio, decode_frames, one_error_line, run_cli, wav_duration

from a2v_cli.errors import ExitCode


def test_serve_data_dir_that_is_a_file(isolated: Path) -> None:
    """Was exit 1, `unexpected FileExistsError: [Errno 17] File exists`."""
    (isolated / "notes.txt").write_text("mine\n")
    r = run_cli("serve", "--port", "0", "--data-dir", "notes.txt")
    assert r.code == ExitCode.USAGE, r.stderr
    one_error_line(r.stderr, "--data-dir notes.txt is not a directory")
    assert (isolated / "notes.txt").read_text() == "mine\n"


def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    """A named pipe with ``data`` behind it, as `--audio <(sox ...)` gives (the writer blocks until a2v reads)."""
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as pipe:
            pipe.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_audio_from_a_pipe(isolated: Path) -> None:
    """`--audio <(cmd)` used to fail: "63 is empty (0 bytes)" (local), "unexpected UnsupportedOperation" (remote).
    A pipe is now read once to its end, like stdin (remote: test_remote_cli.py)."""
    feed_fifo(isolated / "speech.pipe", SPEECH.read_bytes())
    r = run_cli("generate", "-p", "ava-front", "-a", "speech.pipe", "-o", "piped.mp4", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["frame_count"] == math.ceil(wav_duration(SPEECH) * 25) == len(decode_frames(isolated / "piped.mp4"))
    feed_fifo(isolated / "cues.pipe", SPEECH.read_bytes())
    assert run_cli("cues", "cues.pipe").stdout == run_cli("cues", str(SPEECH)).stdout
    feed_fifo(isolated / "noise.pipe", b"\x17not audio\x00" * 100)
    bad = run_cli("cues", "noise.pipe")
    assert bad.code == ExitCode.USAGE
    one_error_line(bad.stderr, "noise.pipe is not an audio file")


def test_models_list_needs_no_usable_home(isolated: Path) -> None:
    """Listing models only reads `$A2V_HOME/models`: an unusable A2V_HOME was exit 2 (README: only commands that
    keep history need it); now the built-in model is listed, and a render still names A2V_HOME."""
    (isolated / "home-file").write_text("not a folder\n")
    env = {"A2V_HOME": str(isolated / "home-file")}
    r = run_cli("models", "list", "--json", env=env)
    assert r.code == 0, r.stderr
    assert [m["name"] for m in r.json()] == ["builtin"]
    g = run_cli("generate", "-p", "ava-front", "-a", str(SPEECH), "-o", "x.mp4", env=env)
    assert g.code == ExitCode.USAGE
    one_error_line(g.stderr, "A2V_HOME")


def many_channels(path: Path, channels: int) -> Path:
    """The speech fixture on ``channels`` channels (a multitrack recorder's WAV), each at half level."""
    import numpy as np
    import soundfile as sf

    speech, rate = sf.read(SPEECH, dtype="float32")
    sf.write(path, np.tile(speech[:, None] * 0.5, (1, channels)), rate, subtype="PCM_16")
    return path


def test_audio_with_more_channels_than_aac_takes(isolated: Path) -> None:
    """A 32-channel WAV rendered to the end, then failed in the muxer: exit 1 with ffmpeg's own line
    (`Nothing was written into output file...`). The soundtrack is now the channels' mix."""
    import numpy as np

    many_channels(isolated / "desk.wav", 32)
    r = run_cli("generate", "-p", "ava-front", "-a", "desk.wav", "-o", "desk.mp4", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["frame_count"] == math.ceil(wav_duration(SPEECH) * 25) == len(decode_frames(isolated / "desk.mp4"))
    got, want = decode_audio(isolated / "desk.mp4"), decode_audio(SPEECH) * 0.5
    n = min(len(got), len(want))
    assert abs(len(got) - len(want)) < 0.05 * 16000
    assert np.corrcoef(got[:n], want[:n])[0, 1] > 0.95  # the speech itself, not silence or noise
    # a header that claims 200 channels over mono data: bad input before the render, not exit 1 after it
    lying = bytearray(SPEECH.read_bytes())
    lying[22:24] = (200).to_bytes(2, "little")
    (isolated / "lying.wav").write_bytes(bytes(lying))
    bad = run_cli("generate", "-p", "ava-front", "-a", "lying.wav", "-o", "lying.mp4")
    assert bad.code == ExitCode.USAGE
    one_error_line(bad.stderr, "lying.wav has 200 channels")
    assert [v["status"] for v in run_cli("video", "list", "--json").json()] == ["finished"]

"""What a new user tried that broke, through the real CLI: each test failed before its fix."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from conftest import SPEECH, decode_frames, one_error_line, run_cli, wav_duration

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

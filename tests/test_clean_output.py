"""stderr holds only a2v's own words: native decoder noise, unusable A2V_HOME, bad models, small rough edges.

Through the real CLI, with real files (a damaged MP3 made by the bundled ffmpeg, broken ONNX files).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from conftest import ROOT, SPEECH, ffmpeg, one_error_line, probe, run_cli, start_long_render
from onnx import TensorProto, helper
from test_wav2lip import build_fake_wav2lip

from a2v_cli.errors import ExitCode

POSE = "ava-front"


def damaged_mp3(directory: Path) -> Path:
    """An MP3 whose frames' side information is scrambled: decodable, but libmpg123 complains on fd 2."""
    good = directory / "good.mp3"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(SPEECH), "-c:a", "libmp3lame", "-b:a", "64k", str(good)],
                   check=True)
    data = bytearray(good.read_bytes())
    rng = random.Random(2)
    i = 500
    while i < len(data) - 8:
        if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0:
            if rng.random() < 0.5:
                data[i + 4 : i + 7] = bytes(rng.getrandbits(8) for _ in range(3))
            i += 100
        else:
            i += 1
    bad = directory / "damaged.mp3"
    bad.write_bytes(bytes(data))
    return bad


def test_native_decoder_noise_never_reaches_stderr(isolated: Path) -> None:
    bad = damaged_mp3(isolated)
    r = run_cli("cues", str(bad))
    assert r.code == 0 and r.stdout.strip(), r.stderr
    assert r.stderr == "", r.stderr  # libmpg123 prints dozens of "[src/libmpg123/...] error" lines here
    g = run_cli("generate", "-p", POSE, "-a", str(bad), "-o", "d.mp4")
    assert g.code == 0, g.stderr
    assert [line for line in g.stderr.splitlines() if not line.startswith("Saved ")] == []
    noise = isolated / "random.mp3"
    noise.write_bytes(random.Random(1).randbytes(20000))
    r = run_cli("cues", str(noise))
    assert r.code == ExitCode.USAGE
    one_error_line(r.stderr, "random.mp3")
    j = run_cli("cues", str(noise), "--json")
    assert j.code == ExitCode.USAGE and len(j.stderr.strip().splitlines()) == 1
    assert "random.mp3" in json.loads(j.stderr)["error"]


def test_unusable_home_only_matters_where_history_is_kept(isolated: Path) -> None:
    blocker = isolated / "not-a-dir"
    blocker.write_text("a file where A2V_HOME's parent should be")
    env = {"A2V_HOME": str(blocker / "home")}
    for args in (["avatars", "list"], ["avatars", "poses", "ava"], ["cues", str(SPEECH)]):
        r = run_cli(*args, env=env)
        assert r.code == 0 and r.stderr == "", (args, r.stderr)
    for args in (["video", "list"], ["generate", "-p", POSE, "-a", str(SPEECH)]):
        r = run_cli(*args, env=env)
        assert r.code == ExitCode.USAGE, (args, r.stderr)
        one_error_line(r.stderr, "A2V_HOME", str(blocker / "home"))


@pytest.fixture
def bad_models(isolated: Path) -> dict[str, Path]:
    good = build_fake_wav2lip(isolated / "good.onnx")
    newer = onnx.load(good)
    newer.ir_version = 99
    onnx.save(newer, isolated / "newer.onnx")
    wrong = onnx.load(good)
    del wrong.graph.output[:]
    wrong.graph.output.extend([helper.make_tensor_value_info("loud", TensorProto.FLOAT, ["B", 1, 1, 1])])
    onnx.save(wrong, isolated / "wrong.onnx")
    (isolated / "garbage.onnx").write_bytes(random.Random(3).randbytes(3000))
    return {
        "garbage": isolated / "garbage.onnx",
        "newer": isolated / "newer.onnx",
        "wrong": isolated / "wrong.onnx",
    }


def test_bad_model_files_are_one_clear_line(bad_models: dict[str, Path]) -> None:
    words = {"garbage": "not an ONNX file", "newer": "needs a newer onnxruntime", "wrong": "answers with shape"}
    for name, path in bad_models.items():
        r = run_cli("generate", "-p", POSE, "-a", str(SPEECH), "-m", str(path), "-o", f"{name}.mp4")
        assert r.code == ExitCode.USAGE, r.stderr
        one_error_line(r.stderr, words[name], path.name)
        assert "onnxruntime::" not in r.stderr and "[ONNXRuntimeError]" not in r.stderr
    models = Path(os.environ["A2V_HOME"]) / "models"
    models.mkdir(parents=True)
    for path in bad_models.values():
        path.replace(models / path.name)
    listed = {m["name"]: m["kind"] for m in run_cli("models", "list", "--json").json()}
    for name in bad_models:
        assert listed[name].startswith("unusable: ") and words[name] in listed[name], listed
        assert "onnxruntime::" not in listed[name] and "\n" not in listed[name]


def test_sigterm_is_143_and_the_failed_video_cannot_be_downloaded(isolated: Path) -> None:
    proc = start_long_render(isolated, POSE, "t.mp4")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.TERMINATED == 143, err.decode()
    one_error_line(err.decode(), "terminated")
    assert not list(isolated.glob("*.mp4")) and not list(isolated.glob(".*.part"))
    video = run_cli("video", "list", "--json").json()[0]
    assert video["status"] == "failed"
    d = run_cli("video", "download", video["video_id"])
    assert d.code == ExitCode.VIDEO_FAILED
    one_error_line(d.stderr, "failed", "a2v generate")
    assert "--wait" not in d.stderr


def test_small_rough_edges(isolated: Path) -> None:
    r = run_cli("generate", "-p", POSE, "-a", str(SPEECH), env={"A2V_MAX_AUDIO_SECONDS": "-5"})
    assert r.code == ExitCode.USAGE
    one_error_line(r.stderr, "A2V_MAX_AUDIO_SECONDS", "positive")
    r = run_cli("generate", "-p", POSE, "-a", "")
    assert r.code == ExitCode.USAGE
    one_error_line(r.stderr, "--audio is empty")
    r = run_cli("generate", "-p", POSE, "-a", str(SPEECH), "--device", "tpu")
    assert r.code == ExitCode.USAGE and "Value error" not in r.stderr and "'tpu' is not one of" in r.stderr
    r = run_cli("cues", "-", input=b"")
    assert r.code == ExitCode.USAGE
    one_error_line(r.stderr, "stdin is empty")
    assert "stdin-audio" not in r.stderr
    (isolated / "d").mkdir()
    r = run_cli("cues", str(SPEECH), "-o", "d")
    assert r.code == ExitCode.USAGE and "out.mp4" not in r.stderr and "cues.tsv" in r.stderr
    os.mkfifo(isolated / "pipe")
    r = run_cli("cues", str(SPEECH), "-o", "pipe", "--force")
    assert r.code == ExitCode.USAGE and "not a regular file" in r.stderr
    assert (isolated / "pipe").is_fifo()
    tsv = run_cli("cues", str(SPEECH), "--extended-shapes", "").stdout.strip().splitlines()
    assert tsv[-1].endswith("\tA") and all(line.split("\t")[1] in "ABCDEF" for line in tsv)
    assert run_cli("cues", str(SPEECH)).stdout.strip().splitlines()[-1].endswith("\tX")
    cues = run_cli("cues", str(SPEECH), "--json")
    assert cues.code == 0 and cues.json()["mouthCues"]  # type: ignore[index]
    out = run_cli("auth", "logout", "--json")
    assert out.code == 0 and out.json() == {"server": None, "logged_out": False}


@pytest.mark.parametrize("alpha", ["mov", "webm"])
def test_every_output_is_tagged_completely_and_the_same_way(isolated: Path, alpha: str) -> None:
    r = run_cli("generate", "-p", POSE, "-a", str(SPEECH), "-o", "t.mp4", "--alpha-format", alpha)
    assert r.code == 0, r.stderr
    for name in ("t.mp4", "t.mask.mp4", f"t.alpha.{alpha}"):
        info = probe(isolated / name)
        video_line = next(line for line in info.text.splitlines() if "Video:" in line)
        # ffmpeg prints "(tv, bt709, ...)" only when matrix, primaries and transfer are all BT.709
        assert "(tv, bt709, progressive)" in video_line, (name, video_line)
        meta = {k.lower(): v for k, v in info.metadata.items()}
        assert meta.get("synthetic") == "true" and meta.get("a2v_pose") == POSE, (name, info.metadata)
        assert "Synthetic video" in meta.get("comment", ""), name


def test_video_list_fits_80_columns(isolated: Path) -> None:
    from a2v_cli.store import VideoStore

    store = VideoStore(Path(os.environ["A2V_HOME"]) / "a2v.db")
    ok = store.create("ava-front", status="finished", duration=12.34)
    r = run_cli("video", "list", env={"COLUMNS": "80"})
    assert r.code == 0, r.stderr
    assert ok.video_id in r.stdout and ok.created_at[:10] in r.stdout and "ERROR" not in r.stdout
    bad = store.create("leo-side", status="failed", error="audio_url could not be fetched: HTTP 404 " * 3)
    r = run_cli("video", "list", env={"COLUMNS": "80"})
    lines = r.stdout.splitlines()
    assert "ERROR" in r.stdout and max(len(line) for line in lines) <= 80
    for video in (ok, bad):  # ids and dates stay whole, to copy, and every column is there
        row = next(line for line in lines if video.video_id in line)
        assert video.created_at[:16].replace("T", " ") in row, r.stdout
        assert video.status in row and str(video.pose_id) in row, r.stdout
    assert "12.3" in r.stdout and "audio" in next(line for line in lines if bad.video_id in line)


def test_help_and_completion(isolated: Path) -> None:
    g = run_cli("generate", "--help")
    assert "<bool>" not in g.stdout and "--force" in g.stdout
    c = run_cli("cues", "--help")
    assert "a2v cues [OPTIONS] AUDIO" in " ".join(c.stdout.split()) and "{audio}" not in c.stdout
    r = run_cli("generate", "-p", POSE, "-a", str(SPEECH), "--timeout", "5")
    assert r.code == ExitCode.USAGE and "--timeout" in r.stderr and "remote mode" in r.stderr
    made = run_cli("generate", "-p", POSE, "-a", str(SPEECH), "--json").json()
    words = run_cli(env={"_A2V_COMPLETE": "complete_bash", "COMP_WORDS": "a2v video get vid_", "COMP_CWORD": "3"})
    assert words.stdout.split() == [made["video_id"]]  # type: ignore[index]


def test_url_input_takes_the_urls_file_name(isolated: Path) -> None:
    from conftest import file_server

    served = isolated / "srv"
    served.mkdir()
    (served / "greeting.wav").write_bytes(SPEECH.read_bytes())
    with file_server(served) as url:
        r = run_cli("generate", "-p", POSE, "-a", f"{url}/greeting.wav")
    assert r.code == 0, r.stderr
    assert (isolated / "greeting-ava-front.mp4").is_file() and (isolated / "greeting-ava-front.mask.mp4").is_file()


def test_no_progress_line_flashes_before_an_input_error(isolated: Path) -> None:
    """On a terminal the progress bar starts with the render, not before the inputs are checked."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "a2v_cli", "generate", "-p", POSE, "-a", "missing.wav"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait() == ExitCode.USAGE
    text = seen.decode(errors="replace")
    assert "missing.wav" in text and "Rendering" not in text, text


def test_user_text_is_shown_as_text_never_as_markup_or_control_codes(isolated: Path) -> None:
    """A file name or id with Rich markup (`[/]`) crashed every error message with a MarkupError traceback
    (exit 1); an avatar name with markup or terminal escapes was interpreted by `avatars list`."""
    bad = run_cli("avatars", "remove", "[/]")
    assert bad.code == ExitCode.NOT_FOUND, bad.stderr
    one_error_line(bad.stderr, "'[/]'")
    (isolated / "[").mkdir()
    (isolated / "[/x].wav").write_bytes(b"not audio")
    bad = run_cli("generate", "-p", POSE, "-a", "[/x].wav")
    assert bad.code == ExitCode.USAGE, bad.stderr
    one_error_line(bad.stderr, "x].wav is not an audio file")
    name = "[red]Jane[/red]\x1b[31m\nx"
    added = run_cli("avatars", "add", "--image", str(ROOT / "examples" / "astronaut.png"), "--id", "jane",
                    "--name", name)
    assert added.code == 0, added.stderr
    assert "\x1b" not in added.stdout and "[red]Jane[/red]" in added.stdout, added.stdout
    listed = run_cli("avatars", "list")
    assert listed.code == 0 and "\x1b" not in listed.stdout and "[red]Jane[/red]" in listed.stdout, listed.stdout
    row = [line for line in listed.stdout.splitlines() if "jane-photo" in line]
    assert len(row) == 1, listed.stdout  # the newline in the name does not split the row
    assert run_cli("avatars", "list", "--json").json()[-1]["name"] == name  # the data itself is kept as given

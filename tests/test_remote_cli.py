"""The CLI in remote mode, end to end against a real `a2v serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SPEECH, decode_frames, file_server, run_cli, wav_duration

from a2v_cli.errors import ExitCode

TOKEN_A = "tok-alice-0123456789"
TOKEN_B = "tok-bob-9876543210"
SERVER_DATA: dict[str, Path] = {}  # the running server's data dir, to look at its uploads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("server-data")
    SERVER_DATA["dir"] = data
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": f"alice:{TOKEN_A},bob:{TOKEN_B}",
           "A2V_HOME": str(data / "home")}
    env.pop("A2V_SERVER", None)
    env.pop("A2V_TOKEN", None)
    log = open(data / "server.log", "wb")  # lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "serve", "--port", str(port), "--data-dir", str(data),
         "--allow-private-urls"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError((data / "server.log").read_text()) from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    logtext = (data / "server.log").read_text(errors="replace")
    assert TOKEN_A not in logtext and TOKEN_B not in logtext  # tokens never reach the logs


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server with the speech fixture and a file that is not audio."""
    root = tmp_path_factory.mktemp("files")
    (root / "speech.wav").write_bytes(SPEECH.read_bytes())
    (root / "notes.wav").write_text("not audio at all\n" * 100)
    with file_server(root) as url:
        yield url


def remote(server: str, *args: str, token: str = TOKEN_A, input: bytes | None = None):  # type: ignore[no-untyped-def]
    return run_cli(*args, env={"A2V_SERVER": server, "A2V_TOKEN": token}, input=input)


def strip_urls(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "preview_image_url"} for item in items]


def test_same_json_as_local_mode(server: str) -> None:
    r = remote(server, "avatars", "list", "--json")
    assert r.code == 0, r.stderr
    local = run_cli("avatars", "list", "--json", "--local").json()
    assert strip_urls(r.json()) == strip_urls(local)
    assert all(a["preview_image_url"].startswith(server) for a in r.json())
    poses = remote(server, "avatars", "poses", "mika", "--json").json()
    assert strip_urls(poses) == strip_urls(run_cli("avatars", "poses", "mika", "--json", "--local").json())
    png = httpx.get(poses[0]["preview_image_url"], timeout=10)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_generate_upload_wait_download(server: str, isolated: Path) -> None:
    r = remote(server, "generate", "--pose", "ava-front", "--audio", str(SPEECH), "-o", "remote.mp4", "--json")
    assert r.code == 0, r.stderr
    video = r.json()
    assert video["status"] == "finished" and video["video_url"].startswith(server)
    frames = decode_frames(isolated / "remote.mp4")
    assert len(frames) == math.ceil(wav_duration(SPEECH) * 25)
    assert len(decode_frames(isolated / "remote.mask.mp4", "gray")) == len(frames)
    listed = remote(server, "video", "list", "--json").json()
    assert video["video_id"] in [v["video_id"] for v in listed]
    got = remote(server, "video", "get", video["video_id"], "--json").json()
    assert got["video_id"] == video["video_id"] and got["status"] == "finished"
    d = remote(server, "video", "download", video["video_id"], "-o", str(isolated / "dl"), "--json")
    assert d.code == ExitCode.USAGE  # the directory does not exist
    (isolated / "dl").mkdir()
    d = remote(server, "video", "download", video["video_id"], "-o", str(isolated / "dl"), "--json")
    assert d.code == 0, d.stderr
    assert (isolated / "dl" / f"{video['video_id']}.mp4").read_bytes() == (isolated / "remote.mp4").read_bytes()


def test_generate_from_url_and_stdin_without_wait(server: str, files: str) -> None:
    r = remote(server, "generate", "--pose", "leo-front", "--audio", f"{files}/speech.wav", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["status"] in ("pending", "processing", "finished")
    w = remote(server, "video", "get", r.json()["video_id"], "--wait", "--json")
    assert w.code == 0 and w.json()["status"] == "finished"
    s = remote(server, "generate", "--pose", "leo-front", "--audio", "-", "--wait", "--json",
               input=SPEECH.read_bytes())
    assert s.code == 0 and s.json()["status"] == "finished", s.stderr


def test_failed_video_is_exit_6_with_reason(server: str, files: str) -> None:
    r = remote(server, "generate", "--pose", "ava-front", "--audio", f"{files}/notes.wav", "--wait", "--json")
    assert r.code == ExitCode.VIDEO_FAILED, r.stderr
    assert r.json()["status"] == "failed" and r.json()["error"]
    assert "failed" in r.stderr


def test_wait_timeout_is_exit_7_with_last_state(server: str, files: str) -> None:
    r = remote(server, "generate", "--pose", "ava-front", "--audio", f"{files}/speech.wav", "--wait",
               "--timeout", "0", "--json")
    assert r.code == ExitCode.TIMEOUT, r.stderr
    assert r.json()["status"] in ("pending", "processing") and "video get" in r.stderr


def test_auth_errors_and_isolation(server: str, files: str) -> None:
    bad = remote(server, "avatars", "list", token="wrong")
    assert bad.code == ExitCode.AUTH and "wrong" not in bad.stderr
    mine = remote(server, "generate", "--pose", "ava-front", "--audio", f"{files}/speech.wav", "--json").json()
    other = remote(server, "video", "get", mine["video_id"], token=TOKEN_B)
    assert other.code == ExitCode.NOT_FOUND
    assert mine["video_id"] not in [v["video_id"] for v in remote(server, "video", "list", "--json",
                                                                    token=TOKEN_B).json()]


def test_unknown_pose_is_exit_4_remotely(server: str, files: str) -> None:
    r = remote(server, "generate", "--pose", "nobody-front", "--audio", f"{files}/speech.wav")
    assert r.code == ExitCode.NOT_FOUND, r.stderr
    assert remote(server, "avatars", "poses", "nobody").code == ExitCode.NOT_FOUND


def test_unreachable_server_is_exit_5() -> None:
    r = run_cli("avatars", "list", "--http-timeout", "1",
                env={"A2V_SERVER": f"http://127.0.0.1:{free_port()}", "A2V_TOKEN": "x"})
    assert r.code == ExitCode.UNAVAILABLE and "cannot reach" in r.stderr


# --- never destroy what the user has; remote behaves like local (issue 11) ----------------------------


def video_ids(server: str) -> list[str]:
    return [v["video_id"] for v in remote(server, "video", "list", "--json").json()]


def test_remote_output_is_never_an_input_nor_another_output(server: str, isolated: Path) -> None:
    talk = isolated / "talk.wav"
    talk.write_bytes(SPEECH.read_bytes())
    os.link(talk, isolated / "alias.wav")
    before = video_ids(server)
    cases = [
        ["-o", "talk.wav", "--force"],
        ["-o", "alias.wav", "--force"],
        ["-o", "v.mp4", "--mask-output", "talk.wav", "--force"],
        ["-o", "q.mp4", "--mask-output", "q.mp4"],
    ]
    for args in cases:
        r = remote(server, "generate", "-p", "ava-front", "-a", "talk.wav", *args)
        assert r.code == ExitCode.USAGE, (args, r.stderr)
        assert "same file" in r.stderr and "Saved" not in r.stderr and "Traceback" not in r.stderr
    assert talk.read_bytes() == SPEECH.read_bytes()
    assert not list(isolated.glob("*.mp4"))
    assert video_ids(server) == before  # refused before anything was uploaded or queued


def test_remote_directory_output_behaves_as_local(server: str, isolated: Path) -> None:
    r = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), "-o", ".", "--json")
    assert r.code == ExitCode.USAGE, r.stderr
    err = json.loads(r.stderr.strip().splitlines()[-1])
    assert "is a directory" in err["error"] and err["mode"] == "remote" and err["server"] == server
    local = run_cli("generate", "-p", "ava-front", "-a", str(SPEECH), "-o", ".", "--json", "--local")
    assert local.code == r.code and json.loads(local.stderr)["error"] == err["error"]


def test_remote_refuses_misleading_output_names_before_upload(server: str, isolated: Path) -> None:
    """`-o x.webm`, `-o -` and `-o new/` used to upload, render, exit 0 and write an MP4 named .webm, a file
    named `-`, a file named `new`: the same check as local mode now refuses them first."""
    from test_outputs import MISLEADING_NAMES

    before, stored = video_ids(server), uploads()
    for args, words in MISLEADING_NAMES:
        r = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), *args)
        local = run_cli("generate", "-p", "ava-front", "-a", str(SPEECH), *args, "--local")
        assert r.code == local.code == ExitCode.USAGE, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1] == local.stderr.strip(), args
        assert all(w in r.stderr for w in words), r.stderr
    assert list(isolated.iterdir()) == []
    assert video_ids(server) == before and uploads() == stored


def test_remote_audio_from_a_pipe(server: str, isolated: Path) -> None:
    """`--audio <(cmd)` remotely: was exit 1 "unexpected UnsupportedOperation: File or stream is not seekable"."""
    from test_newuser import feed_fifo

    feed_fifo(isolated / "speech.pipe", SPEECH.read_bytes())
    r = remote(server, "generate", "-p", "ava-front", "-a", "speech.pipe", "-o", "piped.mp4", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["frame_count"] == math.ceil(wav_duration(SPEECH) * 25) == len(decode_frames(isolated / "piped.mp4"))


def test_server_url_with_the_api_prefix(server: str) -> None:
    """`--server http://host:port/v1/a2v` (the URL as the spec shows it) was exit 4, `avatar.list: no such
    endpoint: /v1/a2v/v1/a2v/avatar.list`; it names the same server."""
    r = run_cli("avatars", "list", "--json", "--server", f"{server}/v1/a2v/", env={"A2V_TOKEN": TOKEN_A})
    assert r.code == 0, r.stderr
    assert r.json() == remote(server, "avatars", "list", "--json").json()
    env = {"A2V_SERVER": f"{server}/v1/a2v", "A2V_TOKEN": TOKEN_A}
    assert run_cli("video", "list", "--json", env=env).code == 0


def test_token_and_server_with_stray_whitespace(server: str) -> None:
    """A token read from a CRLF file keeps its `\\r\\n`: that was exit 5, `cannot reach the server:
    LocalProtocolError`. Surrounding whitespace is dropped; a token with a space inside is exit 3, not 5."""
    r = run_cli("avatars", "list", "--json", env={"A2V_SERVER": f" {server}\r\n", "A2V_TOKEN": f"{TOKEN_A}\r\n"})
    assert r.code == 0, r.stderr
    assert r.json() == remote(server, "avatars", "list", "--json").json()
    bad = remote(server, "avatars", "list", token="tok alice")
    assert bad.code == ExitCode.AUTH, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: the token from A2V_TOKEN has a character")
    login = run_cli("auth", "login", "--server", server, input=b"tok\x01x\n", env={"A2V_CONFIG_DIR": "cfg"})
    assert login.code == ExitCode.AUTH and "from stdin" in login.stderr, login.stderr


def test_audio_over_the_servers_upload_cap_names_the_file_and_the_way_out(server: str, isolated: Path) -> None:
    """Was `audio.upload: the request body is larger than the limit of 51 MB`: no file, no way forward."""
    big = isolated / "long take.wav"
    with open(big, "wb") as f:
        f.write(b"RIFF\xff\xff\xff\xffWAVE")
        f.truncate(52 * 2**20)
    before = uploads()
    r = remote(server, "generate", "-p", "ava-front", "-a", "long take.wav", "-o", "big.mp4")
    assert r.code == ExitCode.USAGE, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    # the cap in the unit of the docs and the default (50 MiB), not the body's cap with its framing ("51 MB")
    assert "long take.wav is larger than this server's limit of 50 MiB" in line and "--local" in line, line
    assert uploads() == before and not (isolated / "big.mp4").exists()


def test_a_photo_over_the_servers_upload_cap_says_the_cap_in_the_docs_unit(server: str, isolated: Path) -> None:
    """avatar.create's 413 was `avatar.create: the request body is larger than the limit of 51 MB`."""
    big = isolated / "me.png"
    with open(big, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(52 * 2**20)
    r = remote(server, "avatars", "add", "--image", "me.png")
    assert r.code == ExitCode.USAGE, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: me.png is larger than this server's limit of 50 MiB") and "--local" in line, line
    assert "MB" not in line.replace("MiB", ""), line


def test_remote_errors_read_as_local_ones(server: str, isolated: Path) -> None:
    """A bad photo remotely was `{"error": "avatar.create: notes.png is not an image...; use a JPEG...", "hint":
    null}`; it is now the local error, message and hint apart (the envelope's `hint` extension)."""
    (isolated / "notes.png").write_text("not an image\n" * 50)
    r = remote(server, "avatars", "add", "--image", "notes.png", "--json")
    local = run_cli("avatars", "add", "--image", "notes.png", "--json", "--local")
    assert r.code == local.code == ExitCode.USAGE, r.stderr
    got, want = json.loads(r.stderr.strip().splitlines()[-1]), json.loads(local.stderr)
    assert want["hint"] and {k: got[k] for k in ("error", "hint")} == {k: want[k] for k in ("error", "hint")}
    text = remote(server, "avatars", "add", "--image", "notes.png").stderr.strip().splitlines()[-1]
    assert text == run_cli("avatars", "add", "--image", "notes.png", "--local").stderr.strip()


def test_two_downloads_into_one_file_never_mix(server: str, isolated: Path) -> None:
    """Every download of a file goes through one `.NAME.part` (so a broken one can resume): two at once (two
    `generate -o same.mp4`, two `video download`s into one folder) wrote into the same part, and the first to
    finish placed a mixture of both, exit 0. Here the test holds the part as a running a2v download does."""
    import fcntl

    r = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), "--wait", "--json")
    assert r.code == 0, r.stderr
    vid = r.json()["video_id"]
    part = isolated / f".{vid}.mp4.part"
    with open(part, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(b"the first half of the other download")
        held.flush()
        busy = remote(server, "video", "download", vid, "-o", ".")
        assert busy.code == ExitCode.USAGE, busy.stderr
        assert "another a2v is downloading" in busy.stderr.strip().splitlines()[-1]
        assert part.read_bytes() == b"the first half of the other download"
        assert not list(isolated.glob("*.mp4"))
    part.unlink()
    done = remote(server, "video", "download", vid, "-o", ".")
    assert done.code == 0, done.stderr
    assert len(decode_frames(isolated / f"{vid}.mp4")) == r.json()["frame_count"]
    assert sorted(p.name for p in isolated.iterdir()) == [f"{vid}.mask.mp4", f"{vid}.mp4"]  # no part left


def test_ctrl_c_while_waiting_says_the_server_keeps_rendering(server: str, isolated: Path) -> None:
    """Ctrl-C after the job started stops the waiting, not the server's render: the line says so and how to
    get the video (it said only `interrupted`)."""
    import signal

    from conftest import long_speech

    before = set(video_ids(server))
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "generate", "-p", "ava-front", "-a", str(long_speech(isolated)), "-o",
         "long.mp4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER": server, "A2V_TOKEN": TOKEN_A},
    )
    deadline = time.monotonic() + 60
    while not set(video_ids(server)) - before:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # past the "Started" line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    (vid,) = set(video_ids(server)) - before
    assert proc.returncode == ExitCode.INTERRUPTED, err
    line = err.decode().strip().splitlines()[-1]
    assert line.startswith("error: interrupted") and f"keeps rendering {vid}" in line, line
    assert remote(server, "video", "get", vid, "--wait", "--json").json()["status"] == "finished"
    assert not list(isolated.glob("*.mp4")) and not list(isolated.glob(".*.part"))


def test_remote_audio_with_more_channels_than_aac_takes(server: str, isolated: Path) -> None:
    from test_newuser import many_channels

    many_channels(isolated / "desk.wav", 16)
    r = remote(server, "generate", "-p", "ava-front", "-a", "desk.wav", "-o", "desk.mp4", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["frame_count"] == math.ceil(wav_duration(SPEECH) * 25) == len(decode_frames(isolated / "desk.mp4"))


def test_remote_download_never_replaces_existing_files(server: str, isolated: Path) -> None:
    r = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), "--wait", "--json")
    assert r.code == 0, r.stderr
    vid = r.json()["video_id"]
    (isolated / f"{vid}.mask.mp4").write_bytes(b"mine")
    d = remote(server, "video", "download", vid, "-o", ".")
    assert d.code == ExitCode.USAGE and "already exists" in d.stderr
    assert (isolated / f"{vid}.mask.mp4").read_bytes() == b"mine" and not (isolated / f"{vid}.mp4").exists()


def test_remote_alpha_device_and_model(server: str, isolated: Path) -> None:
    r = remote(server, "generate", "-p", "mika-front", "-a", str(SPEECH), "-o", "a.mp4", "--alpha-format", "webm",
               "--json")
    assert r.code == 0, r.stderr
    video = r.json()
    assert "/alpha.webm?" in video["alpha_video_url"]
    rgba = decode_frames(isolated / "a.alpha.webm", "rgba", codec="libvpx-vp9")
    assert len(rgba) == len(decode_frames(isolated / "a.mp4"))
    assert rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255  # real alpha: transparent and opaque
    (isolated / "dl").mkdir()
    d = remote(server, "video", "download", video["video_id"], "-o", "dl", "--json")
    assert d.code == 0, d.stderr
    got = isolated / "dl" / f"{video['video_id']}.alpha.webm"
    assert got.read_bytes() == (isolated / "a.alpha.webm").read_bytes()
    for args, word in ((["--device", "cpu"], "--device"), (["--model", "x.onnx"], "--model")):
        bad = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), *args)
        assert bad.code == ExitCode.USAGE and word in bad.stderr and "local mode only" in bad.stderr


def uploads() -> list[str]:
    return sorted(p.name for p in (SERVER_DATA["dir"] / "uploads").glob("upl_*"))


def test_remote_unknown_pose_is_refused_before_upload(server: str, isolated: Path) -> None:
    before, stored = video_ids(server), uploads()
    r = remote(server, "generate", "-p", "ava-frnt", "-a", str(SPEECH))
    assert r.code == ExitCode.NOT_FOUND and "ava-front" in r.stderr  # suggested
    assert video_ids(server) == before and uploads() == stored  # no orphan upload for a typo


def test_remote_messages_name_the_users_file(server: str, isolated: Path) -> None:
    # a WAV header over garbage passes the upload's container check and fails in the render
    (isolated / "broken take.wav").write_bytes(b"RIFF\x24\x00\x01\x00WAVEjunk" + os.urandom(4000))
    r = remote(server, "generate", "-p", "ava-front", "-a", "broken take.wav", "--wait", "--json")
    assert r.code == ExitCode.VIDEO_FAILED, r.stderr
    assert "broken take.wav" in r.json()["error"] and "upl_" not in r.stderr + r.stdout, r.stderr
    notes = isolated / "notes.mp3"
    notes.write_text("not audio\n" * 50)
    bad = remote(server, "generate", "-p", "ava-front", "-a", "notes.mp3")
    assert bad.code == ExitCode.USAGE, bad.stderr
    assert "notes.mp3" in bad.stderr and "upl_" not in bad.stderr and "uploaded file" not in bad.stderr


def test_not_an_a2v_server_is_exit_5(files: str) -> None:
    r = run_cli("video", "list", env={"A2V_SERVER": files, "A2V_TOKEN": "x"})
    assert r.code == ExitCode.UNAVAILABLE, r.stderr
    assert f"not an A2V server at {files}" in r.stderr


def test_remote_mode_is_named_on_stderr_only(server: str) -> None:
    r = remote(server, "avatars", "list", "--json")
    assert r.code == 0 and r.stdout.lstrip().startswith("[")
    t = remote(server, "avatars", "list")
    assert f"Remote mode: server {server} (from A2V_SERVER)" in t.stderr and server not in t.stdout
    assert "Remote mode" not in run_cli("avatars", "list").stderr


def test_remote_delete_and_prune(server: str, isolated: Path) -> None:
    made = remote(server, "generate", "-p", "ava-front", "-a", str(SPEECH), "--wait", "--json")
    assert made.code == 0, made.stderr
    vid = made.json()["video_id"]
    url = made.json()["video_url"]
    assert httpx.get(url, timeout=10).status_code == 200
    assert remote(server, "video", "delete", vid, token=TOKEN_B).code == ExitCode.NOT_FOUND  # tenants isolated
    d = remote(server, "video", "delete", vid, "--json")
    assert d.code == 0 and d.json() == {"video_id": vid, "deleted": True}, d.stderr
    again = remote(server, "video", "delete", vid, "--json")
    assert again.code == 0 and again.json() == {"video_id": vid, "deleted": False}
    assert remote(server, "video", "get", vid).code == ExitCode.NOT_FOUND
    assert httpx.get(url, timeout=10).status_code == 404  # the files are gone too
    assert vid not in video_ids(server)
    keep = remote(server, "video", "prune", "--older-than", "30d", "--json")
    assert keep.code == 0 and keep.json()["count"] == 0
    mine = remote(server, "video", "list", "--json").json()
    done = sorted(v["video_id"] for v in mine if v["status"] in ("finished", "failed"))
    theirs = video_ids_of(server, TOKEN_B)
    gone = remote(server, "video", "prune", "--older-than", "0s", "--json")
    assert gone.code == 0 and sorted(gone.json()["deleted"]) == done and gone.json()["count"] == len(done)
    assert video_ids_of(server, TOKEN_B) == theirs  # another tenant's history is untouched


def video_ids_of(server: str, token: str) -> list[str]:
    return [v["video_id"] for v in remote(server, "video", "list", "--json", token=token).json()]


def test_remote_output_that_appears_during_the_render_is_kept(server: str, isolated: Path) -> None:
    """The download's final placement is exclusive too: a file that appeared meanwhile is left alone."""
    import numpy as np
    import soundfile as sf

    data, rate = sf.read(SPEECH, dtype="float32")
    sf.write(isolated / "long.wav", np.tile(data, 8), rate)
    api = f"{server}/v1/a2v/video.list"
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    before = {v["video_id"] for v in httpx.get(api, headers=headers, timeout=10).json()["data"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "generate", "-p", "ava-front", "-a", "long.wav", "-o", "race.mp4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER": server, "A2V_TOKEN": TOKEN_A},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the job exists: the pre-check is long past
        now = httpx.get(api, headers=headers, timeout=10).json()["data"]
        if any(v["video_id"] not in before for v in now):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    (isolated / "race.mp4").write_bytes(b"written meanwhile")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.USAGE, err.decode()
    assert "appeared" in err.decode() and "race.mp4" in err.decode()
    assert (isolated / "race.mp4").read_bytes() == b"written meanwhile"
    assert not (isolated / "race.mask.mp4").exists() and not list(isolated.glob(".race*"))


def test_concurrent_remote_adds_of_one_token_all_succeed(server: str) -> None:
    """Four `a2v avatars add` of one token at once against `a2v serve`: three were 40900 "another avatar.create
    ... is still running" (exit 2). The server answers it with Retry-After (one create per token at a time) and
    the CLI waits within the build's deadline: all four made, distinct ids, as in local mode."""
    photo = str(ROOT / "examples" / "astronaut.png")
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: remote(server, "avatars", "add", "--image", photo, "--size", "256", "--json",
                                              token=TOKEN_B), range(4)))
    assert [r.code for r in runs] == [0] * 4, [r.stderr[-500:] for r in runs]
    ids = sorted(r.json()["avatar_id"] for r in runs)  # type: ignore[index]
    assert ids == ["astronaut", "astronaut-2", "astronaut-3", "astronaut-4"], ids
    listed = remote(server, "avatars", "list", "--json", token=TOKEN_B)
    assert set(ids) <= {a["avatar_id"] for a in listed.json()}, listed.stdout  # type: ignore[union-attr]
    for avatar_id in ids:
        assert remote(server, "avatars", "remove", avatar_id, token=TOKEN_B).code == 0

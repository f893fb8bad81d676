"""The CLI in remote mode, end to end against a real `a2v serve` process on 127.0.0.1."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SPEECH, decode_frames, file_server, run_cli, wav_duration

from a2v_cli.errors import ExitCode

TOKEN_A = "tok-alice-0123456789"
TOKEN_B = "tok-bob-9876543210"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("server-data")
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

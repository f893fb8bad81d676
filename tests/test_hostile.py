"""`a2v serve` and the remote CLI against hostile tenants and hosts (issue 12).

A real server on 127.0.0.1 and, where a misbehaving remote host is needed, a `hostile.HostileHost` the
test starts itself (it drips bytes, lies about Content-Length, closes early), bounded in time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import ROOT, SPEECH, run_cli
from hostile import Conn, HostileHost, drip_chunked_body, drip_headers, response, short_body
from test_server import TOKENS, Server, call, client, clip, err, free_port, generate, ok, wait_for

API = "/v1/a2v"
DOWNLOAD_LIMIT_S = 12.0
BODY_LIMIT_S = 3.0
BODY_DEADLINE_S = 7.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One render worker (so a stalled one would show), a short download limit, a data dir made 0755 first."""
    data = tmp_path_factory.mktemp("hostile") / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    s = Server(data, ["--allow-private-urls", "--workers", "1", "--download-timeout", str(DOWNLOAD_LIMIT_S),
                      "--body-timeout", str(BODY_LIMIT_S), "--body-deadline", str(BODY_DEADLINE_S)]).start()
    yield s
    s.stop()


def upload(s: Server, body: bytes, token: str = "alice") -> str:
    return ok(call(s, "POST", "/audio.upload", token, files={"file": ("a.wav", body)}))["audio_url"]  # type: ignore[index]


@pytest.fixture(scope="module")
def finished(srv: Server) -> dict:
    v = wait_for(srv, generate(srv, upload(srv, clip(1.0)))["video_id"])
    assert v["status"] == "finished", v
    return v


# --- 1. numbers from requests and remote hosts ------------------------------------------------------


@pytest.mark.parametrize("expires", ["%C2%B2", "%D9%A3", "%201", "1_000", "-1", "+1", "1.0", "9" * 12, "%EF%BC%91"])
def test_odd_expiry_is_403_not_500(srv: Server, expires: str) -> None:
    """`²` passes str.isdigit() but not int(): every such value is a bad signature, never a traceback."""
    before = srv.log().count("Traceback")
    with client() as c:
        r = c.get(f"{srv.url}{API}/files/vid_{'0' * 20}/video.mp4?expires={expires}&signature=x")
    assert r.status_code == 403 and r.json()["code"] == 40300, r.text
    assert srv.log().count("Traceback") == before


def test_odd_cursor_and_content_length_are_400_not_500(srv: Server) -> None:
    huge = base64.urlsafe_b64encode(b"seq:" + b"9" * 30).decode().rstrip("=")
    odd = base64.urlsafe_b64encode("seq:²".encode()).decode().rstrip("=")
    for cursor in (huge, odd):
        err(call(srv, "GET", "/video.list", params={"limit": 1, "cursor": cursor}), 400, 40000)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:  # a Content-Length httpx won't send
        s.sendall(f"POST {API}/video.generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                  "Content-Type: application/json\r\nContent-Length: \xb2\r\n\r\n".encode("latin-1"))
        answer = s.recv(65536)
    assert not answer.startswith(b"HTTP/1.1 500"), answer[:200]
    assert "Traceback" not in srv.log()


def test_content_length_from_a_host_is_parsed_strictly(srv: Server) -> None:
    """`Content-Length: ²` from an audio host is a download error, not an internal error."""
    with HostileHost(short_body(clip(1.0), "\xb2", 5000)) as host:
        v = wait_for(srv, generate(srv, host.url("/odd.wav"))["video_id"], timeout=60)
    assert v["status"] == "failed" and "invalid Content-Length" in v["error"], v
    assert "internal error" not in v["error"]


# --- 2. slow hosts hold a download slot for the limit at most, never the render worker ---------------


def test_slow_hosts_neither_stall_the_queue_nor_outlive_the_limit(srv: Server) -> None:
    with HostileHost(drip_headers(0.5)) as slow_head, HostileHost(drip_chunked_body(0.5)) as slow_body:
        t0 = time.monotonic()
        # four: every download slot of a one-worker server busy, and still the upload job renders
        dripping = [generate(srv, h.url("/a.wav"))["video_id"] for h in (slow_head, slow_body) * 2]
        normal = generate(srv, upload(srv, clip(1.0)))["video_id"]
        done = wait_for(srv, normal, timeout=DOWNLOAD_LIMIT_S + 60)
        assert done["status"] == "finished", done
        took = time.monotonic() - t0
        if took < DOWNLOAD_LIMIT_S - 1:  # the only worker rendered while both hosts were still dripping
            states = [ok(call(srv, "GET", "/video.get", params={"video_id": v}))["status"] for v in dripping]
            assert states == ["processing"] * 4, states
        for vid in dripping:
            v = wait_for(srv, vid, timeout=DOWNLOAD_LIMIT_S + 20)
            assert v["status"] == "failed" and f"longer than the limit of {DOWNLOAD_LIMIT_S:g} s" in v["error"], v
        assert time.monotonic() - t0 < DOWNLOAD_LIMIT_S + 8  # the whole download, not each read
    assert took < DOWNLOAD_LIMIT_S + 30


def test_slow_dns_is_given_up_on() -> None:
    """A name server the client controls may answer slowly: the lookup is bounded too (API thread or slot)."""
    from a2v_cli.server.fetch import FetchPolicy, FetchRefused, check_url

    def slow(host: str, port: int) -> list[str]:
        time.sleep(10)
        return ["93.184.215.14"]

    t0 = time.monotonic()
    with pytest.raises(FetchRefused, match="took longer than 1 s"):
        check_url("http://slow.example/a.wav", FetchPolicy(max_bytes=10, resolver=slow, connect_timeout=1))
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("path", ["/video.generate", "/audio.upload"])
def test_a_dripped_request_body_is_cut_off(srv: Server, path: str) -> None:
    """A client that sends its body a byte at a time gets 408 (40800) at the limit, not a connection for ever."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        kind = "multipart/form-data; boundary=b" if path == "/audio.upload" else "application/json"
        s.sendall(f"POST {API}{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                  f"Content-Type: {kind}\r\nContent-Length: 1000\r\n\r\n".encode())
        if path == "/audio.upload":
            s.sendall(b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF')
        answer = b""
        for _ in range(40):
            s.sendall(b" ")
            try:
                s.settimeout(0.3)
                answer += s.recv(65536)
            except TimeoutError:
                continue
            if b"\r\n\r\n" in answer:
                break
        took = time.monotonic() - t0
        s.settimeout(5)
        while (length := re.search(rb"content-length: (\d+)", answer)) and \
                len(answer.split(b"\r\n\r\n", 1)[1]) < int(length.group(1)):
            answer += s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == 40800
    assert BODY_LIMIT_S - 0.5 < took < BODY_LIMIT_S + 3, took


def _answer(s: socket.socket, wait: float) -> bytes:
    """The server's whole answer on ``s`` (status line, headers, body), waiting up to ``wait`` s for it to start."""
    s.settimeout(wait)
    answer = s.recv(65536)
    s.settimeout(5)
    while b"\r\n\r\n" not in answer or ((length := re.search(rb"content-length: (\d+)", answer))
                                        and len(answer.split(b"\r\n\r\n", 1)[1]) < int(length.group(1))):
        answer += s.recv(65536)
    return answer


@pytest.mark.parametrize("path", ["/audio.upload", "/avatar.create"])
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_an_upload_without_a_valid_token_is_refused_before_its_body(srv: Server, path: str, token: str | None
                                                                   ) -> None:  # fmt: skip
    """Without a valid token an upload got its 401 only after its body: the server received and spooled up to the
    upload cap (50 MiB) for anyone, or waited the body timeout (a 408) for a client that sent none."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        s.sendall(f"POST {API}{path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: multipart/form-data; boundary=b\r\n"
                  f"Content-Length: 2900000\r\n\r\n".encode())  # and not a byte of the body
        answer = _answer(s, BODY_LIMIT_S + 5)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == 40100
    assert time.monotonic() - t0 < BODY_LIMIT_S - 1


def test_an_upload_kept_barely_alive_is_cut_off_at_the_deadline(srv: Server) -> None:
    """64 KiB just inside every body timeout renewed the timeout for ever: one client could hold an upload open for
    hours. The whole body now has a deadline (--body-deadline)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(f"POST {API}/audio.upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                  f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n".encode())
        s.sendall(b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF')
        answer = b""
        while time.monotonic() - t0 < BODY_DEADLINE_S + 5 and not answer:
            try:
                s.sendall(b"\0" * 65536)
                answer = _answer(s, BODY_LIMIT_S - 1.5)
            except TimeoutError:
                continue
            except OSError:  # the server answered and closed while this was sending
                answer = _answer(s, 1)
        took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == 40800 and "in all" in body["message"], body
    assert BODY_DEADLINE_S - 0.5 < took < BODY_DEADLINE_S + 3, took


# --- 5. short bodies ---------------------------------------------------------------------------------


def test_truncated_audio_body_fails_the_job(srv: Server) -> None:
    body = clip(6.5)
    with HostileHost(short_body(body, len(body), 5000)) as host:
        v = wait_for(srv, generate(srv, host.url("/short.wav"))["video_id"], timeout=60)
    assert v["status"] == "failed" and f"after 5000 of the {len(body)} bytes" in v["error"], v
    assert v["video_url"] is None


# --- 6. URLs never come from the Host header; caches are bounded -------------------------------------


def test_links_ignore_the_host_header_and_the_cache_stays_small(tmp_path: Path) -> None:
    s = Server(tmp_path / "data", ["--workers", "0"])
    s.port = 0  # let the system choose: the links must still name the real port
    s.log_path = tmp_path / "p0.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": ",".join(f"{k}:{v}" for k, v in TOKENS.items())}
    with open(s.log_path, "wb") as log:
        s.proc = subprocess.Popen([sys.executable, "-m", "a2v_cli.server", "--port", "0", "--data-dir",
                                   str(s.data_dir), "--workers", "0"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"links point at http://127\.0\.0\.1:(\d+)", s.log())):
            assert time.monotonic() < deadline and s.proc.poll() is None, s.log()
            time.sleep(0.1)
        s.port = int(m.group(1))
        while "Application startup complete" not in s.log():
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.1)
        proc = psutil.Process(s.proc.pid)
        with client() as c:
            def avatars(host: str) -> list[dict]:
                r = c.get(f"{s.url}{API}/avatar.list", headers={"Host": host, **auth_header()})
                return r.json()["data"]

            for a in avatars("evil.example:666"):
                assert a["preview_image_url"].startswith(f"http://127.0.0.1:{s.port}{API}/previews/"), a
            up = c.post(f"{s.url}{API}/audio.upload", headers={"Host": "evil.example", **auth_header()},
                        files={"file": ("a.wav", clip(0.3))}).json()["data"]
            assert up["audio_url"].startswith(f"http://127.0.0.1:{s.port}{API}/uploads/"), up
            for i in range(300):  # warm up allocator pools before measuring
                avatars(f"warm{i}.example")
            rss = proc.memory_info().rss
            for i in range(3000):
                avatars(f"h{i}.example:{i}")
            grown = proc.memory_info().rss - rss
        assert grown < 6 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 3000 Host headers"
    finally:
        s.stop()


def auth_header(name: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def test_wildcard_host_links_name_this_machine() -> None:
    from a2v_cli.server.settings import ServerSettings

    assert ServerSettings(host="0.0.0.0").public_base(8123) == f"http://{socket.gethostname()}:8123"
    assert ServerSettings(host="::1").public_base(80) == "http://[::1]:80"
    assert ServerSettings(public_url="https://a2v.example.com/").public_base(1) == "https://a2v.example.com"


# --- 7. nothing left behind --------------------------------------------------------------------------


def test_failed_jobs_leave_no_files_and_startup_sweeps(tmp_path: Path) -> None:
    s = Server(tmp_path / "data", ["--allow-private-urls", "--workers", "1"]).start()
    try:
        with HostileHost(short_body(b"hello, I am not audio\n" * 10, 220, 220)) as host:
            bad = [generate(s, host.url("/x.wav"))["video_id"],
                   generate(s, upload(s, b"RIFF\0\0\0\0WAVEfmt garbage" * 4))["video_id"]]
            for vid in bad:
                assert wait_for(s, vid)["status"] == "failed"
        for vid in bad:
            assert not (s.data_dir / "work" / vid).exists()
            assert not (s.data_dir / "videos" / vid).exists(), list((s.data_dir / "videos" / vid).iterdir())
        good = wait_for(s, generate(s, upload(s, clip(0.6)))["video_id"])
        assert good["status"] == "finished"
        assert not any((s.data_dir / "work").iterdir())
        s.stop()
        # what a kill -9 mid-render leaves: scratch, a half-written file, the output dir of an unfinished job
        (s.data_dir / "work" / "vid_00000000000000000001").mkdir(parents=True)
        (s.data_dir / "work" / "vid_00000000000000000001" / "audio_url").write_bytes(b"x")
        out = s.data_dir / "videos" / good["video_id"]
        (out / ".video.mp4.abc123.part").write_bytes(b"x")
        (s.data_dir / "videos" / "vid_00000000000000000002").mkdir()
        s.start()
        assert "removed 3 leftover" in s.log()
        assert not any((s.data_dir / "work").iterdir())
        assert sorted(p.name for p in out.iterdir()) == ["mask.mp4", "video.mp4"]
        assert not (s.data_dir / "videos" / "vid_00000000000000000002").exists()
    finally:
        s.stop()


def test_startup_sweep_never_touches_files_a2v_did_not_make(tmp_path: Path) -> None:
    """`a2v serve --data-dir DIR` where DIR already has the user's own `videos/` and `work/` folders (common
    names): the startup sweep used to delete everything in them that was not a finished job's folder."""
    data = tmp_path / "project"
    mine = {data / "videos" / "holiday.mp4": b"precious video", data / "videos" / "trip" / "day1.mp4": b"day 1",
            data / "work" / "thesis.txt": b"precious text", data / "work" / "vid_notes" / "a.txt": b"notes"}
    for path, body in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    leftover = data / "work" / "vid_00000000000000000003"  # what a2v itself left: still swept
    leftover.mkdir()
    proc, _, log = cli_serve(tmp_path, data, workers=1)
    try:
        deadline = time.monotonic() + 60
        while "startup complete" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for path, body in mine.items():
        assert path.read_bytes() == body, path
    assert not leftover.exists()


# --- 8. range errors, ETag / If-Range, --workers 0, malformed envelopes -------------------------------


def test_range_errors_are_envelopes_and_if_range_is_honoured(finished: dict) -> None:
    url = finished["video_url"]
    with client() as c:
        full = c.get(url)
        etag = full.headers["etag"]
        past = c.get(url, headers={"Range": "bytes=99999999-"})
        assert past.status_code == 416 and past.headers["content-type"] == "application/json"
        assert past.json()["code"] == 41600 and past.json()["data"] is None
        assert past.headers["content-range"] == f"bytes */{len(full.content)}"
        bad = c.get(url, headers={"Range": "bytes=9-3"})
        assert bad.status_code in (400, 416) and bad.json()["data"] is None
        same = c.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
        assert same.status_code == 206 and same.content == full.content[100:]
        other = c.get(url, headers={"Range": "bytes=100-", "If-Range": '"another-file"'})
        assert other.status_code == 200 and other.content == full.content


def cli_serve(tmp_path: Path, data: Path, workers: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`a2v serve` through the real CLI on a free port, its output in ``tmp_path/serve.log``."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": "a:" + TOKENS["alice"],
           "A2V_HOME": str(tmp_path / "home")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "a2v_cli", "serve", "--port", str(port), "--workers",
                                 str(workers), "--data-dir", str(data)], stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, port, log


def test_cli_serve_accepts_workers_0(tmp_path: Path) -> None:
    proc, port, log = cli_serve(tmp_path, tmp_path / "data", workers=0)
    try:
        deadline = time.monotonic() + 60
        with client() as c:
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    r = c.get(f"http://127.0.0.1:{port}{API}/video.list", headers=auth_header())
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        assert r.json() == {"code": 0, "data": [], "message": "success"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_body_deadline_that_is_not_positive_is_one_clear_line(tmp_path: Path, value: str) -> None:
    """--body-deadline (as --body-timeout) must be a positive number of seconds: the server does not start."""
    r = subprocess.run([sys.executable, "-m", "a2v_cli.server", "--data-dir", str(tmp_path / "data"), "--port", "0",
                        "--body-deadline", value], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "limits must be positive" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "data").exists()


def fake_api(answers: dict[str, bytes]) -> HostileHost:
    """A host that answers API paths with canned bytes (a broken or hostile 'server')."""

    def script(c: Conn) -> None:
        c.send(answers.get(c.path.rsplit("/", 1)[-1], response("404 Not Found", {"Content-Length": "0"})))

    return HostileHost(script)


def envelope(data: object) -> bytes:
    body = json.dumps({"code": 0, "data": data, "message": "success"}).encode()
    return response("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(body)),
                               "Connection": "close"}, body)


@pytest.mark.parametrize(
    ("args", "path", "data"),
    [
        (["video", "get", "vid_x"], "video.get", None),
        (["video", "list"], "video.list", None),
        (["avatars", "list"], "avatar.list", [None]),
        (["video", "get", "vid_x"], "video.get", {"status": "finished"}),
    ],
)
def test_malformed_data_is_a_clear_error(args: list[str], path: str, data: object) -> None:
    with fake_api({path: envelope(data)}) as host:
        r = run_cli(*args, "--server", host.url(), env={"A2V_TOKEN": "t"}, timeout=60)
    assert r.code == 1 and "unexpected" not in r.stderr and path in r.stderr, r.stderr
    said = [line for line in r.stderr.strip().splitlines() if not line.startswith("Remote mode: ")]
    assert len(said) == 1 and "Traceback" not in r.stderr


# --- 3. the client's --http-timeout bounds the whole request ----------------------------------------


def test_http_timeout_bounds_the_whole_request() -> None:
    """A 'server' that drips a byte a second: each attempt ends at 2 s, all four (with backoff) well under 20 s."""
    with HostileHost(drip_headers(0.3)) as host:
        t0 = time.monotonic()
        r = run_cli("avatars", "list", "--server", host.url(), "--http-timeout", "2", env={"A2V_TOKEN": "t"},
                    timeout=60)
        took = time.monotonic() - t0
    assert r.code == 5 and "within 2 s" in r.stderr and "--http-timeout" in r.stderr, r.stderr
    assert took < 20, took
    assert len(host.requests) == 4  # the first try and three retries, each cut at 2 s


@pytest.mark.parametrize("script", [drip_headers(0.2), drip_chunked_body(0.2)], ids=["headers", "body"])
def test_http_deadline_bounds_local_mode_downloads_too(script: object) -> None:
    """The same budget guards `a2v generate URL` in local mode (engine.audio._download)."""
    from a2v_cli import http_deadline

    with HostileHost(script) as host, httpx.Client(timeout=30, trust_env=False) as c:  # type: ignore[arg-type]
        http_deadline.install(c)
        t0 = time.monotonic()
        with pytest.raises(httpx.TimeoutException), http_deadline.budget(1.5), c.stream("GET", host.url()) as r:
            for _ in r.iter_bytes():
                pass
        assert time.monotonic() - t0 < 4


# --- 4. downloads: never splice a stale part, never exit 0 with a short file -------------------------


def test_stale_part_files_are_not_resumed(srv: Server, finished: dict, tmp_path: Path) -> None:
    vid = finished["video_id"]
    with client() as c:
        truth = c.get(finished["video_url"]).content
        mask = c.get(finished["mask_video_url"]).content
    out = tmp_path / "out"
    out.mkdir()
    stale = {  # another file's leftovers: shorter than the video, and longer (the server answers 416)
        f".{vid}.mp4.part": os.urandom(len(truth) // 2),
        f".{vid}.mask.mp4.part": os.urandom(len(mask) + 1000),
    }
    for name, data in stale.items():
        (out / name).write_bytes(data)
    env = {"A2V_TOKEN": TOKENS["alice"]}
    r = run_cli("video", "download", vid, "-o", str(out), "--server", srv.url, env=env)
    assert r.code == 0, r.stderr
    assert (out / f"{vid}.mp4").read_bytes() == truth
    assert (out / f"{vid}.mask.mp4").read_bytes() == mask
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{vid}.mp4", f"{vid}.mask.mp4"])


def test_a_download_shorter_than_announced_is_an_error(tmp_path: Path) -> None:
    body = os.urandom(300_000)
    video = {"video_id": "vid_x", "status": "finished", "pose_id": "ava-front"}

    def script(c: Conn) -> None:
        if c.path.endswith("video.get"):
            host_url = f"http://127.0.0.1:{c.sock.getsockname()[1]}"
            c.send(envelope({**video, "video_url": host_url + "/v.mp4", "mask_video_url": host_url + "/m.mp4"}))
        else:  # announce it all, send a third, close: every time
            c.send(response("200 OK", {"Content-Length": str(len(body)), "ETag": '"e"', "Connection": "close"},
                            body[:100_000]))

    with HostileHost(script) as host:
        r = run_cli("video", "download", "vid_x", "-o", str(tmp_path), "--server", host.url(),
                    env={"A2V_TOKEN": "t"}, timeout=120)
    assert r.code == 5 and "download of vid_x.mp4 failed" in r.stderr, r.stderr
    assert not (tmp_path / "vid_x.mp4").exists()


# --- 9. private data ---------------------------------------------------------------------------------


def test_data_dir_contents_are_private(srv: Server, finished: dict) -> None:
    assert "is open to other users (mode 0755)" in srv.log_path.read_text()  # type: ignore[union-attr]
    files = [p for p in srv.data_dir.rglob("*") if p.is_file() and p.name != "server.lock"]
    assert any(p.parent.name == "uploads" for p in files) and any(p.name == "video.mp4" for p in files)
    loose = {str(p.relative_to(srv.data_dir)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [*files]
             if p.stat().st_mode & 0o077}
    assert not loose, loose
    dirs = [p for p in srv.data_dir.rglob("*") if p.is_dir()]
    assert not [p for p in dirs if p.stat().st_mode & 0o077]


# --- 10. the render child never sees a token ---------------------------------------------------------


def test_render_child_environment_has_no_tokens(srv: Server) -> None:
    children = psutil.Process(srv.proc.pid).children(recursive=True)  # type: ignore[union-attr]
    assert children
    for child in children:
        env = Path(f"/proc/{child.pid}/environ").read_bytes()
        assert b"A2V_SERVER_TOKENS" not in env
        assert not any(t.encode() in env for t in TOKENS.values())
        assert b"PYTHONPATH=" in env  # what it needs is still there


# --- 11. an ID3 tag cannot steer ffmpeg to a playlist ------------------------------------------------


ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "payload",
    [
        b"ffconcat version 1.0\nfile upl_000000000000000000000000\n",
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 47001 RTP/AVP 0\r\n",
        b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
    ],
)
def test_id3_prefixed_playlists_are_refused(srv: Server, payload: bytes) -> None:
    r = call(srv, "POST", "/audio.upload", files={"file": ("a.mp3", ID3 + payload)})
    assert "not an audio file" in err(r, 400, 40000)
    with HostileHost(short_body(ID3 + payload, len(ID3 + payload), len(ID3 + payload))) as host:
        v = wait_for(srv, generate(srv, host.url("/a.mp3"))["video_id"], timeout=60)
    assert v["status"] == "failed" and "not an audio file" in v["error"], v


def test_tagged_mp3_and_other_containers_still_render(srv: Server, tmp_path: Path) -> None:
    from a2v_cli.engine.audio import ffmpeg_exe

    made = []
    for ext in ("mp3", "m4a"):
        path = tmp_path / f"speech.{ext}"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(SPEECH), "-t", "1", str(path)], check=True)
        made.append(path)
    assert made[0].read_bytes()[:3] == b"ID3"
    ids = [generate(srv, upload(srv, p.read_bytes()))["video_id"] for p in made]
    for vid in ids:
        v = wait_for(srv, vid, timeout=120)
        assert v["status"] == "finished" and v["frame_count"] == 25, v


# --- 12. the access log keeps no secret --------------------------------------------------------------


def test_access_log_redacts_whole_secret_values(srv: Server, finished: dict) -> None:
    with client() as c:
        c.get(f"{srv.url}{API}/video.list?token=s3cr3t-in-query&limit=1", headers=auth_header())
        base = finished["video_url"].split("?")[0]
        c.get(f"{base}?expires=1&signature=abcdef-TAILSECRET")
        c.get(finished["video_url"])
    time.sleep(0.3)
    log = srv.log()
    sig = finished["video_url"].rsplit("signature=", 1)[1]
    assert "s3cr3t-in-query" not in log and "TAILSECRET" not in log and sig not in log
    assert "token=REDACTED&limit=1" in log and "signature=REDACTED" in log


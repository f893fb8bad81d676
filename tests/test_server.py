"""`a2v serve` end to end: a real server process on 127.0.0.1, real renders, real downloads.

Two servers run for the module: a permissive one (`--allow-private-urls`, so it may fetch audio from the
local test HTTP server) and a strict one (the default SSRF policy, no workers: nothing it accepts is
ever fetched). Nothing here talks to anything outside 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest
import soundfile as sf
from conftest import ROOT, SPEECH, decode_frames

from a2v_cli.schema import Avatar, Pose, Video

API = "/v1/a2v"
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "carol": "carol-token-0123456789"}
MAX_UPLOAD = 1_000_000  # small, so "too large" needs only a 1.5 MB file
FPS = 25


def auth(name: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(**kw: object) -> httpx.Client:
    return httpx.Client(timeout=30, trust_env=False, **kw)  # type: ignore[arg-type]


@dataclass
class Server:
    """A server process started the way a user would, with its log kept for failure messages."""

    data_dir: Path
    args: list[str]
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self.port = self.port or free_port()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(
            PYTHONPATH=str(ROOT),
            A2V_SERVER_TOKENS=",".join(f"{k}:{v}" for k, v in TOKENS.items()),
            A2V_HOME=str(self.data_dir.parent / "home"),
        )
        cmd = [sys.executable, "-m", "a2v_cli.server", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*cmd, *self.args], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        with client() as c:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"server exited early:\n{self.log()}"
                try:
                    if c.get(self.url + "/openapi.json").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


class AudioSite:
    """A local HTTP server for audio_url: files, a redirect, and a download that waits for a gate."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hosts: list[str] = []
        self.gate = threading.Event()
        self.served = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hosts.append(self.headers.get("Host", ""))
                path, _, query = self.path.partition("?")
                if path in ("/redirect", "/loop"):
                    self.send_response(302)
                    self.send_header("Location", query.removeprefix("to=") if path == "/redirect" else "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/gated.wav":
                    site.gate.wait(60)
                    path = "/long.wav"
                body = site.files.get(path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if not path.startswith("/stream"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # a client that gave up (shutdown tests)
                    return
                if path == "/long.wav":
                    site.served.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def clip(seconds: float) -> bytes:
    """The first ``seconds`` of the speech fixture as a WAV file."""
    import io

    data, rate = sf.read(str(SPEECH), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, data[: int(seconds * rate)], rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


SHORT_S = 1.2


@pytest.fixture(scope="module")
def site() -> Iterator[AudioSite]:
    big = os.urandom(MAX_UPLOAD + 500_000)
    s = AudioSite(
        {
            "short.wav": clip(SHORT_S),
            "long.wav": SPEECH.read_bytes(),
            "notaudio.txt": b"hello, I am not audio\n" * 10,
            "playlist.m3u8": b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
            "big.wav": big,
            "stream-big.wav": big,
        }
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Permissive: may fetch from 127.0.0.1, two render workers."""
    srv = Server(tmp_path_factory.mktemp("srv") / "data",
                 ["--allow-private-urls", "--workers", "2", "--max-upload-bytes", str(MAX_UPLOAD)]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default SSRF policy, and no workers: whatever it accepts is never fetched."""
    srv = Server(tmp_path_factory.mktemp("strict") / "data", ["--workers", "0"]).start()
    yield srv
    srv.stop()


def call(srv: Server, method: str, path: str, token: str | None = "alice", **kw: object) -> httpx.Response:
    headers = {**(auth(token) if token else {}), **kw.pop("headers", {})}  # type: ignore[dict-item]
    with client() as c:
        return c.request(method, srv.url + API + path, headers=headers, **kw)  # type: ignore[arg-type]


def ok(resp: httpx.Response) -> object:
    body = resp.json()
    assert resp.status_code == 200 and body["code"] == 0 and body["message"] == "success", resp.text
    return body["data"]


def err(resp: httpx.Response, status: int, code: int) -> str:
    body = resp.json()
    assert resp.status_code == status and body["code"] == code and body["data"] is None, resp.text
    assert body["message"]
    return body["message"]


def generate(srv: Server, audio_url: str, token: str = "alice", pose: str = "ava-front", **kw: object) -> dict:
    return ok(call(srv, "POST", "/video.generate", token, json={"pose_id": pose, "audio_url": audio_url}, **kw))


def wait_for(srv: Server, video_id: str, statuses: tuple[str, ...] = ("finished", "failed"), timeout: float = 120,
             token: str = "alice") -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = ok(call(srv, "GET", "/video.get", token, params={"video_id": video_id}))
        if v["status"] in statuses:
            return v
        time.sleep(0.1)
    raise AssertionError(f"{video_id} still {v['status']} after {timeout} s:\n{srv.log()}")


def field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


# --- the realtime endpoints ------------------------------------------------------------------------


def test_avatar_and_pose_lists_use_the_schema_field_names(server: Server) -> None:
    avatars = ok(call(server, "GET", "/avatar.list"))
    assert isinstance(avatars, list) and avatars
    for a in avatars:
        assert set(a) == field_names(Avatar)
        assert a["preview_image_url"] is None or a["preview_image_url"].startswith(server.url + API + "/previews/")
    assert [a["avatar_id"] for a in avatars[:3]] == ["ava", "leo", "mika"]  # the built-ins, first
    poses = ok(call(server, "GET", "/avatar-pose.list", params={"avatar_id": avatars[0]["avatar_id"]}))
    assert [p["pose_id"] for p in poses] == avatars[0]["pose_ids"]
    for p in poses:
        assert set(p) == field_names(Pose) and p["fps"] == FPS
        assert p["preview_image_url"], p  # a built-in pose always has one (in its package bundle)
        with client() as c:  # previews are public: no token
            r = c.get(p["preview_image_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert "did you mean 'ava'" in err(call(server, "GET", "/avatar-pose.list", params={"avatar_id": "av"}), 404, 40400)
    assert "avatar_id" in err(call(server, "GET", "/avatar-pose.list"), 400, 40000)


def test_errors_are_envelopes(server: Server) -> None:
    assert "no such endpoint" in err(call(server, "GET", "/nothing.here"), 404, 40400)
    err(call(server, "DELETE", "/video.list"), 405, 40500)
    assert "unknown video" in err(call(server, "GET", "/video.get", params={"video_id": "vid_nope"}), 404, 40400)
    assert "pose_id" in err(call(server, "POST", "/video.generate", json={"audio_url": "http://x/"}), 400, 40000)
    bad_json = call(server, "POST", "/video.generate", content=b"{not json",
                    headers={"Content-Type": "application/json"})
    err(bad_json, 400, 40000)
    unknown = call(server, "POST", "/video.generate", json={"pose_id": "ava-frnt", "audio_url": "http://127.0.0.1/"})
    assert "did you mean 'ava-front'" in err(unknown, 404, 40400)
    for bad in ({"limit": 0}, {"limit": 101}, {"cursor": "!!"}):
        err(call(server, "GET", "/video.list", params=bad), 400, 40000)


def test_openapi_describes_the_envelopes(server: Server) -> None:
    with client() as c:
        doc = c.get(server.url + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["VideoData"]["properties"]) == field_names(Video)
    assert set(schemas["AvatarData"]["properties"]) == field_names(Avatar)
    assert set(schemas["PoseData"]["properties"]) == field_names(Pose)
    assert {"code", "data", "message", "next_cursor"} <= set(schemas["VideoListResponse"]["properties"])
    assert "extension" in schemas["VideoListResponse"]["properties"]["next_cursor"]["description"]
    for path in ("avatar.list", "avatar-pose.list", "video.generate", "video.get", "video.list", "audio.upload"):
        ops = doc["paths"][f"{API}/{path}"]
        for op in ops.values():
            assert "422" not in op["responses"] and "400" in op["responses"]
            assert op["security"] == [{"HTTPBearer": []}]


def test_auth_missing_wrong_and_per_token_isolation(server: Server, site: AudioSite) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YTpi"},
                    {"Authorization": f"Bearer {TOKENS['alice']}x"}):
        r = call(server, "GET", "/avatar.list", token=None, headers=headers)
        err(r, 401, 40100)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert ok(call(server, "GET", "/avatar.list", token=None, headers={"Authorization": f"bearer {TOKENS['bob']}"}))
    v = generate(server, site.url("missing.wav"), token="carol")
    err(call(server, "GET", "/video.get", "bob", params={"video_id": v["video_id"]}), 404, 40400)
    assert v["video_id"] not in [x["video_id"] for x in ok(call(server, "GET", "/video.list", "bob"))]
    failed = wait_for(server, v["video_id"], token="carol")
    assert failed["status"] == "failed" and "HTTP 404" in failed["error"]


# --- a full job ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(server: Server, site: AudioSite) -> dict:
    """One video from audio on a local web server, generated with an Idempotency-Key (sent twice)."""
    key = {"Idempotency-Key": "test-key-1"}
    first = generate(server, site.url("short.wav"), headers=key)
    assert set(first) == field_names(Video)
    assert first["status"] == "pending" and first["video_url"] is None
    again = generate(server, site.url("short.wav"), headers=key)
    assert again["video_id"] == first["video_id"]
    other = call(server, "POST", "/video.generate", json={"pose_id": "leo-side", "audio_url": site.url("short.wav")},
                 headers={**auth(), **key})
    assert "Idempotency-Key" in err(other, 400, 40000)
    v = wait_for(server, first["video_id"])
    assert v["status"] == "finished", v
    return v


def test_generate_finishes_and_downloads_without_token(finished: dict, server: Server, tmp_path: Path) -> None:
    v = finished
    expected = math.ceil(SHORT_S * FPS)
    assert v["frame_count"] == expected and abs(v["duration"] - SHORT_S) < 0.01 and v["error"] is None
    for key in ("video_url", "mask_video_url"):
        assert v[key].startswith(server.url + API + "/files/")
        with client() as c:  # no Authorization header
            r = c.get(v[key])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        path = tmp_path / f"{key}.mp4"
        path.write_bytes(r.content)
        frames = decode_frames(path, "gray" if key == "mask_video_url" else "rgb24")
        assert len(frames) == expected
    listed = ok(call(server, "GET", "/video.list"))
    assert v["video_id"] in [x["video_id"] for x in listed]
    assert all(set(x) == field_names(Video) for x in listed)


def test_range_requests(finished: dict) -> None:
    with client() as c:
        full = c.get(finished["video_url"]).content
        part = c.get(finished["video_url"], headers={"Range": "bytes=100-299"})
        tail = c.get(finished["video_url"], headers={"Range": "bytes=-50"})
    assert part.status_code == 206 and part.content == full[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(full)}"
    assert tail.status_code == 206 and tail.content == full[-50:]


def test_signed_urls_tampered_and_expired(finished: dict, server: Server) -> None:
    from a2v_cli.server.security import UrlSigner, load_signing_key

    url = finished["video_url"]
    base, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    flipped = params["signature"][:-1] + ("0" if params["signature"][-1] != "0" else "1")
    signer = UrlSigner(load_signing_key(server.data_dir))
    past = int(time.time()) - 10
    cases = {
        "bad signature": f"{base}?expires={params['expires']}&signature={flipped}",
        "bad signature ": f"{base}?expires={int(params['expires']) + 1}&signature={params['signature']}",
        "bad signature  ": base.replace("video.mp4", "mask.mp4") + "?" + query,
        "expired": f"{base}?expires={past}&signature={signer.signature(finished['video_id'], 'video.mp4', past)}",
        "bad signature   ": base,
    }
    with client() as c:
        for why, bad in cases.items():
            r = c.get(bad)
            assert r.status_code == 403 and r.json()["code"] == 40300 and why.strip() in r.json()["message"], bad
    # each read signs afresh, and the new link works too
    again = ok(call(server, "GET", "/video.get", params={"video_id": finished["video_id"]}))
    with client() as c:
        assert c.head(again["video_url"]).status_code == 200


# --- uploads, concurrency, idempotency ---------------------------------------------------------------


def test_upload_then_three_concurrent_generates(server: Server) -> None:
    up = ok(call(server, "POST", "/audio.upload", files={"file": ("speech.wav", clip(SHORT_S), "audio/wav")}))
    audio_url = up["audio_url"]
    assert set(up) == {"audio_url"} and audio_url.startswith(server.url + API + "/uploads/")
    with client() as c:
        assert c.get(audio_url, headers=auth()).content == clip(SHORT_S)
        assert c.get(audio_url, headers=auth("bob")).status_code == 404
    err(call(server, "POST", "/video.generate", "bob", json={"pose_id": "ava-front", "audio_url": audio_url}),
        404, 40400)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda p=p: results.append(generate(server, audio_url, pose=p)))
               for p in ("ava-front", "leo-side", "mika-front")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["video_id"] for r in results}) == 3
    done = [wait_for(server, r["video_id"]) for r in results]
    assert [d["status"] for d in done] == ["finished"] * 3, done
    assert {d["pose_id"] for d in done} == {"ava-front", "leo-side", "mika-front"}
    assert all(d["frame_count"] == math.ceil(SHORT_S * FPS) for d in done)


def test_upload_limits(server: Server) -> None:
    too_big = call(server, "POST", "/audio.upload", files={"file": ("big.wav", b"RIFF" + b"\0" * (MAX_UPLOAD + 10))})
    assert "larger than" in err(too_big, 413, 41300)
    # a body over the cap without Content-Length (chunked) is cut off the same way
    chunks = iter([b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n\r\n",
                   *([b"\0" * 65536] * 40), b"\r\n--b--\r\n"])
    r = call(server, "POST", "/audio.upload", content=chunks,
             headers={"Content-Type": "multipart/form-data; boundary=b"})
    err(r, 413, 41300)
    not_audio = call(server, "POST", "/audio.upload", files={"file": ("x.txt", b"hello world, not audio")})
    assert "not an audio file" in err(not_audio, 400, 40000)
    err(call(server, "POST", "/audio.upload", files={"other": ("x", b"1")}), 400, 40000)
    err(call(server, "POST", "/audio.upload", token=None, files={"file": ("x", b"1")}), 401, 40100)


def test_video_list_pages_with_cursor(server: Server, site: AudioSite) -> None:
    ids = [generate(server, site.url("missing.wav"), token="bob")["video_id"] for _ in range(3)]
    page1 = call(server, "GET", "/video.list", "bob", params={"limit": 2}).json()
    assert [v["video_id"] for v in page1["data"]] == ids[::-1][:2] and page1["next_cursor"]
    page2 = call(server, "GET", "/video.list", "bob", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert [v["video_id"] for v in page2["data"]] == ids[:1] and "next_cursor" not in page2
    everything = call(server, "GET", "/video.list", "bob").json()
    assert [v["video_id"] for v in everything["data"]] == ids[::-1] and "next_cursor" not in everything


# --- hostile audio_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://[::ffff:127.0.0.1]/", "is a loopback address"),
        ("http://[::1]:8080/x.wav", "::1 is a loopback address"),
        ("http://0.0.0.0/", "is an unspecified address"),
        ("http://localhost/x.wav", "is a loopback address"),
        ("http://2130706433/", "resolves to 127.0.0.1, which is a loopback address"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("https://user:pw@127.0.0.1/", "credentials"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://x", "only http and https"),
        ("gopher://127.0.0.1:25/", "only http and https"),
        ("not a url", "only http and https"),
    ],
)
def test_ssrf_refused_before_queueing(strict: Server, url: str, reason: str) -> None:
    r = call(strict, "POST", "/video.generate", json={"pose_id": "ava-front", "audio_url": url})
    message = err(r, 400, 40000)
    assert message.startswith("audio_url refused") and reason in message, message
    assert ok(call(strict, "GET", "/video.list")) == []


def test_own_upload_urls_skip_the_address_check(strict: Server) -> None:
    """Its own upload URLs are read from disk, so they work although they point at 127.0.0.1."""
    up = ok(call(strict, "POST", "/audio.upload", "carol", files={"file": ("a.wav", clip(0.5))}))
    v = generate(strict, up["audio_url"], token="carol")
    assert v["status"] == "pending"  # queued (no workers here)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("big.wav", "larger than the limit of 1000000 bytes"),
        ("stream-big.wav", "larger than"),
        ("notaudio.txt", "not an audio file"),
        ("playlist.m3u8", "not an audio file"),
        ("missing.wav", "HTTP 404"),
    ],
)
def test_bad_downloads_fail_the_job_with_a_reason(server: Server, site: AudioSite, name: str, reason: str) -> None:
    v = wait_for(server, generate(server, site.url(name))["video_id"])
    assert v["status"] == "failed" and reason in v["error"], v
    assert v["video_url"] is None


def test_redirects_are_checked_hop_by_hop(site: AudioSite, tmp_path: Path) -> None:
    """The first hop is on an allow-list; its redirect to 127.0.0.1 is not, and is refused."""
    from a2v_cli.server.fetch import FetchFailed, FetchPolicy, FetchRefused, fetch

    def resolver(host: str, port: int) -> list[str]:
        assert host in ("audio.test", "127.0.0.1"), host  # never a real DNS lookup
        return ["127.0.0.1"]

    policy = FetchPolicy(max_bytes=MAX_UPLOAD, allow_private_hosts=frozenset({"audio.test"}), resolver=resolver)
    good = f"http://audio.test:{site.port}/redirect?to=http://audio.test:{site.port}/short.wav"
    site.hosts.clear()
    assert fetch(good, tmp_path / "a", policy).read_bytes() == clip(SHORT_S)
    assert site.hosts == [f"audio.test:{site.port}"] * 2  # dialled the checked address, Host kept
    bad = f"http://audio.test:{site.port}/redirect?to=http://127.0.0.1:{site.port}/short.wav"
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1 is a loopback address"):
        fetch(bad, tmp_path / "b", policy)
    with pytest.raises(FetchFailed, match=r"more than 5 redirects"):
        fetch(f"http://audio.test:{site.port}/loop", tmp_path / "c", policy)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("100.100.100.200", "metadata"),
        ("100.64.0.1", "not a public"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("::1", "loopback"), ("::", "unspecified"),
        ("fe80::1", "link-local"), ("fc00::1", "private"), ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::7f00:1", "loopback"),
        ("2002:a00:1::", "private"), ("fd00:ec2::254", "metadata"),
        ("93.184.215.14", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
    ],
)
def test_address_policy(address: str, reason: str | None) -> None:
    import ipaddress

    from a2v_cli.server.fetch import address_refusal

    got = address_refusal(ipaddress.ip_address(address))
    assert (got is None) if reason is None else (got is not None and reason in got), got


# --- crashes and shutdown --------------------------------------------------------------------------


def test_kill_9_loses_no_job_and_sigterm_is_graceful(tmp_path_factory: pytest.TempPathFactory,
                                                      site: AudioSite) -> None:
    data = tmp_path_factory.mktemp("crash") / "data"
    srv = Server(data, ["--allow-private-urls"]).start()
    try:
        site.gate.clear()
        site.served.clear()
        vid = generate(srv, site.url("gated.wav"))["video_id"]
        assert wait_for(srv, vid, ("processing",))["status"] == "processing"
        site.gate.set()  # let the download through; the render starts right after it
        assert site.served.wait(30)
        time.sleep(0.15)
        assert ok(call(srv, "GET", "/video.get", params={"video_id": vid}))["status"] == "processing"
        renderers = psutil.Process(srv.proc.pid).children(recursive=True)  # the render process and its ffmpegs
        assert renderers
        srv.stop(signal.SIGKILL)
        _, alive = psutil.wait_procs(renderers, timeout=10)
        assert not alive, f"left behind by kill -9: {alive}"
        srv.start()  # same data dir, same port
        assert "requeued 1 unfinished job" in srv.log()
        v = wait_for(srv, vid)
        assert v["status"] == "finished" and v["frame_count"] == math.ceil(sf.info(str(SPEECH)).duration * FPS), v

        # SIGTERM while a job runs: the server stops taking work, the job finishes (or is requeued), it exits
        vid2 = generate(srv, site.url("short.wav"))["video_id"]
        wait_for(srv, vid2, ("processing", "finished"))
        code = srv.stop(signal.SIGTERM)
        assert code in (0, -signal.SIGTERM), srv.log()
        assert "Application shutdown complete" in srv.log()
        from a2v_cli.store import VideoStore

        store = VideoStore(data / "server.db")
        assert store.get(vid2, owner="alice").status in ("finished", "pending")  # type: ignore[union-attr]
        store.close()
        srv.start()
        assert wait_for(srv, vid2)["status"] == "finished"
    finally:
        srv.stop()


def test_shutdown_requeues_a_job_that_outlasts_the_grace_period(site: AudioSite, tmp_path: Path) -> None:
    """The worker pool on its own: a job still running when the grace period ends goes back to pending."""
    from a2v_cli.server.fetch import FetchPolicy
    from a2v_cli.server.jobs import JobRunner, SqliteJobQueue, WorkerPool
    from a2v_cli.server.uploads import UploadStore
    from a2v_cli.store import VideoStore

    store = VideoStore(tmp_path / "server.db")
    queue = SqliteJobQueue(store)
    policy = FetchPolicy(max_bytes=MAX_UPLOAD, allow_private=True)
    pool = WorkerPool(queue, JobRunner(tmp_path, UploadStore(store.path, tmp_path / "uploads"), policy, 60), 1)
    site.gate.clear()  # the download hangs until the gate opens
    try:
        video, _, _ = queue.submit("alice", "ava-front", site.url("gated.wav"))
        pool.start()
        deadline = time.monotonic() + 60
        while store.get(video.video_id, "alice").status != "processing":  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = pool.workers[0].render.proc
        assert child is not None
        t0 = time.monotonic()
        pool.stop(grace_s=0.5)
        assert time.monotonic() - t0 < 10
        assert store.get(video.video_id, "alice").status == "pending"  # type: ignore[union-attr]
        assert child.poll() is not None
    finally:
        site.gate.set()
        store.close()


def test_second_server_on_same_data_dir_is_refused(server: Server) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": "x:y"}
    r = subprocess.run([sys.executable, "-m", "a2v_cli.server", "--port", str(free_port()), "--data-dir",
                        str(server.data_dir)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 5 and "already using the data dir" in r.stderr


def test_generated_token_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "A2V_SERVER_TOKENS"}
    srv = Server(tmp_path / "data", [])
    srv.port = free_port()
    srv.log_path = tmp_path / "gen.log"
    cmd = [sys.executable, "-m", "a2v_cli.server", "--port", str(srv.port), "--data-dir", str(srv.data_dir),
           "--workers", "0"]
    with open(srv.log_path, "wb") as log:
        srv.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env={**env, "PYTHONPATH": str(ROOT), "A2V_HOME": str(tmp_path / "h")})
    try:
        tokens_file = srv.data_dir / "tokens.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Application startup complete" not in srv.log():
            time.sleep(0.1)
        assert tokens_file.stat().st_mode & 0o777 == 0o600
        token = json.loads(tokens_file.read_text())["default"]
        assert f"no tokens configured; created one in {tokens_file}" in srv.log()
        assert token not in srv.log()
        with client() as c:
            r = c.get(f"{srv.url}{API}/video.list", headers={"Authorization": f"Bearer {token}"})
        assert r.json() == {"code": 0, "data": [], "message": "success"}
        assert (srv.data_dir / "url-signing.key").stat().st_mode & 0o777 == 0o600
    finally:
        srv.stop()


# --- fuzzing against the served OpenAPI document -----------------------------------------------------


def test_openapi_fuzz_finds_no_server_errors(strict: Server) -> None:
    """Schemathesis cases for every operation: never a 5xx, and every answer matches the document."""
    schemathesis = pytest.importorskip("schemathesis")

    schema = schemathesis.openapi.from_url(strict.url + "/openapi.json")

    @schema.hook("map_body")
    def keep_audio_url_local(context: object, body: object) -> object:
        # a generated host name would be resolved by the server: keep every case on private literals,
        # which the strict server refuses before any lookup
        if isinstance(body, dict) and isinstance(body.get("audio_url"), str):
            body["audio_url"] = "http://10.0.0.1/" + body["audio_url"][:50]
            if isinstance(body.get("pose_id"), str) and len(body["pose_id"]) % 2:  # half the cases get past the pose
                body["pose_id"] = "ava-front"
        return body

    failures: list[str] = []
    for result in schema.get_all_operations():
        fuzz(result.ok(), strict.url, failures)
    assert not failures, "\n".join(failures)


def fuzz(operation: object, base_url: str, failures: list[str]) -> None:
    """A bounded number of generated requests to one operation; 5xx answers are collected in ``failures``."""
    from hypothesis import HealthCheck, given, settings

    name = f"{operation.method.upper()} {operation.path}"  # type: ignore[attr-defined]

    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: object) -> None:
        resp = case.call(base_url=base_url, headers=auth("carol"), timeout=10)  # type: ignore[attr-defined]
        if resp.status_code >= 500:
            failures.append(f"{name}: {resp.status_code} {resp.text[:200]}")
        content_type = resp.headers.get("content-type") or [""]  # schemathesis keeps every value of a header
        is_json = str(content_type[0] if isinstance(content_type, list) else content_type) == "application/json"
        if is_json and case.method.upper() != "HEAD":  # type: ignore[attr-defined]
            body = resp.json()
            assert isinstance(body, dict) and {"code", "data", "message"} <= set(body), resp.text
            assert (body["code"] == 0) == (resp.status_code < 300), resp.text

    run()

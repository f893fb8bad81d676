"""The distributed deployment end to end: `a2v serve` front ends and `a2v worker` processes over a real
Redis (Celery's broker), a real PostgreSQL and a shared storage directory, all on 127.0.0.1.

Redis and PostgreSQL are throwaway instances started by tests/services.py; each deployment gets its own
database and its own Redis database number, and every front end and worker runs as its own process in
its own working directory with its own A2V_HOME, so they share nothing but the three services.
Renders are short (a second or two of speech) except where a test must catch a job mid-render.
"""

from __future__ import annotations

import math
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from conftest import ROOT, decode_frames, one_error_line, probe, run_cli
from services import (
    Balancer,
    Deployment,
    FrontEnd,
    PostgresServer,
    RedisServer,
    Worker,
    child_env,
    free_port,
    running,
    speech,
    start_all,
    start_postgres,
    start_redis,
)

from a2v_cli.errors import ExitCode
from a2v_cli.server.tenants import tenant_avatars

API = "/v1/a2v"
ASTRONAUT = ROOT / "examples" / "astronaut.png"
TOKENS = {"alice": "alice-dist-token-0123456789", "bob": "bob-dist-token-0123456789"}
FPS = 25
SHORT_S = 1.0  # the audio of most jobs
LONG_S = 30.0  # long enough to catch a job mid-render, also on a machine that renders a drawn pose at 20x
DONE_S = 180  # a short job must be finished within this, redelivery included


# --- HTTP ----------------------------------------------------------------------------------------------


def client() -> httpx.Client:
    return httpx.Client(timeout=30, trust_env=False)


def call(fe: FrontEnd, method: str, path: str, token: str | None = "alice", **kw: object) -> httpx.Response:
    headers = {**({"Authorization": f"Bearer {TOKENS[token]}"} if token else {}), **kw.pop("headers", {})}  # type: ignore[dict-item]
    with client() as c:
        return c.request(method, fe.url + API + path, headers=headers, **kw)  # type: ignore[arg-type]


def ok(resp: httpx.Response) -> dict | list:
    body = resp.json()
    assert resp.status_code == 200 and body["code"] == 0, resp.text
    return body["data"]


def err(resp: httpx.Response, status: int, code: int) -> str:
    body = resp.json()
    assert resp.status_code == status and body["code"] == code and body["data"] is None, resp.text
    return body["message"]


def upload(fe: FrontEnd, audio: bytes, token: str = "alice") -> str:
    return ok(call(fe, "POST", "/audio.upload", token, files={"file": ("speech.wav", audio, "audio/wav")}))["audio_url"]  # type: ignore[index,call-overload]


def generate(fe: FrontEnd, audio_url: str, token: str = "alice", pose: str = "ava-front", **kw: object) -> dict:
    return ok(call(fe, "POST", "/video.generate", token, json={"pose_id": pose, "audio_url": audio_url}, **kw))  # type: ignore[return-value]


def get(fe: FrontEnd, video_id: str, token: str = "alice") -> dict:
    return ok(call(fe, "GET", "/video.get", token, params={"video_id": video_id}))  # type: ignore[return-value]


def wait_for(fe: FrontEnd, video_id: str, statuses: tuple[str, ...] = ("finished", "failed"),
             timeout: float = DONE_S, dep: Deployment | None = None, token: str = "alice") -> dict:
    deadline = time.monotonic() + timeout
    v: dict = {}
    while time.monotonic() < deadline:
        v = get(fe, video_id, token)
        if v["status"] in statuses:
            return v
        time.sleep(0.1)
    raise AssertionError(f"{video_id} still {v.get('status')} after {timeout} s, not {statuses}:\n"
                         f"{dep.logs() if dep else fe.log()}")


def metrics(fe: FrontEnd, token: str = "alice") -> dict[str, float]:
    """The Prometheus text of /metrics as {'name{labels}': value}."""
    r = call(fe, "GET", "/metrics", token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    found = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name.replace(" ", "")] = float(value)
    return found


def assert_one_output_set(dep: Deployment, video: dict) -> None:
    """A finished video has one video and one mask file in the shared storage, and no leftover parts."""
    files = dep.outputs(video["video_id"])
    mp4s = [f for f in files if f.endswith(".mp4")]
    assert len(mp4s) == 2 and not [f for f in files if "part" in Path(f).name or Path(f).name.startswith(".")], files


def assert_decodes(path: Path, seconds: float, mask: Path | None = None) -> None:
    expected = math.ceil(seconds * FPS)
    assert len(decode_frames(path)) == expected
    assert abs(probe(path).duration - seconds) < 0.1
    if mask is not None:
        assert len(decode_frames(mask, "gray")) == expected


@dataclass
class Cluster:
    dep: Deployment
    lb: Balancer
    fe1: FrontEnd
    fe2: FrontEnd
    w1: Worker
    w2: Worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
            postgres_server: PostgresServer) -> Iterator[Cluster]:
    """Two front ends behind a balancer (one --public-url, as in production) and two workers."""
    dep = Deployment(tmp_path_factory.mktemp("cluster"), redis_server.fresh_url(), postgres_server.fresh_database(),
                     TOKENS)
    lb = Balancer()
    try:
        fe1 = dep.front_end("fe1", "--public-url", lb.url)
        fe2 = dep.front_end("fe2", "--public-url", lb.url, from_env=True)
        lb.backends = [fe1.port, fe2.port]
        w1, w2 = dep.worker("w1"), dep.worker("w2")
        start_all(fe1, fe2, w1, w2)
        yield Cluster(dep, lb, fe1, fe2, w1, w2)
    finally:
        dep.close()
        lb.close()
    for p in dep.procs:
        assert TOKENS["alice"] not in p.log(10**7) and TOKENS["bob"] not in p.log(10**7), p.name


@pytest.fixture
def fresh(tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer,
          database: str) -> Iterator[Deployment]:
    """An empty deployment of its own, for a test that kills or stops parts of it."""
    dep = Deployment(tmp_path / "deployment", redis_server.fresh_url(), database, TOKENS)
    try:
        yield dep
    finally:
        dep.close()


# --- settings ------------------------------------------------------------------------------------------


def test_some_but_not_all_settings_is_a_usage_error(tmp_path: Path) -> None:
    """All three settings or none: a partial set names what is missing, in one line, exit 2."""
    storage = str(tmp_path / "storage")
    cases = [
        (["serve", "--broker", "redis://127.0.0.1:1/0"], {}, ("--database", "--storage")),
        (["serve", "--storage", storage], {"A2V_DATABASE": "postgresql://u@127.0.0.1:1/d"}, ("--broker",)),
        (["worker"], {}, ("--broker", "--database", "--storage")),
        (["worker", "--database", "postgresql://u@127.0.0.1:1/d"], {"A2V_BROKER": "redis://127.0.0.1:1/0"},
         ("--storage",)),
    ]
    for args, env, missing in cases:
        r = run_cli(*args, env=env, timeout=120)
        assert r.code == ExitCode.USAGE, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        for name in missing:
            assert name in lines[0] or name.removeprefix("--").upper() in lines[0], (args, lines[0])


# --- the CLI through either front end --------------------------------------------------------------


def remote(fe: FrontEnd, *args: str, token: str = "alice", input: bytes | None = None):  # type: ignore[no-untyped-def]
    return run_cli(*args, env={"A2V_SERVER": fe.url, "A2V_TOKEN": TOKENS[token]}, input=input)


def strip_urls(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "preview_image_url"} for item in items]


def test_cli_end_to_end_through_either_front_end(cluster: Cluster, isolated: Path) -> None:
    dep, lb, fe1, fe2 = cluster.dep, cluster.lb, cluster.fe1, cluster.fe2
    (isolated / "short.wav").write_bytes(speech(SHORT_S))
    r = remote(fe1, "generate", "--pose", "ava-front", "--audio", "short.wav", "-o", "one.mp4", "--json")
    assert r.code == 0, r.stderr + dep.logs()
    one = r.json()
    assert one["status"] == "finished" and one["video_url"].startswith(lb.url + API + "/files/")
    assert_decodes(isolated / "one.mp4", SHORT_S, isolated / "one.mask.mp4")
    assert one["frame_count"] == math.ceil(SHORT_S * FPS) and abs(one["duration"] - SHORT_S) < 0.05
    assert_one_output_set(dep, one)

    # the other front end knows it, lists it and serves its files
    got = remote(fe2, "video", "get", one["video_id"], "--json")
    assert got.code == 0 and got.json()["status"] == "finished", got.stderr
    assert one["video_id"] in [v["video_id"] for v in remote(fe2, "video", "list", "--json").json()]
    (isolated / "dl").mkdir()
    d = remote(fe2, "video", "download", one["video_id"], "-o", "dl", "--json")
    assert d.code == 0, d.stderr
    assert (isolated / "dl" / f"{one['video_id']}.mp4").read_bytes() == (isolated / "one.mp4").read_bytes()
    # a signed link works through every front end, whichever signed it
    link = httpx.URL(got.json()["video_url"])
    with client() as c:
        for fe in (fe1, fe2):
            r2 = c.get(str(link.copy_with(host="127.0.0.1", port=fe.port)))
            assert r2.status_code == 200 and r2.content == (isolated / "one.mp4").read_bytes(), fe.name

    # a render requested through the second front end, audio from stdin, waited for by the CLI
    s = remote(fe2, "generate", "--pose", "leo-side", "--audio", "-", "-o", "two.mp4", "--json",
               input=speech(SHORT_S * 1.5))
    assert s.code == 0 and s.json()["status"] == "finished", s.stderr
    assert_decodes(isolated / "two.mp4", SHORT_S * 1.5, isolated / "two.mask.mp4")

    avatars = remote(fe2, "avatars", "list", "--json")
    assert avatars.code == 0, avatars.stderr
    assert strip_urls(avatars.json()) == strip_urls(run_cli("avatars", "list", "--json", "--local").json())


def test_duplicate_idempotency_key_sent_to_both_front_ends_is_one_job(cluster: Cluster) -> None:
    fe1, fe2 = cluster.fe1, cluster.fe2
    audio_url = upload(fe1, speech(SHORT_S))
    assert audio_url.startswith(cluster.lb.url)
    ids = []
    for n in range(3):  # at the same moment through both front ends, three times
        key = {"Idempotency-Key": f"dist-key-{n}"}
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(partial(generate, audio_url=audio_url, headers=key), (fe1, fe2))
        assert a["video_id"] == b["video_id"], (a, b)
        ids.append(a["video_id"])
        again = generate(fe2 if n % 2 else fe1, audio_url, headers=key)  # and once more, later
        assert again["video_id"] == ids[-1]
    assert len(set(ids)) == 3
    listed = [v["video_id"] for v in ok(call(fe2, "GET", "/video.list"))]  # type: ignore[union-attr]
    assert all(listed.count(i) == 1 for i in ids), listed
    other = call(fe2, "POST", "/video.generate", json={"pose_id": "leo-side", "audio_url": audio_url},
                 headers={"Authorization": f"Bearer {TOKENS['alice']}", "Idempotency-Key": "dist-key-0"})
    assert "Idempotency-Key" in err(other, 400, 40000)
    for i in ids:
        v = wait_for(fe1, i, dep=cluster.dep)
        assert v["status"] == "finished", v
        assert_one_output_set(cluster.dep, v)


def test_tenants_are_isolated_across_front_ends(cluster: Cluster, tmp_path: Path) -> None:
    fe1, fe2, dep = cluster.fe1, cluster.fe2, cluster.dep
    audio_url = upload(fe1, speech(SHORT_S))
    mine = generate(fe1, audio_url)
    with open(ASTRONAUT, "rb") as f:
        made = call(fe1, "POST", "/avatar.create", files={"image": ("astronaut.png", f, "image/png")},
                    data={"avatar_id": "astro", "size": "256"})
    astro = ok(made)
    assert astro["pose_ids"] == ["astro-photo"], astro  # type: ignore[call-overload]
    assert db(dep, "SELECT owner, kind, pose_ids FROM avatars WHERE avatar_id = 'astro'") == [
        ("alice", "photo", ["astro-photo"])]  # a row: what every front end lists and checks
    for fe in (fe1, fe2):
        assert err(call(fe, "GET", "/video.get", "bob", params={"video_id": mine["video_id"]}), 404, 40400)
        assert mine["video_id"] not in [v["video_id"] for v in ok(call(fe, "GET", "/video.list", "bob"))]  # type: ignore[union-attr]
        err(call(fe, "POST", "/video.delete", "bob", json={"video_id": mine["video_id"]}), 404, 40400)
        err(call(fe, "POST", "/video.generate", "bob", json={"pose_id": "ava-front", "audio_url": audio_url}),
            404, 40400)
        assert "astro" not in [a["avatar_id"] for a in ok(call(fe, "GET", "/avatar.list", "bob"))]  # type: ignore[union-attr]
        err(call(fe, "GET", "/avatar-pose.list", "bob", params={"avatar_id": "astro"}), 404, 40400)
        err(call(fe, "POST", "/avatar.delete", "bob", json={"avatar_id": "astro"}), 404, 40400)
        err(call(fe, "POST", "/video.generate", "bob", json={"pose_id": "astro-photo", "audio_url": audio_url}),
            404, 40400)
        # and the owner sees both through either front end
        assert get(fe, mine["video_id"])["video_id"] == mine["video_id"]
        assert "astro" in [a["avatar_id"] for a in ok(call(fe, "GET", "/avatar.list"))]  # type: ignore[union-attr]
    # the owner's avatar renders on a worker (which has none of fe1's files) when asked through fe2
    v = wait_for(fe2, generate(fe2, audio_url, pose="astro-photo")["video_id"], dep=dep)
    assert v["status"] == "finished", v
    with client() as c:
        (tmp_path / "astro.mp4").write_bytes(c.get(v["video_url"]).content)
    frames = decode_frames(tmp_path / "astro.mp4")
    assert frames.shape[:3] == (math.ceil(SHORT_S * FPS), 256, 256)
    assert wait_for(fe2, mine["video_id"], dep=dep)["status"] == "finished"
    deleted = ok(call(fe2, "POST", "/avatar.delete", json={"avatar_id": "astro"}))
    assert deleted["avatar_id"] == "astro"  # type: ignore[call-overload]
    assert "astro" not in [a["avatar_id"] for a in ok(call(fe1, "GET", "/avatar.list"))]  # type: ignore[union-attr]
    assert db(dep, "SELECT 1 FROM avatars WHERE avatar_id = 'astro'") == []
    assert not (tenant_avatars(dep.storage, "alice") / "astro").exists()


def db(dep: Deployment, statement: str) -> list[tuple]:
    with psycopg.connect(dep.database, autocommit=True) as conn:
        return conn.execute(statement).fetchall()  # type: ignore[arg-type]


def test_one_avatar_id_created_through_both_front_ends_at_once_is_one_avatar(cluster: Cluster) -> None:
    fe1, fe2, dep = cluster.fe1, cluster.fe2, cluster.dep
    barrier = threading.Barrier(2)

    def create(fe: FrontEnd) -> httpx.Response:
        with open(ASTRONAUT, "rb") as f:
            body = f.read()
        barrier.wait()
        return call(fe, "POST", "/avatar.create", "bob", files={"image": ("astronaut.png", body, "image/png")},
                    data={"avatar_id": "twin", "name": "Twin", "size": "256"}, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(create, (fe1, fe2)))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    made = ok(next(r for r in answers if r.status_code == 200))
    assert "already exists" in err(next(r for r in answers if r.status_code == 409), 409, 40900)
    assert db(dep, "SELECT owner, avatar_id, name FROM avatars WHERE avatar_id = 'twin'") == [("bob", "twin", "Twin")]
    home = tenant_avatars(dep.storage, "bob").parent
    assert sorted(p.name for p in (home / "avatars").iterdir()) == ["twin"]  # one bundle, no orphan
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no build folder left
    for fe in (fe1, fe2):  # listed by both, its poses read from the shared bundle, never another tenant's
        listed = [a for a in ok(call(fe, "GET", "/avatar.list", "bob")) if a["avatar_id"] == "twin"]  # type: ignore[union-attr]
        assert strip_urls(listed) == strip_urls([made])  # type: ignore[list-item]
        poses = ok(call(fe, "GET", "/avatar-pose.list", "bob", params={"avatar_id": "twin"}))
        assert [(p["pose_id"], p["width"]) for p in poses] == [("twin-photo", 256)]  # type: ignore[index,union-attr]
        assert "twin" not in [a["avatar_id"] for a in ok(call(fe, "GET", "/avatar.list"))]  # type: ignore[union-attr]
        err(call(fe, "GET", "/avatar-pose.list", params={"avatar_id": "twin"}), 404, 40400)
    assert ok(call(fe1, "POST", "/avatar.delete", "bob", json={"avatar_id": "twin"}))["name"] == "Twin"  # type: ignore[call-overload,index]
    err(call(fe2, "GET", "/avatar-pose.list", "bob", params={"avatar_id": "twin"}), 404, 40400)
    err(call(fe2, "POST", "/avatar.delete", "bob", json={"avatar_id": "twin"}), 404, 40400)
    assert db(dep, "SELECT 1 FROM avatars") == [] and not (home / "avatars" / "twin").exists()


def at_once(*requests: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))

    def send(request: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def create_from(fe: FrontEnd, file_name: str, key: str | None = None, **form: str) -> Callable[[], httpx.Response]:
    body = ASTRONAUT.read_bytes()
    headers = {"Idempotency-Key": key} if key else {}
    return lambda: call(fe, "POST", "/avatar.create", "bob", files={"image": (file_name, body, "image/png")},
                        data={"size": "256", **form}, headers=headers, timeout=120)


def test_generated_ids_on_both_front_ends_of_a_shared_directory_never_fail(cluster: Cluster) -> None:
    """Two files named me.jpg, created for one tenant on two front ends at once without an id: one was 40900
    for an id the caller never asked for; now they are `me` and `me-2`, two complete bundles, nothing else."""
    answers = at_once(create_from(cluster.fe1, "me.jpg"), create_from(cluster.fe2, "me.jpg"))
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert sorted(ok(r)["avatar_id"] for r in answers) == ["me", "me-2"]  # type: ignore[call-overload,index]
    home = tenant_avatars(cluster.dep.storage, "bob").parent
    assert sorted(p.name for p in (home / "avatars").iterdir()) == ["me", "me-2"]
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no build folder left
    for avatar_id in ("me", "me-2"):
        poses = ok(call(cluster.fe1, "GET", "/avatar-pose.list", "bob", params={"avatar_id": avatar_id}))
        assert [p["pose_id"] for p in poses] == [f"{avatar_id}-photo"], poses  # type: ignore[index,union-attr]
        ok(call(cluster.fe2, "POST", "/avatar.delete", "bob", json={"avatar_id": avatar_id}))


def test_tokens_added_and_revoked_through_the_cli_hold_on_every_front_end(cluster: Cluster) -> None:
    dep, fes = cluster.dep, (cluster.fe1, cluster.fe2)
    env = {"A2V_DATABASE": dep.database}

    def answers(fe: FrontEnd, token: str) -> int:
        with client() as c:
            return c.get(fe.url + API + "/video.list", headers={"Authorization": f"Bearer {token}"}).status_code

    # both front ends imported A2V_SERVER_TOKENS when they started (together): each token once
    listed = run_cli("serve", "tokens", "list", "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert sorted((r["name"], r["revoked_at"]) for r in listed.json()) == [("alice", None), ("bob", None)]
    added = run_cli("serve", "tokens", "add", "carol", env=env)
    assert added.code == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 40 and added.stdout == token + "\n" and token not in added.stderr
    assert [answers(fe, token) for fe in fes] == [200, 200]  # at once, on both
    rows = str(db(dep, "SELECT * FROM tokens"))
    assert token not in rows and token.encode().hex() not in rows.replace("\\x", "")  # only a hash
    listed = run_cli("serve", "tokens", "list", env=env)
    assert listed.code == 0 and "carol" in listed.stdout and token not in listed.stdout + listed.stderr
    bad = run_cli("serve", "tokens", "add", "two words", env=env)
    assert bad.code == ExitCode.USAGE and bad.stdout == "", bad.stderr
    one_error_line(bad.stderr, "token name 'two words' must be")
    taken = run_cli("serve", "tokens", "add", "carol", env=env)
    assert taken.code == ExitCode.USAGE and "already has a token" in taken.stderr and taken.stdout == ""
    with_json = run_cli("serve", "tokens", "add", "dave", "--json", env=env)
    assert with_json.code == 0 and with_json.json()["name"] == "dave", with_json.stderr
    assert [answers(fe, with_json.json()["token"]) for fe in fes] == [200, 200]

    revoked = run_cli("serve", "tokens", "revoke", "carol", env=env)
    assert revoked.code == 0, revoked.stderr
    start = time.monotonic()
    while [answers(fe, token) for fe in fes] != [401, 401]:
        assert time.monotonic() - start < 3, "a revoked token still works after 3 s"
        time.sleep(0.05)
    print(f"revoked token refused by both front ends {time.monotonic() - start:.2f} s after the command returned")
    assert run_cli("serve", "tokens", "revoke", "carol", env=env).code == ExitCode.NOT_FOUND
    assert [answers(fe, TOKENS["alice"]) for fe in fes] == [200, 200]
    assert run_cli("serve", "tokens", "list", env={"A2V_DATABASE": ""}).code == ExitCode.USAGE


# --- operations: health, readiness, metrics, unclaimed jobs (both deployments) -------------------------


def check_operations(fe: FrontEnd, workers: int) -> None:
    """healthz, readyz and metrics answer as documented, to a token only."""
    for path in ("/healthz", "/readyz", "/metrics"):
        r = call(fe, "GET", path, token=None)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), (path, r.text)
    assert call(fe, "GET", "/healthz").status_code == 200
    ready = call(fe, "GET", "/readyz")
    assert ready.status_code == 200, ready.text
    m = metrics(fe, "bob")
    assert m["a2v_workers"] == workers, m
    assert m["a2v_queue_depth"] >= 0 and m["a2v_jobs_unclaimed"] >= 0, m
    assert m.get('a2v_jobs_total{status="finished"}', 0) >= 1, m


def test_health_readiness_and_metrics_distributed(cluster: Cluster) -> None:
    fe1 = cluster.fe1
    done = wait_for(fe1, generate(fe1, upload(fe1, speech(SHORT_S)))["video_id"], dep=cluster.dep)
    assert done["status"] == "finished"
    for fe in (fe1, cluster.fe2):
        check_operations(fe, workers=2)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[..., FrontEnd]]:
    """`a2v serve` as today (no broker, database or storage), with the options a test gives."""
    started: list[FrontEnd] = []

    def start(*extra: str) -> FrontEnd:
        port = free_port()
        fe = FrontEnd("embedded", tmp_path / "embedded", ["serve", "--port", str(port), "--data-dir",
                                                           str(tmp_path / "embedded" / "data"), *extra],
                      child_env(tmp_path / "embedded" / "home", TOKENS), port=port)
        started.append(fe)
        return fe.launch().wait_ready()  # type: ignore[attr-defined,no-any-return]

    yield start
    for fe in started:
        fe.close()


def test_health_readiness_and_metrics_embedded(embedded: Callable[..., FrontEnd]) -> None:
    fe = embedded("--workers", "1")
    done = wait_for(fe, generate(fe, upload(fe, speech(SHORT_S)))["video_id"])
    assert done["status"] == "finished"
    check_operations(fe, workers=1)


def check_unclaimed(fe: FrontEnd) -> str:
    """A job no worker takes is marked unclaimed once it has waited longer than --claim-timeout (1 s)."""
    before = metrics(fe)
    audio_url = upload(fe, speech(SHORT_S))
    asked = time.monotonic()
    vid = generate(fe, audio_url)["video_id"]
    first = get(fe, vid)
    assert first["status"] == "pending", first
    if time.monotonic() - asked < 0.8:  # not yet waited a second (on a loaded machine the answers may take longer)
        assert first.get("queue_state") != "unclaimed", first
    time.sleep(1.5)
    later = get(fe, vid)
    assert later["status"] == "pending" and later["queue_state"] == "unclaimed", later
    m = metrics(fe)
    assert m["a2v_jobs_unclaimed"] == before["a2v_jobs_unclaimed"] + 1 and m["a2v_queue_depth"] >= 1, m
    assert m["a2v_workers"] == 0, m
    return vid


def test_unclaimed_job_embedded(embedded: Callable[..., FrontEnd]) -> None:
    check_unclaimed(embedded("--workers", "0", "--claim-timeout", "1"))


def test_unclaimed_job_distributed_until_a_worker_comes(fresh: Deployment) -> None:
    fe = fresh.front_end("fe", "--claim-timeout", "1").wait_ready()
    vid = check_unclaimed(fe)
    w = fresh.worker("w").wait_ready()
    assert w.alive()
    v = wait_for(fe, vid, dep=fresh)
    assert v["status"] == "finished" and v.get("queue_state") != "unclaimed", v
    assert metrics(fe)["a2v_jobs_unclaimed"] == 0


# --- nothing lost ----------------------------------------------------------------------------------------


def assert_gone(procs: list[psutil.Process], why: str) -> None:
    """Whatever the dead process ran (a render, its ffmpeg) stops too: nothing writes a second output."""
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, f"left running after {why}: {alive}"


def test_worker_killed_mid_render_leaves_the_job_to_the_other(fresh: Deployment) -> None:
    fe = fresh.front_end("fe")
    w1, w2 = fresh.worker("w1"), fresh.worker("w2")
    start_all(fe, w1, w2)
    audio_url = upload(fe, speech(LONG_S))
    ids = [generate(fe, audio_url, pose=p)["video_id"] for p in ("ava-front", "leo-side")]
    for vid in ids:  # one on each worker (each takes one job at a time)
        assert wait_for(fe, vid, ("processing",), dep=fresh)["status"] == "processing"
    time.sleep(1.0)  # well into the render
    assert_gone(w1.kill9(), "kill -9 of its worker")
    seen: dict[str, set[str]] = {vid: set() for vid in ids}
    deadline = time.monotonic() + DONE_S + 2 * LONG_S
    while time.monotonic() < deadline and not all("finished" in s or "failed" in s for s in seen.values()):
        for vid in ids:
            seen[vid].add(get(fe, vid)["status"])
        time.sleep(0.2)
    for vid in ids:
        v = get(fe, vid)
        assert v["status"] == "finished", (v, seen, fresh.logs())
        assert v["frame_count"] == math.ceil(LONG_S * FPS)
        assert_one_output_set(fresh, v)
    time.sleep(2)  # no late second render rewrites or adds anything
    assert [get(fe, vid)["status"] for vid in ids] == ["finished"] * 2
    for vid in ids:
        assert_one_output_set(fresh, get(fe, vid))
    assert w2.alive()


def test_front_end_killed_after_accepting_loses_no_job(fresh: Deployment) -> None:
    fe1, fe2 = fresh.front_end("fe1"), fresh.front_end("fe2")
    w = fresh.worker("w")
    start_all(fe1, fe2, w)
    audio_url = upload(fe1, speech(SHORT_S))
    accepted = [generate(fe1, audio_url, pose=p)["video_id"] for p in ("ava-front", "leo-side", "mika-front")]
    in_flight = threading.Thread(target=lambda: _try_generate(fe1, audio_url), daemon=True)
    in_flight.start()  # a fourth request, cut off somewhere: it may or may not have become a job
    time.sleep(0.02)
    fe1.kill9()
    in_flight.join(30)
    listed = ok(call(fe2, "GET", "/video.list"))
    assert set(accepted) <= {v["video_id"] for v in listed}, listed  # type: ignore[union-attr]
    for v in listed:  # every job, accepted or half-sent, ends finished: none stuck
        done = wait_for(fe2, v["video_id"], dep=fresh)  # type: ignore[index]
        assert done["status"] == "finished", (done, fresh.logs())
        assert_one_output_set(fresh, done)


def _try_generate(fe: FrontEnd, audio_url: str) -> None:
    try:
        generate(fe, audio_url, pose="leo-front")
    except (httpx.HTTPError, AssertionError, ValueError):
        pass


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of its own, for the test that kills it."""
    with running(start_redis, "Redis") as server:
        yield server


def test_redis_killed_and_restarted_loses_no_queued_job(tmp_path: Path, own_redis: RedisServer,
                                                         database: str) -> None:
    dep = Deployment(tmp_path / "deployment", own_redis.url, database, TOKENS)
    try:
        fe = dep.front_end("fe")
        w = dep.worker("w")
        start_all(fe, w)
        busy = generate(fe, upload(fe, speech(LONG_S)))["video_id"]  # keeps the only worker busy
        assert wait_for(fe, busy, ("processing",), dep=dep)["status"] == "processing"
        audio_url = upload(fe, speech(SHORT_S))
        queued = [generate(fe, audio_url, pose=p)["video_id"] for p in ("ava-front", "leo-side", "mika-front")]
        assert metrics(fe)["a2v_queue_depth"] == 3
        own_redis.kill()  # kill -9
        down = call(fe, "GET", "/readyz")
        assert down.status_code == 503 and down.json()["message"], down.text
        assert "broker" in down.json()["message"].lower() or "redis" in down.json()["message"].lower(), down.text
        own_redis.start()  # the same port, from its append-only file
        deadline = time.monotonic() + 30
        while call(fe, "GET", "/readyz").status_code != 200:
            assert time.monotonic() < deadline, fe.log()
            time.sleep(0.2)
        after = generate(fe, audio_url, pose="leo-front")["video_id"]
        for vid in [busy, *queued, after]:
            v = wait_for(fe, vid, dep=dep, timeout=DONE_S + LONG_S)
            assert v["status"] == "finished", (v, dep.logs(), own_redis.log())
            assert_one_output_set(dep, v)
        assert w.alive()
    finally:
        dep.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of its own, for the test that stops it."""
    with running(start_postgres, "PostgreSQL") as server:
        yield server


def test_readiness_follows_the_database(tmp_path: Path, redis_server: RedisServer,
                                        own_postgres: PostgresServer) -> None:
    dep = Deployment(tmp_path / "deployment", redis_server.fresh_url(), own_postgres.fresh_database(), TOKENS)
    try:
        fe = dep.front_end("fe").wait_ready()
        assert call(fe, "GET", "/readyz").status_code == 200
        own_postgres.stop("immediate")  # the database goes away under a running front end
        down = call(fe, "GET", "/readyz")
        assert down.status_code == 503 and "database" in down.json()["message"].lower(), down.text
        assert call(fe, "GET", "/healthz").status_code == 200  # alive, only not ready
        own_postgres.start()  # the same port and data
        deadline = time.monotonic() + 30
        while call(fe, "GET", "/readyz").status_code != 200:
            assert time.monotonic() < deadline, fe.log()
            time.sleep(0.2)
        dep.worker("w").wait_ready()
        v = wait_for(fe, generate(fe, upload(fe, speech(SHORT_S)))["video_id"], dep=dep)
        assert v["status"] == "finished", v
    finally:
        dep.close()


def test_a_job_whose_worker_dies_every_try_fails_after_max_tries(fresh: Deployment) -> None:
    fe = fresh.front_end("fe")
    w = fresh.worker("w1", "--max-tries", "2")
    start_all(fe, w)
    vid = generate(fe, upload(fe, speech(LONG_S)))["video_id"]
    for n in (2, 3):  # the job kills its worker (as a native crash would) every time it runs
        w.wait_for_log(re.escape(vid), DONE_S)  # this worker has seen it (took it, or queued it again)
        assert wait_for(fe, vid, ("processing",), dep=fresh)["status"] == "processing"
        time.sleep(0.5)
        assert_gone(w.kill9(), "kill -9 of its worker")
        w = fresh.worker(f"w{n}", "--max-tries", "2").wait_ready()
    v = wait_for(fe, vid, ("failed", "finished"), dep=fresh)
    assert v["status"] == "failed" and v["video_url"] is None, (v, fresh.logs())
    assert v["error"] and re.search(r"\b2\b", v["error"]) and re.search(r"tries|attempts|times", v["error"]), v
    assert not [f for f in fresh.outputs(vid) if f.endswith(".mp4")], fresh.outputs(vid)
    time.sleep(1)
    assert get(fe, vid)["status"] == "failed"  # and it stays failed
    ok_vid = generate(fe, upload(fe, speech(SHORT_S)))["video_id"]  # the worker still works
    assert wait_for(fe, ok_vid, dep=fresh)["status"] == "finished"


def test_worker_sigterm_finishes_or_hands_back_and_exits_0(fresh: Deployment) -> None:
    fe = fresh.front_end("fe")
    w1 = fresh.worker("w1")
    start_all(fe, w1)
    vid = generate(fe, upload(fe, speech(LONG_S / 2)))["video_id"]
    assert wait_for(fe, vid, ("processing",), dep=fresh)["status"] == "processing"
    time.sleep(0.5)
    descendants = psutil.Process(w1.proc.pid).children(recursive=True)  # type: ignore[union-attr]
    assert w1.stop(signal.SIGTERM, timeout=120) == 0, w1.log()
    assert_gone(descendants, "the worker's exit")
    assert "Traceback" not in w1.log(10**6), w1.log()
    state = get(fe, vid)["status"]
    assert state in ("finished", "pending"), state  # finished, or handed back: never left processing
    w2 = fresh.worker("w2").wait_ready()
    v = wait_for(fe, vid, dep=fresh)
    assert v["status"] == "finished" and v["frame_count"] == math.ceil(LONG_S / 2 * FPS), v
    assert_one_output_set(fresh, v)
    t0 = time.monotonic()  # an idle worker has nothing to finish: it stops at once
    assert w2.stop(signal.SIGTERM, timeout=60) == 0, w2.log()
    assert time.monotonic() - t0 < 10, f"an idle worker took {time.monotonic() - t0:.1f} s to stop"


# --- the throwaway services themselves -------------------------------------------------------------


def redis_command(server: RedisServer, *args: str, db: int = 0) -> bytes:
    """One Redis command over a raw socket (RESP), its raw answer: the tests need no client library."""
    def resp(*parts: str) -> bytes:
        return f"*{len(parts)}\r\n".encode() + b"".join(f"${len(p.encode())}\r\n{p}\r\n".encode() for p in parts)

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(resp("SELECT", str(db)) + resp(*args))
        answer = b""
        while answer.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[1]


def test_redis_keeps_its_data_through_kill_9(redis_server: RedisServer) -> None:
    db = int(redis_server.fresh_url().rsplit("/", 1)[1])
    assert redis_command(redis_server, "RPUSH", "a2v-fixture-check", "job-1", db=db).startswith(b":")
    pid = redis_server.proc.pid  # type: ignore[union-attr]
    redis_server.restart()
    assert redis_server.proc.pid != pid and redis_server.ping()  # type: ignore[union-attr]
    assert redis_command(redis_server, "LLEN", "a2v-fixture-check", db=db) == b":1\r\n"


def test_postgres_databases_are_fresh_and_loopback_only(postgres_server: PostgresServer, database: str) -> None:
    name = database.rsplit("/", 1)[1]
    assert database == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}"
    assert postgres_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name) == "0"
    assert postgres_server.psql("SHOW listen_addresses") == "127.0.0.1"
    other = postgres_server.fresh_database()
    assert other != database
    postgres_server.drop_database(other)

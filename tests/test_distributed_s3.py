"""The distributed deployment with its files in S3-compatible object storage (``--storage s3://bucket/prefix``).

The bucket is served by moto's S3 server, a real HTTP endpoint in its own process (tests/services.py),
next to the throwaway Redis and PostgreSQL; front ends and workers reach it through the standard AWS
settings in their environment only. One module-scoped deployment (two front ends, two workers) serves
every test here but the ones about a bucket that is missing or goes away; the test that kills a worker
runs last.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import ROOT, decode_frames, run_cli
from services import (
    S3_KEYS,
    Deployment,
    FrontEnd,
    PostgresServer,
    RedisServer,
    S3Server,
    Worker,
    speech,
    start_all,
)
from test_distributed import (
    API,
    FPS,
    LONG_S,
    SHORT_S,
    TOKENS,
    assert_decodes,
    assert_gone,
    at_once,
    call,
    client,
    create_from,
    db,
    err,
    generate,
    get,
    ok,
    remote,
    upload,
    wait_for,
)

from a2v_cli.engine.ingest import rename_new
from a2v_cli.errors import ExitCode
from a2v_cli.server.s3_blobs import PRESIGN_S
from a2v_cli.server.security import UrlSigner
from a2v_cli.server.tenants import tenant_key

ASTRONAUT = ROOT / "examples" / "astronaut.png"


@dataclass
class S3Cluster:
    dep: Deployment
    s3: S3Server
    fe1: FrontEnd
    fe2: FrontEnd
    w1: Worker
    w2: Worker


@pytest.fixture(scope="module")
def s3c(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, postgres_server: PostgresServer,
        s3_server: S3Server) -> Iterator[S3Cluster]:
    dep = Deployment(tmp_path_factory.mktemp("s3cluster"), redis_server.fresh_url(),
                     postgres_server.fresh_database(), TOKENS, s3=s3_server)
    try:
        fe1, fe2 = dep.front_end("fe1"), dep.front_end("fe2", from_env=True)
        w1, w2 = dep.worker("w1"), dep.worker("w2")
        start_all(fe1, fe2, w1, w2)
        yield S3Cluster(dep, s3_server, fe1, fe2, w1, w2)
    finally:
        dep.close()
    for p in dep.procs:  # neither the tokens nor the storage's secret key reach a log
        text = p.log(10**7)
        assert TOKENS["alice"] not in text and S3_KEYS["AWS_SECRET_ACCESS_KEY"] not in text, p.name


def objects(c: S3Cluster, video_id: str) -> list[str]:
    return c.dep.outputs(video_id)


def assert_one_result_set(c: S3Cluster, video_id: str) -> None:
    """The manifest and the files of one try, nothing else: no second set, no leftover try."""
    keys = objects(c, video_id)
    prefix = f"results/videos/{video_id}/"
    assert f"{prefix}result.json" in keys, keys
    files = [k for k in keys if k.endswith(".mp4")]
    assert len(files) == 2 and len({k.rsplit("/", 2)[-2] for k in files}) == 1, keys
    assert len(keys) == 3, keys


def local_files_named(c: S3Cluster, video_id: str) -> list[Path]:
    """Anything of the video's on the deployment's disks: its processes' directories and their temp folders."""
    roots = [c.dep.root, *Path(tempfile.gettempdir()).glob("a2v-s3-*")]
    return [p for root in roots for p in root.rglob("*") if video_id in p.name or video_id in p.parent.name]


def test_a_render_goes_to_the_bucket_and_downloads_through_the_signed_link(s3c: S3Cluster, isolated: Path) -> None:
    (isolated / "short.wav").write_bytes(speech(SHORT_S))
    r = remote(s3c.fe1, "generate", "--pose", "ava-front", "--audio", "short.wav", "-o", "one.mp4", "--json")
    assert r.code == 0, r.stderr + s3c.dep.logs()
    one = r.json()
    vid = one["video_id"]
    assert one["status"] == "finished" and one["video_url"].startswith(s3c.fe1.url + API + "/files/")
    assert_decodes(isolated / "one.mp4", SHORT_S, isolated / "one.mask.mp4")
    assert one["frame_count"] == math.ceil(SHORT_S * FPS)
    # the upload and the result live in the bucket, and nowhere on the hosts' disks
    assert_one_result_set(s3c, vid)
    assert any(k.startswith("results/uploads/upl_") for k in s3c.s3.keys(s3c.dep.bucket)), s3c.s3.keys(s3c.dep.bucket)
    assert not local_files_named(s3c, vid)
    assert not [p for p in s3c.dep.root.rglob("*.mp4")], list(s3c.dep.root.rglob("*.mp4"))

    # the render processes never see the storage's credentials (nor does anything else a worker starts)
    for w in (s3c.w1, s3c.w2):
        children = psutil.Process(w.proc.pid).children(recursive=True)  # type: ignore[union-attr]
        assert children and all("AWS_SECRET_ACCESS_KEY" not in p.environ() for p in children), w.name

    # the CLI's downloader through the other front end: the same bytes
    (isolated / "dl").mkdir()
    d = remote(s3c.fe2, "video", "download", vid, "-o", "dl", "--json")
    assert d.code == 0, d.stderr
    assert (isolated / "dl" / f"{vid}.mp4").read_bytes() == (isolated / "one.mp4").read_bytes()
    assert (isolated / "dl" / f"{vid}.mask.mp4").read_bytes() == (isolated / "one.mask.mp4").read_bytes()

    # a link signed by one front end is checked by the other and redirected to a short-lived object URL
    link = httpx.URL(get(s3c.fe2, vid)["video_url"]).copy_with(port=s3c.fe1.port)
    with client() as c:
        for method in ("GET", "HEAD"):
            r1 = c.request(method, str(link))
            assert r1.status_code == 307 and r1.headers["cache-control"] == "no-store", r1.text
            target = httpx.URL(r1.headers["location"])
            assert target.port == s3c.s3.port and target.params["X-Amz-Expires"] == str(PRESIGN_S), target
            assert "Credential=" + S3_KEYS["AWS_ACCESS_KEY_ID"] in str(target)  # a signature, never the secret
            assert S3_KEYS["AWS_SECRET_ACCESS_KEY"] not in str(target)
            followed = c.request(method, str(target))
            assert followed.status_code == 200
            assert int(followed.headers["content-length"]) == (isolated / "one.mp4").stat().st_size
        assert c.get(str(link), follow_redirects=True).content == (isolated / "one.mp4").read_bytes()
        assert c.get(str(link).replace("/video.mp4", "/result.json")).status_code == 404  # not a result file


def test_a_link_expires(s3c: S3Cluster) -> None:
    """Links are signed with the key the front ends share through the bucket; past its expiry a link is 403
    (40300) whichever front end it reaches, and a fresh one still works."""
    vid = wait_for(s3c.fe1, generate(s3c.fe1, upload(s3c.fe1, speech(SHORT_S)))["video_id"], dep=s3c.dep)["video_id"]
    raw = s3c.s3.client().get_object(Bucket=s3c.dep.bucket, Key="results/secrets/url-signing.key")["Body"].read()
    signer = UrlSigner(bytes.fromhex(raw.decode().strip()))
    with client() as c:
        for fe in (s3c.fe1, s3c.fe2):
            expires, sig = signer.sign(vid, "video.mp4", now=time.time() - signer.lifetime_s - 5)
            old = c.get(f"{fe.url}{API}/files/{vid}/video.mp4?expires={expires}&signature={sig}")
            assert old.status_code == 403 and old.json()["code"] == 40300 and "expired" in old.json()["message"]
            expires, sig = signer.sign(vid, "video.mp4")
            fresh = c.get(f"{fe.url}{API}/files/{vid}/video.mp4?expires={expires}&signature={sig}")
            assert fresh.status_code == 307, fresh.text


def test_delete_removes_the_objects(s3c: S3Cluster) -> None:
    fe1, fe2 = s3c.fe1, s3c.fe2
    audio = speech(SHORT_S)
    audio_url = upload(fe1, audio)
    path = audio_url.split(API, 1)[1]  # the uploader gets its upload back (from the bucket); nobody else does
    assert call(fe1, "GET", path, follow_redirects=True).content == audio
    assert err(call(fe1, "GET", path, "bob"), 404, 40400)
    ids = [generate(fe1, audio_url, pose=p)["video_id"] for p in ("ava-front", "leo-side")]
    for vid in ids:
        assert wait_for(fe1, vid, dep=s3c.dep)["status"] == "finished"
        assert_one_result_set(s3c, vid)
    link = get(fe1, ids[0])["video_url"]
    assert ok(call(fe2, "POST", "/video.delete", json={"video_id": ids[0]}))["deleted"] is True  # type: ignore[index,call-overload]
    assert objects(s3c, ids[0]) == [] and len(objects(s3c, ids[1])) == 3
    with client() as c:
        assert c.get(link).status_code == 404  # a link handed out before is dead with its video
    pruned = ok(call(fe1, "POST", "/video.prune", json={"older_than_seconds": 0}))
    assert ids[1] in pruned["deleted"], pruned  # type: ignore[index,call-overload]
    assert objects(s3c, ids[1]) == []


def test_avatars_are_bundles_in_the_bucket_and_a_recreated_id_is_never_stale(s3c: S3Cluster, tmp_path: Path) -> None:
    """A bundle built on one front end is listed by the other and rendered by a worker from its copy; deleted
    and made again under the same id (another size), the worker renders the new one."""
    fe1, fe2 = s3c.fe1, s3c.fe2
    audio_url = upload(fe2, speech(SHORT_S))  # an upload URL is its front end's (no shared --public-url here)
    for n, (size, create_on, delete_on) in enumerate(((256, fe1, fe2), (320, fe2, fe1))):
        with open(ASTRONAUT, "rb") as f:
            made = ok(call(create_on, "POST", "/avatar.create", files={"image": ("astronaut.png", f, "image/png")},
                           data={"avatar_id": "astro", "size": str(size)}))
        assert made["pose_ids"] == ["astro-photo"], made  # type: ignore[call-overload,index]
        tenant_keys = [k for k in s3c.s3.keys(s3c.dep.bucket, "results/avatars/") if k.endswith("/astro.json")]
        assert len(tenant_keys) == 1, tenant_keys
        for fe in (fe1, fe2):
            mine = {a["avatar_id"]: a for a in ok(call(fe, "GET", "/avatar.list"))}  # type: ignore[union-attr,index]
            with client() as c:  # its preview comes from this front end's copy of the bundle
                preview = c.get(mine["astro"]["preview_image_url"])
            assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG"), preview.text[:200]
            assert "astro" not in [a["avatar_id"] for a in ok(call(fe, "GET", "/avatar.list", "bob"))]  # type: ignore[union-attr,index]
        v = wait_for(fe2, generate(fe2, audio_url, pose="astro-photo")["video_id"], dep=s3c.dep)
        assert v["status"] == "finished", (v, s3c.dep.logs())
        with client() as c:
            (tmp_path / f"astro{n}.mp4").write_bytes(c.get(v["video_url"], follow_redirects=True).content)
        frames = decode_frames(tmp_path / f"astro{n}.mp4")
        assert frames.shape[:3] == (math.ceil(SHORT_S * FPS), size, size), frames.shape
        assert ok(call(delete_on, "POST", "/avatar.delete", json={"avatar_id": "astro"}))["avatar_id"] == "astro"  # type: ignore[call-overload,index]
        assert not s3c.s3.keys(s3c.dep.bucket, "results/avatars/"), s3c.s3.keys(s3c.dep.bucket, "results/avatars/")
        err(call(fe2, "POST", "/video.generate", json={"pose_id": "astro-photo", "audio_url": audio_url}), 404, 40400)


def bob_avatars(c: S3Cluster) -> list[str]:
    return [r[0] for r in db(c.dep, "SELECT avatar_id FROM avatars WHERE owner = 'bob' ORDER BY avatar_id")]


def test_one_idempotency_key_on_both_front_ends_makes_one_avatar(s3c: S3Cluster) -> None:
    """The key was a file on the front end's own disk: with a bucket, a retry on the other front end built a
    second avatar. Now the first request builds, the same key meanwhile (either front end) is 40900 "still
    being created" with Retry-After, any front end answers the first avatar afterwards, and once that
    avatar is deleted the key makes a new one."""
    fe1, fe2 = s3c.fe1, s3c.fe2
    answers = at_once(create_from(fe1, "me.jpg", "key-1"), create_from(fe2, "me.jpg", "key-1"))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    busy = next(r for r in answers if r.status_code == 409)
    assert "still being created" in err(busy, 409, 40900) and busy.headers["Retry-After"] == "5", busy.text
    made = ok(next(r for r in answers if r.status_code == 200))
    assert made["avatar_id"] == "me", made  # type: ignore[call-overload,index]
    for fe in (fe1, fe2):
        again = ok(create_from(fe, "me.jpg", "key-1")())
        assert again["avatar_id"] == "me" and again["pose_ids"] == made["pose_ids"], again  # type: ignore[call-overload,index]
    assert bob_avatars(s3c) == ["me"]
    keys = s3c.s3.keys(s3c.dep.bucket, "results/avatars/")
    assert [k.rsplit("/", 1)[1] for k in keys if k.count("/") == 3] == ["me.json"], keys  # one bundle stored
    assert len({k.split("/")[4] for k in keys if k.count("/") > 3}) == 1, keys  # of one generation
    ok(call(fe2, "POST", "/avatar.delete", "bob", json={"avatar_id": "me"}))
    anew = ok(create_from(fe1, "me.jpg", "key-1")())
    assert anew["avatar_id"] == "me" and bob_avatars(s3c) == ["me"], anew  # type: ignore[call-overload,index]
    ok(call(fe1, "POST", "/avatar.delete", "bob", json={"avatar_id": "me"}))
    assert db(s3c.dep, "SELECT 1 FROM avatar_keys WHERE owner = 'bob'") == []  # the key went with its avatar


def test_generated_ids_on_both_front_ends_at_once_never_fail(s3c: S3Cluster) -> None:
    """Two files both named me.jpg, created for one tenant on two front ends at once without an id: one was
    40900 for an id the caller never asked for. Now both are made, as `me` and `me-2`; an id given
    explicitly on both at once is still one avatar and one 40900."""
    fe1, fe2 = s3c.fe1, s3c.fe2
    answers = at_once(create_from(fe1, "me.jpg"), create_from(fe2, "me.jpg"))
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    made = sorted((a["avatar_id"], a["pose_ids"][0]) for a in map(ok, answers))  # type: ignore[call-overload,index]
    assert made == [("me", "me-photo"), ("me-2", "me-2-photo")], made
    assert bob_avatars(s3c) == ["me", "me-2"]
    for fe in (fe1, fe2):  # each bundle is complete under its id: its poses are readable on either front end
        for avatar_id, pose_id in made:
            poses = ok(call(fe, "GET", "/avatar-pose.list", "bob", params={"avatar_id": avatar_id}))
            assert [p["pose_id"] for p in poses] == [pose_id], poses  # type: ignore[index,union-attr]
    explicit = at_once(create_from(fe1, "a.jpg", avatar_id="mine"), create_from(fe2, "b.jpg", avatar_id="mine"))
    assert sorted(r.status_code for r in explicit) == [200, 409], [r.text for r in explicit]
    for avatar_id in ("me", "me-2", "mine"):
        ok(call(fe1, "POST", "/avatar.delete", "bob", json={"avatar_id": avatar_id}))
    assert bob_avatars(s3c) == [] and not s3c.s3.keys(s3c.dep.bucket, "results/avatars/")


def test_a_worker_killed_mid_render_leaves_one_result_set(s3c: S3Cluster) -> None:
    """kill -9 of a worker while it renders (and perhaps uploads): the other worker renders the job once; the
    bucket holds one result set for it, not the dead try's files."""
    fe = s3c.fe1
    audio_url = upload(fe, speech(LONG_S))
    ids = [generate(fe, audio_url, pose=p)["video_id"] for p in ("ava-front", "leo-side")]
    for vid in ids:  # one on each worker
        assert wait_for(fe, vid, ("processing",), dep=s3c.dep)["status"] == "processing"
    time.sleep(1.0)
    assert_gone(s3c.w1.kill9(), "kill -9 of its worker")
    for vid in ids:
        v = wait_for(fe, vid, dep=s3c.dep, timeout=300)
        assert v["status"] == "finished" and v["frame_count"] == math.ceil(LONG_S * FPS), (v, s3c.dep.logs())
        assert_one_result_set(s3c, vid)
    time.sleep(2)  # nothing late adds a second set
    for vid in ids:
        assert_one_result_set(s3c, vid)
    assert s3c.w2.alive()


# --- a bucket that is missing or goes away ----------------------------------------------------------------


def test_a_missing_or_unreachable_bucket_stops_serve_and_worker_with_one_line(
        tmp_path: Path, redis_server: RedisServer, database: str, s3_server: S3Server) -> None:
    base = ["--broker", redis_server.fresh_url(), "--database", database]
    env = {**s3_server.env(), "A2V_SERVER_TOKENS": "alice:" + TOKENS["alice"], "A2V_HOME": str(tmp_path / "home")}
    cases = [(["serve", "--port", "0", *base, "--storage", "s3://a2v-no-such-bucket/x"], env, "does not exist"),
             (["worker", *base, "--storage", "s3://a2v-no-such-bucket/x", "--device", "cpu"], env, "does not exist"),
             (["serve", "--port", "0", *base, "--storage", "s3://a2v-any/x"],
              {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "does not answer"),
             (["worker", *base, "--storage", "s3://a2v-any/x", "--device", "cpu"],
              {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")},
              "needs credentials")]
    for args, e, why in cases:
        r = run_cli(*args, env=e, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.code == ExitCode.UNAVAILABLE and len(lines) == 1 and why in lines[0], (args, r.code, r.stderr)
        assert "Traceback" not in r.stderr and S3_KEYS["AWS_SECRET_ACCESS_KEY"] not in r.stderr
    # a storage URL with credentials in it is refused before anything is contacted, without echoing them
    r = run_cli("serve", *base, "--storage", "s3://key:hunter2-secret@bucket/x", env=env, timeout=120)
    assert r.code == ExitCode.USAGE and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "hunter2" not in r.stderr and "AWS_ACCESS_KEY_ID" in r.stderr, r.stderr


def test_a_token_from_tokens_add_works_on_an_s3_front_end_and_its_avatar_is_a_row_and_a_bundle(
        tmp_path: Path, redis_server: RedisServer, database: str, s3_server: S3Server) -> None:
    """Tokens in PostgreSQL with files in a bucket: an S3 front end with an empty tokens table and none given
    refuses to start, saying how to add one; a token added with `a2v serve tokens add` then works on it (given
    to nothing but the CLI), and an avatar made through it is a row in PostgreSQL and a bundle in the bucket
    (its manifest naming its files), which a worker renders."""
    dep = Deployment(tmp_path / "deployment", redis_server.fresh_url(), database, {}, s3=s3_server)
    home = tmp_path / "home"
    refused = run_cli("serve", "--port", "0", *dep.settings(), env={**dep.env(home), "A2V_SERVER_TOKENS": ""},
                      timeout=120)
    assert refused.code == ExitCode.USAGE, (refused.code, refused.stderr)
    last = refused.stderr.strip().splitlines()[-1]  # after the start-up log (the schema it just migrated)
    assert last.startswith("error:") and "no tokens" in last and "a2v serve tokens add" in last, refused.stderr
    assert "Traceback" not in refused.stderr

    added = run_cli("serve", "tokens", "add", "carol", env={"A2V_DATABASE": dep.database, "A2V_HOME": str(home)})
    assert added.code == 0, added.stderr
    token = added.stdout.strip()
    try:
        fe, w = dep.front_end("fe"), dep.worker("w")
        start_all(fe, w)
        assert "A2V_SERVER_TOKENS" not in fe.env
        cli = {"A2V_SERVER": fe.url, "A2V_TOKEN": token, "A2V_HOME": str(home)}
        made = run_cli("avatars", "add", "--image", str(ASTRONAUT), "--id", "astro", "--size", "256", "--json",
                       env=cli)
        assert made.code == 0, made.stderr + dep.logs()
        assert made.json()["avatar_id"] == "astro" and made.json()["pose_ids"] == ["astro-photo"], made.stdout

        assert db(dep, "SELECT owner, avatar_id, pose_ids FROM avatars") == [("carol", "astro", ["astro-photo"])]
        prefix = f"results/avatars/{tenant_key('carol')}/"
        keys = s3_server.keys(dep.bucket, prefix)
        manifest = json.loads(s3_server.client().get_object(Bucket=dep.bucket, Key=prefix + "astro.json")["Body"]
                              .read())
        bundle = f"{prefix}astro/{manifest['generation']}/"
        assert "avatar.json" in manifest["files"], manifest
        assert sorted(keys) == sorted([prefix + "astro.json", *(bundle + f for f in manifest["files"])]), keys

        (tmp_path / "short.wav").write_bytes(speech(SHORT_S))
        out = tmp_path / "astro.mp4"
        r = run_cli("generate", "--pose", "astro-photo", "--audio", str(tmp_path / "short.wav"), "-o", str(out),
                    "--json", env=cli)
        assert r.code == 0, r.stderr + dep.logs()
        assert re.search(rf"rendering {r.json()['video_id']}", w.log(10**6)), w.log()
        frames = decode_frames(out)
        assert frames.shape[:3] == (math.ceil(SHORT_S * FPS), 256, 256), frames.shape
        assert frames.std() > 5  # a picture, not a blank frame
        listed = run_cli("avatars", "list", "--json", env=cli)
        assert listed.code == 0 and "astro" in [a["avatar_id"] for a in listed.json()], listed.stdout
    finally:
        dep.close()
    assert all(token not in p.log(10**7) for p in dep.procs)


def test_readyz_follows_the_bucket(tmp_path: Path, redis_server: RedisServer, database: str,
                                   s3_server: S3Server) -> None:
    dep = Deployment(tmp_path / "deployment", redis_server.fresh_url(), database, TOKENS, s3=s3_server)
    try:
        fe = dep.front_end("fe").wait_ready()
        assert call(fe, "GET", "/readyz").status_code == 200
        s3 = s3_server.client()
        keys = s3_server.keys(dep.bucket)
        s3.delete_objects(Bucket=dep.bucket, Delete={"Objects": [{"Key": k} for k in keys]})
        s3.delete_bucket(Bucket=dep.bucket)  # the bucket goes away under a running front end
        t0 = time.monotonic()
        down = call(fe, "GET", "/readyz")
        assert time.monotonic() - t0 < 10
        assert down.status_code == 503 and dep.bucket in down.json()["message"], down.text
        assert "does not exist" in down.json()["message"], down.text
        assert call(fe, "GET", "/healthz").status_code == 200  # alive, only not ready
        s3.create_bucket(Bucket=dep.bucket)
        assert call(fe, "GET", "/readyz").status_code == 200
    finally:
        dep.close()


def test_a_store_that_never_answers_fails_within_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call has a read timeout and a bounded number of tries; readiness looks once, briefly. (A silent
    socket stands in for a hung store: the transport is what is under test.)"""
    from a2v_cli.errors import UnavailableError
    from a2v_cli.server.s3_blobs import (
        CONNECT_S,
        FRONT_END_LIMITS,
        READ_S,
        READY_TIMEOUT_S,
        TRIES,
        S3Blobs,
        make_client,
    )

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])  # connected, and never a byte back
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    for k, v in {**S3_KEYS, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    try:
        blobs = S3Blobs("s3://a2v-hung/x", tmp_path)
        config = blobs.s3.meta.config
        assert (config.connect_timeout, config.read_timeout) == (CONNECT_S, READ_S)
        assert config.retries == {"total_max_attempts": TRIES, "mode": "standard"}
        fe = S3Blobs("s3://a2v-hung/x", tmp_path, front_end=True).s3.meta.config  # answers clients: sooner
        assert (fe.connect_timeout, fe.read_timeout, fe.retries["total_max_attempts"]) == FRONT_END_LIMITS
        assert FRONT_END_LIMITS[2] * sum(FRONT_END_LIMITS[:2]) < 20  # well inside a client's 30 s
        t0 = time.monotonic()
        why = blobs.problem()
        assert why is not None and "does not answer" in why and "a2v-hung" in why, why
        assert time.monotonic() - t0 < READY_TIMEOUT_S + 2 and len(held) == 1
        quick = S3Blobs("s3://a2v-hung/x", tmp_path, client=make_client(read_s=0.5))
        t0 = time.monotonic()
        with pytest.raises(UnavailableError, match=r"failed to delete a video.s files: .*(timeout|timed out)"):
            quick.delete_results("vid_" + "0" * 20)
        assert time.monotonic() - t0 < TRIES * 0.5 + 10 and len(held) == 1 + TRIES, len(held)
    finally:
        server.close()
        for s in held:
            s.close()


def test_object_keys_are_made_of_checked_names_only(tmp_path: Path) -> None:
    from a2v_cli.errors import InputError
    from a2v_cli.server.s3_blobs import S3Blobs, parse_url

    assert parse_url("s3://a2v-prod/results/") == ("a2v-prod", "results/")
    assert parse_url("s3://a2v-prod") == ("a2v-prod", "")
    for bad in ("s3://A2V/x", "s3://a2v-prod/../x", "s3://a2v-prod/x?y", "s3://user:pw@a2v-prod/x", "s3://ab/x"):
        with pytest.raises(InputError):
            parse_url(bad)
    blobs = S3Blobs("s3://a2v-prod/results", tmp_path)
    assert blobs._key("videos", "vid_" + "0" * 20, "result.json") == f"results/videos/vid_{'0' * 20}/result.json"
    for hostile in ("../secrets", "a/../../b", "", "x y", "ünï", "/abs"):
        with pytest.raises(ValueError):
            blobs._key("avatars", hostile)
        with pytest.raises(ValueError):
            blobs.avatars_home(hostile)


def test_a_bundle_in_the_bucket_without_its_row_is_replaced_by_the_next_create(
        s3_server: S3Server, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PgAvatars over a bucket: a front end killed between storing a bundle and committing its row leaves
    objects no row names; nothing lists them, the next create of the id (on another front end) removes them
    before storing its own, a stale local copy is never served, and a delete leaves nothing in the bucket."""
    from photo_bundle import write_photo_bundle

    from a2v_cli.server.avatar_index import read_record
    from a2v_cli.server.pg_avatars import PgAvatars
    from a2v_cli.server.pg_store import PgStore
    from a2v_cli.server.s3_blobs import S3Blobs

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    bucket = s3_server.bucket()
    dead, alive = (S3Blobs(f"s3://{bucket}/r", tmp_path / name) for name in ("dead", "alive"))
    tenant = tenant_key("alice")

    def place(blobs: S3Blobs, n: int) -> tuple[Path, Callable[[], bool]]:
        bundle = write_photo_bundle(tmp_path / f"build{n}")
        (bundle / "marker").write_text(str(n))
        return bundle, lambda: rename_new(bundle, blobs.avatars_home(tenant) / "avatars" / "astro")

    _, placing = place(dead, 0)  # the dead front end: placed and stored, killed before its commit
    placing()
    dead.avatars_changed(tenant, "astro")
    orphan = s3_server.keys(bucket, "r/avatars/")
    assert f"r/avatars/{tenant}/astro.json" in orphan and len(orphan) > 2, orphan

    store = PgStore(database)
    try:
        store.migrate()
        index = PgAvatars(store, alive)
        assert index.list("alice") == []
        bundle, placing = place(alive, 1)
        index.add("alice", read_record(bundle), placing)
        keys = s3_server.keys(bucket, "r/avatars/")
        assert not set(keys) & set(orphan) - {f"r/avatars/{tenant}/astro.json"}, keys  # none of the orphan's files
        assert [r.avatar_id for r in index.list("alice")] == ["astro"]
        for blobs in (dead, alive, S3Blobs(f"s3://{bucket}/r", tmp_path / "third")):  # every copy is the new one
            assert (blobs.avatars_home(tenant) / "avatars" / "astro" / "marker").read_text() == "1"
        assert index.remove("alice", "astro", lambda: shutil.rmtree(alive.avatars_home(tenant) / "avatars" / "astro"))
        assert s3_server.keys(bucket, "r/avatars/") == [] and index.list("alice") == []
    finally:
        store.close()


def test_a_create_lists_the_tenants_bundles_in_the_bucket_once(
        s3_server: S3Server, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """avatar.create brings the tenant's folder up to date with the bucket (one listing) before it builds;
    `PgAvatars.add` listed the bucket a second time only to find the folder's path."""
    from photo_bundle import write_photo_bundle

    from a2v_cli.server.avatar_index import read_record
    from a2v_cli.server.pg_avatars import PgAvatars
    from a2v_cli.server.pg_store import PgStore
    from a2v_cli.server.s3_blobs import S3Blobs

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    bucket = s3_server.bucket()
    blobs = S3Blobs(f"s3://{bucket}/r", tmp_path / "fe")
    tenant = tenant_key("alice")
    listed: list[str] = []
    blobs.s3.meta.events.register("provide-client-params.s3.ListObjectsV2",
                                  lambda params, **_: listed.append(params.get("Prefix", "")))
    store = PgStore(database)
    try:
        store.migrate()
        home = blobs.avatars_home(tenant)  # as avatar.create does before the build
        bundle = write_photo_bundle(tmp_path / "build")
        PgAvatars(store, blobs).add("alice", read_record(bundle),
                                    lambda: rename_new(bundle, home / "avatars" / "astro"))
    finally:
        store.close()
    assert listed.count(f"r/avatars/{tenant}/") == 1, listed
    assert f"r/avatars/{tenant}/astro.json" in s3_server.keys(bucket, "r/avatars/")


def test_tries_that_died_leave_no_second_result_set(s3_server: S3Server, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What a killed try left (its files, or even its manifest) is removed by the job's next holder, and a
    result is never published twice: the bucket ends with one manifest and the files it names."""
    from a2v_cli.server.s3_blobs import S3Blobs

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    bucket = s3_server.bucket()
    blobs = S3Blobs(f"s3://{bucket}/r", tmp_path / "local")
    vid = "vid_" + "1" * 20

    def files(tag: str) -> list[Path]:
        (tmp_path / tag).mkdir()
        for name in ("video.mp4", "mask.mp4"):
            (tmp_path / tag / name).write_bytes(tag.encode() * 100)
        return [tmp_path / tag / "video.mp4", tmp_path / tag / "mask.mp4"]

    with blobs.staged(vid, files("a")) as a:  # try 1 uploads its files and is killed before publishing
        blobs.prepare(vid, a)
        blobs._prepared.clear()  # (a kill -9 cleans nothing up)
    assert len(s3_server.keys(bucket)) == 2
    with blobs.staged(vid, files("b")) as b:  # try 2 publishes, then dies before the database records it
        assert blobs.publish(vid, b)
    assert len(s3_server.keys(bucket)) == 3  # try 1's files went with try 2's publishing
    assert blobs.discard_staging(vid) == 3  # the next holder of the job: nothing there is a result
    with blobs.staged(vid, files("c")) as c:
        blobs.prepare(vid, c)
        assert blobs.publish(vid, c, replace=True)
    with blobs.staged(vid, files("d")) as d:  # a second set offered without the claim is refused, and removed
        assert blobs.publish(vid, d) is False
    keys = s3_server.keys(bucket)
    assert len(keys) == 3 and f"r/videos/{vid}/result.json" in keys, keys
    with httpx.Client(trust_env=False) as h:
        assert h.get(blobs.result_location(vid, "video.mp4")).content == b"c" * 100  # type: ignore[arg-type]
    assert not list((tmp_path / "local").rglob("*.mp4"))  # no staging folder left on local disk
    # the link-signing key: made once, then only read (every front end, every restart: links stay valid)
    first = blobs.signing_key()
    assert S3Blobs(f"s3://{bucket}/r", tmp_path / "other").signing_key() == first == blobs.signing_key()
    assert len(first) == 32 and "r/secrets/url-signing.key" in s3_server.keys(bucket)

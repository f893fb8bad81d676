"""User avatars through `a2v serve`: `avatar.create` / `avatar.delete`, tenant isolation, and the CLI's
`a2v avatars add` / `remove` in remote mode. A real server on 127.0.0.1 with two tokens, the shipped
astronaut portrait, the real face models and a real render."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import FIXTURES, ROOT, SPEECH, decode_frames, ffmpeg, run_cli, wav_duration
from services import processes_named
from test_server import API, TOKENS, Server, call, client, err, ok, wait_for

from a2v_cli.errors import ExitCode
from a2v_cli.schema import Avatar, Pose
from a2v_cli.server.tenants import tenant_home

ASTRONAUT = ROOT / "examples" / "astronaut.png"
CAP = 1_500_000  # --max-upload-bytes: the astronaut (0.8 MB) fits, a 2 MB file does not


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("avsrv") / "data", ["--workers", "1", "--max-upload-bytes", str(CAP)]).start()
    yield s
    s.stop()


def create(s: Server, token: str | None = "alice", path: Path = ASTRONAUT, field: str = "image",
           headers: dict[str, str] | None = None, **form: str) -> httpx.Response:
    with open(path, "rb") as f:
        return call(s, "POST", "/avatar.create", token, files={field: (path.name, f, "image/png")}, data=form,
                    headers=headers or {})


def leftovers(s: Server, who: str) -> list[str]:
    """Everything in the tenant's folder besides its finished bundles and idempotency keys."""
    home = tenant_home(s.data_dir.resolve(), who)
    if not home.exists():
        return []
    found = [p.name for p in home.iterdir() if p.name not in ("avatars", "keys")]
    found += [f"avatars/{p.name}" for p in (home / "avatars").iterdir() if p.name.startswith(".")] if (
        home / "avatars").exists() else []
    return found


@pytest.fixture(scope="module")
def astro(srv: Server) -> dict:
    """alice's avatar `astro`, made from the shipped portrait (sent twice with one Idempotency-Key)."""
    key = {"Idempotency-Key": "astro-1"}
    first = ok(create(srv, avatar_id="astro", name="Astro", headers=key))
    again = ok(create(srv, avatar_id="astro", name="Astro", headers=key))
    assert again["avatar_id"] == first["avatar_id"] == "astro" and again["pose_ids"] == first["pose_ids"]
    return first  # type: ignore[return-value]


def test_create_lists_and_stores_privately(srv: Server, astro: dict) -> None:
    assert set(astro) == {f.name for f in Avatar.__dataclass_fields__.values()}
    assert astro["name"] == "Astro" and astro["pose_ids"] == ["astro-photo"]
    assert astro["preview_image_url"].startswith(f"{srv.url}{API}/avatar-previews/")
    with client() as c:  # a signed link: no token needed, and it is the bundle's PNG
        r = c.get(astro["preview_image_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "private" in r.headers["cache-control"]
    listed = ok(call(srv, "GET", "/avatar.list"))
    assert [a["avatar_id"] for a in listed][-1] == "astro" and {"ava", "leo"} <= {a["avatar_id"] for a in listed}
    poses = ok(call(srv, "GET", "/avatar-pose.list", params={"avatar_id": "astro"}))
    assert [p["pose_id"] for p in poses] == ["astro-photo"]
    assert set(poses[0]) == {f.name for f in Pose.__dataclass_fields__.values()}
    assert (poses[0]["width"], poses[0]["height"], poses[0]["fps"]) == (512, 512, 25)
    bundle = tenant_home(srv.data_dir.resolve(), "alice") / "avatars" / "astro"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    for f in bundle.rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == (0o700 if f.is_dir() else 0o600), f
    assert leftovers(srv, "alice") == []


def test_owner_renders_its_avatar(srv: Server, astro: dict, tmp_path: Path) -> None:
    with open(SPEECH, "rb") as f:
        audio_url = ok(call(srv, "POST", "/audio.upload", files={"file": ("s.wav", f)}))["audio_url"]  # type: ignore[index]
    v = ok(call(srv, "POST", "/video.generate", json={"pose_id": "astro-photo", "audio_url": audio_url}))
    done = wait_for(srv, v["video_id"], timeout=300)  # type: ignore[index]
    assert done["status"] == "finished", (done, srv.log())
    with client() as c:
        (tmp_path / "v.mp4").write_bytes(c.get(done["video_url"]).content)
    frames = decode_frames(tmp_path / "v.mp4")
    assert frames.shape[0] == math.ceil(wav_duration(SPEECH) * 25) == done["frame_count"]
    assert frames.shape[1:3] == (512, 512)
    # the person, not a drawn avatar: above the mouth, frame 0 is the bundle's own crop of the photo
    from PIL import Image

    crop = Image.open(tenant_home(srv.data_dir.resolve(), "alice") / "avatars" / "astro" / "astro-photo" / "image.png")
    source = np.asarray(crop.convert("RGB"), dtype=np.float32)
    assert np.abs(frames[0, 40:200, 100:400].astype(np.float32) - source[40:200, 100:400]).mean() < 12


def test_another_token_never_sees_or_touches_it(srv: Server, astro: dict) -> None:
    assert "astro" not in [a["avatar_id"] for a in ok(call(srv, "GET", "/avatar.list", "bob"))]
    unknown = err(call(srv, "GET", "/avatar-pose.list", "bob", params={"avatar_id": "astro"}), 404, 40400)
    assert "astro" not in unknown.split("unknown avatar", 1)[-1].replace("'astro'", "")  # no suggestion names it
    body = {"pose_id": "astro-photo", "audio_url": "http://127.0.0.1:9/x.wav"}
    theirs = err(call(srv, "POST", "/video.generate", "bob", json=body), 404, 40400)
    nobody = err(call(srv, "POST", "/video.generate", "bob", json={**body, "pose_id": "zzzz-photo"}), 404, 40400)
    assert theirs.replace("astro-photo", "X") == nobody.replace("zzzz-photo", "X")  # exactly as an unknown id
    err(call(srv, "POST", "/avatar.delete", "bob", json={"avatar_id": "astro"}), 404, 40400)
    assert (tenant_home(srv.data_dir.resolve(), "alice") / "avatars" / "astro" / "avatar.json").is_file()
    # the preview: no public URL by id, and a link is good only as signed
    err(call(srv, "GET", "/previews/astro-photo.png", None), 404, 40400)
    url = httpx.URL(astro["preview_image_url"])
    with client() as c:
        assert c.get(str(url.copy_with(query=None)), headers={"Authorization": f"Bearer {TOKENS['bob']}"}
                     ).status_code == 403
        bob_key = tenant_home(Path("/"), "bob").name
        forged = str(url).replace(url.path.split("/")[-2], bob_key)
        assert c.get(forged).status_code == 403


def test_a_repeat_of_an_idempotency_key_while_it_builds_says_retry(srv: Server) -> None:
    """It was 40900 "another avatar.create ... is still running", which a client retrying a dropped request
    cannot tell from a refusal. Now: "still being created" with Retry-After, then the avatar itself."""
    key = {"Idempotency-Key": "carol-1"}
    incoming = tenant_home(srv.data_dir.resolve(), "carol")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(create, srv, "carol", headers=key)
        deadline = time.monotonic() + 60
        while not (incoming.is_dir() and any(p.name.startswith(".incoming.") for p in incoming.iterdir())):
            assert time.monotonic() < deadline and not first.done(), first.result().text if first.done() else ""
            time.sleep(0.01)
        busy = create(srv, "carol", headers=key)
        made = ok(first.result())
    assert "still being created" in err(busy, 409, 40900) and busy.headers["Retry-After"] == "5", busy.text
    assert made["avatar_id"] == "astronaut", made  # from the file name
    again = ok(create(srv, "carol", headers=key))
    assert {**again, "preview_image_url": None} == {**made, "preview_image_url": None}, (again, made)  # type: ignore[dict-item]
    assert ok(call(srv, "POST", "/avatar.delete", "carol", json={"avatar_id": "astronaut"}))
    assert leftovers(srv, "carol") == []


def test_bad_inputs_are_envelopes_and_leave_nothing(srv: Server, astro: dict, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image\n" * 100)
    assert "the uploaded file is not an image" in err(create(srv, path=text, avatar_id="n1"), 400, 40000)
    big = tmp_path / "big.png"
    big.write_bytes(ASTRONAUT.read_bytes() * 3)
    err(create(srv, path=big, avatar_id="n2"), 413, 41300)
    assert "already exists" in err(create(srv, avatar_id="astro"), 409, 40900)
    assert "built-in" in err(create(srv, avatar_id="ava"), 400, 40000)
    err(create(srv, token=None, avatar_id="n3"), 401, 40100)
    err(create(srv, avatar_id="Bad Id"), 400, 40000)
    err(create(srv, avatar_id="n4", size="5e2"), 400, 40000)
    err(create(srv, avatar_id="n5", size="513"), 400, 40000)
    err(call(srv, "POST", "/avatar.create", data={"avatar_id": "n6"}), 400, 40000)  # no file
    err(call(srv, "POST", "/avatar.delete", json={"avatar_id": "ava"}), 400, 40000)
    ids = [a["avatar_id"] for a in ok(call(srv, "GET", "/avatar.list"))]
    assert not {"n1", "n2", "n3", "n4", "n5", "n6"} & set(ids)
    assert leftovers(srv, "alice") == [] and sorted(
        p.name for p in (tenant_home(srv.data_dir.resolve(), "alice") / "avatars").iterdir()) == ["astro"]


def strip_png(width: int, height: int) -> bytes:
    """A real grey PNG of ``width`` x ``height`` black pixels: a few hundred KB however long the strip."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate, row, idat = zlib.compressobj(9), b"\0" * (width + 1), b""
    for start in range(0, height, 1 << 20):
        idat += deflate.compress(row * min(1 << 20, height - start))
    head = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", idat + deflate.flush()) + chunk(b"IEND", b"")


def test_hostile_uploads_are_refused_and_leave_nothing(srv: Server, astro: dict, tmp_path: Path) -> None:
    """Each was answered otherwise: a 190 KB PNG of 1x99000000 took 3.4 GB in the build and answered 500 (internal
    error: MemoryError; 2x60000 took 19 s), an id ending in a newline passed ID_RE's `$` and answered 500 after the
    build, a NUL in the name was stored, and of two `image` parts the last was built without a word."""
    strip = tmp_path / "strip.png"
    strip.write_bytes(strip_png(1, 99_000_000))
    t0 = time.monotonic()
    message = err(create(srv, path=strip, avatar_id="h1"), 400, 40000)
    assert "1x99000000: one side more than 8 times the other" in message and time.monotonic() - t0 < 10, message
    r = run_cli("avatars", "add", "--image", str(strip), "--local")  # the same check in local mode
    assert r.code == ExitCode.USAGE and "strip.png is 1x99000000: one side" in r.stderr and "Traceback" not in r.stderr
    assert "control character" in err(create(srv, avatar_id="h2\n"), 400, 40000)
    assert "NUL" in err(create(srv, avatar_id="h3", name="a\0b"), 400, 40000)
    assert "NUL" in err(create(srv, avatar_id="h4", description="x\0"), 400, 40000)
    parts = [("image", ("junk.png", b"junk" * 100, "image/png")), ("image", ("a.png", ASTRONAUT.read_bytes()))]
    two = call(srv, "POST", "/avatar.create", files=parts, data={"avatar_id": "h5"})
    assert "more than one" in err(two, 400, 40000)
    nameless = call(srv, "POST", "/avatar.create", files={"image": (None, ASTRONAUT.read_bytes())})
    assert "not a file" in err(nameless, 400, 40000)  # was "Expected UploadFile, received: <class 'str'>"
    # a clip cut in half: ffmpeg's "[out#0/rawvideo @ 0x55...]" prefix reached the answer
    clip, cut = tmp_path / "clip.mp4", tmp_path / "cut.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-loop", "1", "-i", str(ASTRONAUT), "-t", "2", "-r", "25", "-vf",
                    "scale=256:256", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(clip)],
                   check=True)
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    message = err(create(srv, path=cut, field="video", avatar_id="h6"), 400, 40000)
    assert "damaged or truncated" in message and "@ 0x" not in message, message
    ids = [a["avatar_id"] for a in ok(call(srv, "GET", "/avatar.list"))]
    assert not {"h1", "h2", "h2\n", "h3", "h4", "h5", "h6"} & set(ids), ids
    assert leftovers(srv, "alice") == [] and sorted(
        p.name for p in (tenant_home(srv.data_dir.resolve(), "alice") / "avatars").iterdir()) == ["astro"]


def test_openapi_documents_the_extensions(srv: Server) -> None:
    with client() as c:
        doc = c.get(srv.url + "/openapi.json").json()
    create_op = doc["paths"][f"{API}/avatar.create"]["post"]
    assert {"400", "401", "409", "413"} <= set(create_op["responses"]) and "422" not in create_op["responses"]
    assert create_op["security"] == [{"HTTPBearer": []}]
    assert "404" in doc["paths"][f"{API}/avatar.delete"]["post"]["responses"]


# --- the CLI in remote mode -------------------------------------------------------------------------


def remote(s: Server, *args: str, token: str = "bob") -> object:
    return run_cli(*args, env={"A2V_SERVER": s.url, "A2V_TOKEN": TOKENS[token]})


def test_cli_add_and_remove_remote_match_local(srv: Server, tmp_path: Path) -> None:
    photo = tmp_path / "Me Photo.png"
    photo.write_bytes(ASTRONAUT.read_bytes())
    here = run_cli("avatars", "add", "--image", str(photo), "--local", "--json")
    there = remote(srv, "avatars", "add", "--image", str(photo), "--json")
    assert here.code == there.code == 0, (here.stderr, there.stderr)  # type: ignore[attr-defined]
    a, b = here.json(), there.json()  # type: ignore[attr-defined]
    assert set(a) == set(b) and a["avatar_id"] == b["avatar_id"] == "me-photo"
    assert {k: v for k, v in a.items() if k != "preview_image_url"} == {
        k: v for k, v in b.items() if k != "preview_image_url"}
    assert a["description"] == "From Me Photo.png"
    assert a["preview_image_url"].startswith("file://") and b["preview_image_url"].startswith(srv.url)
    assert "me-photo" in [x["avatar_id"] for x in ok(call(srv, "GET", "/avatar.list", "bob"))]
    assert "me-photo" not in [x["avatar_id"] for x in ok(call(srv, "GET", "/avatar.list", "alice"))]
    # the same bad input, the same exit code and line, in both modes
    for args, code in ((("--image", str(photo), "--id", "me-photo"), ExitCode.USAGE),
                       (("--image", str(tmp_path / "missing.png")), ExitCode.USAGE),
                       (("--image", str(photo), "--id", "Bad Id"), ExitCode.USAGE),
                       (("--image", str(photo), "--id", "ava"), ExitCode.USAGE)):
        lo = run_cli("avatars", "add", *args, "--local")
        re_ = remote(srv, "avatars", "add", *args)
        assert lo.code == re_.code == code, (args, lo.stderr, re_.stderr)  # type: ignore[attr-defined]
        errors = [line for line in re_.stderr.splitlines() if line.startswith("error:")]  # type: ignore[attr-defined]
        assert len(errors) == 1 and "Traceback" not in re_.stderr, re_.stderr  # type: ignore[attr-defined]
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    r = remote(srv, "avatars", "add", "--image", str(text))
    assert r.code == ExitCode.USAGE and "notes.png is not an image" in r.stderr, r.stderr  # type: ignore[attr-defined]
    r = remote(srv, "avatars", "add", "--image", str(photo), "--device", "cpu")
    assert r.code == ExitCode.USAGE and "--device" in r.stderr  # type: ignore[attr-defined]
    heic = remote(srv, "avatars", "add", "--image", str(FIXTURES / "astronaut-p3.heic"), "--id", "phone", "--json")
    assert heic.code == 0 and heic.json()["pose_ids"] == ["phone-photo"], heic.stderr  # type: ignore[attr-defined]
    assert remote(srv, "avatars", "remove", "phone").code == 0  # an iPhone's HEIC, through the server too
    gone_here = run_cli("avatars", "remove", "me-photo", "--local", "--json")
    gone_there = remote(srv, "avatars", "remove", "me-photo", "--json")
    assert gone_here.code == gone_there.code == 0 and gone_here.json() == gone_there.json()  # type: ignore[attr-defined]
    for who in ("avatars", "remove", "me-photo"), ("avatars", "remove", "ava"):
        lo, re_ = run_cli(*who, "--local"), remote(srv, *who)
        assert lo.code == re_.code != 0, (lo.stderr, re_.stderr)  # type: ignore[attr-defined]
    assert leftovers(srv, "bob") == []


def test_a_build_past_its_deadline_is_killed_and_leaves_nothing(tmp_path: Path) -> None:
    """An 8 s clip takes several seconds to track and matte (about 1.1 s of CPU per clip-second since the two-thread
    ingest: a 3 s one could finish within 2 s on an idle machine): a 2 s deadline kills its build midway."""
    clip = tmp_path / "me.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-loop", "1", "-i", str(ASTRONAUT), "-t", "8", "-r", "25", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    s = Server(tmp_path / "data", ["--workers", "0", "--avatar-timeout", "2"]).start()
    try:
        t0 = time.monotonic()
        message = err(create(s, path=clip, field="video", avatar_id="slow"), 400, 40000)
        assert "longer than the server's limit of 2 s" in message and time.monotonic() - t0 < 10
        assert leftovers(s, "alice") == []
        assert not (tenant_home(s.data_dir.resolve(), "alice") / "avatars" / "slow").exists()
        assert "slow" not in [a["avatar_id"] for a in ok(call(s, "GET", "/avatar.list"))]
        assert not processes_named(s.proc.pid, "avatar_ingest")  # type: ignore[union-attr]
    finally:
        s.stop()


def test_a_wide_open_mouth_is_warned_about_in_both_modes(srv: Server, tmp_path: Path) -> None:
    """The warning `avatars add` gives for a photo whose mouth will not close reaches a remote user too, the same
    line naming the user's own file."""
    from PIL import Image

    from a2v_cli.engine.photo_pose import PhotoPose, PhotoSource

    assert run_cli("avatars", "add", "--image", str(ASTRONAUT), "--id", "rest", "--local").code == 0
    pose = Path(os.environ["A2V_HOME"]) / "avatars" / "rest" / "rest-photo"
    image, matte = (np.asarray(Image.open(pose / name)) for name in ("image.png", "matte.png"))
    src = PhotoSource(PhotoPose("rest-photo", image, matte, np.load(pose / "landmarks.npy")[0]), 25, still=True,
                      device="cpu")  # fmt: skip
    laugh = tmp_path / "laugh.png"
    Image.fromarray(src.compose(range(1), np.array([[1.0, 0.3, 0, 0]], np.float32))[0][0]).save(laugh)
    here = run_cli("avatars", "add", "--image", str(laugh), "--local")
    there = remote(srv, "avatars", "add", "--image", str(laugh))
    assert here.code == there.code == 0, (here.stderr, there.stderr)  # type: ignore[attr-defined]
    warned = [[line for line in r.stderr.splitlines() if "open wide" in line] for r in (here, there)]  # type: ignore[attr-defined]
    assert warned[0] == warned[1] and len(warned[0]) == 1 and "laugh.png" in warned[0][0], warned

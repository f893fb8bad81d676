"""`a2v worker` on its own failure paths, against real Redis, PostgreSQL and render processes.

What tests/test_distributed.py does not cover: a render process that dies under a live worker (the job
is tried again, the try counted, and finishes once), bad input that fails at once (no retry), the front
end's limits applied by a worker that was given none, and the worker's JSON log carrying job ids.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import file_server
from services import Deployment, FrontEnd, PostgresServer, RedisServer, processes_named, speech, start_all

API = "/v1/a2v"
TOKENS = {"alice": "alice-worker-token-0123456789"}
FPS = 25


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer,
        database: str) -> Iterator[Deployment]:
    d = Deployment(tmp_path / "deployment", redis_server.fresh_url(), database, TOKENS)
    try:
        yield d
    finally:
        d.close()


def call(fe: FrontEnd, method: str, path: str, **kw: object) -> dict:
    with httpx.Client(timeout=30, trust_env=False) as c:
        r = c.request(method, fe.url + API + path, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, **kw)  # type: ignore[arg-type]
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0, r.text
    return body["data"]


def generate(fe: FrontEnd, audio_url: str) -> str:
    return call(fe, "POST", "/video.generate", json={"pose_id": "ava-front", "audio_url": audio_url})["video_id"]


def wait_for(fe: FrontEnd, vid: str, statuses: tuple[str, ...], dep: Deployment, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = call(fe, "GET", "/video.get", params={"video_id": vid})
        if v["status"] in statuses:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{vid} not {statuses} after {timeout} s:\n{dep.logs()}")


def attempts(database: str, vid: str) -> int:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT attempts FROM videos WHERE video_id = %s", (vid,)).fetchone()[0]  # type: ignore[index]


def test_a_render_process_that_dies_is_tried_again_and_finishes_once(dep: Deployment, database: str) -> None:
    fe, w = dep.front_end("fe"), dep.worker("w", "--log-format", "json")
    start_all(fe, w)
    # long enough that the render is still going when it is killed on a fast machine (20x realtime: 3 s)
    seconds = 60.0
    audio_url = call(fe, "POST", "/audio.upload", files={"file": ("s.wav", speech(seconds), "audio/wav")})["audio_url"]
    vid = generate(fe, audio_url)
    wait_for(fe, vid, ("processing",), dep)
    children = processes_named(w.proc.pid, "render_worker")  # type: ignore[union-attr]
    assert len(children) == 1, children
    time.sleep(0.2)
    children[0].kill()  # a crash in native code, say
    v = wait_for(fe, vid, ("finished", "failed"), dep)
    assert v["status"] == "finished", (v, dep.logs())
    assert v["frame_count"] == math.ceil(seconds * FPS)
    assert attempts(database, vid) == 2  # the crashed try counted
    files = dep.outputs(vid)
    assert sorted(Path(f).name for f in files) == ["mask.mp4", "video.mp4"], files
    assert w.alive()
    records = [json.loads(line) for line in w.log(10**6).splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("job_id") == vid]
    assert any("try 1 failed" in r["message"] and "render process died" in r["message"] for r in mine), records
    assert any(r["message"].startswith("finished ") for r in mine), records


def test_bad_input_fails_at_once_under_the_front_ends_limits(dep: Deployment, database: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "not-audio.wav").write_bytes(b"<html>" + b"x" * 4000)
    (site / "speech.wav").write_bytes(speech(1.0))
    # the front end's limits travel with the job: the worker has no such options
    fe = dep.front_end("fe", "--allow-private-urls")
    w = dep.worker("w")
    start_all(fe, w)
    with file_server(site) as base:
        bad = generate(fe, f"{base}/not-audio.wav")
        good = generate(fe, f"{base}/speech.wav")
        v = wait_for(fe, bad, ("finished", "failed"), dep)
        assert v["status"] == "failed" and "audio" in v["error"], v
        assert attempts(database, bad) == 1  # bad input is not retried
        assert wait_for(fe, good, ("finished", "failed"), dep)["status"] == "finished"
    assert not [f for f in dep.outputs(bad) if f.endswith(".mp4")]


def test_scratch_of_workers_that_died_on_this_host_is_removed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    from a2v_cli.server.worker import scratch_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that has exited
    dead = tmp_path / f"a2v-worker-{gone}-x1"
    live = tmp_path / f"a2v-worker-{os.getppid()}-x2"
    for d in (dead, live):
        (d / "job").mkdir(parents=True)
    mine = scratch_dir()
    assert mine.parent == tmp_path and mine.name.startswith(f"a2v-worker-{os.getpid()}-")
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_json_log_worker_stops_with_only_json_lines(dep: Deployment, sig: str) -> None:
    """Celery's own shutdown banners ("worker: Warm shutdown (MainProcess)", "Hitting Ctrl+C again...") went to
    stdout as plain text: a log shipper reading `--log-format json` choked on them."""
    import signal

    w = dep.worker("w", "--log-format", "json").wait_ready()
    assert w.stop(getattr(signal, sig)) == (0 if sig == "SIGTERM" else 1)
    lines = [line for line in w.log(10**6).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON record
    messages = [r["message"] for r in records]
    assert any(m.startswith("a2v worker ready (queue=") for m in messages), messages
    assert any("shutdown" in m.lower() for m in messages), messages
    assert messages[-1] == "a2v worker stopped", messages

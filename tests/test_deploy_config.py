"""`a2v serve` / `a2v worker` settings for the two deployments, through the real CLI.

The embedded default must stay as it is (no Celery, no psycopg imported); a distributed setting that
cannot work is one line and a documented exit code, with no secret in it; `--log-format json` makes
every log line a JSON object carrying the job id. (Partial settings: tests/test_distributed.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import ROOT, SPEECH, run_cli

from a2v_cli.errors import ExitCode

DISTRIBUTED_MODULES = ("celery", "kombu", "psycopg", "psycopg_pool", "redis", "boto3", "botocore")


def test_the_embedded_server_imports_nothing_of_the_distributed_deployment(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from a2v_cli.server import ServerSettings, create_app\n"
        f"app = create_app(ServerSettings(data_dir={str(tmp_path / 'data')!r}, workers=0))\n"
        "assert app.state.a2v.deployment.kind == 'embedded'\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DISTRIBUTED_MODULES!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": "a:b"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_settings_that_cannot_work_are_one_line_with_an_exit_code(tmp_path: Path) -> None:
    full = ["--broker", "redis://127.0.0.1:1/0", "--storage", str(tmp_path / "storage")]
    down = "postgresql://a2v:s3cret-pw@127.0.0.1:1/a2v"
    cases = [
        (["serve", *full, "--database", down], ExitCode.UNAVAILABLE, "cannot connect to the database"),
        (["worker", *full, "--database", down], ExitCode.UNAVAILABLE, "cannot connect to the database"),
        (["serve", "--broker", "redis://127.0.0.1:1/0", "--database", down, "--storage", "gs://bucket/prefix"],
         ExitCode.USAGE, "is not supported"),
        (["worker", *full[:2], "--database", down, "--storage", "s3://Not_A_Bucket/x"], ExitCode.USAGE,
         "not an S3 bucket name"),
        (["worker", *full, "--database", down, "--max-tries", "0"], ExitCode.USAGE, "--max-tries"),
        (["serve", "--log-format", "xml"], ExitCode.USAGE, "--log-format"),
        (["serve", "--queue", "no spaces"], ExitCode.USAGE, "queue name"),
    ]
    for args, code, says in cases:
        r = run_cli(*args, env={"A2V_HOME": str(tmp_path / "home")}, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.code == code and len(lines) == 1 and says in lines[0], (args, r.code, r.stderr)
        assert "s3cret-pw" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_settings_come_from_the_environment_too(tmp_path: Path) -> None:
    r = run_cli("worker", env={"A2V_BROKER": "redis://127.0.0.1:1/0", "A2V_STORAGE": str(tmp_path),
                               "A2V_DATABASE": "postgresql://a2v:s3cret-pw@127.0.0.1:1/a2v"}, timeout=120)
    assert r.code == ExitCode.UNAVAILABLE and "127.0.0.1:1" in r.stderr and "s3cret-pw" not in r.stderr, r.stderr
    help_text = run_cli("worker", "--help").stdout
    for option in ("--broker", "--database", "--storage", "--concurrency", "--device", "--queue", "--max-tries",
                   "A2V_BROKER", "A2V_DATABASE", "A2V_STORAGE"):
        assert option in help_text, option


def test_json_logs_carry_the_job_id(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": "alice:tok-json-0123",
           "A2V_HOME": str(tmp_path / "home")}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "a2v_cli", "serve", "--port", str(port), "--data-dir",
                                 str(tmp_path / "data"), "--workers", "0", "--log-format", "json"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1/a2v"
        auth = {"Authorization": "Bearer tok-json-0123"}
        with httpx.Client(timeout=10, trust_env=False) as c:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                try:
                    if c.get(f"{base}/healthz", headers=auth).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            up = c.post(f"{base}/audio.upload", headers=auth, files={"file": ("s.wav", SPEECH.read_bytes())})
            video = c.post(f"{base}/video.generate", headers=auth,
                           json={"pose_id": "ava-front", "audio_url": up.json()["data"]["audio_url"]}).json()["data"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, 130, 143)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: a JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records), records
    queued = [r for r in records if r["message"].startswith("queued ")]
    assert len(queued) == 1 and queued[0]["job_id"] == video["video_id"], records
    assert any("/video.generate" in r["message"] for r in records), records  # the access log too
    assert "tok-json-0123" not in log_path.read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_and_worker_refuse_a_cuda_device_they_cannot_use_before_taking_jobs(tmp_path: Path) -> None:
    """Before: both printed their ready line and took jobs that each failed with "CUDA could not be initialised"."""
    import pytest

    from a2v_cli.engine.lipsync import check_device
    from a2v_cli.errors import UnavailableError

    try:
        check_device("cuda")
    except UnavailableError:
        pass
    else:
        pytest.skip("this machine has a usable CUDA GPU")
    env = {"A2V_SERVER_TOKENS": "a:b", "A2V_HOME": str(tmp_path / "home")}
    serve = run_cli("serve", "--device", "cuda", "--port", "0", "--data-dir", str(tmp_path / "data"), env=env,
                    timeout=60)
    worker = run_cli("worker", "--device", "cuda", "--broker", "redis://127.0.0.1:1/0", "--database",
                     "postgresql://a2v@127.0.0.1:1/a2v", "--storage", str(tmp_path / "shared"), env=env, timeout=60)
    for r in (serve, worker):
        assert r.code == ExitCode.UNAVAILABLE, r
        assert r.stderr.strip().splitlines() == ["error: CUDA could not be initialised (no GPU or driver found); "
                                              "use --device cpu"], r.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())

"""The distributed deployment on a shared directory against the same on S3-compatible object storage.

    python -m benchmarks.bench_storage [--jobs 20] [--seconds 0.4] [--requests 100]

Starts throwaway Redis, PostgreSQL and moto's S3 server from tests/services.py, then for each storage
(``--storage DIR``, then ``--storage s3://bucket/results``) one front end and one worker on 127.0.0.1:

- throughput: ``--jobs`` short jobs (``--seconds`` of speech, one upload), first accept -> last finish;
- per request, ``--requests`` times: video.generate (a repeated Idempotency-Key: the route's own work, an
  upload's lookup included), video.get, the signed result link's answer (200 with the file, or 307 to a
  presigned URL), and the whole download of the video through the link (redirect followed).

moto is a Python server on the same machine: its latencies are an upper bound of the bucket's share,
not a real store's. Prints a table and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
bench = runpy.run_path(str(ROOT / "benchmarks" / "bench_distributed.py"))  # its services loader and percentiles
svc, pct = bench["svc"], bench["pct"]
TOKENS = {"bench": "bench-storage-token-0123456789"}
HEADERS = {"Authorization": f"Bearer {TOKENS['bench']}"}
API = "/v1/a2v"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(dep, jobs: int, seconds: float, requests: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    fe, w = dep.front_end("fe"), dep.worker("w")
    svc.start_all(fe, w)
    c = httpx.Client(trust_env=False, timeout=60, headers=HEADERS)
    files = {"file": ("speech.wav", svc.speech(seconds), "audio/wav")}
    audio_url = c.post(fe.url + API + "/audio.upload", files=files).json()["data"]["audio_url"]
    body = {"pose_id": "ava-front", "audio_url": audio_url}
    t0 = time.monotonic()
    ids = [c.post(fe.url + API + "/video.generate", json=body).json()["data"]["video_id"] for _ in range(jobs)]
    for vid in ids:
        while (v := c.get(fe.url + API + "/video.get", params={"video_id": vid}).json()["data"])["status"] not in (
                "finished", "failed"):
            time.sleep(0.02)
        assert v["status"] == "finished", v
    took = time.monotonic() - t0
    link = v["video_url"]
    out: dict[str, object] = {"jobs/s": jobs / took, "link answer": c.get(link).status_code}
    key = {"Idempotency-Key": "bench-storage"}
    calls = {
        "video.generate": lambda: c.post(fe.url + API + "/video.generate", json=body, headers=key),
        "video.get": lambda: c.get(fe.url + API + "/video.get", params={"video_id": ids[0]}),
        "signed link": lambda: c.get(link),
        "download": lambda: c.get(link, follow_redirects=True).content,
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(requests):
        for name, call in calls.items():
            samples[name].append(timed(call))
    for name, xs in samples.items():
        out[name] = f"p50 {pct(xs, 50) * 1000:.1f} ms, p99 {pct(xs, 99) * 1000:.1f} ms"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    redis, redis_dir = svc.start_redis()
    pg, pg_dir = svc.start_postgres()
    s3, s3_dir = svc.start_s3()
    results = {}
    try:
        for name, store in (("directory", None), ("s3 (moto)", s3)):
            dep = svc.Deployment(Path(tempfile.mkdtemp(prefix="a2v-bench-storage-")), redis.fresh_url(),
                                 pg.fresh_database(), TOKENS, s3=store)
            try:
                results[name] = run(dep, args.jobs, args.seconds, args.requests)
            finally:
                dep.close()
    finally:
        for server, directory in ((s3, s3_dir), (redis, redis_dir), (pg, pg_dir)):
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)
    rows = list(next(iter(results.values())))
    print(f"{'':16}" + "".join(f"{name:>34}" for name in results))
    for row in rows:
        cells = "".join(f"{r[row]:>34.2f}" if isinstance(r[row], float) else f"{r[row]!s:>34}"
                        for r in results.values())
        print(f"{row:16}{cells}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

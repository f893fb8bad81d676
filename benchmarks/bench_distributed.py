"""The distributed deployment's throughput, queue latency and crash safety, against the embedded server.

    python -m benchmarks.bench_distributed [--jobs 200] [--seconds 0.4] [--latency-jobs 100] [--json FILE]
                                           [--phases one,two,...,realtime,realtime-split] [--keep]

Starts a throwaway Redis (append-only) and PostgreSQL (fsync on) from tests/services.py, one `a2v serve`
front end and `a2v worker` processes on 127.0.0.1, a fresh database, Redis database and storage directory
per phase, and queues ``--jobs`` short jobs (``--seconds`` of speech each, one upload) as fast as one
client can:

- one / two: throughput (jobs/s, first accept -> last finish, from the server's own timestamps) with one
  worker pinned to CPU 0, then two workers pinned to CPUs 0 and 1 (``taskset``); target two >= 1.7 x one;
- latency: with both pinned workers idle, one job at a time: accept (the answer to video.generate) ->
  start (first poll, every 2 ms, that sees it processing); p50/p99/max; target p99 <= 100 ms;
- kill: ``--jobs`` jobs on two unpinned workers; one is killed with kill -9 once a quarter are finished
  and started again (as a supervisor would); jobs lost (not finished: must be 0), failed, with more
  than one output set, and how long the last job took;
- embedded / unpinned: the same jobs on `a2v serve --workers 1` (today's server) and on the distributed
  deployment with one unpinned worker; target: distributed within 10 % of embedded;
- realtime: bench_server.py's load (avatar.list, avatar-pose.list, video.get, video.list: 200 requests/s,
  10 s) on a front end while a worker renders, all on both cores; target p99 <= 10 ms;
- realtime-split: the same as two hosts would run it: the worker (its renders and encoders) pinned to CPU 1,
  the front end, Redis, PostgreSQL and the load generator to CPU 0.

Prints a table and the load average before and after (the machine may be shared: report it with the
numbers); ``--json`` writes everything to a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
API = "/v1/a2v"
PHASES = ("one", "two", "latency", "kill", "embedded", "unpinned", "realtime", "realtime-split")


def load(name: str, path: Path):  # type: ignore[no-untyped-def]
    """A module by file path (tests/ and benchmarks/ are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


svc = load("a2v_bench_services", ROOT / "tests" / "services.py")  # the tests' throwaway services and processes
bench_server = load("a2v_bench_server", ROOT / "benchmarks" / "bench_server.py")  # its realtime load generator
TOKENS = {"bench": bench_server.TOKEN}
pct = bench_server.pct


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Api:
    """One keep-alive client for one front end."""

    def __init__(self, url: str) -> None:
        self.c = httpx.Client(base_url=url + API, timeout=60, trust_env=False,
                              headers={"Authorization": f"Bearer {TOKENS['bench']}"})

    def data(self, method: str, path: str, **kw: object) -> object:
        r = self.c.request(method, path, **kw)  # type: ignore[arg-type]
        body = r.json()
        if r.status_code != 200 or body["code"] != 0:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return body["data"]

    def upload(self, audio: bytes) -> str:
        return self.data("POST", "/audio.upload", files={"file": ("speech.wav", audio, "audio/wav")})["audio_url"]  # type: ignore[index]

    def generate(self, audio_url: str, pose: str = "ava-front") -> dict:
        return self.data("POST", "/video.generate", json={"pose_id": pose, "audio_url": audio_url})  # type: ignore[return-value]

    def get(self, video_id: str) -> dict:
        return self.data("GET", "/video.get", params={"video_id": video_id})  # type: ignore[return-value]

    def videos(self) -> list[dict]:
        return self.data("GET", "/video.list")  # type: ignore[return-value]

    def finished(self) -> float:
        text = self.c.get("/metrics").text
        for line in text.splitlines():
            if line.startswith('a2v_jobs_total{status="finished"}'):
                return float(line.rsplit(" ", 1)[1])
        raise RuntimeError(f"no finished count in the metrics:\n{text}")

    def close(self) -> None:
        self.c.close()


class Phase:
    """One deployment (distributed or embedded) in its own directory, torn down after its measurement."""

    def __init__(self, base: Path, name: str, redis, postgres, embedded: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.root = base / name
        self.embedded = embedded
        self.postgres = postgres
        self.database = None if embedded else postgres.fresh_database()
        self.dep = svc.Deployment(self.root, redis.fresh_url() if redis else "", self.database or "", TOKENS)
        self.fe = None
        self.api: Api | None = None

    def front_end(self, *extra: str) -> Api:
        if self.embedded:
            port = svc.free_port()
            self.fe = svc.FrontEnd("embedded", self.root / "embedded",
                                   ["serve", "--port", str(port), "--data-dir", str(self.root / "data"), *extra],
                                   svc.child_env(self.root / "embedded" / "home", TOKENS), port=port)
            self.dep.procs.append(self.fe)
            self.fe.launch()
        else:
            self.fe = self.dep.front_end("fe", *extra)
        self.fe.wait_ready()
        self.api = Api(self.fe.url)
        return self.api

    def close(self) -> None:
        if self.api:
            self.api.close()
        self.dep.close()
        if self.database:
            self.postgres.drop_database(self.database)


def run_jobs(api: Api, audio_url: str, n: int, timeout: float, during=None) -> dict:  # type: ignore[no-untyped-def]
    """Queue ``n`` jobs, wait until every one has ended (or ``timeout``); throughput from server times."""
    before = api.finished()  # a warm-up job, say
    t0 = time.monotonic()
    ids = [api.generate(audio_url, pose=("ava-front", "leo-side", "mika-front")[i % 3])["video_id"] for i in range(n)]
    submit_s = time.monotonic() - t0
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        done = api.finished() - before
        if during:
            during(done)
        if done >= n:
            break
        time.sleep(0.5)
    videos = {v["video_id"]: v for v in api.videos()}
    ended = [videos[i] for i in ids if videos.get(i, {}).get("status") in ("finished", "failed")]
    finished = [v for v in ended if v["status"] == "finished"]
    span = (max(when(v["updated_at"]) for v in finished) - min(when(videos[i]["created_at"]) for i in ids)
            if finished else float("nan"))
    return {
        "jobs": n, "finished": len(finished), "failed": len(ended) - len(finished),
        "not_ended": n - len(ended), "submit_s": round(submit_s, 2), "span_s": round(span, 2),
        "jobs_per_s": round(len(finished) / span, 3) if finished else 0.0, "ids": ids,
    }


def duplicates(dep, ids: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Videos with more (or fewer) than one output set (a video and a mask file) in the shared storage."""
    return sum(len([f for f in dep.outputs(i) if f.endswith(".mp4")]) != 2 for i in ids)


def throughput(args: argparse.Namespace, base: Path, redis, postgres, audio: bytes, name: str,  # type: ignore[no-untyped-def]
               cpus: list[str | None], embedded: bool = False) -> dict:
    phase = Phase(base, name, redis, postgres, embedded)
    try:
        api = phase.front_end(*(["--workers", "1"] if embedded else []))
        workers = [] if embedded else [phase.dep.worker(f"w{i}", cpus=c) for i, c in enumerate(cpus)]
        for w in workers:
            w.wait_ready()
        audio_url = api.upload(audio)
        api.generate(audio_url)  # warm-up: models loaded, caches filled
        while api.finished() < 1:
            time.sleep(0.2)
        result = run_jobs(api, audio_url, args.jobs, args.timeout)
        if not embedded:
            result["duplicates"] = duplicates(phase.dep, result["ids"])
        return result
    finally:
        phase.close()


def latency(args: argparse.Namespace, base: Path, redis, postgres, audio: bytes, cpus: list[str]) -> dict:  # type: ignore[no-untyped-def]
    phase = Phase(base, "latency", redis, postgres)
    try:
        api = phase.front_end()
        for w in [phase.dep.worker(f"w{i}", cpus=c) for i, c in enumerate(cpus)]:
            w.wait_ready()
        audio_url = api.upload(audio)
        samples: list[float] = []
        for i in range(args.latency_jobs + 1):
            v = api.generate(audio_url)
            accepted = time.monotonic()
            last_pending = accepted
            while True:
                state = api.get(v["video_id"])["status"]
                now = time.monotonic()
                if state != "pending":
                    break
                last_pending = now
                time.sleep(0.002)
            if i:  # the first one warms the workers up
                samples.append(((last_pending + now) / 2 - accepted) * 1000)
            while api.get(v["video_id"])["status"] not in ("finished", "failed"):  # both workers idle again
                time.sleep(0.05)
        return {"samples": len(samples), "p50_ms": round(pct(samples, 50), 1), "p99_ms": round(pct(samples, 99), 1),
                "max_ms": round(max(samples), 1)}
    finally:
        phase.close()


def kill_run(args: argparse.Namespace, base: Path, redis, postgres, audio: bytes) -> dict:  # type: ignore[no-untyped-def]
    phase = Phase(base, "kill", redis, postgres)
    try:
        api = phase.front_end()
        workers = [phase.dep.worker("w0"), phase.dep.worker("w1")]
        for w in workers:
            w.wait_ready()
        audio_url = api.upload(audio)
        killed: dict[str, float] = {}

        def kill_once(done: float) -> None:
            if not killed and done >= args.jobs / 4:
                workers[0].kill9()
                killed["at"] = time.monotonic()
                killed["finished_then"] = done
                workers[0] = phase.dep.worker("w0")  # restarted, as systemd or compose would

        result = run_jobs(api, audio_url, args.jobs, args.timeout * 2, during=kill_once)
        result["killed_after_finished"] = killed.get("finished_then")
        result["lost"] = result["jobs"] - result["finished"]
        result["duplicates"] = duplicates(phase.dep, result["ids"])
        return result
    finally:
        phase.close()


def _pin(pids: list[int], cpus: set[int]) -> None:
    """Pin processes, every thread of theirs and their present children (later ones inherit it) to ``cpus``."""
    import psutil

    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            try:
                threads = proc.threads()
            except psutil.Error:
                continue
            for thread in threads:
                try:
                    os.sched_setaffinity(thread.id, cpus)
                except OSError:
                    pass


def _postmaster_pid(postgres) -> int:  # type: ignore[no-untyped-def]
    return int((postgres.data / "postmaster.pid").read_text().split()[0])


def realtime(args: argparse.Namespace, base: Path, redis, postgres, audio: bytes,  # type: ignore[no-untyped-def]
             cpus: list[str], split: bool) -> dict:
    """bench_server's realtime load (200 requests/s over the four read endpoints, 10 s) on a front end
    while a worker renders the jobs queued before; the target is p99 <= 10 ms, as for the embedded server.

    ``split``: two hosts' worth on one 2-core machine, as the distributed deployment runs: the worker (and its
    render processes and encoders) on CPU 1, the front end, Redis, PostgreSQL and the load generator on CPU 0.
    Without it everything shares both cores with the render (a render host that also serves the API)."""
    import asyncio

    phase = Phase(base, "realtime-split" if split else "realtime", redis, postgres)
    own = os.sched_getaffinity(0)
    try:
        api = phase.front_end()
        phase.dep.worker("w0", cpus=cpus[1] if split else None).wait_ready()
        if split:
            front = {int(cpus[0])}
            _pin([phase.fe.proc.pid, redis.proc.pid, _postmaster_pid(postgres)], front)  # type: ignore[union-attr]
            os.sched_setaffinity(0, front)
        audio_url = api.upload(audio)
        done = run_jobs(api, audio_url, 20, args.timeout)  # a history for video.list / video.get
        busy = [api.generate(audio_url)["video_id"] for _ in range(40)]  # a worker at work meanwhile
        targets = [
            ("avatar.list", f"{API}/avatar.list"),
            ("avatar-pose.list", f"{API}/avatar-pose.list?avatar_id=ava"),
            ("video.get", f"{API}/video.get?video_id={done['ids'][-1]}"),
            ("video.list", f"{API}/video.list"),
        ]
        result = asyncio.run(bench_server.realtime(phase.fe.port, targets, 200.0, 10.0))
        result["rendering_meanwhile"] = sum(api.get(i)["status"] != "pending" for i in busy)
        return result
    finally:
        os.sched_setaffinity(0, own)
        if split:
            _pin([redis.proc.pid, _postmaster_pid(postgres)], own)
        phase.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=0.4, help="speech per job")
    ap.add_argument("--latency-jobs", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=1800, help="per phase, seconds")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the processes' folders and logs (printed)")
    args = ap.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    cpus = ["0", "1"] if (os.cpu_count() or 1) >= 2 else ["0", "0"]
    audio = svc.speech(args.seconds)
    out: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}, "uptime_before": uptime()}
    print(out["uptime_before"], flush=True)
    base = Path(tempfile.mkdtemp(prefix="a2v-bench-dist-"))
    redis, redis_dir = svc.start_redis()
    postgres, pg_dir = svc.start_postgres(durable=True)
    try:
        for name in phases:
            t = time.monotonic()
            if name == "one":
                out[name] = throughput(args, base, redis, postgres, audio, name, cpus[:1])
            elif name == "two":
                out[name] = throughput(args, base, redis, postgres, audio, name, cpus)
            elif name == "latency":
                out[name] = latency(args, base, redis, postgres, audio, cpus)
            elif name == "kill":
                out[name] = kill_run(args, base, redis, postgres, audio)
            elif name == "embedded":
                out[name] = throughput(args, base, None, postgres, audio, name, [], embedded=True)
            elif name == "unpinned":
                out[name] = throughput(args, base, redis, postgres, audio, name, [None])
            elif name in ("realtime", "realtime-split"):
                out[name] = realtime(args, base, redis, postgres, audio, cpus, split=name == "realtime-split")
            shown = {k: v for k, v in out[name].items() if k != "ids"}  # type: ignore[union-attr]
            print(f"{name:9s} {json.dumps(shown)}  ({time.monotonic() - t:.0f} s)", flush=True)
    finally:
        redis.stop()
        postgres.stop("immediate")
        for d in (redis_dir, pg_dir, *([] if args.keep else [base])):
            shutil.rmtree(d, ignore_errors=True)
        if args.keep:
            print(f"kept {base}")
    out["uptime_after"] = uptime()
    print(out["uptime_after"])
    summary = {}
    if "one" in out and "two" in out:
        summary["two_over_one"] = round(out["two"]["jobs_per_s"] / out["one"]["jobs_per_s"], 2)  # type: ignore[index]
    if "embedded" in out and "unpinned" in out:
        summary["unpinned_over_embedded"] = round(
            out["unpinned"]["jobs_per_s"] / out["embedded"]["jobs_per_s"], 3)  # type: ignore[index]
    if "latency" in out:
        summary["accept_to_start_p99_ms"] = out["latency"]["p99_ms"]  # type: ignore[index]
    if "kill" in out:
        summary["lost_with_a_worker_killed"] = out["kill"]["lost"]  # type: ignore[index]
    for name in ("realtime", "realtime-split"):
        if name in out:
            summary[f"{name.replace('-', '_')}_p99_ms"] = out[name]["all"]["service_p99"]  # type: ignore[index]
    out["summary"] = summary
    print("summary", json.dumps(summary))
    if args.json:
        for v in out.values():
            if isinstance(v, dict):
                v.pop("ids", None)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

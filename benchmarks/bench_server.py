"""Latency of the server's realtime endpoints at a fixed request rate, and its job intake rate.

    python -m benchmarks.bench_server [--rate 200] [--seconds 10] [--videos 20] [--under-render]

Starts `python -m a2v_cli.server` on 127.0.0.1 with a temp data dir (seeded with finished videos), then
drives it from this process (a second process, on loopback):

1. realtime: avatar.list, avatar-pose.list, video.get and video.list in turn, open loop at ``--rate``
   requests/s in total for ``--seconds`` (after 1 s of warm-up); p50/p90/p99/max per endpoint.
   ``service`` is send -> full answer; ``sched`` counts from when the request was due, so a stalled
   server cannot hide queueing delay (coordinated omission).
2. intake: video.generate (from an uploaded WAV) by 4 concurrent clients for 5 s, as requests/s
   accepted; the server runs no workers here, so this is HTTP + validation + the durable insert.

``--under-render`` repeats (1) while the server renders one job after another in a worker thread.
The target is p99 <= 10 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TOKEN = "bench-token-0123456789abcdef"
API = "/v1/a2v"
SPEECH = ROOT / "tests" / "fixtures" / "speech_en.wav"


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection: little client CPU, so the numbers are the server's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: bytes = b"", extra: str = "") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))] if s else float("nan")


async def realtime(port: int, targets: list[tuple[str, str]], rate: float, seconds: float) -> dict[str, dict]:
    conns: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(16):
        conns.put_nowait(await Conn.open("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    service: dict[str, list[float]] = {name: [] for name, _ in targets}
    sched: dict[str, list[float]] = {name: [] for name, _ in targets}
    errors: list[str] = []
    warmup = int(rate)  # one second

    async def one(i: int, due: float) -> None:
        name, path = targets[i % len(targets)]
        conn = await conns.get()
        try:
            t0 = loop.time()
            status, body = await conn.request("GET", path)
            t1 = loop.time()
        finally:
            conns.put_nowait(conn)
        if status != 200 or not body.startswith(b'{"code":0'):
            errors.append(f"{name}: {status} {body[:120]!r}")
        if i >= warmup:
            service[name].append((t1 - t0) * 1000)
            sched[name].append((t1 - due) * 1000)

    tasks = []
    start = loop.time() + 0.05
    for i in range(warmup + int(rate * seconds)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    while not conns.empty():
        conns.get_nowait().close()
    if errors:
        raise SystemExit(f"{len(errors)} bad answers, e.g. {errors[0]}")
    out = {}
    for name in service:
        out[name] = {f"{k}_p{q}": round(pct(v, q), 2) for k, v in (("service", service[name]), ("sched", sched[name]))
                     for q in (50, 90, 99)}
        out[name]["service_max"] = round(max(service[name]), 2)
        out[name]["n"] = len(service[name])
    every_s = [x for v in service.values() for x in v]
    every_d = [x for v in sched.values() for x in v]
    out["all"] = {"service_p50": round(statistics.median(every_s), 2), "service_p99": round(pct(every_s, 99), 2),
                  "sched_p99": round(pct(every_d, 99), 2), "n": len(every_s)}
    return out


async def intake(port: int, audio_url: str, seconds: float, concurrency: int = 4) -> float:
    body = json.dumps({"pose_id": "ava-front", "audio_url": audio_url}).encode()
    deadline = time.monotonic() + seconds
    accepted = 0

    async def client() -> None:
        nonlocal accepted
        conn = await Conn.open("127.0.0.1", port)
        while time.monotonic() < deadline:
            status, answer = await conn.request(
                "POST", f"{API}/video.generate", body, "Content-Type: application/json\r\n"
            )
            if status == 200 and answer.startswith(b'{"code":0'):
                accepted += 1
        conn.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return accepted / (time.monotonic() - t0)


def seed(data_dir: Path, videos: int) -> list[str]:
    """Finished videos owned by the bench token (rows only: the files are not needed to list them)."""
    from a2v_cli.store import VideoStore

    store = VideoStore(data_dir / "server.db")
    ids = []
    for i in range(videos):
        v = store.create("ava-front", owner="bench", status="finished", duration=3.0 + i, frame_count=75 + 25 * i,
                         video_url=(data_dir / "videos" / f"x{i}" / "video.mp4").as_uri(),
                         mask_video_url=(data_dir / "videos" / f"x{i}" / "mask.mp4").as_uri())
        ids.append(v.video_id)
    return ids


def start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_SERVER_TOKENS": f"bench:{TOKEN}"}
    with open(data_dir.parent / "server.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "a2v_cli.server", "--port", str(port), "--data-dir", str(data_dir),
             "--workers", str(workers)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", trust_env=False).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start:\n" + (data_dir.parent / "server.log").read_text()[-3000:])


def upload(port: int) -> str:
    import httpx

    r = httpx.post(f"http://127.0.0.1:{port}{API}/audio.upload", headers={"Authorization": f"Bearer {TOKEN}"},
                   files={"file": ("speech.wav", SPEECH.read_bytes(), "audio/wav")}, trust_env=False)
    return r.json()["data"]["audio_url"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (the server's cost, whatever else the machine is doing)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def render_counts(port: int) -> dict[str, int]:
    import httpx

    videos = httpx.get(f"http://127.0.0.1:{port}{API}/video.list", headers={"Authorization": f"Bearer {TOKEN}"},
                       trust_env=False).json()["data"]
    return {s: sum(v["status"] == s for v in videos) for s in ("finished", "processing", "pending")}


def show(title: str, res: dict[str, dict], rate: float, seconds: float) -> None:
    print(f"\n{title}: {rate:g} requests/s for {seconds:g} s (ms)")
    print(f"  {'endpoint':<18}{'n':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'sched p99':>11}")
    for name, r in res.items():
        if name == "all":
            continue
        print(f"  {name:<18}{r['n']:>6}{r['service_p50']:>8.2f}{r['service_p90']:>8.2f}{r['service_p99']:>8.2f}"
              f"{r['service_max']:>8.2f}{r['sched_p99']:>11.2f}")
    a = res["all"]
    print(f"  {'all':<18}{a['n']:>6}{a['service_p50']:>8.2f}{'':>8}{a['service_p99']:>8.2f}{'':>8}"
          f"{a['sched_p99']:>11.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--videos", type=int, default=20, help="finished videos in the history (video.list returns all)")
    p.add_argument("--under-render", action="store_true", help="also measure while a worker renders")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = p.parse_args()
    results: dict[str, object] = {"cpus": os.cpu_count(), "rate": args.rate, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="a2v-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        ids = seed(data, args.videos)
        load_before = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
        proc, port = start_server(data, workers=0)
        try:
            targets = [
                ("avatar.list", f"{API}/avatar.list"),
                ("avatar-pose.list", f"{API}/avatar-pose.list?avatar_id=ava"),
                ("video.get", f"{API}/video.get?video_id={ids[-1]}"),
                ("video.list", f"{API}/video.list"),
            ]
            cpu0 = cpu_seconds(proc.pid)
            rt = asyncio.run(realtime(port, targets, args.rate, args.seconds))
            rt["all"]["server_cpu_ms_per_request"] = round((cpu_seconds(proc.pid) - cpu0) * 1000 / (
                args.rate * (args.seconds + 1)), 3)
            show("realtime endpoints, idle server", rt, args.rate, args.seconds)
            print(f"  server CPU per request: {rt['all']['server_cpu_ms_per_request']:.2f} ms; "
                  f"load average before: {load_before}")
            results["realtime"] = rt
            rate = asyncio.run(intake(port, upload(port), 5.0))
            print(f"\njob intake: {rate:.0f} video.generate requests/s accepted (4 concurrent clients, durable insert)")
            results["intake_per_s"] = round(rate, 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if args.under_render:
            data2 = Path(tmp) / "data2"
            data2.mkdir()
            ids = seed(data2, args.videos)
            proc, port = start_server(data2, workers=1)
            try:
                audio_url = upload(port)
                import httpx

                for _ in range(int(args.seconds) + 10):  # ~1 s of rendering each: enough to stay busy throughout
                    httpx.post(f"http://127.0.0.1:{port}{API}/video.generate", trust_env=False,
                               headers={"Authorization": f"Bearer {TOKEN}"},
                               json={"pose_id": "ava-front", "audio_url": audio_url}).raise_for_status()
                targets[2] = ("video.get", f"{API}/video.get?video_id={ids[-1]}")
                time.sleep(1.0)
                before = render_counts(port)
                rt = asyncio.run(realtime(port, targets, args.rate, args.seconds))
                after = render_counts(port)
                show("realtime endpoints while rendering", rt, args.rate, args.seconds)
                print(f"  renders finished during the run: {after['finished'] - before['finished']}, "
                      f"still rendering at its end: {after['processing']}")
                results["realtime_under_render"] = rt
                results["renders_during_run"] = after["finished"] - before["finished"]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

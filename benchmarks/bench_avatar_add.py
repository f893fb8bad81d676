"""Speed and memory of `a2v avatars add`: `python -m benchmarks.bench_avatar_add [--runs 3] [--no-video]`.

Runs the real CLI (a fresh process each time, as a user would, so imports and model loading count) on photos
made from the shipped astronaut portrait: the 512x512 PNG itself, a 12-megapixel JPEG (4000x3000, face about
560 px wide, like a phone portrait), a 50-megapixel JPEG (8192x6144) and a 5 s 1280x720 clip (``--clip-seconds``
for another length). Prints the median wall time, the median CPU time (user + system of the a2v process and its
ffmpeg children: on a shared machine the steadier figure) and the peak RSS of the a2v process for each.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.png"


def make_inputs(work: Path, video: bool, clip_seconds: int = 5) -> dict[str, tuple[str, Path]]:
    from PIL import Image

    face = Image.open(ASTRONAUT).convert("RGB")
    inputs: dict[str, tuple[str, Path]] = {"astronaut 512x512 PNG": ("--image", ASTRONAUT)}
    for name, (w, h), side in (("12 MP JPEG 4000x3000", (4000, 3000), 3000), ("50 MP JPEG 8192x6144", (8192, 6144),
                                                                              4096)):
        canvas = Image.new("RGB", (w, h), (180, 170, 160))
        canvas.paste(face.resize((side, side), Image.BICUBIC), ((w - side) // 2, h - side))
        path = work / f"{w}x{h}.jpg"
        canvas.save(path, quality=90)
        inputs[name] = ("--image", path)
    if video:
        from a2v_cli.engine.audio import ffmpeg_exe

        path = work / "clip.mp4"
        small = np.asarray(face.resize((600, 600), Image.BICUBIC))
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "1280x720", "-r", "30",
               "-i", "pipe:0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "20", str(path)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        for i in range(30 * clip_seconds):
            frame = np.full((720, 1280, 3), 170, np.uint8)
            dx = int(340 + 20 * np.sin(i / 12))
            frame[60:660, dx : dx + 600] = small
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        proc.wait()
        inputs[f"{clip_seconds} s clip 1280x720 (30 fps)"] = ("--video", path)
    return inputs


def run_once(flag: str, path: Path, home: Path, n: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (with its ffmpeg children) and peak RSS (MiB) of one `a2v avatars add` in a fresh
    process."""
    code = (
        "import resource, sys\n"
        "from a2v_cli.cli import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "finally:\n"
        "    sys.stderr.write(f'RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    )
    env = {**os.environ, "A2V_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "avatars", "add", flag, str(path), "--id", f"b{n}"],
                          capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"avatars add failed: {proc.stderr}")
    rss = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("RSS ")][-1]
    return wall, cpu, rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--video-runs", type=int, default=1)
    parser.add_argument("--clip-seconds", type=int, default=5, choices=range(1, 11))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = make_inputs(work, not args.no_video, args.clip_seconds)
        print(f"{'input':32} {'median s':>9} {'min s':>7} {'median CPU s':>13} {'peak RSS MiB':>13}")
        n = 0
        for name, (flag, path) in inputs.items():
            walls, cpus, rss = [], [], 0.0
            for _ in range(args.runs if flag == "--image" else args.video_runs):
                n += 1
                wall, cpu, peak = run_once(flag, path, work / "home", n)
                walls.append(wall)
                cpus.append(cpu)
                rss = max(rss, peak)
            print(f"{name:32} {statistics.median(walls):9.2f} {min(walls):7.2f} {statistics.median(cpus):13.2f} "
                  f"{rss:13.0f}")
    print(f"(load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; children max RSS "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()

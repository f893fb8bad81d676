"""Render-speed and memory benchmark: `python benchmarks/bench_render.py` (add --quick for a short run, --photo for
the astronaut photo pose).

Renders 60 s of speech on every built-in pose, then 1 and 10 minutes on one pose, each in a fresh
process, and prints realtime factor (video seconds per wall second), frames/s, time per stage and
peak RSS of the a2v process (and, apart, of its ffmpeg encoders). Speech is the committed fixtures,
concatenated with pauses, so the benchmark runs anywhere the tests do.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def make_speech(seconds: float, dest: Path) -> Path:
    """``seconds`` of speech: the fixtures in turn, with 0.3-0.9 s pauses, at 22.05 kHz."""
    import soundfile as sf

    clips = [sf.read(p, dtype="float32")[0] for p in sorted(FIXTURES.glob("*.wav"))]
    rate = sf.info(str(next(FIXTURES.glob("*.wav")))).samplerate
    rng = np.random.default_rng(0)
    total = int(seconds * rate)
    with sf.SoundFile(dest, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        written, i = 0, 0
        while written < total:
            piece = np.concatenate([clips[i % len(clips)], np.zeros(int(rng.uniform(0.3, 0.9) * rate), np.float32)])
            piece = piece[: total - written]
            out.write(piece)
            written += len(piece)
            i += 1
    return dest


def one(pose: str, audio: Path, device: str) -> dict:
    """Run in a child process: decode + render exactly as `a2v generate` does, with stage timings."""
    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.render import RenderJob, render

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        prepared = decode(audio, work, 1e9)
        t_audio = time.perf_counter() - t0
        result = render(RenderJob(pose, prepared, work / "v.mp4", work / "m.mp4", device=device))
        wall = time.perf_counter() - t0
    timings = {k: round(v, 3) for k, v in result.timings.items()}
    timings["decode"] = round(t_audio, 3)
    return {
        "pose": pose,
        "seconds": round(prepared.duration, 2),
        "frames": result.frame_count,
        "wall_s": round(wall, 3),
        "realtime": round(prepared.duration / wall, 2),
        "fps": round(result.frame_count / wall, 1),
        "provider": result.provider,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ffmpeg_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "stages_s": timings,
    }


def run_child(pose: str, audio: Path, device: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", pose, str(audio), "--device", device],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s per pose and 1 vs 3 minutes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--poses", nargs="*", help="only these poses")
    parser.add_argument("--photo", action="store_true",
                        help="the astronaut photo pose (astro-photo, examples/astronaut.png) instead of the built-ins")
    parser.add_argument("--child", nargs=2, metavar=("POSE", "AUDIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child[0], Path(args.child[1]), args.device)))
        return

    from a2v_cli.engine import catalog

    if args.photo:  # a bundle in a throwaway A2V_HOME, seen by the child processes too
        import os

        from tests.photo_bundle import write_photo_bundle

        home = Path(tempfile.mkdtemp(prefix="a2v-bench-home-"))
        os.environ["A2V_HOME"] = str(home)
        write_photo_bundle(home)
        args.poses = ["astro-photo"]
    poses = args.poses or catalog.pose_ids(include_user=False)
    per_pose, short, long_ = (10, 60, 180) if args.quick else (60, 60, 600)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        speech = make_speech(per_pose, Path(tmp) / "speech.wav")
        print(f"{'pose':<14}{'video s':>8}{'frames':>8}{'wall s':>8}{'x RT':>7}{'fps':>7}{'RSS MB':>8}"
              f"{'ffmpeg MB':>10}  stages s (audio, model, compose, encode wait)")
        for pose in poses:
            r = run_child(pose, speech, args.device)
            rows.append(r)
            s = r["stages_s"]
            print(f"{pose:<14}{r['seconds']:>8.1f}{r['frames']:>8}{r['wall_s']:>8.2f}{r['realtime']:>7.1f}"
                  f"{r['fps']:>7.0f}{r['peak_rss_mb']:>8.0f}{r['ffmpeg_peak_rss_mb']:>10.0f}  "
                  f"{s['audio']:.2f}, {s['model']:.2f}, {s['compose']:.2f}, {s['encode']:.2f}  [{r['provider']}]")
        print(f"\nmemory vs audio length ({poses[0]}):")
        for secs in (short, long_):
            audio = make_speech(secs, Path(tmp) / f"speech{secs}.wav")
            r = run_child(poses[0], audio, args.device)
            rows.append(r)
            print(
                f"  {secs / 60:>4.1f} min: peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(ffmpeg {r['ffmpeg_peak_rss_mb']:.0f} MB), {r['realtime']:.1f}x realtime, {r['fps']:.0f} frames/s"
            )
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "render.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

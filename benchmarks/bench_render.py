"""Render speed against the encoder's own speed: `python -m benchmarks.bench_render` (--quick: 10 s renders).

For a drawn pose (ava-front), a photo pose (the shipped astronaut, a bundle in a throwaway A2V_HOME) and a video
pose (a 2 s clip panned across the same photo, through the real `avatars add --video` ingest), it renders 60 s of
speech in a fresh process, exactly as `a2v generate` does, and then measures the **x264 floor** on the same
frames: a2v's own output decoded to raw frames in memory, encoded again with a2v's own encoder arguments (the
video with its soundtrack, and the mask, in parallel, through a2v's own writers), so the floor is what a render
would cost if model and compositing were free. It prints, per pose and per repetition (--repeat, 2 by default),
a2v's wall time (audio decode + render), the floor, their ratio, realtime factor, frames/s, peak RSS of the a2v
process (before the floor's frames are loaded) and of its ffmpeg encoders, and time per stage; then peak RSS at
1 and at 10 minutes of audio on the drawn and the photo pose (--quick: 1 and 3 minutes).

Ratios compare within one run: the floor is measured right after each render, on the same machine load.
Speech is the committed fixtures, concatenated with pauses, so the benchmark runs anywhere the tests do.
"""

from __future__ import annotations

import argparse
import json
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
FIXTURES = ROOT / "tests" / "fixtures"
DRAWN, PHOTO, VIDEO = "ava-front", "astro-photo", "clip-video"


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


def make_home() -> Path:
    """A throwaway A2V_HOME with the astronaut as a photo pose and a 2 s clip of it as a video pose."""
    import atexit
    import shutil

    from a2v_cli.engine import catalog, ingest
    from a2v_cli.engine.audio import ffmpeg_exe
    from tests.photo_bundle import astronaut, write_photo_bundle

    home = Path(tempfile.mkdtemp(prefix="a2v-bench-home-"))
    atexit.register(shutil.rmtree, home, True)
    os.environ["A2V_HOME"] = str(home)  # the child processes see it too
    write_photo_bundle(home)
    rgb = astronaut()[0]
    frames = []
    for i in range(50):  # the head drifts a few px and back, as a hand-held clip would
        canvas = np.full((576, 576, 3), 128, np.uint8)
        dx, dy = int(32 + 12 * np.sin(i / 8)), int(32 + 6 * np.sin(i / 5))
        canvas[dy : dy + 512, dx : dx + 512] = rgb
        frames.append(canvas)
    clip = home / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "576x576",
                    "-r", "25", "-i", "pipe:0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(clip)],
                   input=b"".join(f.tobytes() for f in frames), check=True)  # fmt: skip
    req = ingest.PhotoRequest(clip, avatar_id="clip", size=512, device="cpu", kind="video")
    ingest.add_video(req, home, set(catalog.avatar_ids(include_user=False)))
    return home


def decode_raw(path: Path, width: int, height: int, pix_fmt: str) -> np.ndarray:
    from a2v_cli.engine.audio import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt,
                          "pipe:1"], capture_output=True, check=True).stdout  # fmt: skip
    if pix_fmt == "yuv420p":  # as a2v hands a photo or video pose's frames over (yuv.py)
        return np.frombuffer(raw, np.uint8).reshape(-1, height * width * 3 // 2)
    channels = 3 if pix_fmt == "rgb24" else 1
    arr = np.frombuffer(raw, np.uint8).reshape(-1, height, width, channels)
    return arr[..., 0] if channels == 1 else arr


def x264_floor(pose: str, video: Path, mask: Path, mux: Path, work: Path) -> float:
    """Seconds to encode a2v's decoded output again with a2v's own writers and arguments, frames in memory."""
    from a2v_cli.engine import catalog
    from a2v_cli.engine.encode import FfmpegWriter, h264_mask, h264_video
    from a2v_cli.engine.photo_pose import PhotoSource, VideoSource

    entry = catalog.pose_entry(pose)
    pix_fmt = "yuv420p" if entry.kind in ("photo", "video") else "rgb24"  # photo and video poses hand I420 (render.py)
    rgb = decode_raw(video, entry.width, entry.height, pix_fmt)
    gray = decode_raw(mask, entry.width, entry.height, "gray")
    meta = {"title": "floor", "a2v_pose": pose}
    crf = {"photo": PhotoSource.crf, "video": VideoSource.crf}.get(entry.kind)
    specs = [(h264_video(meta, crf, pix_fmt=pix_fmt), work / "fv.mp4"), (h264_mask(meta), work / "fm.mp4")]
    t0 = time.perf_counter()
    writers = []
    for spec, path in specs:
        spec.path = path
        writers.append(FfmpegWriter(spec, entry.width, entry.height, 25, mux))
    for i in range(0, len(rgb), 25):  # a2v's batches, handed over as a2v hands them
        writers[0].write(rgb[i : i + 25])
        writers[1].write(gray[i : i + 25])
    for w in writers:
        w.close()
        w.commit()
    return time.perf_counter() - t0


def one(pose: str, audio: Path, device: str, floor: bool) -> dict:
    """Run in a child process: decode + render exactly as `a2v generate` does, then the x264 floor."""
    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.render import RenderJob, render

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        prepared = decode(audio, work, 1e9)
        t_audio = time.perf_counter() - t0
        result = render(RenderJob(pose, prepared, work / "v.mp4", work / "m.mp4", device=device))
        wall = time.perf_counter() - t0
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        rss, ffmpeg_rss = me.ru_maxrss / 1024, kids.ru_maxrss / 1024
        # CPU seconds, a2v's process and its ffmpeg children (the encoders, the audio decode): on a shared machine
        # the figure that compares runs; idle, 2 cores do a video second in under 0.18 s at >= 11x realtime
        cpu_a2v, cpu_ffmpeg = me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime
        floor_s = x264_floor(pose, work / "v.mp4", work / "m.mp4", prepared.mux_path, work) if floor else None
    timings = {k: round(v, 3) for k, v in result.timings.items()}
    timings["decode"] = round(t_audio, 3)
    return {
        "pose": pose,
        "seconds": round(prepared.duration, 2),
        "frames": result.frame_count,
        "wall_s": round(wall, 3),
        "floor_s": round(floor_s, 3) if floor_s else None,
        "ratio": round(wall / floor_s, 3) if floor_s else None,
        "realtime": round(prepared.duration / wall, 2),
        "fps": round(result.frame_count / wall, 1),
        "provider": result.provider,
        "peak_rss_mb": round(rss, 1),
        "ffmpeg_peak_rss_mb": round(ffmpeg_rss, 1),
        "cpu_a2v_s": round(cpu_a2v, 2),
        "cpu_ffmpeg_s": round(cpu_ffmpeg, 2),
        "stages_s": timings,
    }


def run_child(pose: str, audio: Path, device: str, floor: bool = True) -> dict:
    cmd = [sys.executable, __file__, "--child", pose, str(audio), "--device", device]
    # as `a2v` runs: a2v_cli/__init__.py keeps BLAS to one thread, but this script imports numpy before a2v_cli
    env = {**os.environ, **{v: os.environ.get(v, "1") for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}
    proc = subprocess.run([*cmd, *([] if floor else ["--no-floor"])], capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{pose}: the render failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s per pose and 1 vs 3 minutes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--poses", nargs="*", help=f"only these poses (default: {DRAWN} {PHOTO} {VIDEO})")
    parser.add_argument("--repeat", type=int, default=2, help="renders per pose, each with its floor (default 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1 vs 10 minute memory runs")
    parser.add_argument("--child", nargs=2, metavar=("POSE", "AUDIO"), help=argparse.SUPPRESS)
    parser.add_argument("--no-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child[0], Path(args.child[1]), args.device, not args.no_floor)))
        return

    poses = args.poses or [DRAWN, PHOTO, VIDEO]
    if any(p in (PHOTO, VIDEO) for p in poses):
        make_home()
    per_pose, short, long_ = (10, 60, 180) if args.quick else (60, 60, 600)
    rows = []
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        speech = make_speech(per_pose, Path(tmp) / "speech.wav")
        print(f"{'pose':<12}{'video s':>8}{'frames':>7}{'a2v s':>7}{'x264 s':>7}{'ratio':>6}{'x RT':>6}{'fps':>5}"
              f"{'RSS MB':>7}{'ffmpeg MB':>10}{'CPU a2v':>8}{'ffmpeg':>7}{'CPU/s':>6}"
              "  stages s (audio, model, compose, encode wait)")
        for pose in poses:
            runs = []
            for _ in range(args.repeat):
                r = run_child(pose, speech, args.device)
                runs.append(r)
                s = r["stages_s"]
                print(f"{pose:<12}{r['seconds']:>8.1f}{r['frames']:>7}{r['wall_s']:>7.2f}{r['floor_s']:>7.2f}"
                      f"{r['ratio']:>6.2f}{r['realtime']:>6.1f}{r['fps']:>5.0f}{r['peak_rss_mb']:>7.0f}"
                      f"{r['ffmpeg_peak_rss_mb']:>10.0f}{r['cpu_a2v_s']:>8.2f}{r['cpu_ffmpeg_s']:>7.2f}"
                      f"{(r['cpu_a2v_s'] + r['cpu_ffmpeg_s']) / r['seconds']:>6.3f}  {s['audio']:.2f}, "
                      f"{s['model']:.2f}, {s['compose']:.2f}, {s['encode']:.2f}  [{r['provider']}]", flush=True)
            rows += runs
            print(f"{'':<12}median ratio {statistics.median(r['ratio'] for r in runs):.2f}, best a2v "
                  f"{min(r['wall_s'] for r in runs):.2f} s vs best floor {min(r['floor_s'] for r in runs):.2f} s",
                  flush=True)
        if not args.no_memory:
            for pose in [p for p in poses if p in (DRAWN, PHOTO)] or poses[:1]:
                print(f"\nmemory vs audio length ({pose}):")
                for secs in (short, long_):
                    audio = make_speech(secs, Path(tmp) / f"speech{secs}.wav")
                    r = run_child(pose, audio, args.device, floor=False)
                    rows.append(r)
                    print(f"  {secs / 60:>4.1f} min: peak RSS {r['peak_rss_mb']:.0f} MB (ffmpeg "
                          f"{r['ffmpeg_peak_rss_mb']:.0f} MB), {r['realtime']:.1f}x realtime, {r['fps']:.0f} frames/s",
                          flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at the end")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "render.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

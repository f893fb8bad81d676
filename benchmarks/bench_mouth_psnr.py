"""New frames against old ones, on the mouth: `python -m benchmarks.bench_mouth_psnr [--base main] [--seconds 20]`.

A render optimisation may change how the mouth is drawn (a cached, rounded articulation; a patch moved with
the head instead of warped in place): this measures by how much. The same speech is rendered, without the
encoder (frames straight from the frame source and the lip-sync model, as the render loop makes them), by this
checkout and by ``--base`` (a git revision, checked out into a temporary worktree), on the drawn pose ava-front
and on the astronaut photo pose; it prints the PSNR of the mouth region (the pose's face box around the mouth
centre, lower half) and of the whole frame, new against old, and the worst frame.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def frames(pose: str, audio: Path, out: Path) -> None:
    """Run in a child (old or new code): every frame of ``audio`` on ``pose``, and where its mouth is."""
    from a2v_cli.engine.audio import PcmReader, decode
    from a2v_cli.engine.lipsync import load_model, window_count
    from a2v_cli.engine.render import mel_windows, pose_source

    with tempfile.TemporaryDirectory() as tmp:
        prepared = decode(audio, Path(tmp), 1e9)
        src = pose_source(pose, 25, False, device="cpu")
        model = load_model(None, src, "cpu")
        reader = PcmReader(prepared)
        model.begin(reader)
        total = window_count(prepared.duration, 25)
        rgbs, boxes = [], []
        for start in range(0, total, 25):
            idx = range(start, min(start + 25, total))
            mel = mel_windows(reader, model.window_starts(np.arange(idx.start, idx.stop), 25))
            articulate = getattr(model, "articulate", None) if src.draws_mouth else None
            rgb, _, _, mouths = src.compose(idx, articulate(mel) if articulate else None)
            model.paint(mel, mouths, [rgb])
            rgbs.append(rgb.copy())
            boxes.append(src.face_boxes(mouths))
        reader.close()
    np.savez(out, rgb=np.concatenate(rgbs), boxes=np.concatenate(boxes))


def run(pose: str, audio: Path, out: Path, code: Path) -> np.lib.npyio.NpzFile:
    """``frames`` in a child that imports a2v_cli from ``code`` (PYTHONPATH comes before the editable install)."""
    env = {**os.environ, "PYTHONPATH": str(code), "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", pose, str(audio), str(out)],
                   check=True, env=env, cwd=code)  # fmt: skip
    return np.load(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="the git revision to compare with (default main)")
    parser.add_argument("--seconds", type=float, default=20.0, help="speech length (default 20 s)")
    parser.add_argument("--poses", nargs="*", default=["ava-front", "astro-photo"])
    parser.add_argument("--stills", type=Path, help="write the worst frame's face, old above new, into this folder")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import a2v_cli

        assert Path(a2v_cli.__file__).resolve().is_relative_to(Path.cwd().resolve()), a2v_cli.__file__
        frames(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    from benchmarks.bench_render import make_home, make_speech

    if "astro-photo" in args.poses or "clip-video" in args.poses:
        make_home()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            audio = make_speech(args.seconds, work / "speech.wav")
            for pose in args.poses:
                old = run(pose, audio, work / f"{pose}-old.npz", base)
                new = run(pose, audio, work / f"{pose}-new.npz", ROOT)
                a, b, boxes = old["rgb"], new["rgb"], new["boxes"]
                assert a.shape == b.shape, (a.shape, b.shape)
                per = []
                for i in range(len(a)):
                    x0, y0, x1, y1 = (round(float(v)) for v in boxes[i])
                    ym = (y0 + y1) // 2  # the lower half of the face box: mouth and jaw
                    x0, ym, x1, y1 = max(x0, 0), max(ym, 0), min(x1, a.shape[2]), min(y1, a.shape[1])
                    per.append(psnr(a[i, ym:y1, x0:x1], b[i, ym:y1, x0:x1]))
                mouth = np.array(per)
                whole = psnr(a, b)
                worst = int(np.argmin(mouth))
                report[pose] = {"frames": len(a), "mouth_psnr_mean_db": round(float(np.mean(np.minimum(mouth, 99))), 2),
                                "mouth_psnr_min_db": round(float(mouth.min()), 2), "worst_frame": worst,
                                "frame_psnr_db": round(whole, 2), "identical_frames": int((mouth >= 99).sum())}
                if args.stills:  # the worst frame's mouth region, old above new, 4x
                    from tests.photo_bundle import write_png

                    x0, y0, x1, y1 = (round(float(v)) for v in boxes[worst])
                    crop = np.concatenate([a[worst, max(y0, 0) : y1, max(x0, 0) : x1],
                                           b[worst, max(y0, 0) : y1, max(x0, 0) : x1]], axis=0)
                    write_png(np.repeat(np.repeat(crop, 4, axis=0), 4, axis=1), args.stills / f"{pose}-worst.png")
                print(f"{pose:<12} {len(a)} frames: mouth region PSNR mean {np.mean(np.minimum(mouth, 99)):.1f} dB, "
                      f"worst {mouth.min():.1f} dB (frame {worst}), whole frames {whole:.1f} dB, "
                      f"{report[pose]['identical_frames']} mouths identical  (99 = identical)", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "mouth_psnr.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

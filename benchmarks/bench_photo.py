"""Photo-pose benchmark: `python -m benchmarks.bench_photo [--quick] [--clips N] [--split S] [--image PHOTO]`.

The subject is the shipped public-domain portrait (``examples/astronaut.png``), made into a bundle in a
temporary ``A2V_HOME`` by ``tests/photo_bundle.py`` (the bundled face models: detector, mesh, segmentation).

1. Lip sync, from the output pixels, measured by landmark models: every clip of ``bench_lipsync``'s held-out
   espeak-ng split (``--split``: another voice) is rendered on ``astro-photo`` with the built-in model, idle
   motion on (as a user gets it); the MP4 is decoded and each judge gives the inner-lip opening over the mouth
   width per frame: the 468-point face mesh (``a2v_cli.engine.face``: detector on the first frame, mesh on every
   frame; ``|p13 - p14| / |p61 - p291|``) and, where ``dlib`` and ``face_recognition_models`` are installed
   (``pip install dlib-bin face_recognition_models``; never a dependency of a2v), dlib's 68-point predictor, a model
   a2v never uses (``|p62 - p66| / |p48 - p54|``, its detector on the first frame). The renderer never sees these
   landmarks (it only uses the photo's own), so this is a model reading the synthesized mouth. Scored with
   bench_lipsync's metrics (r, lag, silence closed, p/b/m closed, frame count), next to the RMS baseline and every
   built-in cartoon pose (``ava-front``, ``ava-side``, ``leo-front``, ...) rendered from the same clips and read
   by the same judges, and by bench_lipsync's own pixel measure: the issue's bar is "at least as high as the
   built-in cartoon avatars reach", so for each judge the summary names the lowest and highest of them.
2. Fidelity: one clip rendered with ``--still``; PSNR of every frame against the photo outside the warped
   regions (mouth and jaw, eyes), over the whole rest of the frame and over the person (matte > 0.5).

``--image PHOTO`` measures another portrait instead (a held-out face, not shipped): the bundle is made by
``a2v avatars add --image`` as a user would, and the same clips, renders and measures are used.

The pixel rows score the same renders with bench_lipsync's own pixel measure (the dark interior's area in a box
around the mouth).

Output: tables on stdout and ``benchmarks/out/photo.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import bench_lipsync as bl
from benchmarks import lipsync_clips as lc

ROOT = Path(__file__).resolve().parents[1]

POSE = "astro-photo"
OUT = ROOT / "benchmarks" / "out" / "photo.json"


def drawn_poses() -> list[str]:
    """The built-in cartoon poses (the registry's drawn ones), the bar the photo pose is held to."""
    from a2v_cli.engine import avatars

    return [p.pose_id for p in avatars.builtin_registry().poses.values() if p.kind == "drawn"]


def decode_all(video: Path) -> np.ndarray:
    import subprocess

    from a2v_cli.engine.audio import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 512, 512, 3)


def mesh_opening(frames: np.ndarray, device: str) -> np.ndarray:
    """Inner-lip opening / mouth width per frame, from the face mesh."""
    from a2v_cli.engine import face

    found = face.detect_faces(frames[0], device)
    if not found:
        raise SystemExit("the face detector found no face in the first rendered frame")
    out = np.empty(len(frames))
    for i, f in enumerate(frames):
        m = face.face_landmarks(f, found[0], device)
        out[i] = np.linalg.norm(m[13, :2] - m[14, :2]) / max(np.linalg.norm(m[61, :2] - m[291, :2]), 1e-6)
    return out


Judge = Callable[[np.ndarray, str], np.ndarray]


def dlib_judge() -> Judge | None:
    """dlib's 68-point predictor (iBUG 300-W) where it is installed, else None: a landmark model a2v never uses."""
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def opening(frames: np.ndarray, device: str) -> np.ndarray:
        found = detector(frames[0], 1)
        if found:
            box = max(found, key=lambda r: r.width())
        else:  # its HOG detector misses some cartoon faces: the predictor gets a2v's detector's box instead
            from a2v_cli.engine import face

            faces = face.detect_faces(frames[0], device)
            if not faces:
                raise SystemExit("no face found in the first rendered frame")
            box = dlib.rectangle(*(round(v) for v in faces[0].box))
        out = np.empty(len(frames))
        for i, f in enumerate(frames):
            shape = predictor(f, box)
            p = np.array([(shape.part(j).x, shape.part(j).y) for j in (48, 54, 62, 66)], dtype=np.float64)
            out[i] = np.linalg.norm(p[2] - p[3]) / max(np.linalg.norm(p[0] - p[1]), 1e-6)
        return out

    return opening


def judges() -> dict[str, Judge]:
    """The landmark models that read every rendered mouth: the face mesh, and dlib where installed."""
    found: dict[str, Judge] = {"face mesh": mesh_opening}
    dlib = dlib_judge()
    if dlib is not None:
        found["dlib 68"] = dlib
    return found


@dataclass
class PoseRun:
    """One pose's renders of every clip, read by every judge and by the pixel measure."""

    pose: str
    rows: dict[str, bl.Row]
    render_s: float


def run_pose(pose: str, clips: list[lc.Clip], truths: list[lc.GroundTruth], work: Path, device: str,
             luma: Callable[[np.ndarray], np.ndarray], read: dict[str, Judge]) -> PoseRun:  # fmt: skip
    """Render every clip on ``pose`` as `a2v generate` does, decode it, and score what each judge reads; ``luma``
    gives the pixel measure's mouth box (N, h, w) from the decoded frames."""
    import soundfile as sf

    measured: dict[str, list[np.ndarray]] = {name: [] for name in read}
    scores: dict[str, list[bl.ClipScore]] = {name: [] for name in read}
    lumas, render_s = [], 0.0
    for k, (clip, truth) in enumerate(zip(clips, truths, strict=True)):
        folder = work / f"{pose}-{k}"
        folder.mkdir()
        wav = folder / "speech.wav"
        sf.write(str(wav), clip.audio, clip.sample_rate, subtype="PCM_16")
        video, secs, _ = render(wav, folder, False, device, pose)
        render_s += secs
        frames = decode_all(video)
        seconds = bl.audio_track_seconds(video)
        lumas.append(luma(frames))
        for name, judge in read.items():
            m = judge(frames, device)
            measured[name].append(m)
            scores[name].append(bl.score_clip(clip.name, clip.voice, m, truth, len(frames), seconds))
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        print(f"  {pose} {k + 1}/{len(clips)} {clip.name}: {clip.duration:.1f} s, render {secs:.1f} s",
              file=sys.stderr)
    rows = {name: bl.pool(f"builtin on {pose} ({name})", scores[name], measured[name], truths) for name in read}
    areas, _ = bl.measure_mouth(lumas)  # bench_lipsync's measure: the dark interior's area in the box
    pixel_scores = [bl.score_clip(c.name, c.voice, a, t) for c, a, t in zip(clips, areas, truths, strict=True)]
    rows["pixels"] = bl.pool(f"builtin on {pose} (pixels)", pixel_scores, areas, truths)
    return PoseRun(pose, rows, render_s)


def cartoon_luma(pose: str) -> Callable[[np.ndarray], np.ndarray]:
    """bench_lipsync's pixel measure of a drawn pose: its mouth box, following the head's sway."""
    box = bl.MouthBox.for_pose(pose)
    x0, y0, w, h = box.region
    return lambda frames: bl.luminance(bl.mouth_crops(frames[:, y0 : y0 + h, x0 : x0 + w], box))


def render(wav: Path, work: Path, still: bool, device: str, pose: str = POSE) -> tuple[Path, float, float]:
    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.render import RenderJob, render

    t0 = time.perf_counter()
    prepared = decode(wav, work, 1e9)
    result = render(RenderJob(pose, prepared, work / "v.mp4", work / "m.mp4", device=device, still=still))
    return result.video_path, time.perf_counter() - t0, prepared.duration


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 short clips")
    ap.add_argument("--clips", type=int, default=None, help="held-out clips (default 24, --quick 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--no-cartoon", action="store_true", help="skip the built-in cartoon poses' comparison rows")
    ap.add_argument("--split", choices=bl.SPLIT_CHOICES, default="heldout", help=bl.SPLIT_HELP)
    ap.add_argument("--image", type=Path, default=None,
                    help="measure this portrait instead (made into a bundle by `a2v avatars add --image`)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    import soundfile as sf

    from tests.photo_bundle import write_photo_bundle

    n = args.clips if args.clips is not None else (6 if args.quick else 24)
    clips = bl.load_clips(args.split, n, args.seed, (2, 2) if args.quick else (2, 3))
    truths = [lc.clip_truth(c) for c in clips]
    total = sum(c.duration for c in clips)
    read = judges()
    print(f"{len(clips)} {args.split} clips, {total:.1f} s of speech; judges: {', '.join(read)}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="a2v-photo-bench-") as tmp:
        home = Path(tmp) / "home"
        os.environ["A2V_HOME"] = str(home)
        pose = POSE
        if args.image is None:
            write_photo_bundle(home)
        else:
            import subprocess

            subprocess.run([sys.executable, "-m", "a2v_cli", "avatars", "add", "--image", str(args.image),
                            "--id", "heldout"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            pose = "heldout-photo"
        from a2v_cli.engine.frames import open_source

        src = open_source(pose, 25, still=True, device="cpu")
        geo = src.geometry  # type: ignore[attr-defined]
        cx, cy, hw = round(geo.cx), round(geo.cy), round(geo.half_width)
        box = (slice(cy - 10, cy + round(geo.max_open) + 8), slice(cx - hw - 8, cx + hw + 8))
        work = Path(tmp) / "renders"
        work.mkdir()
        photo_run = run_pose(pose, clips, truths, work, args.device, lambda f: bl.luminance(f[:, box[0], box[1]]), read)
        render_s = photo_run.render_s
        runs = [photo_run]
        if not args.no_cartoon:  # the bar: every built-in cartoon pose, read by the same judges
            for cartoon in drawn_poses():
                runs.append(run_pose(cartoon, clips, truths, work, args.device, cartoon_luma(cartoon), read))
                print(f"  {cartoon}: " + ", ".join(f"{k} r {r.r:.3f}" for k, r in runs[-1].rows.items()),
                      file=sys.stderr)
        rows = [bl.evaluate_baseline(clips, truths)[0]] + [row for run in runs for row in run.rows.values()]

        # fidelity with --still on the first clip
        rgb, matte = src.pose.image, src.pose.matte  # type: ignore[attr-defined]
        keep = np.ones(rgb.shape[:2], bool)
        for region in (src.mouth, src.eyes):
            h, w = region.grid.shape[1:3]
            keep[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = False
        person = keep & (matte > 127)
        work = Path(tmp) / "still"
        work.mkdir()
        wav = work / "speech.wav"
        sf.write(str(wav), clips[0].audio, clips[0].sample_rate, subtype="PCM_16")
        video, _, _ = render(wav, work, True, args.device, pose)
        frames = decode_all(video)
        rest = [psnr(f[keep], rgb[keep]) for f in frames]
        body = [psnr(f[person], rgb[person]) for f in frames]
        body_y = [psnr(luma(f)[person], luma(rgb)[person]) for f in frames]
        # the encoder's own ceiling: the photo itself through the same H.264 settings
        from a2v_cli.engine.encode import FfmpegWriter, h264_video

        spec = h264_video({}, getattr(src, "crf", None))
        spec.path = work / "ceiling.mp4"
        writer = FfmpegWriter(spec, 512, 512, 25, None)
        writer.write(np.repeat(rgb[None], 10, axis=0))
        writer.close()
        ceiling_frames = decode_all(writer.commit())
        ceiling = psnr(ceiling_frames[5][person], rgb[person])
    what = f"{pose} ({args.image.name})" if args.image is not None else pose
    print(f"\n## Photo-pose lip sync: {args.split} ({len(clips)} clips, {total:.0f} s), pose {what}\n")
    print(bl.fmt_table(rows))
    bar = {}
    for measure, photo in photo_run.rows.items():  # each judge: the photo against the cartoons it read
        cartoons = [run.rows[measure] for run in runs[1:]]
        if not cartoons:
            continue
        lo, hi = min(cartoons, key=lambda r: r.r), max(cartoons, key=lambda r: r.r)
        bar[measure] = {"photo": round(photo.r, 4), "cartoon_min": round(lo.r, 4), "cartoon_max": round(hi.r, 4)}
        print(f"{measure}: built-in cartoons r {lo.r:.3f} ({lo.model.split()[2]}) to {hi.r:.3f}"
              f" ({hi.model.split()[2]}); photo r {photo.r:.3f}: {'at least' if photo.r >= hi.r else 'below'} the"
              f" highest, {'at least' if photo.r >= lo.r else 'below'} the lowest")
    print(f"photo render: {render_s:.1f} s for {total:.1f} s of speech"
          f" ({total / render_s:.1f}x realtime incl. setup)")
    print(f"\n## --still fidelity (clip {clips[0].name}, {len(frames)} frames): PSNR vs the photo outside"
          f" mouth/jaw/eyes: min {min(rest):.2f} dB, mean {np.mean(rest):.2f} dB;"
          f" over the person: min {min(body):.2f} dB, mean {np.mean(body):.2f} dB (luma: min {min(body_y):.2f} dB);"
          f" the photo itself through the same encoder: {ceiling:.2f} dB over the person")
    report = {
        "pose": what, "clips": len(clips), "seconds": round(total, 1), "seed": args.seed,
        "rows": [{**bl.summary(r), "model": r.model, "frames_exact": r.frames_exact, "max_av_ms": r.max_av_ms,
                  "lag_curve": r.lag_curve} for r in rows],
        "still_psnr_db": {"rest_min": round(min(rest), 2), "rest_mean": round(float(np.mean(rest)), 2),
                          "person_min": round(min(body), 2), "person_mean": round(float(np.mean(body)), 2),
                          "person_luma_min": round(min(body_y), 2), "encoder_ceiling_person": round(ceiling, 2)},
        "render_s": round(render_s, 1), "split": args.split, "judges": list(read), "bar": bar,
    }  # fmt: skip
    bl.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

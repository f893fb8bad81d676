"""Lip-sync quality benchmark: `python -m benchmarks.bench_lipsync [--quick] [--model PATH_OR_NAME] [--pose POSE]`.

Renders espeak-ng speech clips (``benchmarks/lipsync_clips.py``: held-out sentences and voices by default;
``--split human``: recorded speech, ``benchmarks/human_clips.py``; ``--split piper``: a neural voice,
``benchmarks/piper_clips.py``; ``--split flite``: Flite's slt, ``benchmarks/flite_clips.py``; ``--split mbrola``:
MBROLA's us2, a real speaker's diphones, ``benchmarks/mbrola_clips.py``) with a2v exactly
as ``a2v generate`` does, decodes the MP4 with the bundled ffmpeg and scores the RENDERED PIXELS against a
per-frame target mouth openness taken from the phoneme at each frame's centre time (Rhubarb Lip Sync's mouth
shapes; the mapping table is in ``lipsync_clips.py``). Nothing model-specific is read: any model a2v can run (the
built-in one, a Wav2Lip-style ONNX file or models-folder name) is scored the same way.

Measured mouth state (``measure_mouth``): the area of the mouth's interior, in px
----------------------------------------------------------------------------------
1. The mouth box: ``±(half_width + 12) x ±(max_open + 8)`` px around the pose's mouth centre
   (``head_origin + mouth_center``), moved with the pose's idle head sway (``compose.idle_state``: a pure,
   model-independent function of the frame index, up to ±2 px) and resampled bilinearly at that sub-pixel
   position, so the crop is the same patch of face in every frame whatever the model. (The box has a margin of
   12/8 px around the largest mouth, so the area below hardly depends on it: without the registration a closed
   mouth's area moves by ~6 px² and r by < 0.01 on the built-in model.)
2. Every pixel of the crop is weighted ``clip((T - luma) / (T - D), 0, 1)`` and the weights are summed: the
   opening's area, dark interior counted fully and its antialiased edge partly, lips, skin and teeth not at all.
   ``D`` is the interior's luma (0.5th percentile of all crop pixels of the run, all clips pooled: the inside of
   an open mouth) and ``T = D + 0.35 (skin - D)`` with skin = the median: below the lips of every built-in pose
   (their lips sit 0.5-0.65 of the way from interior to skin) and of a natural face. One threshold per run, so
   clips are comparable. A closed mouth leaves only the thin dark seam between the lips: a small constant.

Why not the first principal component of the mouth box (tried first): on the built-in cartoon it mixes lip
thickness with opening, because the lips are pressed thin for p/b/m but relaxed at rest, so a closed mouth in a
pause scored mid-range (silence closed 0.01 while the pixels showed closed lips). The interior area is what
"openness" means, needs no sign convention, is linear in the opening's height, and needs no knowledge of the
model: a cartoon's dark-red inside and a Wav2Lip face's dark mouth both count, while teeth (bright) do not.

Metrics (per clip, then pooled over clips)
------------------------------------------
- ``r``: Pearson correlation of the measured state with the target. Pooled: every clip's measure is rescaled to
  its 2nd..98th percentile range first (clips differ in level), then all frames are correlated at once.
- ``lag``: the shift (within ±10 frames) maximizing the pooled correlation; positive = the video is late.
- ``silence closed``: share of frames inside pauses >= 0.2 s whose measure is in the lowest 20 % of the clip's
  range (range = 2nd..98th percentile of the measure over the clip).
- ``p/b/m closed``: share of p, b, m phonemes whose midpoint frame is in the lowest 25 % of that range.
- ``frames exact``: clips whose decoded frame count equals ceil(duration x 25).
- ``max A/V ms``: largest |decoded audio track length - frames / 25| over the clips (a2v pads the last frame:
  up to 40 ms is by design).

Rows: ``rms`` is the baseline lip flap: the RMS of the 40 ms of audio around each frame centre scored directly
as the measured signal (no rendering, so no frame/A-V figures). ``oracle`` (opt-in, ``--model oracle``) renders
the target itself as a plain drawn mouth: a check of the measurement, which should score r ≈ 1.

Targets for a good model on held-out speech (the issue): r >= 0.85, lag 0 (±1), silence closed >= 0.95,
p/b/m closed >= 0.75, frame count exact. Output: a table on stdout and ``benchmarks/out/lipsync.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import lipsync_clips as lc

ROOT = Path(__file__).resolve().parents[1]


FPS = lc.FPS
MAX_LAG = 10
SILENCE_Q = 0.20  # "closed" in a pause: lowest 20 % of the clip's range
PBM_Q = 0.25  # "closed" on a p/b/m midpoint: lowest 25 %
RANGE_PCT = (2.0, 98.0)
TARGETS = {"r": 0.85, "lag": 1, "silence_closed": 0.95, "pbm_closed": 0.75}
DEFAULT_POSE = "ava-front"
LUMA = (0.299, 0.587, 0.114)
DARK_SPLIT = 0.35  # interior threshold: this far from the interior's luma towards the skin's
OUT = ROOT / "benchmarks" / "out" / "lipsync.json"
BASELINE = "rms"
ORACLE = "oracle"


# --------------------------------------------------------------------------------------------------------------------
# Metrics (pure functions of per-frame signals)
# --------------------------------------------------------------------------------------------------------------------


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either signal is constant or empty."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def robust_range(x: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles of ``x``."""
    lo, hi = np.percentile(np.asarray(x, dtype=np.float64), RANGE_PCT)
    return float(lo), float(hi)


def rescale(x: np.ndarray) -> np.ndarray:
    """``x`` mapped so that its 2nd..98th percentile range is 0..1 (constant signals map to 0)."""
    lo, hi = robust_range(x)
    x = np.asarray(x, dtype=np.float64)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def in_lowest(x: np.ndarray, frac: float) -> np.ndarray:
    """Which samples of ``x`` are in the lowest ``frac`` of its 2nd..98th percentile range."""
    lo, hi = robust_range(x)
    return np.asarray(x, dtype=np.float64) <= lo + frac * (hi - lo)


def shifted_pair(measured: np.ndarray, target: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping parts of measured[t + lag] and target[t] (positive lag: the video is late)."""
    n = min(len(measured), len(target))
    m, t = measured[:n], target[:n]
    if lag >= 0:
        return m[lag:], t[: n - lag]
    return m[: n + lag], t[-lag:]


def lag_curve(measured: list[np.ndarray], targets: list[np.ndarray], max_lag: int = MAX_LAG) -> dict[int, float]:
    """Pooled Pearson r of (rescaled) measured vs target at every lag in -max_lag..max_lag."""
    curve = {}
    for lag in range(-max_lag, max_lag + 1):
        pairs = [shifted_pair(rescale(m), t, lag) for m, t in zip(measured, targets, strict=True)]
        curve[lag] = pearson(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
    return curve


def best_lag(curve: dict[int, float]) -> int:
    """The lag of the highest correlation (the smallest |lag| on ties)."""
    return max(curve, key=lambda k: (round(curve[k], 9), -abs(k)))


@dataclass
class ClipScore:
    name: str
    voice: str
    frames_expected: int
    frames: int  # frames scored (decoded frames, or the signal's length)
    r: float
    lag: int
    silence_closed: int
    silence_frames: int
    pbm_closed: int
    pbm_count: int
    frames_decoded: int | None = None  # None: not a rendering (baseline)
    av_mismatch_ms: float | None = None


def score_clip(
    name: str, voice: str, measured: np.ndarray, truth: lc.GroundTruth, frames_decoded: int | None = None,
    audio_seconds: float | None = None,
) -> ClipScore:
    """Metrics of one clip's measured mouth signal against its ground truth."""
    n_exp = len(truth.target)
    n = min(len(measured), n_exp)
    m, t = np.asarray(measured[:n], dtype=np.float64), truth.target[:n]
    sil = truth.silence[:n]
    pbm = truth.pbm[truth.pbm < n]
    curve = lag_curve([m], [t])
    av = None
    if frames_decoded is not None and audio_seconds is not None:
        av = abs(audio_seconds - frames_decoded / FPS) * 1000.0
    return ClipScore(
        name=name,
        voice=voice,
        frames_expected=n_exp,
        frames=n,
        r=pearson(m, t),
        lag=best_lag(curve),
        silence_closed=int(np.sum(in_lowest(m, SILENCE_Q)[sil])),
        silence_frames=int(np.sum(sil)),
        pbm_closed=int(np.sum(in_lowest(m, PBM_Q)[pbm])),
        pbm_count=len(pbm),
        frames_decoded=frames_decoded,
        av_mismatch_ms=av,
    )


@dataclass
class Row:
    model: str
    clips: int
    frames: int
    r: float
    r_clip_mean: float
    lag: int
    r_at_lag: float
    silence_closed: float
    pbm_closed: float
    frames_exact: int | None  # clips with exact frame count (None for the baseline)
    max_av_ms: float | None
    lag_curve: dict[int, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def meets_targets(self) -> bool:
        return (
            self.r >= TARGETS["r"]
            and abs(self.lag) <= TARGETS["lag"]
            and self.silence_closed >= TARGETS["silence_closed"]
            and self.pbm_closed >= TARGETS["pbm_closed"]
            and self.frames_exact == self.clips
        )


def pool(model: str, scores: list[ClipScore], measured: list[np.ndarray], truths: list[lc.GroundTruth]) -> Row:
    """Pooled metrics over clips: r and lag over all frames (each clip rescaled), closures over all events."""
    ms = [np.asarray(m[: s.frames], dtype=np.float64) for m, s in zip(measured, scores, strict=True)]
    ts = [t.target[: s.frames] for t, s in zip(truths, scores, strict=True)]
    curve = lag_curve(ms, ts)
    lag = best_lag(curve)
    sil_n = sum(s.silence_frames for s in scores)
    pbm_n = sum(s.pbm_count for s in scores)
    rendered = [s for s in scores if s.frames_decoded is not None]
    return Row(
        model=model,
        clips=len(scores),
        frames=sum(s.frames for s in scores),
        r=curve[0],
        r_clip_mean=float(np.mean([s.r for s in scores])) if scores else 0.0,
        lag=lag,
        r_at_lag=curve[lag],
        silence_closed=sum(s.silence_closed for s in scores) / sil_n if sil_n else float("nan"),
        pbm_closed=sum(s.pbm_closed for s in scores) / pbm_n if pbm_n else float("nan"),
        frames_exact=sum(s.frames_decoded == s.frames_expected for s in rendered) if rendered else None,
        max_av_ms=max((s.av_mismatch_ms or 0.0) for s in rendered) if rendered else None,
        lag_curve={k: round(v, 4) for k, v in curve.items()},
    )


# --------------------------------------------------------------------------------------------------------------------
# The RMS baseline
# --------------------------------------------------------------------------------------------------------------------


def rms_signal(audio: np.ndarray, sample_rate: int, n_frames: int, window_s: float = 0.04) -> np.ndarray:
    """RMS of the ``window_s`` of audio centred on each frame's centre time: the plainest lip flap."""
    half = max(1, round(window_s * sample_rate / 2))
    x = np.asarray(audio, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    centres = np.rint((np.arange(n_frames) + 0.5) / FPS * sample_rate).astype(np.int64)
    lo = np.clip(centres - half, 0, len(x))
    hi = np.clip(centres + half, 0, len(x))
    return np.sqrt((csum[hi] - csum[lo]) / np.maximum(hi - lo, 1))


# --------------------------------------------------------------------------------------------------------------------
# Measuring the rendered video
# --------------------------------------------------------------------------------------------------------------------


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class MouthBox:
    """Where to read the mouth: centre at rest (frame px), half sizes of the box, and the decoded region."""

    cx: float
    cy: float
    half_w: int
    half_h: int
    region: tuple[int, int, int, int]  # x0, y0, w, h of the area decoded from the video (covers sway)

    @classmethod
    def for_pose(cls, pose: str) -> MouthBox:
        from a2v_cli.engine import catalog
        from a2v_cli.engine.compose import MAX_SWAY

        art = catalog.pose_art(pose)
        s = art.mouth_style
        cx = art.head_origin[0] + art.mouth_center[0]
        cy = art.head_origin[1] + art.mouth_center[1]
        hw, hh = math.ceil(s.half_width + 12), math.ceil(s.max_open + 8)
        m = MAX_SWAY + 2
        height, width = art.background.shape[:2]
        x0, y0 = max(0, math.floor(cx - hw - m)), max(0, math.floor(cy - hh - m))
        x1, y1 = min(width, math.ceil(cx + hw + m) + 1), min(height, math.ceil(cy + hh + m) + 1)
        return cls(cx, cy, hw, hh, (x0, y0, x1 - x0, y1 - y0))


def decode_region(video: Path, region: tuple[int, int, int, int]) -> np.ndarray:
    """Every frame of ``video`` (no frame dropped or duplicated), cropped to ``region``: (N, h, w, 3) uint8."""
    x0, y0, w, h = region
    cmd = [ffmpeg(), "-nostdin", "-v", "error", "-i", str(video), "-map", "0:v:0", "-fps_mode", "passthrough",
           "-vf", f"format=rgb24,crop={w}:{h}:{x0}:{y0}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)


def audio_track_seconds(video: Path, rate: int = 48000) -> float:
    """Length of the decoded audio track of ``video`` (0.0 when it has none)."""
    cmd = [ffmpeg(), "-nostdin", "-v", "error", "-i", str(video), "-map", "0:a:0?", "-vn", "-ac", "1", "-ar", str(rate),
           "-f", "f32le", "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return len(raw) / 4 / rate


def sway_offsets(n: int, fps: float = FPS) -> np.ndarray:
    """(n, 2) head offsets (dx, dy) px of the pose's idle animation at frames 0..n-1 (the same for every model)."""
    from a2v_cli.engine.compose import idle_state

    states = [idle_state(i, fps) for i in range(n)]
    return np.array([(s.dx, s.dy) for s in states], dtype=np.float64)


def mouth_crops(frames: np.ndarray, box: MouthBox, offsets: np.ndarray | None = None) -> np.ndarray:
    """(N, 2*half_h+1, 2*half_w+1, 3) float32 crops centred on the (swaying) mouth, bilinearly resampled.

    ``offsets``: per-frame head offsets (default: the idle animation's); zeros for a still head.
    """
    n = len(frames)
    if offsets is None:
        offsets = sway_offsets(n)
    x0, y0 = box.region[:2]
    us = np.arange(-box.half_w, box.half_w + 1, dtype=np.float64)
    vs = np.arange(-box.half_h, box.half_h + 1, dtype=np.float64)
    out = np.empty((n, len(vs), len(us), 3), dtype=np.float32)
    h, w = frames.shape[1:3]
    for i in range(n):
        px = box.cx + offsets[i, 0] - x0 + us
        py = box.cy + offsets[i, 1] - y0 + vs
        ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        fx, fy = (px - ix).astype(np.float32), (py - iy).astype(np.float32)
        ix0, ix1 = np.clip(ix, 0, w - 1), np.clip(ix + 1, 0, w - 1)
        iy0, iy1 = np.clip(iy, 0, h - 1), np.clip(iy + 1, 0, h - 1)
        f = frames[i].astype(np.float32)
        top = f[iy0][:, ix0] * (1 - fx)[None, :, None] + f[iy0][:, ix1] * fx[None, :, None]
        bot = f[iy1][:, ix0] * (1 - fx)[None, :, None] + f[iy1][:, ix1] * fx[None, :, None]
        out[i] = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return out


def luminance(crops: np.ndarray) -> np.ndarray:
    """(N, h, w) uint8 Rec. 601 luma of RGB crops."""
    y = crops @ np.asarray(LUMA, dtype=np.float32)
    return np.clip(y + 0.5, 0, 255).astype(np.uint8)


def interior_threshold(lumas: list[np.ndarray]) -> tuple[float, float]:
    """(dark, threshold) for one run: the interior's luma and the luma below which a pixel counts as interior.

    ``dark`` is the 0.5th percentile of every crop pixel of the run (the inside of an open mouth: present in
    a good share of frames, darker than lips and skin), the skin is the median; the threshold sits
    ``DARK_SPLIT`` of the way from dark to skin, which is below the lips of every built-in pose (lip luma is
    0.5-0.65 of the way) and of a natural face.
    """
    sample = np.concatenate([y[:: max(1, len(y) // 200)].ravel() for y in lumas])
    dark = float(np.percentile(sample, 0.5))
    skin = float(np.median(sample))
    return dark, dark + DARK_SPLIT * max(skin - dark, 1.0)


def interior_area(luma: np.ndarray, dark: float, threshold: float) -> np.ndarray:
    """(N,) mouth interior area in px: each pixel counts clip((threshold - luma) / (threshold - dark), 0, 1)."""
    w = (threshold - luma.astype(np.float32)) / np.float32(max(threshold - dark, 1.0))
    return np.clip(w, 0, 1).reshape(len(luma), -1).sum(axis=1).astype(np.float64)


def measure_mouth(lumas: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, float]]:
    """Per-clip measured mouth state (interior area, px) of one run, and the thresholds used."""
    dark, threshold = interior_threshold(lumas)
    return [interior_area(y, dark, threshold) for y in lumas], {"dark_luma": round(dark, 1),
                                                                "threshold_luma": round(threshold, 1)}


def pca_mouth(crops: list[np.ndarray], truths: list[lc.GroundTruth], sample: int = 4000) -> list[np.ndarray]:
    """The issue's other suggested measure, as a cross-check: each frame's score on the first principal component
    of the mouth crops' luma (pooled over the run's clips), oriented so that frames in pauses score low."""
    flat = [c.reshape(len(c), -1).astype(np.float32) for c in crops]
    allf = np.concatenate(flat)
    mean = allf.mean(axis=0)
    pick = allf[np.linspace(0, len(allf) - 1, min(sample, len(allf))).astype(np.int64)] - mean
    pc = np.linalg.svd(pick, full_matrices=False)[2][0]
    scores = [(f - mean) @ pc for f in flat]
    sil = np.concatenate([sc[t.silence[: len(sc)]] for sc, t in zip(scores, truths, strict=True)])
    if len(sil) and float(sil.mean()) > float(np.concatenate(scores).mean()):
        scores = [-sc for sc in scores]
    return [sc.astype(np.float64) for sc in scores]


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


class OracleModel:
    """Draws the ground-truth openness as a plain mouth (lips + dark opening): checks the pixel measurement."""

    name = ORACLE
    provider = "CPUExecutionProvider"

    def __init__(self, pose: str) -> None:
        from a2v_cli.engine import catalog

        self.style = catalog.pose_art(pose).mouth_style
        self.target = np.zeros(0)
        self._frames = np.zeros(0, dtype=np.int64)

    def window_starts(self, frames: np.ndarray, fps: float) -> np.ndarray:
        from a2v_cli.engine.features import centered_window_starts

        self._frames = np.asarray(frames, dtype=np.int64)  # the renderer asks right before paint()
        return centered_window_starts(frames, fps)

    def begin(self, reader: object) -> None:
        """Nothing to measure: the target is given."""

    def paint(self, mel: np.ndarray, mouths: np.ndarray, targets: list[np.ndarray]) -> None:
        s = self.style
        for i, f in enumerate(self._frames):
            o = float(self.target[f]) if f < len(self.target) else 0.0
            for img in targets:
                _ellipse(img[i], mouths[i], s.half_width, s.lip_thickness + o * s.max_open / 2, s.lip)
                _ellipse(img[i], mouths[i], s.half_width * 0.8, max(o * s.max_open / 2, 0.6), s.inner)


def _ellipse(img: np.ndarray, centre: np.ndarray, rx: float, ry: float, color: tuple[float, float, float]) -> None:
    """Antialiased filled ellipse (approximate distance) blended into a uint8 image in place."""
    cx, cy = float(centre[0]), float(centre[1])
    x0, x1 = max(int(cx - rx - 2), 0), min(int(cx + rx + 3), img.shape[1])
    y0, y1 = max(int(cy - ry - 2), 0), min(int(cy + ry + 3), img.shape[0])
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = (np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) - 1.0) * min(rx, ry)
    a = np.clip(0.5 - d, 0, 1)[..., None]
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(region * (1 - a) + np.array(color, np.float32) * 255 * a + 0.5, 0, 255).astype(np.uint8)


def builtin_available() -> bool:
    from a2v_cli.engine.lipsync import ARTICULATOR_FILE, MOUTH_FILE, model_dir

    return (model_dir() / ARTICULATOR_FILE).is_file() and (model_dir() / MOUTH_FILE).is_file()


@dataclass
class Rendered:
    frames: np.ndarray  # (N, h, w, 3) uint8, the decoded mouth region
    audio_seconds: float
    render_s: float


def render_clip(clip: lc.Clip, pose: str, model: object, work: Path, keep: Path | None) -> Rendered:
    """Render ``clip`` as `a2v generate` does (decode, render) and decode the mouth region back from the MP4."""
    import soundfile as sf

    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.render import RenderJob, render

    d = work / clip.name
    d.mkdir(parents=True, exist_ok=True)
    wav = d / "speech.wav"
    sf.write(str(wav), clip.audio, clip.sample_rate, subtype="PCM_16")
    t0 = time.perf_counter()
    prepared = decode(wav, d, 1e9)
    result = render(RenderJob(pose, prepared, d / "video.mp4", d / "mask.mp4"), model=model)  # type: ignore[arg-type]
    render_s = time.perf_counter() - t0
    box = MouthBox.for_pose(pose)
    frames = decode_region(result.video_path, box.region)
    seconds = audio_track_seconds(result.video_path)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        result.video_path.replace(keep / f"{clip.name}.mp4")
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    return Rendered(frames, seconds, render_s)


def evaluate_model(
    spec: str, clips: list[lc.Clip], truths: list[lc.GroundTruth], pose: str, device: str, keep: Path | None,
    log: bool = True,
) -> tuple[Row, list[ClipScore]]:
    """Render every clip with model ``spec`` and score the pixels."""
    from a2v_cli.engine import catalog
    from a2v_cli.engine.lipsync import load_model

    art = catalog.pose_art(pose)
    if spec == ORACLE:
        model: object = OracleModel(pose)
    else:
        model = load_model(None if spec == "builtin" else spec, art, device)
    box = MouthBox.for_pose(pose)
    lumas, fixed, decoded, seconds = [], [], [], []
    t_render = 0.0
    with tempfile.TemporaryDirectory(prefix="a2v-lipsync-") as tmp:
        for k, (clip, truth) in enumerate(zip(clips, truths, strict=True)):
            if isinstance(model, OracleModel):
                model.target = truth.target
            r = render_clip(clip, pose, model, Path(tmp), keep / spec.replace("/", "_") if keep else None)
            t_render += r.render_s
            lumas.append(luminance(mouth_crops(r.frames, box)))
            fixed.append(luminance(mouth_crops(r.frames, box, np.zeros((len(r.frames), 2)))))
            decoded.append(len(r.frames))
            seconds.append(r.audio_seconds)
            if log:
                print(f"  [{spec}] {k + 1}/{len(clips)} {clip.name}: {clip.duration:.1f} s, {r.render_s:.1f} s",
                      file=sys.stderr, flush=True)
    measured, thresholds = measure_mouth(lumas)
    scores = [
        score_clip(c.name, c.voice, m, t, n, s)
        for c, m, t, n, s in zip(clips, measured, truths, decoded, seconds, strict=True)
    ]
    row = pool(getattr(model, "name", spec), scores, measured, truths)
    cross = {}
    for label, crops in (("pca", lumas), ("pca_fixed_box", fixed)):
        pcs = pca_mouth(crops, truths)
        cross[label] = summary(pool(label, [score_clip(c.name, c.voice, m, t) for c, m, t in
                                            zip(clips, pcs, truths, strict=True)], pcs, truths))  # fmt: skip
    row.extra = {**thresholds, "render_s": round(t_render, 1),
                 "by_language": by_language(row.model, clips, scores, measured, truths), **cross}
    return row, scores


def evaluate_baseline(clips: list[lc.Clip], truths: list[lc.GroundTruth]) -> tuple[Row, list[ClipScore]]:
    measured = [rms_signal(c.audio, c.sample_rate, len(t.target)) for c, t in zip(clips, truths, strict=True)]
    scores = [score_clip(c.name, c.voice, m, t) for c, m, t in zip(clips, measured, truths, strict=True)]
    row = pool(BASELINE, scores, measured, truths)
    # the same flap on a dB scale (floor -60 dBFS): how much the p/b/m figure owes to the amplitude scale
    db = [20.0 * np.log10(np.maximum(m, 1e-3)) for m in measured]
    db_row = pool("rms-db", [score_clip(c.name, c.voice, m, t) for c, m, t in zip(clips, db, truths, strict=True)],
                  db, truths)
    row.extra = {"by_language": by_language(BASELINE, clips, scores, measured, truths), "db_scale": summary(db_row)}
    return row, scores


def summary(row: Row) -> dict[str, float]:
    return {"clips": row.clips, "r": round(row.r, 3), "lag": row.lag, "silence_closed": round(row.silence_closed, 3),
            "pbm_closed": round(row.pbm_closed, 3)}


def by_language(
    model: str, clips: list[lc.Clip], scores: list[ClipScore], measured: list[np.ndarray], truths: list[lc.GroundTruth]
) -> dict[str, dict[str, float]]:
    """Pooled r / silence / p/b/m per language group (English vs each other language)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault("en" if c.language.startswith("en") else c.language, []).append(i)
    out = {}
    for g, idx in sorted(groups.items()):
        row = pool(model, [scores[i] for i in idx], [measured[i] for i in idx], [truths[i] for i in idx])
        out[g] = summary(row)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def fmt_table(rows: list[Row]) -> str:
    head = ("model", "r", "lag", "silence closed", "p/b/m closed", "frames exact", "max A/V ms", "clips", "targets")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        exact = "n/a" if r.frames_exact is None else f"{r.frames_exact}/{r.clips}"
        av = "n/a" if r.max_av_ms is None else f"{r.max_av_ms:.1f}"
        lag = f"{r.lag:+d}" if r.lag else "0"
        ok = "n/a" if r.model == BASELINE else ("MET" if r.meets_targets() else "not met")
        lines.append(f"| {r.model} | {r.r:.3f} | {lag} | {r.silence_closed:.3f} | {r.pbm_closed:.3f} | {exact} | {av} |"
                     f" {r.clips} | {ok} |")
    return "\n".join(lines)


SPLIT_CHOICES = (*lc.SPLITS, "human", "piper", "flite", "mbrola")
SPLIT_HELP = (
    "heldout / train: espeak-ng clips; human: recorded speech with forced-aligned phonemes (benchmarks/human_clips.py;"
    " run `python -m benchmarks.human_clips --fetch` once); piper: held-out sentences in a neural voice"
    " (benchmarks/piper_clips.py --fetch once); flite: the same in Flite's slt, a voice never trained on"
    " (benchmarks/flite_clips.py); mbrola: the same in MBROLA's us2, a real speaker's diphones, never trained on"
    " (benchmarks/mbrola_clips.py)"
)


def load_clips(split: str, n: int | None, seed: int, per_clip: tuple[int, int] = (2, 3)) -> list[lc.Clip]:
    """The clips of one of ``SPLIT_CHOICES`` (``n``: how many, None for the split's default)."""
    if split == "human":
        from benchmarks.human_clips import human_clips

        return human_clips()[:n] if n else human_clips()
    if split == "piper":
        from benchmarks.piper_clips import piper_clips

        return piper_clips(n or 12, seed)
    if split == "flite":
        from benchmarks.flite_clips import flite_clips

        return flite_clips(n or 12, seed)
    if split == "mbrola":
        from benchmarks.mbrola_clips import mbrola_clips

        return mbrola_clips(n or 12, seed)
    return lc.make_clips(split, n, seed, per_clip)


def write_report(path: Path, report: dict[str, object]) -> None:
    """The benchmark's JSON report (numpy numbers as floats), its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 short clips (2 sentences each): a fast check")
    ap.add_argument("--model", action="append", metavar="PATH_OR_NAME",
                    help="model to score (repeatable): builtin, a .onnx path, a models-folder name, or 'oracle'"
                         " (the target drawn as a mouth: checks the measurement). Default: builtin if its files exist")
    ap.add_argument("--pose", default=DEFAULT_POSE)
    ap.add_argument("--split", choices=SPLIT_CHOICES, default="heldout", help=SPLIT_HELP)
    ap.add_argument("--clips", type=int, default=None, help="clips per split (default 24 held-out / 48 train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--keep", type=Path, default=None, help="keep the rendered videos in this folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    n = args.clips if args.clips is not None else (6 if args.quick else None)
    per_clip = (2, 2) if args.quick else (2, 3)
    models = args.model
    if models is None:
        models = ["builtin"] if builtin_available() else []
        if not models:
            print("built-in model files not found (models/a2v-*.onnx): scoring the RMS baseline only", file=sys.stderr)
    t0 = time.perf_counter()
    clips = load_clips(args.split, n, args.seed, per_clip)
    truths = [lc.clip_truth(c) for c in clips]
    seconds = sum(c.duration for c in clips)
    print(f"{len(clips)} {args.split} clips, {seconds:.1f} s of speech, pose {args.pose}", file=sys.stderr)
    rows, details = [], {}
    row, scores = evaluate_baseline(clips, truths)
    rows.append(row)
    details[row.model] = scores
    for spec in models:
        row, scores = evaluate_model(spec, clips, truths, args.pose, args.device, args.keep)
        rows.append(row)
        details[row.model] = scores
    print(f"\n## Lip-sync quality: {args.split} ({len(clips)} clips, {seconds:.0f} s), pose {args.pose}\n")
    print(fmt_table(rows))
    print(f"\ntargets: r >= {TARGETS['r']}, lag 0 (±{TARGETS['lag']}), silence closed >= {TARGETS['silence_closed']},"
          f" p/b/m closed >= {TARGETS['pbm_closed']}, frame count exact")
    for r in rows:
        langs = r.extra.get("by_language") or {}
        if len(langs) > 1:
            parts = ", ".join(f"{g} {v['r']:.3f} ({v['clips']})" for g, v in langs.items())
            print(f"{r.model}: r by language (clips): {parts}")
    for r in rows:
        for label, what in (("pca", "first principal component, head-tracked box"),
                            ("pca_fixed_box", "first principal component, fixed box (head sway not removed)")):
            if label in r.extra:
                x = r.extra[label]
                print(f"{r.model}: cross-check {what}: r {x['r']:.3f}, lag {x['lag']}, silence closed"
                      f" {x['silence_closed']:.3f}, p/b/m closed {x['pbm_closed']:.3f}")
    for r in rows:
        if r.extra.get("threshold_luma") is not None:
            print(f"{r.model}: interior luma {r.extra['dark_luma']}, threshold {r.extra['threshold_luma']};"
                  f" render {r.extra['render_s']} s")
    if lc.unmapped():
        print(f"phoneme mnemonics without a table entry (scored 0.25): {', '.join(lc.unmapped())}")
    report = {
        "split": args.split,
        "pose": args.pose,
        "seed": args.seed,
        "quick": args.quick,
        "clips": [{"name": c.name, "voice": c.voice, "rate": c.rate, "pitch": c.pitch, "seconds": round(c.duration, 3),
                   "sentences": c.sentences} for c in clips],
        "targets": TARGETS,
        "rows": [{**asdict(r), "meets_targets": r.meets_targets()} for r in rows],
        "per_clip": {m: [asdict(s) for s in sc] for m, sc in details.items()},
        "unmapped_phonemes": lc.unmapped(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mouth-cue quality: `a2v cues` against the Rhubarb shapes of the phonemes actually spoken.

    python -m benchmarks.bench_cues                       # held-out espeak clips, the built-in articulator
    python -m benchmarks.bench_cues --split flite         # Flite's slt (never trained on); also human, piper
    python -m benchmarks.bench_cues --articulator /tmp/old/a2v-articulator-v4.onnx --articulator builtin
                                                          # an old one, rebuilt first (models/MODEL_CARD.md)

Every clip is decoded and cued exactly as `a2v cues` does (``engine.audio.decode``, ``engine.cues.mouth_cues``
with all extended shapes G, H, X). The cue track is read at 100 points a second and compared with the truth: the
shape of the phoneme sounding there (``lipsync_clips.rhubarb_shapes``: pauses X, p/b/m A, F/V G, L H, vowels and
other consonants by their openness; schwa accepts B or C). Scores:

- ``accuracy``: share of the points whose cue is a right shape; A and X count as one (both are closed lips).
- ``A hit`` / ``G hit`` / ``H hit``: share of p/b/m, F/V and L phonemes whose midpoint (±20 ms) is cued A, G, H.
- ``A prec`` / ``G prec`` / ``H prec``: share of the time cued A (G, H) that lies within 50 ms of a p/b/m (F/V, L)
  phoneme; for A, pauses count too.
- ``X in pauses``: share of the points inside pauses of at least 0.2 s that are cued X.

Writes ``benchmarks/out/cues-<split>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks import lipsync_clips as lc
from benchmarks.bench_lipsync import SPLIT_CHOICES, SPLIT_HELP, load_clips

ROOT = Path(__file__).resolve().parents[1]


if TYPE_CHECKING:
    from a2v_cli.engine.cues import CueRule

RATE = 100  # points per second, Rhubarb's resolution
HIT_TOLERANCE_S = 0.02
PRECISION_MARGIN_S = 0.05
CLOSED = frozenset("AX")


def truth_track(clip: lc.Clip, times: np.ndarray) -> list[str]:
    """The right shape(s) at each of ``times``: "X" outside every phoneme."""
    out = ["X"] * len(times)
    phonemes = clip.phonemes
    for k, (start, end, _) in enumerate(phonemes):
        lo, hi = np.searchsorted(times, [start, end])
        shaped, frac_fixed = lc.shaped_as(phonemes, k)
        for i in range(lo, hi):
            frac = frac_fixed if frac_fixed is not None else (times[i] - start) / max(end - start, 1e-9)
            out[i] = lc.rhubarb_shapes(shaped, frac, clip.language)
    return out


def cue_track(cues: list, times: np.ndarray) -> list[str]:
    """The cued shape at each of ``times`` (cues tile the clip)."""
    starts = np.array([c.start for c in cues])
    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(cues) - 1)
    return [cues[i].value for i in idx]


@dataclass(frozen=True)
class ClipPoints:
    """What a clip is scored against at ``RATE`` points, whatever the cues: computed once per clip."""

    times: np.ndarray  # point times (s)
    truth: list[str]  # the right shape(s) at each point (``truth_track``)
    mids: dict[str, list[int]]  # per shape A, G, H: the midpoint index of each of its phonemes
    near: dict[str, np.ndarray]  # per shape: points within the precision margin of its phonemes (A: pauses too)
    silence: np.ndarray  # points inside pauses of at least 0.2 s


def clip_points(clip: lc.Clip) -> ClipPoints:
    times = (np.arange(int(np.ceil(clip.duration * RATE))) + 0.5) / RATE
    truth = truth_track(clip, times)
    mids, near = {}, {}
    for shape, is_member in (("A", lc.is_bilabial), ("G", lambda n: lc.rhubarb_shapes(n) == "G"),
                             ("H", lambda n: lc.rhubarb_shapes(n) == "H")):  # fmt: skip
        spans = [(s, e) for s, e, n in clip.phonemes if not lc.is_pause(n) and not lc.is_marker(n) and is_member(n)]
        mids[shape] = [int((s + e) / 2 * RATE) for s, e in spans]
        close = np.array([t == "X" for t in truth]) if shape == "A" else np.zeros(len(times), bool)
        for s, e in spans:
            close |= (times >= s - PRECISION_MARGIN_S) & (times < e + PRECISION_MARGIN_S)
        near[shape] = close
    silence = lc.clip_truth(clip, RATE).silence[: len(times)]
    return ClipPoints(times, truth, mids, near, silence)


def score_clip(clip: lc.Clip, cues: list, points: ClipPoints | None = None) -> dict[str, list[int]]:
    """Counts (hits, total) of every score for one clip; pooled over clips by the caller. ``points``: the clip's
    ``clip_points``, when the caller scores many cue sets of it."""
    pts = points or clip_points(clip)
    cued = cue_track(cues, pts.times)
    right = [c in t or (c in CLOSED and bool(set(t) & CLOSED)) for c, t in zip(cued, pts.truth, strict=True)]
    counts: dict[str, list[int]] = {"accuracy": [sum(right), len(right)]}
    tol = round(HIT_TOLERANCE_S * RATE)
    for shape, mids in pts.mids.items():
        hits = sum(any(cued[i] == shape for i in range(max(mid - tol, 0), min(mid + tol + 1, len(cued))))
                   for mid in mids)  # fmt: skip
        counts[f"{shape} hit"] = [hits, len(mids)]
        mine = np.array([c == shape for c in cued])
        counts[f"{shape} prec"] = [int((mine & pts.near[shape]).sum()), int(mine.sum())]
    counts["X in pauses"] = [sum(c == "X" for c, s in zip(cued, pts.silence, strict=False) if s),
                             int(pts.silence.sum())]  # fmt: skip
    return counts


def articulation_tracks(clips: list[lc.Clip], articulator: Path | None, device: str) -> list[np.ndarray]:
    """`a2v cues`' own path for each clip up to the shape choice: a 16-bit WAV, decoded, run by the articulator."""
    import soundfile as sf

    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.cues import articulation_track

    out = []
    with tempfile.TemporaryDirectory(prefix="a2v-cues-") as tmp:
        for c in clips:
            wav = Path(tmp) / "speech.wav"
            sf.write(str(wav), np.clip(c.audio, -1, 1), c.sample_rate, subtype="PCM_16")
            out.append(articulation_track(decode(wav, Path(tmp), 1e9), device, articulator))
    return out


def pooled_scores(
    clips: list[lc.Clip], tracks: list[np.ndarray], rule: CueRule | None = None,
    points: list[ClipPoints] | None = None,
) -> dict[str, list[int]]:
    """``score_clip`` counts summed over the clips, cued from their articulation tracks with all extended shapes
    (by ``rule``, default the app's ``CueRule``). ``points``: the clips' ``clip_points``, for a caller that scores
    many rules."""
    from a2v_cli.engine.cues import RULE, cues_from_track

    pooled: dict[str, list[int]] = {}
    for k, (clip, track) in enumerate(zip(clips, tracks, strict=True)):
        cues = cues_from_track(track, clip.duration, "GHX", rule or RULE)
        for key, (hit, total) in score_clip(clip, cues, points[k] if points else None).items():
            pooled.setdefault(key, [0, 0])
            pooled[key][0] += hit
            pooled[key][1] += total
    return pooled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=SPLIT_CHOICES, default="heldout", help=SPLIT_HELP)
    ap.add_argument("--clips", type=int, default=None, help="clips (default: the split's own count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--articulator", action="append", metavar="PATH",
                    help="articulator graph to score (repeatable; 'builtin' = the one `a2v cues` uses, the default)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/out/cues-SPLIT.json)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    clips = load_clips(args.split, args.clips, args.seed)
    seconds = sum(c.duration for c in clips)
    print(f"{len(clips)} {args.split} clips, {seconds:.0f} s of speech", file=sys.stderr)
    rows: dict[str, dict[str, list[int]]] = {}
    for spec in args.articulator or ["builtin"]:
        path = None if spec == "builtin" else Path(spec)
        rows[spec if path is None else path.stem] = pooled_scores(clips, articulation_tracks(clips, path, args.device))
    keys = list(next(iter(rows.values())))
    print(f"\n## Mouth cues: {args.split} ({len(clips)} clips, {seconds:.0f} s)\n")
    print("| articulator | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, pooled in rows.items():
        cells = [f"{h / t:.3f} ({t})" if t else "-" for h, t in (pooled[k] for k in keys)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    out = args.out or ROOT / "benchmarks" / "out" / f"cues-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"split": args.split, "clips": len(clips), "seconds": round(seconds, 1), "counts": rows,
              "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose the thresholds of `a2v cues` (``engine.cues.CueRule``) on development voices, never the held-out ones.

    python -m models.tune_cues [--articulator models/a2v-articulator-v6.onnx]

Development clips: our own training sentences spoken by the espeak-ng development voices (``Recipe.dev_voices``,
English ones: never trained on, and not the benchmark's held-out voices) and by Festival's Czech ``czech_ph`` (a
real speaker's unit-selection voice, never trained on). Each clip goes through `a2v cues`' own path once
(``engine.cues.articulation_track``); every rule of the grid is then scored with ``benchmarks/bench_cues.py``'s
``score_clip``, pooled over the clips. Objective: the mean of the shape accuracy and the F1 (hit rate x precision)
of A, G and H. It prints the best rules and the current one; copy the chosen thresholds into ``CueRule`` by hand.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import zlib
from pathlib import Path

import numpy as np

from benchmarks import lipsync_clips as lc
from benchmarks.bench_cues import articulation_tracks, clip_points, pooled_scores
from models import train_articulator as ta

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


SEED = 7
GRID = {
    "press": (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6),
    "labiodental": (0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5),
    "lateral": (0.3, 0.4, 0.5, 0.6),
    "labiodental_quiet": (0.5,),
    "shut": (0.1, 0.15, 0.2, 0.25),
    "closed": (0.0, 0.03, 0.06, 0.1),
}


def dev_specs(per_voice: int) -> list[lc.ClipSpec]:
    """Clip recipes: English dev voices x our sentences, and Czech sentences in czech_ph."""
    voices = [v for v in ta.Recipe.dev_voices if v.startswith("en")]
    jobs = [(v, ta.EXTRA_SENTENCES) for v in voices] + [(f"festival:{ta.FESTIVAL_CZECH_DEV_VOICE}", ta.CZECH_SENTENCES)]
    out = []
    for voice, sentences in jobs:
        for k in range(per_voice * (2 if voice.startswith("festival") else 1)):
            rng = np.random.default_rng([SEED, zlib.crc32(voice.encode()), k])
            n = int(rng.integers(2, 4))
            chosen = tuple(sentences[int(i)] for i in rng.choice(len(sentences), size=n, replace=False))
            out.append(lc.ClipSpec("dev", len(out), voice, int(rng.integers(120, 221)), int(rng.integers(30, 71)),
                                   chosen, tuple(float(rng.uniform(0.3, 0.8)) for _ in range(n - 1)),
                                   float(rng.uniform(0.15, 0.4))))  # fmt: skip
    return out


def speak(spec: lc.ClipSpec) -> lc.Clip:
    clip = ta.speak_clip(spec)
    if spec.voice.startswith("festival"):
        clip.voice = "cs"  # lipsync_clips scores Czech like the other non-English languages
    return clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articulator", type=Path, default=ta.V6_FILE)
    ap.add_argument("--per-voice", type=int, default=5, help="clips per espeak voice (twice as many for czech_ph)")
    args = ap.parse_args()

    from a2v_cli.engine.cues import RULE, CueRule

    specs = dev_specs(args.per_voice)
    with mp.get_context("fork").Pool(2, maxtasksperchild=1) as pool:  # fresh espeak state per clip
        clips = pool.map(speak, specs, chunksize=1)
    tracks = articulation_tracks(clips, args.articulator, "cpu")
    points = [clip_points(c) for c in clips]  # what the clips are scored against: once, for every rule
    print(f"{len(clips)} development clips, {sum(c.duration for c in clips):.0f} s", flush=True)

    def f1(p: dict[str, list[int]], shape: str) -> float:
        hit = p[f"{shape} hit"][0] / max(p[f"{shape} hit"][1], 1)
        prec = p[f"{shape} prec"][0] / max(p[f"{shape} prec"][1], 1)
        return 2 * hit * prec / max(hit + prec, 1e-9)

    results = []
    rules = [CueRule(**dict(zip(GRID, v, strict=True))) for v in itertools.product(*GRID.values())]
    for rule in [RULE, *rules]:
        pooled = pooled_scores(clips, tracks, rule, points)
        acc = pooled["accuracy"][0] / pooled["accuracy"][1]
        scores = {"accuracy": acc, "A F1": f1(pooled, "A"), "G F1": f1(pooled, "G"), "H F1": f1(pooled, "H")}
        x_in_pauses = pooled["X in pauses"][0] / max(pooled["X in pauses"][1], 1)
        results.append((float(np.mean(list(scores.values()))), rule, {**scores, "X in pauses": x_in_pauses}))
    current = results[0]
    ranked = sorted(results[1:], key=lambda r: -r[0])
    for label, (obj, rule, scores) in [("current", current)] + [(f"#{i + 1}", r) for i, r in enumerate(ranked[:8])]:
        cells = "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
        print(f"{label:8s} objective {obj:.4f}  {rule}  {cells}")


if __name__ == "__main__":
    main()

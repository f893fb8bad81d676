"""Refine the articulator's hand-set constants on the TRAINING sentences and voices only.

    python -m models.tune_articulator [--rounds 3]

A coordinate search over a few constants of ``build_models.ARTICULATOR_PARAMS`` (each tried at a handful of
offsets around its current value), maximizing, on clean and noisy (-35 dB) training clips:

    r(open, target) + 0.5 * p/b/m-closed fraction + 0.25 * (peak press inside p/b/m - 2 x mean press on open vowels)

with a penalty of 10 per unit of pause frames whose ``open`` is not exactly 0.

The F1 band's lower edge and the silence gate are not searched: they are set from acoustics (F1 of close vowels
lies below 450 Hz; the gate sits above the level of white noise 35 dB below speech, see MODEL_CARD.md).
It prints the refined constants; copy the ones you accept into ``ARTICULATOR_PARAMS`` by hand. Held-out sentences
and voices are never loaded here; ``eval_articulator.py`` reports them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models import build_models
from models import eval_articulator as ev

HERE = Path(__file__).resolve().parent


STEPS: dict[str, tuple[float, ...]] = {
    "smooth_sigma": (-0.4, -0.2, 0.2, 0.4),
    "f1_hi_hz": (-150.0, -75.0, 75.0, 150.0),
    "level_lo": (-0.4, -0.2, 0.2, 0.4),
    "level_hi": (-0.4, -0.2, 0.2, 0.4),
    "height_bias": (-0.15, -0.075, 0.075, 0.15),
    "height_gain": (-0.1, -0.05, 0.05, 0.1),
    "prom_lo": (-0.4, -0.2, 0.2, 0.4),
    "hole_cols": (-1.0, 1.0),
    "dip_span": (-1.0, 1.0, 2.0),
    "quiet_hi": (-0.2, 0.2),
    "murmur_hi": (-0.2, 0.2),
    "prom_hi": (-0.3, -0.15, 0.15, 0.3),
    "prom_floor": (-0.2, -0.1, 0.1, 0.2),
    "fric_open": (-0.1, -0.05, 0.05, 0.1),
    "dip_lo": (-0.5, -0.25, 0.25, 0.5),
    "dip_hi": (-0.5, -0.25, 0.25, 0.5),
    "quiet_lo": (-0.2, 0.2),
    "murmur_lo": (-0.3, -0.15, 0.15, 0.3),
    "press_close": (-0.3, -0.15),
}


def objective(params: dict[str, float], clips: list[ev.Clip]) -> tuple[float, dict[str, float]]:
    try:
        model = build_models.build_articulator(params)
    except Exception:  # an invalid combination (e.g. lo >= hi)
        return -1e9, {}
    outs = ev.articulate(ev.session(model.SerializeToString()), clips)
    m = ev.score(clips, [o[:, 0] for o in outs])
    m.update(ev.press_stats(clips, outs))
    value = m["r"] + 0.5 * m["pbm"] + 0.25 * (m["press_peak"] - 2.0 * m["press_vowel"])
    if m["silence"] < 1.0:
        value -= 10.0 * (1.0 - m["silence"])
    return value, m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    specs = [s for s in ev.clip_specs() if s.split == "train sentences / train voices"]
    clips = ev.load_clips(None, specs) + ev.load_clips(-35.0, specs)
    params = dict(build_models.ARTICULATOR_PARAMS)
    best, m = objective(params, clips)
    print(f"start {best:.4f} {m}")
    for rnd in range(args.rounds):
        for key, steps in STEPS.items():
            for step in steps:
                trial = {**params, key: float(np.round(params[key] + step, 4))}
                value, mt = objective(trial, clips)
                if value > best + 1e-4:
                    best, params, m = value, trial, mt
                    print(f"round {rnd} {key}={trial[key]:g}: {best:.4f} r={m['r']:.3f} pbm={m['pbm']:.3f}"
                          f" silence={m['silence']:.4f} press {m['press_peak']:.3f} / {m['press_vowel']:.3f}")
    print("\nrefined constants:")
    for key, value in params.items():
        if value != build_models.ARTICULATOR_PARAMS[key]:
            print(f"    {key!r}: {value:g},  # was {build_models.ARTICULATOR_PARAMS[key]:g}")


if __name__ == "__main__":
    main()

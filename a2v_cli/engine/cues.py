"""Mouth cues for 2D animators, in Rhubarb Lip Sync's shapes and its TSV and JSON layouts.

The same articulator that drives the renderer runs at 100 windows per second; each window's
(open, spread, round, press) maps to a shape, and runs shorter than MIN_CUE_S merge into their
neighbour so the animation does not flicker. Shapes: A closed (P, B, M), B slightly open / clenched
(most consonants, EE), C open (EH, AE), D wide open (AA), E slightly rounded (AO, ER), F puckered
(UW, OW, W), X idle (silence). The extended shapes G (F, V) and H (L) are not told apart by the
articulator and are not emitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine.audio import PcmReader, PreparedAudio

CUE_RATE = 100  # windows per second: Rhubarb's 10 ms resolution
MIN_CUE_S = 0.04
BATCH = 400


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    value: str


def shape_of(open_: float, spread: float, round_: float, press: float) -> str:
    """One window's articulation -> a Rhubarb mouth shape."""
    if open_ <= 0.0:
        return "A" if press >= 0.5 else "X"
    if press >= 0.6 and open_ < 0.15:
        return "A"
    if round_ >= 0.5:
        return "F" if open_ < 0.45 else "E"
    if open_ >= 0.75:
        return "D"
    if open_ >= 0.4:
        return "C"
    return "B"


def _merge(shapes: list[str], step: float, duration: float) -> list[Cue]:
    runs: list[list] = []  # [value, start_index, end_index]
    for i, s in enumerate(shapes):
        if runs and runs[-1][0] == s:
            runs[-1][2] = i + 1
        else:
            runs.append([s, i, i + 1])
    min_len = max(1, round(MIN_CUE_S / step))
    changed = True
    while changed and len(runs) > 1:  # fold short runs into the longer neighbour
        changed = False
        for k, (_, a, b) in enumerate(runs):
            if b - a < min_len:
                left = runs[k - 1] if k > 0 else None
                right = runs[k + 1] if k + 1 < len(runs) else None
                target = (
                    left if right is None or (left is not None and left[2] - left[1] >= right[2] - right[1]) else right
                )
                target[1], target[2] = min(target[1], a), max(target[2], b)
                del runs[k]
                if k > 0 and k < len(runs) and runs[k - 1][0] == runs[k][0]:
                    runs[k - 1][2] = runs[k][2]
                    del runs[k]
                changed = True
                break
    return [Cue(round(a * step, 2), round(min(b * step, duration), 2), v) for v, a, b in runs]


def mouth_cues(audio: PreparedAudio, device: str = "auto") -> list[Cue]:
    """Cues covering the whole recording, from the built-in articulator."""
    from a2v_cli.engine.features import centered_window_starts
    from a2v_cli.engine.lipsync import Articulator
    from a2v_cli.engine.render import mel_windows

    articulator = Articulator(device)
    total = max(1, int(np.ceil(audio.duration * CUE_RATE)))
    reader = PcmReader(audio)
    shapes: list[str] = []
    try:
        articulator.begin(reader)
        for start in range(0, total, BATCH):
            idx = np.arange(start, min(start + BATCH, total))
            mel = mel_windows(reader, centered_window_starts(idx, CUE_RATE))
            art = articulator.run(mel)
            shapes += [shape_of(*map(float, row)) for row in art]
    finally:
        reader.close()
    return _merge(shapes, 1.0 / CUE_RATE, audio.duration)


def to_tsv(cues: list[Cue]) -> str:
    """Rhubarb's TSV: one `start<TAB>shape` line per cue, then the end time with X."""
    lines = [f"{c.start:.2f}\t{c.value}" for c in cues]
    if cues:
        lines.append(f"{cues[-1].end:.2f}\tX")
    return "\n".join(lines) + "\n"


def to_json(cues: list[Cue], sound_file: str, duration: float) -> str:
    """Rhubarb's JSON: metadata plus mouthCues [{start, end, value}]."""
    doc = {
        "metadata": {"soundFile": sound_file, "duration": round(duration, 2)},
        "mouthCues": [{"start": c.start, "end": c.end, "value": c.value} for c in cues],
    }
    return json.dumps(doc, indent=2) + "\n"


def sound_name(source: str) -> str:
    return source if source == "-" or "://" in source else str(Path(source).absolute())

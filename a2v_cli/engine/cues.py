"""Mouth cues for 2D animators, in Rhubarb Lip Sync's shapes and its TSV and JSON layouts.

The same articulator that drives the renderer runs at 100 windows per second; each window's
(open, spread, round, press) and its F/V and L probabilities map to a shape, and runs shorter than
MIN_CUE_S merge into their neighbour so the animation does not flicker. Shapes: A closed (P, B, M),
B slightly open / clenched (most consonants, EE), C open (EH, AE), D wide open (AA), E slightly
rounded (AO, ER), F puckered (UW, OW, W), and Rhubarb's extended shapes G (upper teeth on the lower
lip: F, V), H (tongue raised: L) and X (idle: silence). As with Rhubarb's ``--extendedShapes``, a
set of art without some extended shapes gets their stand-ins: G -> B, H -> C, X -> A.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine.audio import PcmReader, PreparedAudio
from a2v_cli.errors import InputError

CUE_RATE = 100  # windows per second: Rhubarb's 10 ms resolution
MIN_CUE_S = 0.04
BATCH = 400
EXTENDED_SHAPES = "GHX"
STAND_IN = {"G": "B", "H": "C", "X": "A"}  # Rhubarb's replacements when an extended shape is not drawn


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    value: str


@dataclass(frozen=True)
class CueRule:
    """Thresholds of the shape choice, chosen on development voices (``models/tune_cues.py``; for v5, kept for v6).
    The F/V and L outputs are near 0 away from their phonemes, so low thresholds are still selective."""

    press: float = 0.2  # lip press at or above this (with a nearly shut jaw): A
    labiodental: float = 0.05  # F/V probability at or above this: G
    lateral: float = 0.3  # L probability at or above this: H
    labiodental_quiet: float = 0.5  # ... and where the silence gate is shut (breaths in pauses sound like f)
    shut: float = 0.2  # A needs the jaw below this (with the press above)
    closed: float = 0.03  # open below this (but not 0): A whatever the press


RULE = CueRule()


def shape_of(
    open_: float, spread: float, round_: float, press: float, labiodental: float = 0.0, lateral: float = 0.0,
    rule: CueRule = RULE,
) -> str:
    """One window's articulation (and F/V, L probabilities, when the articulator has them) -> a Rhubarb shape."""
    fv = labiodental >= rule.labiodental and labiodental - rule.labiodental >= lateral - rule.lateral
    if open_ <= 0.0:  # silence, or a sound too quiet for the gate: a voiceless f can be
        if fv and labiodental >= rule.labiodental_quiet:
            return "G"
        return "A" if press >= 0.5 else "X"
    if fv:
        return "G"  # before A: press rises on F/V too, and this output is the specific one
    if (press >= rule.press and open_ < rule.shut) or open_ < rule.closed:
        return "A"
    if lateral >= rule.lateral:
        return "H"
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


def check_extended(extended: str) -> str:
    """The extended shapes a user draws (Rhubarb's ``--extendedShapes``: any of G, H, X; "" for none)."""
    shapes = extended.upper()
    if any(c not in EXTENDED_SHAPES for c in shapes):
        raise InputError(f"unknown extended mouth shape in {extended!r}", "use any of G, H and X, or '' for none")
    return shapes


def restrict(shape: str, extended: str) -> str:
    """``shape``, or its stand-in when it is an extended shape the user does not draw."""
    return STAND_IN[shape] if shape in STAND_IN and shape not in extended else shape


def articulation_track(audio: PreparedAudio, device: str = "auto", articulator: Path | None = None) -> np.ndarray:
    """(N, 4 or 6) articulation (and F/V, L probabilities) at CUE_RATE over the whole recording, from the built-in
    articulator (or another articulator graph: the benchmarks compare versions)."""
    from a2v_cli.engine.features import centered_window_starts
    from a2v_cli.engine.lipsync import Articulator
    from a2v_cli.engine.render import mel_windows

    model = Articulator(device, articulator)
    total = max(1, int(np.ceil(audio.duration * CUE_RATE)))
    reader = PcmReader(audio)
    rows: list[np.ndarray] = []
    try:
        model.begin(reader)
        for start in range(0, total, BATCH):
            idx = np.arange(start, min(start + BATCH, total))
            art, ext = model.run_all(mel_windows(reader, centered_window_starts(idx, CUE_RATE)))
            rows.append(art if ext is None else np.concatenate([art, ext], axis=1))
    finally:
        reader.close()
    return np.concatenate(rows)


def cues_from_track(
    track: np.ndarray, duration: float, extended: str = EXTENDED_SHAPES, rule: CueRule = RULE
) -> list[Cue]:
    """Cues for an ``articulation_track``, using only the extended shapes named."""
    shapes = [restrict(shape_of(*map(float, row), rule=rule), extended) for row in track]
    return _merge(shapes, 1.0 / CUE_RATE, duration)


def mouth_cues(
    audio: PreparedAudio, device: str = "auto", extended: str = EXTENDED_SHAPES, articulator: Path | None = None
) -> list[Cue]:
    """Cues covering the whole recording, using only the extended shapes named."""
    extended = check_extended(extended)
    return cues_from_track(articulation_track(audio, device, articulator), audio.duration, extended)


def to_tsv(cues: list[Cue], extended: str = "GHX") -> str:
    """Rhubarb's TSV: one `start<TAB>shape` line per cue, then the end time with the idle shape.

    The idle shape is X, or its stand-in A when the art has no X (as Rhubarb writes it).
    """
    lines = [f"{c.start:.2f}\t{c.value}" for c in cues]
    if cues:
        lines.append(f"{cues[-1].end:.2f}\t{restrict('X', extended)}")
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

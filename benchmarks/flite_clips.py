"""Flite speech with the segment timings Flite prints itself: another family of voices for lip-sync evaluation.

Flite's clustergen voices (awb, rms, slt) are statistical parametric voices built from real speakers' recordings
(CMU ARCTIC); ``flite -psdur`` prints each segment's end time, so the phoneme timings are the synthesizer's own, as
with espeak-ng and Piper. Phones are Festival's radio set (ARPAbet), mapped to espeak mnemonics for lipsync_clips'
openness table. The articulator trains on awb and rms (models/train_articulator.py); slt is never trained on.

    python -m benchmarks.bench_lipsync --split flite      # Debian: apt install flite
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import lipsync_clips as lc

HELDOUT_VOICE = "slt"  # an American woman; never trained on
# Festival's radio phone set -> espeak mnemonic; the rest are ARPAbet in lower case (human_clips.espeak_name)
RADIO_EXTRA = {"ax": "@", "axr": "3:", "ix": "I", "dx": "t", "el": "l", "em": "m", "en": "n", "nx": "n",
               "pau": "_", "h#": "_", "brth": "_"}  # fmt: skip


def radio_phone(name: str) -> str:
    """espeak mnemonic of a Festival / Flite radio-set phone ("ax" -> "@", "aa" -> "A:", "pau" -> "_")."""
    from benchmarks.human_clips import espeak_name

    return RADIO_EXTRA.get(name) or espeak_name(name.upper())


def flite_sentence(text: str, spec: lc.ClipSpec) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """lipsync_clips synthesizer for a "flite:VOICE" spec: rate (wpm) -> duration_stretch 160 / rate."""
    import soundfile

    voice = spec.voice.split(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="a2v-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        run = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={160.0 / spec.rate:.3f}",
                              "-psdur", "-t", text, "-o", str(wav)], capture_output=True, text=True, check=True,
                             timeout=120)  # fmt: skip
        audio, sr = soundfile.read(str(wav), dtype="float32")
    phonemes: list[tuple[float, float, str]] = []
    prev = 0.0
    seg = len(audio) / sr
    for item in run.stdout.split():
        name, _, end = item.rpartition(":")
        if name and end:
            e = min(float(end), seg)
            if e > prev:
                phonemes.append((prev, e, radio_phone(name)))
                prev = e
    return audio, int(sr), phonemes


def flite_clip(spec: lc.ClipSpec) -> lc.Clip:
    """Speak a "flite:VOICE" recipe, scored as American English (Flite's lexicon)."""
    clip = lc.synthesize_clip(spec, flite_sentence)
    clip.voice = "en-us"  # openness table key (language_of)
    return clip


def flite_clips(n: int = 12, seed: int = 0, voice: str = HELDOUT_VOICE) -> list[lc.Clip]:
    """``n`` clips of lipsync_clips' held-out English sentences in a Flite voice (slt: never trained on)."""
    return [flite_clip(spec) for spec in lc.heldout_english_specs(n, seed, "flite", f"flite:{voice}")]

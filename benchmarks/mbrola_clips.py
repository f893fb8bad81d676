"""MBROLA speech with exact phoneme timings: real speakers' recorded diphones, for training and evaluation.

An MBROLA voice is a database of diphones cut from one real speaker's recordings (Debian non-free: ``mbrola`` and
``mbrola-us1`` ...). espeak-ng turns the text into MBROLA's phoneme file (``espeak-ng -v mb-us1 --pho``: one phone,
its duration in ms and a pitch curve per line) and ``mbrola`` concatenates the diphones to exactly those durations,
so the timings are the synthesizer's own, as with espeak-ng, Flite and Piper. The acoustics are a human voice's;
the prosody is espeak-ng's. Phones are the voice's SAMPA, mapped to espeak mnemonics for lipsync_clips' table.

models/train_articulator.py can add us1, us3, en1, it3, it4 and cz2 to its data (``--mbrola``; tried, not in the
built-in articulator's recipe: models/TRAINING.md); us2 (an American man) is never trained on::

    python -m benchmarks.bench_lipsync --split mbrola      # Debian non-free: apt install mbrola mbrola-us2
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import lipsync_clips as lc

HELDOUT_VOICE = "us2"  # an American man; never trained on
VOICE_DIR = Path("/usr/share/mbrola")
# voice (espeak-ng's "mb-" name without the prefix) -> openness-table language of its phones: lipsync_clips'
# language keys, it / cs as train_articulator, and "sampa" for English spoken with another language's diphones
# ("nl2-en": a Dutch speaker's), whose phones are that language's, scored by the general table (/a/ open).
LANGUAGE = {"us1": "en-us", "us2": "en-us", "us3": "en-us", "en1": "en", "it3": "it", "it4": "it", "cz2": "cs",
            **{f"{v}-en": "sampa" for v in ("af1", "nl2", "pl1", "ro1", "sw1", "sw2", "hu1", "gr2")}}  # fmt: skip
# SAMPA of the voices' phone sets -> espeak mnemonic; anything not listed has the same name in both (b, d, S, N ...).
# English voices: aspiration dropped first ("p_h" -> "p").
ENGLISH = {"@U": "oU", "A": "A:", "AI": "aI", "EI": "eI", "O": "O:", "O2": "O:", "i": "i:", "u": "u:", "r=": "3:",
           "l=": "@L", "{": "a", "4": "t", "5": "l", "Q": "0", "e": "E", "I@": "i@"}  # fmt: skip
# Other voices: stress digits and length marks dropped first ("a1" -> "a", "u0" -> "u", "2:" -> "2").
FOREIGN = {"i/": "j", "h\\": "h", "d'": "d", "t'": "t", "n'": "n^", "Au": "aU", "Ei": "eI", "2": "Y", "9": "W",
           "&": "W", "$": "@", "6": "@", "kh": "k", "ph": "p", "th": "t", "dj": "d", "tj": "t", "L": "l", "rs": "s"}


def database(voice: str) -> Path:
    """The diphone database a voice speaks with ("nl2-en" is English with nl2's diphones)."""
    name = voice.split("-", 1)[0]
    return VOICE_DIR / name / name


def available(voice: str) -> bool:
    return database(voice).is_file()


def mbrola_phone(name: str, language: str) -> str:
    """espeak mnemonic of an MBROLA SAMPA phone in ``language`` ("r=" -> "3:", "a1" -> "a", "_" -> "_")."""
    if language.startswith("en"):
        base = name.removesuffix("_h")
        return ENGLISH.get(base, base)
    base = name.rstrip("0123456789").rstrip(":") or name
    return FOREIGN.get(base, base)


def parse_pho(text: str, language: str) -> list[tuple[float, float, str]]:
    """[(start_s, end_s, mnemonic)] from an MBROLA phoneme file (comments ";" and blank lines skipped)."""
    out: list[tuple[float, float, str]] = []
    t = 0.0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or line.startswith(";"):
            continue
        end = t + float(fields[1]) / 1000.0
        if end > t:
            out.append((t, end, mbrola_phone(fields[0], language)))
        t = end
    return out


def mbrola_sentence(text: str, spec: lc.ClipSpec) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """lipsync_clips synthesizer for an "mbrola:VOICE" spec: espeak-ng's rate (wpm) and pitch, MBROLA's audio."""
    import soundfile

    voice = spec.voice.split(":", 1)[1]
    pho = subprocess.run(["espeak-ng", "-v", f"mb-{voice}", "-s", str(spec.rate), "-p", str(spec.pitch), "-q",
                          "--pho", text], capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="a2v-mbrola-") as tmp:
        pho_path, wav = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
        pho_path.write_text(pho)
        subprocess.run(["mbrola", "-e", str(database(voice)), str(pho_path), str(wav)],
                       capture_output=True, check=True, timeout=60)  # fmt: skip
        audio, sr = soundfile.read(str(wav), dtype="float32")
    return audio, int(sr), lc.within(parse_pho(pho, LANGUAGE[voice]), len(audio) / sr)


def mbrola_clip(spec: lc.ClipSpec) -> lc.Clip:
    """Speak an "mbrola:VOICE" recipe, scored in its voice's language."""
    clip = lc.synthesize_clip(spec, mbrola_sentence)
    clip.voice = LANGUAGE[spec.voice.split(":", 1)[1]]  # openness table key (language_of)
    return clip


def mbrola_clips(n: int = 12, seed: int = 0, voice: str = HELDOUT_VOICE) -> list[lc.Clip]:
    """``n`` clips of lipsync_clips' held-out English sentences in an MBROLA voice (us2: never trained on)."""
    return [mbrola_clip(spec) for spec in lc.heldout_english_specs(n, seed, "mbrola", f"mbrola:{voice}", pitch=True)]

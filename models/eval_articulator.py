"""Measure the articulator on espeak-ng speech with known phoneme timings.

    python -m models.eval_articulator                 # the shipped articulator (v6; needs libespeak-ng)
    python -m models.eval_articulator --model /tmp/old/a2v-articulator-v1.onnx   # v1: the figures in MODEL_CARD.md
    python -m models.eval_articulator --details       # + per-phoneme means of all four outputs

Runs the articulator exactly as the app does: 16 kHz audio (soxr), level normalization
(``normalizing_gain(frame_rms_db(audio))``), Wav2Lip mel, 16-column windows centred on each 25 fps frame.
Compares ``open`` with a Rhubarb-like per-frame target openness taken from the phoneme at the frame's centre
time, and reports, per split (training sentences/voices vs held-out sentences and held-out voices):

- r: Pearson correlation of ``open`` with the target (all frames of the split pooled; also the per-clip mean),
- silence: fraction of frames inside pauses >= 0.2 s with ``open`` exactly 0.0,
- p/b/m: fraction of p, b, m phonemes whose midpoint frame has ``open`` in the lowest 25 % of the clip's range,
- the same for a plain RMS-energy baseline (RMS of the 40 ms around the frame centre),
- flicker: direction reversals per second of ``open`` with both steps > 0.1 (up-down or down-up between three
  consecutive frames); the target's own rate is shown for scale,

once on clean speech and once with white noise 35 dB below the speech level (the 95th percentile of 20 ms RMS).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine.features import (
    SpectrumMeter,
    centered_window_starts,
    clip_spectrum,
    frame_rms_db,
    mel_spectrogram,
    normalizing_gain,
    stack_windows,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


FPS = 25.0
SR = 16_000
MIN_PAUSE_S = 0.2

CORPUS = (
    "The quick brown fox jumps over the lazy dog, then sleeps by a warm fire.",
    "Peter Piper picked a peck of pickled peppers.",
    "My mother bought a big bag of bread, butter, and maple syrup.",
    "Bob and Mary met at the museum, before the parade began.",
    "Father wants to park the car in the barn, far from the palm trees.",
    "She sees three green leaves on the tree, each one bright and clean.",
    "Who knew the blue moon would soon move over the pool?",
    "Hot coffee in the morning is all I want, honestly.",
    "Please bring me a cup of warm soup, a plum, and some bananas.",
    "Boats float slowly over the open ocean, going home.",
    "The map was in a black bag, under a heavy pile of papers.",
    "I am happy to be here, and I hope you are well.",
    "We bought apples, pears, and plums at the market by the bay.",
    "Every morning, my brother makes pancakes with maple syrup.",
    "The farmer parked his tractor, and walked up the path.",
    "Five brave men moved the piano, but dropped it on the mat.",
    "A big brown bear ate my apple pie, and then fell asleep.",
    "Simple problems sometimes need complex solutions, but not always.",
    # held out: never looked at while choosing the constants
    "Paul's small puppy barked at the mailman, then hid behind a bush.",
    "Remember to buy bread, milk, and lemons, before the shop closes.",
    "The lamp by the window was bumped, and it broke into pieces.",
    "Mom made a plum pudding, but Bob preferred pumpkin pie.",
    "How about a walk in the park, after lunch, with the dogs?",
    "Water is boiling on the stove, please turn it off, and join us.",
)
HELD_OUT_SENTENCES = frozenset(range(18, 24))
TRAIN_VOICES = ("en-us", "en-gb", "en+f3", "en-us+m3")
HELD_OUT_VOICES = ("en-gb-scotland", "en-us+f2", "en+f5", "en-029+m5")
RATES = (120, 160, 220)
PITCHES = (40, 50, 62)

# Rhubarb-like openness per espeak-ng mnemonic (digits and #/[ variant marks stripped). Diphthongs go from
# their first to their second value at their midpoint.
SILENCE, BILABIAL = 0.0, 0.0
OPENNESS: dict[str, float | tuple[float, float]] = {
    "p": BILABIAL, "b": BILABIAL, "m": BILABIAL,
    "f": 0.15, "v": 0.15,
    "l": 0.4, "@L": 0.4, "L": 0.4,
    "w": 0.35,
    "i:": 0.25, "i": 0.25, "I": 0.25, "j": 0.25, ";": 0.25,  # EE (and IH, the y glide)
    "E": 0.6, "e": 0.6, "a": 0.6, "V": 0.6, "VR": 0.6,  # EH, AE, AH
    "A:": 1.0, "aa": 1.0, "0": 1.0, "A": 1.0,  # AA
    "O:": 0.55, "O": 0.55, "O@": 0.55, "o@": 0.55, "3:": 0.55, "3": 0.55,  # AO, ER
    "@": 0.4, "a#": 0.4, "@-": 0.4,  # schwa: between B and C
    "u:": 0.35, "u": 0.35, "U": 0.35, "oU": 0.35, "o": 0.35,  # UW, UH, OW
    "aI": (1.0, 0.25), "aU": (1.0, 0.35), "eI": (0.6, 0.25), "OI": (0.55, 0.25), "aI@": (1.0, 0.4),
    "i@": (0.25, 0.4), "e@": (0.6, 0.4), "U@": (0.35, 0.4), "A@": (1.0, 0.25),
}  # fmt: skip
CONSONANT = 0.25  # t d n k g N s z S Z tS dZ T D h r ...


def base_mnemonic(name: str) -> str:
    """espeak mnemonic without variant marks; Festival phones ("cmu:aa") are mapped to espeak's p/b/m and "_"."""
    if name.startswith("cmu:"):
        phone = name[4:]
        return "_" if phone in ("pau", "h#") else phone
    base = name.rstrip("0123456789#[-")
    return base or name


def openness(name: str, frac: float) -> float:
    """Target openness of phoneme ``name`` at relative position ``frac`` (0..1) inside it."""
    if name.startswith("_") or name in ("cmu:pau", "cmu:h#"):
        return SILENCE
    if name.startswith("cmu:"):
        v = CMU_OPENNESS.get(name[4:], CONSONANT)
    else:
        v = OPENNESS.get(base_mnemonic(name), OPENNESS.get(name, CONSONANT))
    if isinstance(v, tuple):
        return v[0] if frac < 0.5 else v[1]
    return float(v)


@dataclass
class ClipSpec:
    sentence: int
    voice: str
    rate: int
    pitch: int

    @property
    def split(self) -> str:
        if self.voice.startswith("festival:"):
            return "Festival voices (held-out synthesizer)"
        s = "held-out sentences" if self.sentence in HELD_OUT_SENTENCES else "train sentences"
        v = "held-out voices" if self.voice in HELD_OUT_VOICES else "train voices"
        return f"{s} / {v}"


@dataclass
class Clip:
    spec: ClipSpec
    windows: np.ndarray  # (N,1,80,16)
    target: np.ndarray  # (N,)
    labels: list[str]  # phoneme at each frame centre
    silence: np.ndarray  # (N,) bool: frame centre inside a pause >= 0.2 s
    pbm: np.ndarray  # frame indices of p/b/m midpoints
    pbm_spans: list[tuple[int, int]]  # frames [first, last] whose centre lies inside each p/b/m (midpoint if none)
    rms: np.ndarray  # (N,) baseline
    spectrum: SpectrumMeter  # the clip's speech spectrum, for articulators with a ``spectrum`` input (v3 on)


def festival_specs() -> list[ClipSpec]:
    return [ClipSpec(si, f"festival:{v}", RATES[(si + vi) % 3], 50)
            for vi, v in enumerate(FESTIVAL_VOICES) for si in range(len(CORPUS))]  # fmt: skip


def clip_specs() -> list[ClipSpec]:
    specs = []
    for vi, voice in enumerate(TRAIN_VOICES + HELD_OUT_VOICES):
        for si in range(len(CORPUS)):
            specs.append(ClipSpec(si, voice, RATES[(si + vi) % 3], PITCHES[(si + 2 * vi) % 3]))
    return specs


def pauses(phonemes: list[tuple[float, float, str]], duration: float) -> list[tuple[float, float]]:
    """Maximal runs of pause phonemes (and the audio before the first phoneme) lasting >= MIN_PAUSE_S."""
    runs: list[list[float]] = []
    if phonemes and phonemes[0][0] > 0:
        runs.append([0.0, phonemes[0][0]])
    for start, end, name in phonemes:
        if name.startswith("_") or name in ("cmu:pau", "cmu:h#"):
            if runs and abs(runs[-1][1] - start) < 1e-6:
                runs[-1][1] = end
            else:
                runs.append([start, end])
    if phonemes and runs and abs(runs[-1][1] - phonemes[-1][1]) < 1e-6:
        runs[-1][1] = max(runs[-1][1], duration)
    return [(a, b) for a, b in runs if b - a >= MIN_PAUSE_S]


def speech_level(audio: np.ndarray) -> float:
    """Linear RMS of the loud part of speech (95th percentile of 20 ms frames), the normalizer's reference."""
    db = frame_rms_db(audio)
    loud = db[db > -80.0]
    return float(10.0 ** (np.percentile(loud, 95) / 20.0)) if len(loud) else 0.0


# Festival (Debian: festival, festvox-kallpc16k, festvox-us-slt-hts): a second, fully held-out synthesizer, never
# used to choose anything. kal is diphone concatenation of a real male voice, slt a statistical (HTS) female voice.
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")
FESTIVAL_STRETCH = {120: 1.3, 160: 1.0, 220: 0.75}  # Duration_Stretch for the nominal rates (HTS ignores it)
CMU_OPENNESS: dict[str, float | tuple[float, float]] = {
    "pau": SILENCE, "h#": SILENCE, "p": BILABIAL, "b": BILABIAL, "m": BILABIAL, "f": 0.15, "v": 0.15, "l": 0.4,
    "w": 0.35, "iy": 0.25, "ih": 0.25, "y": 0.25, "eh": 0.6, "ae": 0.6, "ah": 0.6, "aa": 1.0, "ao": 0.55,
    "er": 0.55, "ax": 0.4, "uw": 0.35, "uh": 0.35, "ow": 0.35, "ay": (1.0, 0.25), "aw": (1.0, 0.35),
    "ey": (0.6, 0.25), "oy": (0.55, 0.25),
}  # fmt: skip


def festival_synthesize(text: str, voice: str, stretch: float = 1.0, encoding: str | None = None
                        ) -> tuple[np.ndarray, int, list]:  # fmt: skip
    """Speak ``text`` with Festival; returns (audio, sample rate, [(start_s, end_s, "cmu:PHONE")]).

    ``encoding``: of the text Festival reads (its Czech voices want ISO-8859-2); by default Latin-1 (English,
    Italian: è, à ...) when that covers the text, else UTF-8 (the Russian voice)."""
    import subprocess
    import tempfile

    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        quoted = text.replace("\\", " ").replace('"', " ")
        script = (
            f"(voice_{voice})\n(Parameter.set 'Duration_Stretch {stretch})\n"
            f'(set! utt (SynthText "{quoted}"))\n(utt.save.wave utt "{wav}" \'riff)\n'
            '(mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s "end")))'
            " (utt.relation.items utt 'Segment))\n"
        )
        encoding = encoding or ("latin-1" if all(ord(c) < 256 for c in text) else "utf-8")
        run = subprocess.run(["festival", "-b", "--pipe"], input=script, capture_output=True, timeout=120, check=True,
                             encoding=encoding, errors="replace")  # fmt: skip
        if "SIOD ERROR" in run.stderr or "SIOD ERROR" in run.stdout:  # e.g. an unknown voice: Festival goes on
            raise RuntimeError(f"festival failed for voice {voice!r}: {run.stderr.strip()[:200]}")
        out = run.stdout
        audio, sr = soundfile.read(str(wav), dtype="float32")
    phonemes, prev = [], 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            end = float(parts[1])
            phonemes.append((prev, end, "cmu:" + parts[0]))
            prev = end
    return audio, int(sr), phonemes


def prepare(spec: ClipSpec, noise_db: float | None = None, seed: int = 0) -> Clip:
    import soxr

    if spec.voice.startswith("festival:"):
        fv = spec.voice.split(":", 1)[1]
        audio, sr, phonemes = festival_synthesize(CORPUS[spec.sentence], fv, FESTIVAL_STRETCH.get(spec.rate, 1.0))
    else:
        from benchmarks.espeak_phonemes import synthesize

        audio, sr, phonemes = synthesize(CORPUS[spec.sentence], spec.voice, spec.rate, spec.pitch)
    x = soxr.resample(audio, sr, SR).astype(np.float32)
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        x = x + (rng.standard_normal(len(x)) * speech_level(x) * 10.0 ** (noise_db / 20.0)).astype(np.float32)
    x = x * np.float32(normalizing_gain(frame_rms_db(x)))
    duration = len(x) / SR
    n = max(1, math.ceil(duration * FPS - 1e-9))
    windows = stack_windows(mel_spectrogram(x), centered_window_starts(np.arange(n), FPS))
    centres = (np.arange(n) + 0.5) / FPS
    target = np.zeros(n, dtype=np.float64)
    labels = ["_"] * n
    for start, end, name in phonemes:
        sel = (centres >= start) & (centres < end)
        for i in np.flatnonzero(sel):
            target[i] = openness(name, (centres[i] - start) / max(end - start, 1e-6))
            labels[i] = name
    silence = np.zeros(n, dtype=bool)
    for a, b in pauses(phonemes, duration):
        silence |= (centres >= a) & (centres < b)
    bilabials = [(s, e) for s, e, name in phonemes if base_mnemonic(name) in ("p", "b", "m") and (s + e) / 2 * FPS < n]
    pbm = np.array([int((s + e) / 2 * FPS) for s, e in bilabials], dtype=np.int64)
    spans = []
    for (s, e), mid in zip(bilabials, pbm, strict=True):
        inside = np.flatnonzero((centres >= s) & (centres < e))
        spans.append((int(inside[0]), int(inside[-1])) if len(inside) else (int(mid), int(mid)))
    half = int(0.02 * SR)
    rms = np.zeros(n, dtype=np.float64)
    for i, c in enumerate((centres * SR).astype(np.int64)):
        seg = x[max(c - half, 0) : c + half].astype(np.float64)
        rms[i] = math.sqrt(float(np.mean(seg * seg))) if len(seg) else 0.0
    return Clip(spec, windows, target, labels, silence, pbm, spans, rms, clip_spectrum(x, normalize=False))


def load_clips(noise_db: float | None = None, specs: list[ClipSpec] | None = None) -> list[Clip]:
    return [prepare(s, noise_db, seed=i) for i, s in enumerate(specs or clip_specs())]


def session(model: str | Path | bytes) -> object:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def articulate(sess: object, clips: list[Clip]) -> list[np.ndarray]:
    """Run the articulator over every clip (one batch for all frames) as the app feeds it; returns (N,4) per clip."""
    from a2v_cli.engine.lipsync import spectrum_prior

    feeds = {"mel": np.concatenate([c.windows for c in clips])}
    if "spectrum" in {i.name for i in sess.get_inputs()}:  # type: ignore[attr-defined]
        prior, columns = spectrum_prior(sess)
        feeds["spectrum"] = np.concatenate([np.repeat(c.spectrum.spectrum(prior, columns)[None], len(c.windows), axis=0)
                                            for c in clips]).astype(np.float32)  # fmt: skip
    out = sess.run(["articulation"], feeds)[0]  # type: ignore[attr-defined]
    res, k = [], 0
    for c in clips:
        res.append(out[k : k + len(c.windows)])
        k += len(c.windows)
    return res


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def score(clips: list[Clip], opens: list[np.ndarray]) -> dict[str, float]:
    """Metrics of one openness signal per clip (the model's ``open`` or the RMS baseline)."""
    t = np.concatenate([c.target for c in clips])
    o = np.concatenate(opens)
    per_clip = [pearson(op, c.target) for c, op in zip(clips, opens, strict=True)]
    sil = np.concatenate([op[c.silence] for c, op in zip(clips, opens, strict=True)])
    closed, total = 0, 0
    for c, op in zip(clips, opens, strict=True):
        lo, hi = float(op.min()), float(op.max())
        closed += int(np.sum(op[c.pbm] <= lo + 0.25 * (hi - lo)))
        total += len(c.pbm)
    flicker = sum(reversals(op) for op in opens) / max(sum(len(op) for op in opens), 1) * FPS
    return {
        "r": pearson(o, t),
        "r_clip": float(np.mean(per_clip)),
        "silence": float(np.mean(sil == 0.0)) if len(sil) else float("nan"),
        "pbm": closed / max(total, 1),
        "flicker": flicker,
        "frames": float(len(o)),
        "silence_frames": float(len(sil)),
        "pbm_count": float(total),
    }


def press_stats(clips: list[Clip], outs: list[np.ndarray]) -> dict[str, float]:
    """``press`` and ``open`` at p/b/m midpoints vs on open vowels (target >= 0.55); peak press inside p/b/m."""
    at_pbm = np.concatenate([o[c.pbm] for c, o in zip(clips, outs, strict=True)])
    peaks = np.array([o[a : b + 1, 3].max() for c, o in zip(clips, outs, strict=True) for a, b in c.pbm_spans])
    vowels = np.concatenate([o[c.target >= 0.55] for c, o in zip(clips, outs, strict=True)])
    others = np.concatenate([
        o[[i for i, lab in enumerate(c.labels) if 0.1 <= openness(lab, 0.0) <= 0.25]]
        for c, o in zip(clips, outs, strict=True)
    ])
    return {
        "press_pbm": float(at_pbm[:, 3].mean()),
        "press_pbm_half": float(np.mean(at_pbm[:, 3] >= 0.5)),
        "press_vowel": float(vowels[:, 3].mean()),
        "press_other": float(others[:, 3].mean()),
        "press_peak": float(peaks.mean()),
        "press_peak_half": float(np.mean(peaks >= 0.5)),
        "open_pbm": float(at_pbm[:, 0].mean()),
        "open_vowel": float(vowels[:, 0].mean()),
    }


def reversals(x: np.ndarray, step: float = 0.1) -> int:
    """Frames where the signal changes direction with both adjacent steps larger than ``step``."""
    d = np.diff(np.asarray(x, dtype=np.float64))
    return int(np.sum((d[:-1] * d[1:] < 0) & (np.minimum(np.abs(d[:-1]), np.abs(d[1:])) > step)))


def target_flicker(clips: list[Clip]) -> float:
    return sum(reversals(c.target) for c in clips) / max(sum(len(c.target) for c in clips), 1) * FPS


def report(clips: list[Clip], outs: list[np.ndarray], title: str) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        groups[c.spec.split].append(i)
        groups["all"].append(i)
    print(f"\n## {title}\n")
    print("| split | clips | frames | r (pooled) | r (per clip) | silence open==0 | p/b/m closed | flicker/s |"
          " RMS r | RMS silence==0 | RMS p/b/m |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = sorted(groups, key=lambda k: (k == "all", k))
    for name in order:
        idx = groups[name]
        cs = [clips[i] for i in idx]
        m = score(cs, [outs[i][:, 0] for i in idx])
        b = score(cs, [clips[i].rms for i in idx])
        print(f"| {name} | {len(idx)} | {int(m['frames'])} | {m['r']:.3f} | {m['r_clip']:.3f} |"
              f" {m['silence']:.4f} ({int(m['silence_frames'])}) | {m['pbm']:.3f} ({int(m['pbm_count'])}) |"
              f" {m['flicker']:.2f} (target {target_flicker(cs):.2f}) | {b['r']:.3f} | {b['silence']:.4f} |"
              f" {b['pbm']:.3f} |")
    interior = np.concatenate([o[c.silence & np.roll(c.silence, 1) & np.roll(c.silence, -1), 0]
                               for c, o in zip(clips, outs, strict=True)])  # fmt: skip
    print(f"\npause frames whose neighbours are pause frames too: open == 0 in {float(np.mean(interior == 0.0)):.4f}"
          f" ({len(interior)} frames)")
    by: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        by[f"voice {c.spec.voice}"].append(i)
        by[f"rate {c.spec.rate} wpm"].append(i)
    cells = []
    for name in sorted(by):
        idx = by[name]
        cells.append(f"{name}: r {score([clips[i] for i in idx], [outs[i][:, 0] for i in idx])['r']:.3f}")
    print("by voice / rate (pooled r): " + "; ".join(cells))
    ps = press_stats(clips, outs)
    print(f"\nat p/b/m midpoints: mean open {ps['open_pbm']:.3f}, mean press {ps['press_pbm']:.3f}"
          f" (press >= 0.5 in {ps['press_pbm_half']:.3f}); peak press inside each p/b/m: mean {ps['press_peak']:.3f}"
          f" (>= 0.5 in {ps['press_peak_half']:.3f}); on open vowels: mean open {ps['open_vowel']:.3f},"
          f" mean press {ps['press_vowel']:.3f}; on other consonants and EE: mean press {ps['press_other']:.3f}")
    sil_all = np.concatenate([o[c.silence] for c, o in zip(clips, outs, strict=True)])
    if len(sil_all):
        print(f"\nall four outputs exactly 0 in pause frames: {float(np.mean(np.all(sil_all == 0.0, axis=1))):.4f}")


def details(clips: list[Clip], outs: list[np.ndarray]) -> None:
    acc: dict[str, list[np.ndarray]] = defaultdict(list)
    first: dict[str, str] = {}
    for c, o in zip(clips, outs, strict=True):
        for lab, row in zip(c.labels, o, strict=True):
            key = base_mnemonic(lab)
            if openness(lab, 0.0) == SILENCE and key not in ("p", "b", "m"):
                key = "_"
            acc[key].append(row)
            first.setdefault(key, lab)
    print("\n| phoneme | frames | target | open | spread | round | press |\n|---|---|---|---|---|---|---|")
    for lab, rows in sorted(acc.items(), key=lambda kv: -len(kv[1])):
        if len(rows) < 10:
            continue
        m = np.mean(rows, axis=0)
        print(f"| {lab} | {len(rows)} | {openness(first[lab], 0.25):.2f} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} |"
              f" {m[3]:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(HERE / "a2v-articulator-v6.onnx"),
                    help="articulator .onnx (default: the shipped one; old ones: see MODEL_CARD.md to rebuild them)")
    ap.add_argument("--noise-db", type=float, default=-35.0, help="white noise level re speech for the noisy pass")
    ap.add_argument("--details", action="store_true", help="per-phoneme means of the four outputs (clean speech)")
    ap.add_argument("--festival", action="store_true", help="also Festival voices (needs Debian's festival, "
                    "festvox-kallpc16k and festvox-us-slt-hts)")  # fmt: skip
    args = ap.parse_args()
    sess = session(args.model)
    specs = clip_specs() + (festival_specs() if args.festival else [])
    clean = load_clips(None, specs)
    outs = articulate(sess, clean)
    report(clean, outs, "clean espeak-ng speech")
    if args.details:
        details(clean, outs)
    noisy = load_clips(args.noise_db, specs)
    report(noisy, articulate(sess, noisy), f"white noise {args.noise_db:g} dB re speech level")


if __name__ == "__main__":
    main()

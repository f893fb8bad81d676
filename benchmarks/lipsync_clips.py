"""Speech clips with known phoneme timings, and their per-frame ground-truth mouth openness.

Used by ``benchmarks/bench_lipsync.py`` (the lip-sync quality benchmark) and meant to be reused by a
model-training script::

    from benchmarks.lipsync_clips import clip_truth, make_clips
    for clip in make_clips("train", n=None, seed=0):
        truth = clip_truth(clip)            # target openness per 25 fps frame, pauses, p/b/m midpoints
        ...

Clips
-----
Each clip is 2-3 sentences spoken by libespeak-ng (``benchmarks/espeak_phonemes.py``) with one voice, rate
(words per minute) and pitch, joined by 0.3-0.8 s of digital silence (on top of the ~0.35 s pause espeak ends
every sentence with) and preceded by 0.15-0.4 s of silence, so that every clip has pauses to score.

The split is fixed and disjoint in sentences AND voices:

- ``train``: ``TRAIN_SENTENCES`` (English) x ``TRAIN_VOICES`` (en-us, en-gb and variants). A model-training
  task may use these clips (and any other seed of them).
- ``heldout``: ``HELDOUT_SENTENCES`` (English) spoken by ``HELDOUT_VOICES`` (accents and variants never used
  for training: en-gb-x-rp, en-029, en-gb-scotland, en-us-nyc), plus German, Spanish and French sentences
  spoken by the de / es / fr voices. Nobody trains or tunes on these: the benchmark reports them by default.

Clip ``k`` of a split depends only on (split, seed, k): ``make_clips(s, 6, seed)`` is a prefix of
``make_clips(s, 24, seed)``.

Ground truth
------------
The target openness of video frame ``i`` is that of the phoneme sounding at the frame's centre time
``(i + 0.5) / fps``, on Rhubarb Lip Sync's mouth shapes (https://github.com/DanielSWolf/rhubarb-lip-sync):

=====  ============================================  ========  ==============================================
shape  Rhubarb description                            openness  espeak-ng mnemonics (see ``OPENNESS``)
=====  ============================================  ========  ==============================================
A      closed: P, B, M (and silence)                  0.0       p b m, pauses ``_ _: _;`` ...
B      slightly open, teeth together: most            0.25      t d k g n N s z S Z tS dZ T D h r j ; C x R ...,
       consonants, EE, IH                                       i: i I I2 (EE/IH), y (de/fr close front rounded)*
C      open: EH, AE, AH                               0.6       E e (EH), a (en: AE), V (AH), de 3 (ɐ), fr E~
D      wide open: AA                                  1.0       A: 0 A aa (AA); a a: in de/es/fr (open /a/),
                                                                fr A~
E      slightly rounded: AO, ER                       0.55      O O: O@ O2 (AO), 3: 3 (ER), de/fr W (œ), fr O~
F      puckered: UW, OW, W                            0.35      u: u U oU o o: (UW, UH, OW), w, y y: Y Y: (ø, y)
G      F, V (teeth on lower lip)                      0.15      f v, de pf, es B (β, a bilabial approximant)
H      L (tongue up)                                  0.4       l L @L l^
--     schwa and reduced vowels (not in Rhubarb)      0.4       @ @2 @- a# (between B and C)
=====  ============================================  ========  ==============================================

\\* ``y`` is a close front ROUNDED vowel in German/French: puckered (F, 0.35), not EE.

Diphthongs take their first element's openness for the first half of the phoneme and the second's for the
second half: ``aI`` 1.0 -> 0.25, ``aU`` 1.0 -> 0.35, ``eI`` 0.6 -> 0.25, ``OI``/``OY`` 0.55 -> 0.25, centring
``i@ e@ U@ aI@`` -> 0.4 (schwa), and in rhotic American English (en-us voices, where espeak folds the r into
the vowel: ``A@`` = ɑɹ, ``O@`` = ɔɹ, ``e@`` = ɛɹ, ``i@3`` = ɪɹ) -> 0.25 (r is a B-shape consonant).
Mnemonic digits and marks (``I2``, ``t#``, ``r-``, ``e-``) are looked up exactly first, then stripped.
Glottal stops / word-break marks (``_!``, ``_|``) and espeak's language-switch marks (``(en)``, ``(fr)``) are not
pauses: they take the openness of the phoneme that follows them. Every other mnemonic starting with ``_`` is a
pause (closed, 0.0). Any mnemonic missing from the tables counts as a consonant (0.25) and is reported by
``unmapped()`` so the table can be completed.

A *pause* for the silence metric is a maximal run of pause phonemes (inserted gaps included) lasting >= 0.2 s.
A p/b/m is a phoneme whose mnemonic (stripped) is p, b or m; its frame is the one containing its midpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FPS = 25
MIN_PAUSE_S = 0.2

# --------------------------------------------------------------------------------------------------------------------
# Sentences and voices: the fixed split
# --------------------------------------------------------------------------------------------------------------------

TRAIN_SENTENCES: tuple[str, ...] = (
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",
    "Sphinx of black quartz, judge my vow.",
    "Would you like to meet me by the bridge at nine?",
    "Did the postman bring a parcel for Pam, or for Bill?",
    "Mamma made a marvellous plum jam in May.",
    "Bobby bought a bumpy blue bike from a mobile shop.",
    "The calm palms swayed by the harbour, far above the father's car.",
    "Our flight leaves at seven forty-five, from gate twenty-three.",
    "There are three hundred and sixty-five days in a year.",
    "Why are you always so happy on Mondays?",
    "Put the papers back in the brown box, please.",
    "A warm autumn morning brought a soft breeze across the lawn.",
    "Look up, the moon is full tonight, and the pool is cool.",
    "Maybe the mayor will bump into Ben at the pub.",
    "I thought I saw a small otter by the water, or was it a log?",
    "Fifty-two apples and nineteen plums fell from the old tree.",
    "Can you imagine a purple monkey playing the banjo?",
    "Amber lamps hung above the empty market stalls.",
    "Father ate a large bowl of hot porridge before the game.",
    "Please remember to lock the back door when you leave.",
    "Is the pharmacy open on Sunday, or only in the morning?",
)

HELDOUT_SENTENCES: tuple[str, ...] = (
    "Jackdaws love my big sphinx of quartz.",
    "The five boxing wizards jump quickly.",
    "Is it possible to book a table for eight people at half past six?",
    "Pam's mum bumped the lamp, and the bulb popped.",
    "My bank balance was nine hundred and ninety-nine pounds.",
    "Bring a map, a compass, and some warm blankets for the camp.",
    "What time does the last bus leave from the harbour?",
    "Barbara hopes to publish her memoir by the summer.",
    "Honestly, the opera was far better than the movie.",
    "Mike, please pass me the maple syrup and the butter.",
    "Twenty-seven members voted, and the motion passed.",
    "Are we there yet, or must we keep walking up the mountain?",
)

# Other languages: held-out only (a lip-sync model must not depend on English phonotactics).
FOREIGN_SENTENCES: dict[str, tuple[str, ...]] = {
    "de": (
        "Der Bär brummt am Morgen im Wald.",
        "Mama und Papa kaufen Obst auf dem Markt.",
        "Wie spät ist es, bitte?",
        "Franz jagt im komplett verwahrlosten Taxi quer durch Bayern.",
    ),
    "es": (
        "El perro de Pablo bebe agua en el parque.",
        "¿Dónde está la biblioteca municipal?",
        "Mi mamá me mima mucho.",
        "El veloz murciélago hindú comía feliz cardillo y kiwi.",
    ),
    "fr": (
        "Le petit bateau part du port au matin.",
        "Pourquoi pas manger une pomme avec maman?",
        "Il fait beau à Paris aujourd'hui.",
        "Un bon pain blanc, deux oeufs, et du beurre, merci.",
    ),
}

TRAIN_VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-us+f3", "en+m3", "en-gb+f4", "en-us+m1")
# cycled in this order: 5 English accents/variants : 3 other languages
HELDOUT_VOICES: tuple[str, ...] = (
    "en-gb-x-rp", "en-029+f2", "de", "en-gb-scotland+f4", "es+f3", "en-us-nyc+m4", "fr+f2", "en-gb-x-rp+f5",
)
RATES = (120, 220)  # words per minute, uniform integer
PITCHES = (30, 70)  # espeak pitch 0-100
GAP_S = (0.3, 0.8)  # silence inserted between sentences
LEAD_S = (0.15, 0.4)  # silence before the first sentence
SPLITS = ("train", "heldout", "all")
DEFAULT_COUNT = {"train": 48, "heldout": 24}


@dataclass
class Clip:
    """One synthetic speech clip with its phoneme segments ((start_s, end_s, espeak mnemonic), gap-free)."""

    audio: np.ndarray  # float32 mono, [-1, 1]
    sample_rate: int
    phonemes: list[tuple[float, float, str]]
    name: str
    voice: str
    split: str = ""
    rate: int = 0
    pitch: int = 0
    sentences: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def language(self) -> str:
        return language_of(self.voice)


def language_of(voice: str) -> str:
    """Table key for a voice: "en-us" (rhotic American: en-us, en-us-nyc), "en" (other English), or "de" ..."""
    base = voice.split("+", 1)[0].lower()
    if base.startswith("en-us"):
        return "en-us"
    return "en" if base.startswith("en") else base.split("-", 1)[0]


def _voices(split: str) -> tuple[str, ...]:
    return TRAIN_VOICES if split == "train" else HELDOUT_VOICES


def _sentences(split: str, language: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_SENTENCES
    if language.startswith("en"):
        return HELDOUT_SENTENCES
    return FOREIGN_SENTENCES[language]


@dataclass(frozen=True)
class ClipSpec:
    split: str
    index: int
    voice: str
    rate: int
    pitch: int
    sentences: tuple[str, ...]
    gaps: tuple[float, ...]  # silence after each sentence but the last
    lead: float

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:02d}-{self.voice}-r{self.rate}-p{self.pitch}"


def clip_specs(split: str, n: int, seed: int, sentences_per_clip: tuple[int, int] = (2, 3)) -> list[ClipSpec]:
    """The first ``n`` clip recipes of ``split`` ("train" or "heldout") for ``seed``; prefix-stable in ``n``."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    voices = _voices(split)
    # each language walks through its own shuffled sentence list, so sentences are used evenly
    order: dict[str, list[int]] = {}
    pos: dict[str, int] = {}
    specs = []
    for k in range(n):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, k])
        voice = voices[k % len(voices)]
        lang = language_of(voice)
        key = "en" if lang.startswith("en") else lang
        pool = _sentences(split, lang)
        count = int(rng.integers(sentences_per_clip[0], sentences_per_clip[1] + 1))
        chosen = []
        for _ in range(count):
            if pos.get(key, 0) % len(pool) == 0:
                # a fresh permutation per pass (deterministic: depends on seed, split, language and pass)
                pas = pos.get(key, 0) // len(pool)
                lang_id = sum(ord(c) for c in key)
                order[key] = list(np.random.default_rng([seed, lang_id, pas, 7]).permutation(len(pool)))
            chosen.append(pool[order[key][pos.get(key, 0) % len(pool)]])
            pos[key] = pos.get(key, 0) + 1
        specs.append(
            ClipSpec(
                split=split,
                index=k,
                voice=voice,
                rate=int(rng.integers(RATES[0], RATES[1] + 1)),
                pitch=int(rng.integers(PITCHES[0], PITCHES[1] + 1)),
                sentences=tuple(chosen),
                gaps=tuple(float(rng.uniform(*GAP_S)) for _ in range(count - 1)),
                lead=float(rng.uniform(*LEAD_S)),
            )
        )
    return specs


Synthesizer = Callable[[str, ClipSpec], tuple[np.ndarray, int, list[tuple[float, float, str]]]]


def espeak_sentence(text: str, spec: ClipSpec) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    from benchmarks.espeak_phonemes import synthesize

    return synthesize(text, spec.voice, spec.rate, spec.pitch)


def within(phonemes: list[tuple[float, float, str]], duration: float) -> list[tuple[float, float, str]]:
    """``phonemes`` cut to the audio's ``duration`` s (for synthesizers whose last segment may run past the end);
    those left empty are dropped."""
    return [(a, min(b, duration), n) for a, b, n in phonemes if min(b, duration) > a]


def heldout_english_specs(n: int, seed: int, split: str, voice: str, pitch: bool = False) -> list[ClipSpec]:
    """The first ``n`` English recipes of the held-out split (sentences, rates, gaps and, with ``pitch``, espeak
    pitches), to be spoken by another synthesizer: renamed to ``split`` and given ``voice``."""
    specs = [s for s in clip_specs("heldout", 4 * n, seed) if language_of(s.voice).startswith("en")][:n]
    return [ClipSpec(split, s.index, voice, s.rate, s.pitch if pitch else 0, s.sentences, s.gaps, s.lead)
            for s in specs]


def synthesize_clip(spec: ClipSpec, synthesize: Synthesizer = espeak_sentence) -> Clip:
    """Speak ``spec`` (libespeak-ng unless another ``synthesize(text, spec)`` giving audio, rate and espeak-named
    phonemes is given); sentences are joined with silences that become "_" pause phonemes."""
    pieces: list[np.ndarray] = []
    phonemes: list[tuple[float, float, str]] = []
    sr = 0
    t = 0.0

    def silence(seconds: float) -> None:
        nonlocal t
        count = round(seconds * sr)
        if count > 0:
            pieces.append(np.zeros(count, dtype=np.float32))
            phonemes.append((t, t + count / sr, "_"))
            t += count / sr

    for i, text in enumerate(spec.sentences):
        audio, rate, ph = synthesize(text, spec)
        if sr == 0:
            sr = rate
            silence(spec.lead)
        elif rate != sr:
            raise RuntimeError(f"the synthesizer changed its sample rate ({sr} -> {rate})")
        seg_len = len(audio) / sr
        if ph and ph[0][0] > 0:
            phonemes.append((t, t + ph[0][0], "_"))  # the synthesizer's own lead-in, if any
        phonemes.extend((t + s, t + e, name) for s, e, name in ph if e > s or not name.startswith("_"))
        if ph and ph[-1][1] < seg_len:
            phonemes.append((t + ph[-1][1], t + seg_len, "_"))
        pieces.append(audio.astype(np.float32))
        t += seg_len
        if i < len(spec.gaps):
            silence(spec.gaps[i])
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return Clip(audio, sr, phonemes, spec.name, spec.voice, spec.split, spec.rate, spec.pitch, list(spec.sentences))


def make_clips(
    split: str, n: int | None, seed: int, sentences_per_clip: tuple[int, int] = (2, 3)
) -> list[Clip]:
    """Synthesize clips of ``split`` ("train", "heldout" or "all" = train then heldout).

    ``n``: how many (per split for "all"); None for the default (48 train, 24 held-out).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    parts = ("train", "heldout") if split == "all" else (split,)
    clips = []
    for part in parts:
        count = DEFAULT_COUNT[part] if n is None else n
        clips.extend(synthesize_clip(s) for s in clip_specs(part, count, seed, sentences_per_clip))
    return clips


# --------------------------------------------------------------------------------------------------------------------
# Phoneme -> openness (see the module docstring for the table)
# --------------------------------------------------------------------------------------------------------------------

CLOSED, CONSONANT, EE, EH, AA, AO, UW, FV, L, SCHWA = 0.0, 0.25, 0.25, 0.6, 1.0, 0.55, 0.35, 0.15, 0.4, 0.4
Openness = float | tuple[float, float]

OPENNESS: dict[str, Openness] = {
    # A: lips closed
    "p": CLOSED, "b": CLOSED, "m": CLOSED,
    # G: F, V; de pf (labiodental affricate); es B (β, bilabial approximant: lips nearly touching)
    "f": FV, "v": FV, "pf": FV, "B": FV,
    # H: L
    "l": L, "L": L, "@L": L, "l^": L,
    # F: W, UW, UH, OW and the close rounded vowels
    "w": UW, "u:": UW, "u": UW, "U": UW, "oU": UW, "o": UW, "o:": UW, "y": UW, "y:": UW, "Y": UW, "Y:": UW,
    # B: EE, IH (and j, the ';' linking glide)
    "i:": EE, "i": EE, "I": EE, "j": EE, ";": EE,
    # C: EH, AE, AH
    "E": EH, "E:": EH, "e": EH, "e:": EH, "a": EH, "V": EH, "VR": EH, "E~": EH,
    # D: AA
    "A:": AA, "A": AA, "aa": AA, "0": AA, "a:": AA, "A~": AA,
    # E: AO, ER (and the open-mid front rounded œ)
    "O:": AO, "O": AO, "O2": AO, "O@": AO, "o@": AO, "3:": AO, "3": AO, "W": AO, "W~": AO, "O~": AO,
    # schwa and reduced vowels
    "@": SCHWA, "@2": SCHWA, "@-": SCHWA, "a#": SCHWA, "@5": SCHWA,
    # diphthongs: (first half, second half)
    "aI": (AA, EE), "aU": (AA, UW), "eI": (EH, EE), "OI": (AO, EE), "OY": (AO, EE), "aI@": (AA, SCHWA),
    "aU@": (AA, SCHWA), "i@": (EE, SCHWA), "i@3": (EE, SCHWA), "e@": (EH, SCHWA), "U@": (UW, SCHWA),
    "A@": AA, "UR": (UW, EH),
}  # fmt: skip

# Per-language exceptions: the same mnemonic is a different sound.
LANGUAGE_OPENNESS: dict[str, dict[str, Openness]] = {
    # rhotic American English: espeak folds the r into these vowels; r is a B-shape consonant
    "en-us": {"A@": (AA, CONSONANT), "O@": (AO, CONSONANT), "e@": (EH, CONSONANT), "i@3": EE, "i@": (EE, CONSONANT),
              "U@": (UW, CONSONANT), "aI@": (AA, CONSONANT), "3": AO},
    # /a/ of German, Spanish and French is the open vowel (AA), not English AE; German 3 is ɐ (C)
    "de": {"a": AA, "3": EH},
    "es": {"a": AA},
    "fr": {"a": AA},
}  # fmt: skip

# consonant mnemonics espeak-ng uses for en / de / es / fr (B shape, 0.25): listed so unmapped() can flag the rest
CONSONANTS = frozenset([
    "t", "d", "k", "g", "n", "N", "s", "z", "S", "Z", "tS", "dZ", "T", "D", "h", "r", "R", "r-", "R2", "**", "j", "x",
    "C", "ts", "dz", "J", "J^", "n^", "Q", "c", "?", "t#", "t[", "d#", "t2", "z2", "X", "r2", "n-", "m-", "z#", "s2",
    "h#",
])  # fmt: skip
PAUSE_FOLLOW = frozenset({"_!", "_|"})  # glottal stop / word break: not a pause, shaped like what follows


def base_mnemonic(name: str) -> str:
    """``name`` without espeak's variant digits and marks ("I2" -> "I", "t#" -> "t", "e-" -> "e")."""
    base = name.rstrip("0123456789#[-")
    return base or name


def is_marker(name: str) -> bool:
    """Glottal / word-break marks and language switches: no shape of their own."""
    return name in PAUSE_FOLLOW or (name.startswith("(") and name.endswith(")"))


def is_pause(name: str) -> bool:
    return name.startswith("_") and name not in PAUSE_FOLLOW


def shaped_as(phonemes: list[tuple[float, float, str]], k: int) -> tuple[str, float | None]:
    """The phoneme whose mouth shape phoneme ``k`` takes, and the fixed position inside it to read, if any: a marker
    takes the next real phoneme's shape at its start ("_" after the last one); any other phoneme its own shape at
    the position in question (None)."""
    name = phonemes[k][2]
    if not is_marker(name):
        return name, None
    return next((p[2] for p in phonemes[k + 1 :] if not is_marker(p[2])), "_"), 0.0


def is_bilabial(name: str) -> bool:
    return base_mnemonic(name) in ("p", "b", "m")


_unmapped: set[str] = set()


def lookup(name: str, language: str = "en") -> Openness:
    """Openness (or a diphthong's pair) of espeak mnemonic ``name`` in ``language`` (see ``language_of``)."""
    if is_pause(name):
        return CLOSED
    table = LANGUAGE_OPENNESS.get(language, {})
    for key in (name, base_mnemonic(name)):
        if key in table:
            return table[key]
        if key in OPENNESS:
            return OPENNESS[key]
    if name not in CONSONANTS and base_mnemonic(name) not in CONSONANTS:
        _unmapped.add(f"{language}:{name}")
    return CONSONANT


def openness(name: str, frac: float = 0.0, language: str = "en") -> float:
    """Target openness of phoneme ``name`` at relative position ``frac`` (0..1) inside it."""
    v = lookup(name, language)
    if isinstance(v, tuple):
        return float(v[0] if frac < 0.5 else v[1])
    return float(v)


LABIODENTALS = frozenset({"f", "v", "pf", "B"})  # Rhubarb G (the table's FV rows)
LATERALS = frozenset({"l", "L", "@L", "l^"})  # Rhubarb H
SHAPE_OF_OPENNESS = {CLOSED: "A", CONSONANT: "B", EH: "C", AA: "D", AO: "E", UW: "F", FV: "G"}


def rhubarb_shapes(name: str, frac: float = 0.0, language: str = "en") -> str:
    """The Rhubarb shape(s) phoneme ``name`` is drawn with at ``frac`` inside it, per the table above: "X" for a
    pause, "G" for F/V, "H" for L, else the shape of its openness; schwa (not in Rhubarb) accepts "BC"."""
    if is_pause(name):
        return "X"
    base = base_mnemonic(name)
    if is_bilabial(name):
        return "A"
    if name in LABIODENTALS or base in LABIODENTALS:
        return "G"
    if name in LATERALS or base in LATERALS:
        return "H"
    value = openness(name, frac, language)
    return SHAPE_OF_OPENNESS.get(value, "BC")


def unmapped() -> list[str]:
    """Mnemonics met so far that no table knows (scored as consonants, 0.25)."""
    return sorted(_unmapped)


@dataclass
class GroundTruth:
    target: np.ndarray  # (N,) openness 0..1 per video frame
    labels: list[str]  # phoneme at each frame centre ("_" outside every phoneme)
    silence: np.ndarray  # (N,) bool: frame centre inside a pause >= MIN_PAUSE_S
    pbm: np.ndarray  # (K,) frame index of each p/b/m midpoint


def frame_count(duration: float, fps: float = FPS) -> int:
    """Frames a2v renders for ``duration`` seconds: ceil(duration x fps), at least 1."""
    return max(1, math.ceil(duration * fps - 1e-9))


def pauses(phonemes: list[tuple[float, float, str]], duration: float) -> list[tuple[float, float]]:
    """Maximal runs of pause phonemes (plus any uncovered audio before the first / after the last phoneme)."""
    runs: list[list[float]] = []

    def add(a: float, b: float) -> None:
        if runs and abs(runs[-1][1] - a) < 1e-6:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])

    if phonemes and phonemes[0][0] > 0:
        add(0.0, phonemes[0][0])
    for start, end, name in phonemes:
        if is_pause(name):
            add(start, end)
    if phonemes and phonemes[-1][1] < duration:
        add(phonemes[-1][1], duration)  # audio after the last phoneme: espeak reported nothing there
    return [(a, b) for a, b in runs]


def ground_truth(
    phonemes: list[tuple[float, float, str]], duration: float, language: str = "en", fps: float = FPS
) -> GroundTruth:
    """Per-frame target openness, pause frames and p/b/m midpoint frames for a phoneme list."""
    n = frame_count(duration, fps)
    centres = (np.arange(n) + 0.5) / fps
    target = np.zeros(n, dtype=np.float64)
    labels = ["_"] * n
    for k, (start, end, name) in enumerate(phonemes):
        sel = np.flatnonzero((centres >= start) & (centres < end))
        if not len(sel):
            continue
        shape_of, frac_fixed = shaped_as(phonemes, k)
        for i in sel:
            frac = frac_fixed if frac_fixed is not None else (centres[i] - start) / max(end - start, 1e-9)
            target[i] = openness(shape_of, frac, language)
            labels[i] = name
    silence = np.zeros(n, dtype=bool)
    for a, b in pauses(phonemes, duration):
        if b - a >= MIN_PAUSE_S - 1e-9:
            silence |= (centres >= a) & (centres < b)
    mids = [(s + e) / 2 for s, e, name in phonemes if is_bilabial(name)]
    pbm = np.array([int(m * fps) for m in mids if int(m * fps) < n], dtype=np.int64)
    return GroundTruth(target, labels, silence, pbm)


def clip_truth(clip: Clip, fps: float = FPS) -> GroundTruth:
    """``ground_truth`` of a clip, in its voice's language."""
    return ground_truth(clip.phonemes, clip.duration, clip.language, fps)

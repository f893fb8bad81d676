"""Train a2v's articulator: a small conv net (mel window + the recording's speech spectrum -> open, spread, round,
press, and the F/V and L probabilities) on synthetic and real-speaker speech.

    python -m models.train_articulator              # data (fixed seeds) -> train -> --work/a2v-articulator-v5.onnx
                                                    # -> held-out comparison with the shipped articulator (v6)
    python -m models.train_articulator --train-seed 2 --out X.onnx   # the same data, another start (v6's members)
    python -m models.train_articulator --eval-only --model /tmp/old/a2v-articulator-v1.onnx   # v6 against an old one
    python -m models.train_articulator --quick      # a 1-minute pilot into /tmp/a2v-train/pilot

The built-in articulator v6 is the mean of three such runs (v4: ``--no-extended``, v5, and v5 with ``--train-seed
2``), merged into one graph by models/ensemble_articulator.py. torch is needed here only (``pip install
torch==2.13.0``, CPU); the exported ONNX files run on onnxruntime. Datasets, checkpoints and logs go to
/tmp/a2v-train (``--work``), never into the repository. Data, targets, graph (gates and net) and every experiment:
models/TRAINING.md; the contract: models/MODEL_CARD.md. Look-ahead: 100 ms (the centred 16-column window), no more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from a2v_cli.engine.features import (
    HOP,
    MAX_ABS_VALUE,
    N_FFT,
    N_MELS,
    POWER_C,
    SAMPLE_RATE,
    SPEECH_LEVEL,
    WINDOW_FRAMES,
    centered_window_starts,
    column_level,
    frame_rms_db,
    level_weights,
    log_mel,
    normalizing_gain,
    pulled_mean,
    speech_spectrum,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


V6_FILE = HERE / "a2v-articulator-v6.onnx"  # models/ensemble_articulator.py: the mean of v4, v5, v5-seed2
# the committed (shipped) articulators; old ones are rebuilt (models/MODEL_CARD.md) and compared with --model PATH
VERSIONS = {"v6": V6_FILE}
WORK = Path("/tmp/a2v-train")
FPS = 25.0
MEL_FPS = SAMPLE_RATE / HOP  # 80
CENTRE = WINDOW_FRAMES // 2  # column 8 = the frame's centre time
OPSET = 17
IR_VERSION = 8

# One mel unit is 12.5 dB; power ratio of a mel difference d is exp(POWER_C * d) (as in build_models.py).
# v1: -1.9 / -1.5; white noise 30 dB under speech reaches -1.73 (v1 relied on its F1 cue)
GATE_LO, GATE_HI = SPEECH_LEVEL, -1.2
GATE_COLS = (CENTRE - 1, CENTRE + 2)  # columns 7..9
SIDE_BEFORE = (CENTRE - 5, CENTRE - 1)  # columns 3..6
SIDE_AFTER = (CENTRE + 2, CENTRE + 6)  # columns 10..13
DIP_LO, DIP_HI = 0.5, 1.0  # v1's closure dip (build_models.py dip_lo / dip_hi), the floor of press after training

WIDTH = 160  # v2: 96
HIDDEN = 128  # v2: 64
AUX_WEIGHT = 0.0  # auxiliary phoneme-identity loss (training only)
PAST = 0  # extra past columns before the 16-column window (look-ahead stays 100 ms)
WARP = 0.0  # experiment: vocal-tract-length warp of each training window's frequency axis, by up to +-WARP
NATURAL_WEIGHT = 1.0  # how much more often a window of a real-speaker voice (Festival, Flite, Piper) is drawn
BRIDGE = True  # v4: open/spread/round gated like press, free inside gaps under ~125 ms with speech on both sides
EXTENDED = True  # v5: two more outputs, F/V (Rhubarb's G) and L (H), classified from the phoneme at the centre
EXTENDED_NAMES = ("labiodental", "lateral")
EXTENDED_WEIGHT = 0.2  # weight of each extended output's binary cross-entropy in the loss
EXT_HIDDEN = 64  # units of the extended outputs' own small head on the shared hidden layer
CMVN = True  # the net sees the mel relative to the recording's mean speech spectrum (v2: False)
PRIOR_COLUMNS = 160.0  # ... pulled towards the training set's mean as if that had been heard for 2 s
F2D = 16  # channels of the conv2d front end


def span() -> int:
    """Columns of the model's input window: PAST past columns + the centred 16."""
    return WINDOW_FRAMES + PAST

# ----------------------------------------------------------------------------------------------------------------------
# Training material: the train split of benchmarks/lipsync_clips.py plus our own sentences and voices
# ----------------------------------------------------------------------------------------------------------------------

# Our own English sentences (none is a held-out sentence of benchmarks/lipsync_clips.py, nor one of
# models/eval_articulator.py's corpus: checked at run time).
EXTRA_SENTENCES: tuple[str, ...] = (
    "Bring the big blue bucket back to the barn before lunch.",
    "My grandmother baked apple pie every Sunday in the autumn.",
    "The bus stopped by the park, and a man with a map stepped off.",
    "Papa put the pepper pot back on the top shelf.",
    "A small black cat slept on the mat all afternoon.",
    "We watched the boats sail past the harbour lights.",
    "Please pass the bread and the butter, Paul.",
    "The doctor said I should drink more water and sleep early.",
    "Thank you very much for the beautiful flowers.",
    "Could you open the window a little? It is hot in here.",
    "The museum opens at ten, but the cafe opens at eight.",
    "Emma borrowed my bike and brought it back broken.",
    "Bananas, mangoes and papayas grow by the beach.",
    "Hot soup is perfect on a cold, wet November evening.",
    "Our team played a brilliant match, but we lost by one point.",
    "Turn left at the bakery, then walk past the bank.",
    "The baby babbled happily in her mother's arms.",
    "I'd like a large pizza with mushrooms and extra cheese.",
    "Every summer we camp by the lake and swim in the morning.",
    "Time flies when you are having fun.",
    "Maybe we should meet at the mall at about five.",
    "The old man sat on the bench, feeding the pigeons.",
    "Please keep your tickets ready for inspection.",
    "She bought a pair of purple boots on Monday.",
    "All of the apples in the basket were bright red.",
    "Peanut butter and jam make a simple, tasty sandwich.",
    "The wind blew the paper bags across the empty car park.",
    "He opened the box and found a tiny brass bell.",
    "We are moving to a bigger apartment in March.",
    "Look at those mountains, covered in snow!",
    "The plumber promised to be here by about nine.",
    "A bumblebee buzzed above the blooming pumpkins.",
    "Mark parked his van behind the barber shop.",
    "Do you remember the name of that hotel in Boston?",
    "Our neighbour plays the trumpet every evening.",
    "Bob, are you coming to the movies with us tonight?",
    "The farmer milked the cows before the sun came up.",
    "Please remove your shoes before you come in.",
    "I bought three pounds of potatoes and a melon.",
    "Happy birthday, Mum, I hope you like the present.",
    "The captain spoke calmly as the ship moved through the storm.",
    "Seven bold pirates buried a box of gold on the beach.",
    "Come and sit by me, and tell me about your trip.",
    "The map shows a path up to the top of the hill.",
    "Palm trees bent in the warm evening breeze.",
    "We need more paper plates for the party.",
    "Who ate the last piece of blueberry muffin?",
    "Meet me by the main gate at half past one.",
    "The puppy pulled the blanket off the bed.",
    "Your order will arrive on Wednesday or Thursday.",
    "The orchestra played a famous piece by Mozart.",
    "Be careful, the bathroom floor is wet.",
    "Jump, and the water will carry you.",
    "Oh no, I forgot my umbrella on the bus again.",
    "Pumpkin soup, baked beans and warm bread: my favourite meal.",
    "The beam of the lamp swept across the bay.",
    "Maria hummed a melody while she mopped the floor.",
    "Why do bubbles pop when they touch the ground?",
    "Our boss approved the budget for the new program.",
    "Can I borrow your pen for a moment, please?",
)

# Other languages (training only; the held-out languages de / es / fr are not among them). Their open /a/ is AA.
EXTRA_FOREIGN: dict[str, tuple[str, ...]] = {
    "it": (
        "Il gatto nero dorme sotto il tavolo della cucina.",
        "Mia mamma prepara la pasta con il pomodoro.",
        "Domani andiamo al mare con i bambini.",
        "Il pane caldo profuma tutta la casa.",
        "Paolo beve un bicchiere di latte ogni mattina.",
        "La biblioteca apre alle nove e chiude alle sei.",
        "Abbiamo comprato mele, pere e banane al mercato.",
        "Perché non mangi la minestra?",
    ),
    "cs": (
        "Babička peče buchty a maminka myje okna.",
        "Pes běží po louce za míčem.",
        "Zítra pojedeme vlakem do Prahy.",
        "Máma koupila mléko, chleba a máslo.",
        "Bratr hraje na kytaru každý večer.",
        "Kde je nejbližší pošta, prosím?",
        "Malý kluk pije vodu z modrého hrnku.",
        "V zimě padá sníh a děti staví sněhuláka.",
    ),
    "id": (
        "Bapak membeli buku baru di pasar pagi ini.",
        "Saya suka makan nasi goreng dengan telur.",
        "Ibu memasak sup ayam untuk makan malam.",
        "Kami pergi ke pantai pada hari Minggu.",
        "Apakah kamu mau minum kopi atau teh?",
        "Burung kecil itu terbang di atas pohon mangga.",
        "Mobil merah itu parkir di depan rumah saya.",
        "Besok pagi kita akan belajar bersama.",
    ),
    "sw": (
        "Mama anapika chakula kizuri sana leo.",
        "Baba amenunua mkate na maziwa sokoni.",
        "Watoto wanacheza mpira uwanjani.",
        "Habari za asubuhi, rafiki yangu?",
        "Mimi ninapenda kusoma vitabu vya hadithi.",
        "Mbwa mdogo analala chini ya meza.",
        "Tutakwenda mjini kesho mapema.",
        "Maji ya bahari ni ya chumvi.",
    ),
}

# Our own English voices: accents and voice variants that are not in the held-out split. The held-out bases
# (en-gb-x-rp, en-029, en-gb-scotland, en-us-nyc) and the held-out variants f2, f5 and m4 are never used.
EXTRA_VOICES: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us+m2", "en-gb+m3", "en-gb-x-gbclan+m5",
    "en-gb-x-gbcwmd+m6", "en-us+m7", "en-gb+m1", "en-us+f1", "en-gb+f3", "en-gb-x-gbclan+f4", "en-gb-x-gbcwmd+f1",
    "en-us+klatt", "en-gb+klatt2", "en-us+klatt3", "en-gb+klatt4", "en-us+klatt6", "en-us+Andy", "en-gb+Annie",
    "en-us+belinda", "en-gb+linda", "en-us+steph", "en-gb+david", "en-us+travis", "en-gb+victor", "en-us+aunty",
    "en-gb+grandpa", "en-us+benjamin", "en-gb+robert", "en-us+john", "en-gb+ed", "en-us+norbert", "en-gb+shelby",
    "en-us+Alicia", "en-gb+Lee", "en-us+m8", "en-gb+m2", "en-us+f4",
)  # fmt: skip
FOREIGN_VOICES: dict[str, tuple[str, ...]] = {
    "it": ("it", "it+f1", "it+m3", "it+klatt2", "it+Annie"),
    "cs": ("cs", "cs+f4", "cs+m2", "cs+klatt"),
    "id": ("id", "id+f3", "id+m6", "id+steph"),
    "sw": ("sw", "sw+f1", "sw+m7", "sw+david"),
}
HELDOUT_BASES = ("en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "de", "es", "fr")
HELDOUT_VARIANTS = ("f2", "f5", "m4")
# it / cs / id / sw: /a/ is the open vowel (AA 1.0), as lipsync_clips does for es
FOREIGN_OPEN_A = frozenset({"a", "a:"})


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the training data (hashed for the cache under --work)."""

    train_split_clips: int = 144  # lipsync_clips.make_clips("train", n, seed) clips (its 6 voices x 22 sentences)
    extra_clips: int = 800  # our own English sentences x voices
    foreign_clips: int = 200  # it / cs / id / sw
    festival_clips: int = 240  # Festival diphone voices (English)
    natural_clips: int = 300  # v4: Flite (awb, rms) x300, Piper joe x150, Festival Russian x100, Czech x100
    mbrola_clips: int = 0  # MBROLA us1/us3 xN, en1 xN/2, it3/it4 xN/4, cz2 xN/6 (benchmarks/mbrola_clips.py)
    mbrola_accent_clips: int = 0  # English in 8 other languages' MBROLA voices (only with mbrola_clips)
    versions: int = 4  # version 0: clean (speed + level only); 1..: a random degradation chain
    seed: int = 20240611
    # development voices: their clips are not trained on, only watched (model choice without the held-out split)
    dev_voices: tuple[str, ...] = ("en-gb-x-gbcwmd+m6", "en-us+klatt3", "en-gb+victor", "en-us+Alicia", "it+Annie",
                                   "sw+david")  # fmt: skip
    target_sigma_s: float = 0.015  # coarticulation smoothing of the step-wise targets


def check_disjoint() -> None:
    """Our material must share no sentence and no voice with the held-out split."""
    from benchmarks import lipsync_clips as lc

    held = set(lc.HELDOUT_SENTENCES) | {s for v in lc.FOREIGN_SENTENCES.values() for s in v}
    try:
        from models import eval_articulator as ea

        held |= set(ea.CORPUS)
    except Exception:  # eval_articulator is optional
        pass
    mine = set(lc.TRAIN_SENTENCES) | set(EXTRA_SENTENCES) | {s for v in EXTRA_FOREIGN.values() for s in v}
    clash = held & mine
    assert not clash, f"training sentences in the held-out set: {sorted(clash)}"
    voices = [*lc.TRAIN_VOICES, *EXTRA_VOICES, *(v for vs in FOREIGN_VOICES.values() for v in vs)]
    for v in voices:
        base, _, variant = v.partition("+")
        assert v not in lc.HELDOUT_VOICES, v
        assert base.lower() not in HELDOUT_BASES, v
        assert variant not in HELDOUT_VARIANTS, v
    for v in lc.HELDOUT_VOICES:
        assert v.partition("+")[0].lower() in HELDOUT_BASES, f"held-out voice {v} not excluded: update HELDOUT_BASES"


@dataclass(frozen=True)
class BaseClip:
    """A clip recipe: either lipsync_clips' own train spec or ours."""

    index: int
    kind: str  # "train-split", "extra", "foreign"
    voice: str
    language: str  # lipsync_clips language key ("en-us", "en") or a foreign training language
    spec: Any  # lipsync_clips.ClipSpec


def base_clips(recipe: Recipe) -> list[BaseClip]:
    from benchmarks import lipsync_clips as lc

    out: list[BaseClip] = []
    for spec in lc.clip_specs("train", recipe.train_split_clips, recipe.seed):
        out.append(BaseClip(len(out), "train-split", spec.voice, lc.language_of(spec.voice), spec))

    def own(kind: str, count: int, voices: Sequence[str], sentences: Sequence[str], language: str | None) -> None:
        for k in range(count):
            rng = np.random.default_rng([recipe.seed, zlib.crc32(kind.encode()), k, 11])
            voice = voices[int(rng.integers(len(voices)))]
            n_sent = int(rng.integers(2, 4))
            chosen = tuple(sentences[int(i)] for i in rng.choice(len(sentences), size=n_sent, replace=False))
            spec = lc.ClipSpec(
                split="train", index=len(out), voice=voice, rate=int(rng.integers(110, 261)),
                pitch=int(rng.integers(20, 81)), sentences=chosen,
                gaps=tuple(float(rng.uniform(0.25, 0.9)) for _ in range(n_sent - 1)),
                lead=float(rng.uniform(0.1, 0.45)),
            )  # fmt: skip
            out.append(BaseClip(len(out), kind, voice, language or lc.language_of(voice), spec))

    own("extra", recipe.extra_clips, EXTRA_VOICES, EXTRA_SENTENCES + lc.TRAIN_SENTENCES, None)
    langs = list(EXTRA_FOREIGN)
    per = [recipe.foreign_clips // len(langs) + (i < recipe.foreign_clips % len(langs)) for i in range(len(langs))]
    for lang, count in zip(langs, per, strict=True):
        own("foreign-" + lang, count, FOREIGN_VOICES[lang], EXTRA_FOREIGN[lang], lang)
    if recipe.festival_clips and shutil.which("festival"):
        own("festival", recipe.festival_clips, [f"festival:{v}" for v in FESTIVAL_TRAIN_VOICES],
            EXTRA_SENTENCES + lc.TRAIN_SENTENCES, "en-us")  # fmt: skip
        own("festival-it", recipe.festival_clips // 4, [f"festival:{v}" for v in FESTIVAL_ITALIAN_VOICES],
            EXTRA_FOREIGN["it"], "it")  # fmt: skip
        own("festival-fi", recipe.festival_clips // 4, [f"festival:{v}" for v in FESTIVAL_FINNISH_VOICES],
            FINNISH_SENTENCES, "fi")  # fmt: skip
    if recipe.natural_clips and shutil.which("flite"):
        own("flite", recipe.natural_clips, [f"flite:{v}" for v in FLITE_TRAIN_VOICES],
            EXTRA_SENTENCES + lc.TRAIN_SENTENCES, "en-us")  # fmt: skip
    if recipe.natural_clips:
        own("piper", recipe.natural_clips // 2, ["piper:joe"], EXTRA_SENTENCES + lc.TRAIN_SENTENCES, "en-us")
    if recipe.natural_clips and shutil.which("festival") and FESTIVAL_RUSSIAN_VOICE_DIR.is_dir():
        own("festival-ru", recipe.natural_clips // 3, [f"festival:{FESTIVAL_RUSSIAN_VOICE}"], RUSSIAN_SENTENCES, "ru")
    if recipe.natural_clips and shutil.which("festival") and FESTIVAL_CZECH_DIR.is_dir():
        own("festival-cs", recipe.natural_clips // 3, [f"festival:{v}" for v in FESTIVAL_CZECH_VOICES],
            CZECH_SENTENCES, "cs")  # fmt: skip
    if recipe.mbrola_clips and shutil.which("mbrola"):
        from benchmarks import mbrola_clips as mc

        for kind, count, voices, sentences, language in (
            ("mbrola-us", recipe.mbrola_clips, MBROLA_US_VOICES, EXTRA_SENTENCES + lc.TRAIN_SENTENCES, "en-us"),
            ("mbrola-en", recipe.mbrola_clips // 2, MBROLA_EN_VOICES, EXTRA_SENTENCES + lc.TRAIN_SENTENCES, "en"),
            ("mbrola-it", recipe.mbrola_clips // 4, MBROLA_IT_VOICES, EXTRA_FOREIGN["it"], "it"),
            ("mbrola-cs", recipe.mbrola_clips // 6, MBROLA_CS_VOICES, EXTRA_FOREIGN["cs"], "cs"),
            ("mbrola-accent", recipe.mbrola_accent_clips, MBROLA_ACCENT_VOICES, EXTRA_SENTENCES + lc.TRAIN_SENTENCES,
             "sampa"),
        ):
            present = [f"mbrola:{v}" for v in voices if mc.available(v)]
            if present:
                own(kind, count, present, sentences, language)
    return out


# MBROLA (Debian non-free: mbrola, mbrola-us1 ...): diphones of real speakers, driven by espeak-ng's phonemes and
# prosody (benchmarks/mbrola_clips.py). us2 is never trained on (the benchmark's --split mbrola).
MBROLA_US_VOICES = ("us1", "us3")  # an American woman, an American man
MBROLA_EN_VOICES = ("en1",)  # a British man
MBROLA_IT_VOICES = ("it3", "it4")  # an Italian man, an Italian woman
MBROLA_CS_VOICES = ("cz2",)  # a Czech man
# English spoken with other languages' speakers' diphones (accented English; the phones are those languages')
MBROLA_ACCENT_VOICES = ("af1-en", "nl2-en", "pl1-en", "ro1-en", "sw1-en", "sw2-en", "hu1-en", "gr2-en")


# Festival (Debian: festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-italp16k, festvox-itapc16k): diphone
# voices, i.e. concatenated recordings of real speakers (two American men; an Italian woman and man), for acoustics
# closer to human speech than espeak's formant synthesis. Only our own sentences; models/eval_articulator.py's corpus
# (the Festival evaluation) is never spoken. slt (HTS) stays unseen.
FESTIVAL_TRAIN_VOICES = ("kal_diphone", "ked_diphone")
FESTIVAL_ITALIAN_VOICES = ("lp_diphone", "pc_diphone")
FESTIVAL_FINNISH_VOICES = ("suo_fi_lj_diphone", "hy_fi_mv_diphone")  # festvox-suopuhe-lj / -mv: a woman, a man
FINNISH_SENTENCES = (
    "Tänään on kaunis päivä ja aurinko paistaa.",
    "Mummo leipoi hyvän piirakan ja söimme sen yhdessä.",
    "Bussi lähtee asemalta kello kahdeksan.",
    "Pieni poika pelasi pallolla pihalla.",
    "Kirjasto on auki maanantaista perjantaihin.",
    "Meri oli tyyni ja vesi oli lämmintä.",
    "Ostin torilta mansikoita ja perunoita.",
    "Huomenna menemme mökille järven rantaan.",
)
# festvox-ru: unit selection from a real Russian man's recordings (natural-sounding, unlike the diphone voices)
FESTIVAL_RUSSIAN_VOICE = "msu_ru_nsh_clunits"
FESTIVAL_RUSSIAN_VOICE_DIR = Path("/usr/share/festival/voices/russian") / FESTIVAL_RUSSIAN_VOICE
RUSSIAN_SENTENCES = (
    "Мама мыла раму, а папа читал книгу.",
    "Завтра мы поедем на дачу к бабушке.",
    "В большом городе много машин и людей.",
    "Кошка спала на тёплом окне весь день.",
    "Поезд приходит на вокзал в семь часов утра.",
    "Мы купили хлеб, молоко и немного сыра.",
    "Осенью листья падают с деревьев.",
    "Мой брат работает врачом в больнице.",
    "Дети играли в парке до самого вечера.",
    "Она написала письмо своему старому другу.",
)
# festvox-czech-dita / -machac: unit selection from a Czech woman's and man's recordings; Festival reads ISO-8859-2
FESTIVAL_CZECH_VOICES = ("czech_dita", "czech_machac")
FESTIVAL_CZECH_DIR = Path("/usr/share/festival/voices/czech")
CZECH_SENTENCES = (
    "Dobrý den, jak se dnes máte?",
    "Včera jsme byli v parku a hráli jsme fotbal.",
    "Moje sestra bydlí v malém domě u řeky.",
    "Vlak do Prahy odjíždí v osm hodin ráno.",
    "Na trhu jsme koupili jablka a mrkev.",
    "Babička peče nejlepší koláče ve vesnici.",
    "V zimě tady padá hodně sněhu.",
    "Pes běžel přes zahradu za míčem.",
    "Zítra půjdeme do divadla s přáteli.",
    "Tato kniha je velmi zajímavá a dlouhá.",
)
# Czech (festival-czech): "#" pause, "_" a glottal stop (shaped like what follows), "~" palatal / postalveolar
FESTIVAL_CZECH_DEV_VOICE = "czech_ph"  # never trained on: models/tune_cues.py's real-speaker development voice
CZECH_PHONES = {"#": "_", "_": "_!", "a:": "a", "e:": "e", "i:": "i", "o:": "o", "ou": "o", "u:": "u",
                "c": "ts", "c~": "tS", "s~": "S", "z~": "Z", "r~": "r", "n~": "n^", "t~": "t", "d~": "d", "ch": "x",
                "dz~": "dZ", "dz": "dz", "m~": "m", "r~*": "r"}  # fmt: skip
# Festival voice -> language of its phone set (festival_phone); any other voice is English (radio set)
FESTIVAL_LANGUAGE = {**dict.fromkeys(FESTIVAL_ITALIAN_VOICES, "it"), **dict.fromkeys(FESTIVAL_FINNISH_VOICES, "fi"),
                     FESTIVAL_RUSSIAN_VOICE: "ru", **dict.fromkeys(FESTIVAL_CZECH_VOICES, "cs"),
                     FESTIVAL_CZECH_DEV_VOICE: "cs"}  # fmt: skip
# Russian (msu phone set; doubled consonants are palatalized): stressed aa is the open vowel (AA), the reduced
# a is a half-open [ɐ] (AH), ae / ay schwa-like, oo the mid rounded o (as espeak labels o in es, it, cs)
RUSSIAN_PHONES = {"aa": "a", "a": "V", "ae": "@", "ay": "@", "oo": "o", "ee": "e", "e": "e", "ii": "i", "i": "i",
                  "yy": "i", "y": "i", "uu": "u", "u": "u", "ur": "u", "sh": "S", "sch": "S", "zh": "Z", "ch": "tS",
                  "c": "ts", "pau": "_"}  # fmt: skip


def festival_phone(name: str, language: str = "en-us") -> str:
    """espeak mnemonic of a Festival phone: English voices use the radio (ARPAbet) set, the Italian ones SAMPA with
    stress digits."""
    if language == "it":
        base = name.rstrip("0123456789")
        return {"#": "_", "_": "_", "ng": "N"}.get(base, base)
    if language == "cs":
        return CZECH_PHONES.get(name, name)
    if language == "ru":
        if name in RUSSIAN_PHONES:
            return RUSSIAN_PHONES[name]
        return name[0] if len(name) == 2 and name[0] == name[1] else name  # palatalized: pp -> p, ll -> l
    if language == "fi":  # length marks dropped; ä is EH-like (0.6), ö a close-mid rounded vowel
        base = name.rstrip(":") or name
        return {"#": "_", "_": "_", "@": "E", "7": "Y"}.get(base, base)
    from benchmarks.flite_clips import radio_phone

    return radio_phone(name)


def festival_sentence(text: str, spec: Any) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """One sentence in a "festival:VOICE" spec's voice: rate -> Duration_Stretch (160 / rate), espeak-named phones."""
    from benchmarks import lipsync_clips as lc
    from models import eval_articulator as ea

    voice = spec.voice.split(":", 1)[1]
    language = FESTIVAL_LANGUAGE.get(voice, "en-us")
    encoding = "iso-8859-2" if language == "cs" else None
    audio, rate, ph = ea.festival_synthesize(text, voice, 160.0 / spec.rate, encoding)
    return audio, rate, lc.within([(a, b, festival_phone(n[4:], language)) for a, b, n in ph], len(audio) / rate)


# Flite (Debian: flite): statistical parametric (clustergen) voices built from real speakers' recordings, with
# the segment timings it prints itself (-psdur). awb (a Scottish man) and rms (an American man) are trained on; slt
# (the American woman of Festival's held-out HTS voice) is not. Phones: Festival's radio set.
FLITE_TRAIN_VOICES = ("awb", "rms")


def speak_clip(spec: Any) -> Any:
    """Speak a clip recipe with the synthesizer its voice names: "festival:...", "flite:...", "piper:..."
    (benchmarks/piper_clips.py), else libespeak-ng."""
    from benchmarks import lipsync_clips as lc

    engine = spec.voice.partition(":")[0] if ":" in spec.voice else "espeak"
    if engine == "mbrola":
        from benchmarks.mbrola_clips import mbrola_sentence

        return lc.synthesize_clip(spec, mbrola_sentence)
    if engine == "flite":
        from benchmarks.flite_clips import flite_sentence

        return lc.synthesize_clip(spec, flite_sentence)
    if engine == "piper":
        from benchmarks.piper_clips import piper_clip

        return piper_clip(spec)
    return lc.synthesize_clip(spec, festival_sentence) if engine == "festival" else lc.synthesize_clip(spec)


# ----------------------------------------------------------------------------------------------------------------------
# Targets: open (Rhubarb-like, from lipsync_clips' table), spread, round, press per time
# ----------------------------------------------------------------------------------------------------------------------

# (spread, round) per espeak mnemonic (looked up exactly, then without variant marks); tuples of two pairs are
# diphthongs (first half, second half). Anything else: (0, 0).
SHAPE: dict[str, tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]] = {
    **{k: (1.0, 0.0) for k in ("i:", "i", "I", "I2", "j", ";", "i@3")},  # EE, IH
    **{k: (0.6, 0.0) for k in ("E", "E:", "e", "e:", "E~")},  # EH
    "a": (0.35, 0.0),  # AE (English); foreign /a/ is overridden below
    **{k: (0.0, 1.0) for k in ("u:", "u", "U", "oU", "o", "o:", "w", "y", "y:", "Y", "Y:")},  # UW, OW, W, ü
    **{k: (0.0, 0.6) for k in ("O:", "O", "O2", "O@", "o@", "W", "W~", "O~")},  # AO, œ
    **{k: (0.0, 0.35) for k in ("3:", "3")},  # ER
    **{k: (0.0, 0.3) for k in ("S", "Z", "tS", "dZ")},  # postalveolars protrude the lips a little
    "aI": ((0.0, 0.0), (1.0, 0.0)), "aU": ((0.0, 0.0), (0.0, 1.0)), "eI": ((0.6, 0.0), (1.0, 0.0)),
    "OI": ((0.0, 0.6), (1.0, 0.0)), "OY": ((0.0, 0.6), (1.0, 0.0)), "i@": ((1.0, 0.0), (0.0, 0.0)),
    "e@": ((0.6, 0.0), (0.0, 0.0)), "U@": ((0.0, 1.0), (0.0, 0.0)), "UR": ((0.0, 1.0), (0.6, 0.0)),
}  # fmt: skip
FOREIGN_LANGS = frozenset(EXTRA_FOREIGN) | {"fi", "ru", "sampa"}  # fi, ru: Festival's voices; sampa: MBROLA's


def shape_of(name: str, frac: float, language: str) -> tuple[float, float, float, float]:
    """(open, spread, round, press) of espeak phoneme ``name`` at relative position ``frac`` inside it."""
    from benchmarks import lipsync_clips as lc

    if lc.is_pause(name):
        return (0.0, 0.0, 0.0, 0.0)
    base = lc.base_mnemonic(name)
    if language in FOREIGN_LANGS and (name in FOREIGN_OPEN_A or base in FOREIGN_OPEN_A):
        return (1.0, 0.0, 0.0, 0.0)
    open_ = lc.openness(name, frac, "xx" if language in FOREIGN_LANGS else language)
    if lc.is_bilabial(name):
        return (0.0, 0.0, 0.0, 1.0)
    sr = SHAPE.get(name, SHAPE.get(base, (0.0, 0.0)))
    if isinstance(sr[0], tuple):
        sr = sr[0] if frac < 0.5 else sr[1]  # type: ignore[assignment]
    return (float(open_), float(sr[0]), float(sr[1]), 0.0)  # type: ignore[arg-type]


def target_track(
    phonemes: list[tuple[float, float, str]], language: str, times: np.ndarray, sigma_s: float
) -> np.ndarray:
    """(4, len(times)) targets at ``times`` (s): the phoneme's shape there, smoothed by a Gaussian of ``sigma_s``."""
    from benchmarks import lipsync_clips as lc

    step = 0.0025
    t_end = float(times.max()) + 4 * sigma_s + step if len(times) else 0.0
    grid = np.arange(-4 * sigma_s, t_end, step)
    vals = np.zeros((4, len(grid)), dtype=np.float64)
    for k, (start, end, name) in enumerate(phonemes):
        lo, hi = np.searchsorted(grid, [start, end])
        if hi <= lo:
            continue
        shaped, fixed = lc.shaped_as(phonemes, k)
        if fixed is not None:  # glottal stop / word break: shaped like the next real phoneme at its start
            vals[:, lo:hi] = np.array(shape_of(shaped, fixed, language))[:, None]
            continue
        fracs = (grid[lo:hi] - start) / max(end - start, 1e-9)
        first = np.array(shape_of(name, 0.0, language))
        second = np.array(shape_of(name, 0.99, language))
        vals[:, lo:hi] = np.where(fracs[None, :] < 0.5, first[:, None], second[:, None])
    if sigma_s > 0:
        half = math.ceil(4 * sigma_s / step)
        kern = np.exp(-0.5 * (np.arange(-half, half + 1) * step / sigma_s) ** 2)
        kern /= kern.sum()
        vals = np.stack([np.convolve(v, kern, mode="same") for v in vals])
    return np.stack([np.interp(times, grid, v) for v in vals]).astype(np.float32)


def phoneme_track(phonemes: list[tuple[float, float, str]], times: np.ndarray) -> np.ndarray:
    """The espeak phoneme (base mnemonic, "_" in pauses) at each of ``times``: the auxiliary classification target."""
    from benchmarks import lipsync_clips as lc

    out = np.full(len(times), "_", dtype="<U6")
    for k, (start, end, name) in enumerate(phonemes):
        lo, hi = np.searchsorted(times, [start, end])
        if hi <= lo:
            continue
        name = lc.shaped_as(phonemes, k)[0]
        out[lo:hi] = "_" if lc.is_pause(name) else lc.base_mnemonic(name)[:6]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Features exactly as the app computes them, and the energy gates
# ----------------------------------------------------------------------------------------------------------------------


def normalize(audio16k: np.ndarray) -> np.ndarray:
    x = np.asarray(audio16k, dtype=np.float32)
    return x * np.float32(normalizing_gain(frame_rms_db(x)))


def app_mel(audio16k: np.ndarray) -> np.ndarray:
    """(80, T) mel of level-normalized audio, zeros outside the recording (as the renderer's PcmReader reads it)."""
    x = normalize(audio16k)
    n_cols = len(x) // HOP + 1
    padded = np.zeros(N_FFT // 2 + len(x) + N_FFT // 2 + HOP, dtype=np.float32)
    padded[N_FFT // 2 : N_FFT // 2 + len(x)] = x
    return log_mel(padded)[:, :n_cols]


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def window_gates(level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gate, side) for windows whose (B,16) column levels are ``level``."""
    gate = ramp(level[:, GATE_COLS[0] : GATE_COLS[1]].min(axis=1), GATE_LO, GATE_HI)
    side = np.minimum(level[:, SIDE_BEFORE[0] : SIDE_BEFORE[1]].max(axis=1),
                      level[:, SIDE_AFTER[0] : SIDE_AFTER[1]].max(axis=1))  # fmt: skip
    return gate, ramp(side, GATE_LO, GATE_HI)


# ----------------------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def speech_rms(x: np.ndarray) -> float:
    """Mean power (as RMS) of the active 20 ms frames (within 30 dB of the 95th percentile): SNR reference."""
    db = frame_rms_db(x)
    db = db[db > -80.0]
    if not len(db):
        return 0.0
    act = db[db > np.percentile(db, 95) - 30.0]
    return float(math.sqrt(np.mean(10.0 ** (act / 10.0))))


def coloured_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = f[1]
    if kind == "pink":
        spec /= np.sqrt(f / 1000.0)
    elif kind == "brown":
        spec /= np.maximum(f, 40.0) / 1000.0
    elif kind == "speechy":  # long-term speech spectrum (peak ~500 Hz, -12 dB/oct above), syllable-rate modulation
        spec *= 1.0 / (1.0 + (f / 500.0) ** 2) * np.minimum(1.0, f / 150.0)
    y = np.fft.irfft(spec, n)
    if kind == "speechy":
        t = np.arange(n) / SAMPLE_RATE
        env = 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(2.5, 5.5) * t + rng.uniform(0, 6.3))
        y *= env * (1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t))
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        y = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 8)) + 0.05 * white
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise impulse response (RT60 0.15-0.8 s) mixed at 0-12 dB direct-to-reverberant."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.15, 0.8)
    n = int(min(rt60, 1.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    ir[: int(rng.uniform(0.001, 0.02) * SAMPLE_RATE)] = 0.0  # pre-delay of the first reflections
    ir *= math.sqrt(10.0 ** (-rng.uniform(0.0, 12.0) / 10.0) / (np.sum(ir * ir) + 1e-12))
    return x + fftconvolve(x, ir)[: len(x)]


def equalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero-phase EQ: spectral tilt (+-4 dB/octave around 1 kHz), two bells (+-6 dB), sometimes band limits."""
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE), 1.0)
    gain_db = rng.uniform(-4.0, 4.0) * np.log2(np.maximum(f, 50.0) / 1000.0)
    for _ in range(2):
        fc, g, q = math.exp(rng.uniform(math.log(200), math.log(6000))), rng.uniform(-6, 6), rng.uniform(0.7, 2.5)
        gain_db += g * np.exp(-0.5 * (np.log2(f / fc) * q * 2.0) ** 2)
    gain = 10.0 ** (gain_db / 20.0)
    if rng.random() < 0.35:  # low-pass (narrow-band microphone / telephone)
        gain /= np.sqrt(1.0 + (f / rng.uniform(3000.0, 7000.0)) ** 8)
    if rng.random() < 0.35:  # high-pass (small speaker / rumble filter)
        r = (f / rng.uniform(80.0, 300.0)) ** 4
        gain *= np.sqrt(r / (1.0 + r))
    return np.fft.irfft(spec * gain, len(x))


CODECS = (
    ("mp3", ["-c:a", "libmp3lame", "-f", "mp3"], (24, 32, 48, 64)),
    ("opus", ["-c:a", "libopus", "-f", "ogg"], (12, 16, 24, 32)),
    ("aac", ["-c:a", "aac", "-f", "adts"], (32, 48, 64)),
    ("amr", ["-ar", "8000", "-c:a", "libopencore_amrnb", "-f", "amr"], (12,)),
)


def codec_round_trip(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Encode to a lossy codec at a low bitrate and decode back (bundled ffmpeg); the codec delay is removed."""
    name, args, rates = CODECS[int(rng.integers(len(CODECS)))]
    kbps = rates[int(rng.integers(len(rates)))]
    br = "12.2k" if name == "amr" else f"{kbps}k"
    pcm = np.clip(x, -1.0, 1.0).astype("<f4").tobytes()
    enc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1",
                          "-i", "pipe:0", *args, "-b:a", br, "pipe:1"], input=pcm, capture_output=True,
                         check=True).stdout  # fmt: skip
    dec = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar",
                          str(SAMPLE_RATE), "pipe:1"], input=enc, capture_output=True, check=True).stdout  # fmt: skip
    y = np.frombuffer(dec, dtype="<f4").astype(np.float64)
    return align(x, y), f"{name}@{br}"


def align(ref: np.ndarray, y: np.ndarray, max_lag: int = 4096) -> np.ndarray:
    """``y`` shifted by the lag (|lag| <= max_lag samples) that best matches ``ref``, cut/padded to its length."""
    n = len(ref)
    m = 1 << math.ceil(math.log2(n + len(y) + 1))
    xc = np.fft.irfft(np.fft.rfft(y, m) * np.conj(np.fft.rfft(ref, m)), m)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[np.argmax(xc[lags])])  # y[t + lag] ~ ref[t]
    out = np.zeros(n)
    src = y[max(lag, 0) :] if lag >= 0 else np.concatenate([np.zeros(-lag), y])
    k = min(n, len(src))
    out[:k] = src[:k]
    return out


def degrade(x: np.ndarray, rng: np.random.Generator, codec: bool = True) -> tuple[np.ndarray, list[str]]:
    """A random chain: reverb, EQ, additive noise at 15-40 dB SNR, level (with clipping), lossy codec."""
    steps = []
    x = np.asarray(x, dtype=np.float64)
    ref = speech_rms(x.astype(np.float32))
    if rng.random() < 0.45:
        x = reverb(x, rng)
        steps.append("reverb")
    if rng.random() < 0.7:
        x = equalize(x, rng)
        steps.append("eq")
    if rng.random() < 0.75:
        kind = ("white", "pink", "brown", "speechy", "hum")[int(rng.choice(5, p=[0.25, 0.3, 0.15, 0.2, 0.1]))]
        snr = rng.uniform(15.0, 40.0)
        x = x + coloured_noise(len(x), kind, rng) * ref * 10.0 ** (-snr / 20.0)
        steps.append(f"{kind}@{snr:.0f}dB")
    peak = float(np.max(np.abs(x))) + 1e-9
    gain_db = rng.uniform(-25.0, 4.0)  # up to 4 dB over full scale: some clipping
    x = np.clip(x / peak * 10.0 ** (gain_db / 20.0), -1.0, 1.0)
    steps.append(f"peak{gain_db:+.0f}dB")
    if codec and rng.random() < 0.5:
        x, name = codec_round_trip(x, rng)
        steps.append(name)
    return x.astype(np.float32), steps


# ----------------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Version:
    mel: np.ndarray  # (80, T) float32
    target: np.ndarray  # (4, T) float32 at each column's time
    valid: np.ndarray  # (T,) bool: the window centred here is not entirely gated
    phon: np.ndarray  # (T,) str: the phoneme at each column (auxiliary target)
    base: int
    version: int
    steps: list[str]


def make_versions(args: tuple[BaseClip, Recipe]) -> list[Version]:
    """Synthesize one base clip and make its ``recipe.versions`` versions (clean + degraded)."""
    import soxr

    bc, recipe = args
    clip = speak_clip(bc.spec)
    out = []
    for v in range(recipe.versions):
        rng = np.random.default_rng([recipe.seed, bc.index, v, 5])
        speed = float(rng.uniform(0.88, 1.14)) if (v > 0 or rng.random() < 0.5) else 1.0
        x = soxr.resample(clip.audio.astype(np.float32), clip.sample_rate * speed, SAMPLE_RATE).astype(np.float32)
        steps = [f"speed{speed:.3f}"]
        if v == 0:
            x = x * np.float32(10.0 ** (rng.uniform(-20.0, 0.0) / 20.0))
        else:
            x, more = degrade(x, rng)
            steps += more
        x = (np.round(np.clip(x, -1.0, 1.0) * 32767.0) / 32768.0).astype(np.float32)  # 16-bit, as in a WAV file
        mel = app_mel(x)
        times = np.arange(mel.shape[1]) / MEL_FPS
        phon = [(s / speed, e / speed, name) for s, e, name in clip.phonemes]
        target = target_track(phon, bc.language, times, recipe.target_sigma_s)
        padded = np.pad(mel, ((0, 0), (CENTRE, WINDOW_FRAMES - CENTRE)), constant_values=-MAX_ABS_VALUE)
        lv = column_level(padded)
        idx = np.arange(mel.shape[1])[:, None] + np.arange(WINDOW_FRAMES)[None, :]
        gate, side = window_gates(lv[idx])
        valid = (gate > 0) | (side > 0)
        out.append(Version(mel.astype(np.float32), target, valid, phoneme_track(phon, times), bc.index, v, steps))
    return out


# data parts cached apart from the espeak part: part -> the recipe fields that belong to it
PARTS = {"festival_clips": ("festival_clips",), "natural_clips": ("natural_clips",),
         "mbrola_clips": ("mbrola_clips", "mbrola_accent_clips")}  # fmt: skip
PART_FIELDS = frozenset(f for fields in PARTS.values() for f in fields)


def dataset_key(recipe: Recipe) -> str:
    # parts added later (Festival, Flite/Piper) stay out of the key while unused: the older parts' caches stay valid
    fields = {k: v for k, v in recipe.__dict__.items() if not (k in PART_FIELDS and v == 0)}
    if recipe.festival_clips:
        fields["festival_voices"] = [*FESTIVAL_TRAIN_VOICES, *FESTIVAL_ITALIAN_VOICES, *FESTIVAL_FINNISH_VOICES]
    if recipe.natural_clips:
        fields["natural_voices"] = [*FLITE_TRAIN_VOICES, "piper:joe", FESTIVAL_RUSSIAN_VOICE, RUSSIAN_SENTENCES,
                                    *FESTIVAL_CZECH_VOICES, CZECH_SENTENCES, sorted(CZECH_PHONES.items())]
    if recipe.mbrola_clips:
        from benchmarks import mbrola_clips as mc

        fields["mbrola"] = [MBROLA_US_VOICES, MBROLA_EN_VOICES, MBROLA_IT_VOICES, MBROLA_CS_VOICES,
                            *([MBROLA_ACCENT_VOICES] if recipe.mbrola_accent_clips else []),
                            sorted(mc.ENGLISH.items()), sorted(mc.FOREIGN.items())]
    blob = json.dumps([fields, EXTRA_SENTENCES, EXTRA_FOREIGN, EXTRA_VOICES, FOREIGN_VOICES,
                       GATE_LO, GATE_HI, sorted(SHAPE.items(), key=str), 5], sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_dataset(recipe: Recipe, work: Path, workers: int = 2) -> dict[str, np.ndarray]:
    """All versions concatenated along time with 16 silent columns between clips; cached under ``work``."""
    path = work / f"data-{dataset_key(recipe)}.npz"
    if path.is_file():
        print(f"data: cached {path}", flush=True)
        return dict(np.load(path))
    check_disjoint()
    clips = base_clips(recipe)
    t0 = time.perf_counter()
    mels, targets, valid, base_ids, vers, phons = [], [], [], [], [], []
    pad = np.full((N_MELS, WINDOW_FRAMES), -MAX_ABS_VALUE, dtype=np.float32)
    mels.append(pad)
    targets.append(np.zeros((4, WINDOW_FRAMES), np.float32))
    valid.append(np.zeros(WINDOW_FRAMES, bool))
    base_ids.append(np.full(WINDOW_FRAMES, -1, np.int32))
    vers.append(np.full(WINDOW_FRAMES, -1, np.int8))
    phons.append(np.full(WINDOW_FRAMES, "_", dtype="<U6"))
    jobs = [(c, recipe) for c in clips]
    # One fresh process per clip: libespeak-ng keeps voice-variant state between calls (a klatt or named variant
    # changes the next voice's timing), so a clip must not depend on which clips the same process spoke before.
    import multiprocessing as mp

    pool = mp.get_context("fork").Pool(max(1, workers), maxtasksperchild=1)
    results: Iterator[list[Version]] = pool.imap(make_versions, jobs, chunksize=1)
    for k, vs in enumerate(results):
        for v in vs:
            for arr, piece in ((mels, v.mel), (targets, v.target), (valid, v.valid)):
                arr.append(piece)
            base_ids.append(np.full(v.mel.shape[1], v.base, np.int32))
            vers.append(np.full(v.mel.shape[1], v.version, np.int8))
            phons.append(v.phon)
            phons.append(np.full(WINDOW_FRAMES, "_", dtype="<U6"))
            mels.append(pad)
            targets.append(np.zeros((4, WINDOW_FRAMES), np.float32))
            valid.append(np.zeros(WINDOW_FRAMES, bool))
            base_ids.append(np.full(WINDOW_FRAMES, -1, np.int32))
            vers.append(np.full(WINDOW_FRAMES, -1, np.int8))
        if (k + 1) % 50 == 0:
            print(f"  data: {k + 1}/{len(clips)} clips, {time.perf_counter() - t0:.0f} s", flush=True)
    pool.close()
    pool.join()
    from benchmarks import lipsync_clips as lc

    data = {
        "mel": np.concatenate(mels, axis=1),
        "target": np.concatenate(targets, axis=1),
        "valid": np.concatenate(valid),
        "base": np.concatenate(base_ids),
        "version": np.concatenate(vers),
        "phon": np.concatenate(phons),
        "kind": np.array([c.kind for c in clips]),
        "voice": np.array([c.voice for c in clips]),
    }
    if lc.unmapped():
        print(f"  phoneme mnemonics without a table entry (consonant 0.25): {' '.join(lc.unmapped())}")
    work.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    secs = data["mel"].shape[1] / MEL_FPS
    print(f"data: {len(clips)} clips x {recipe.versions} versions, {secs / 60:.0f} min of audio,"
          f" {int(data['valid'].sum())} training windows, {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    return data


def build_all(recipe: Recipe, work: Path, workers: int = 2) -> dict[str, np.ndarray]:
    """``build_dataset`` of the espeak part, the Festival part and the Flite/Piper part (each cached on its own),
    joined."""
    from dataclasses import replace

    none = {"train_split_clips": 0, "extra_clips": 0, "foreign_clips": 0, **dict.fromkeys(PART_FIELDS, 0)}
    parts = [build_dataset(replace(recipe, **dict.fromkeys(PART_FIELDS, 0)), work, workers)]
    for name, fields in PARTS.items():
        if getattr(recipe, name):
            mine = {f: getattr(recipe, f) for f in fields}
            parts.append(build_dataset(replace(recipe, **{**none, **mine}), work, workers))
    joined = {k: np.concatenate([p[k] for p in parts]) for k in ("valid", "version", "phon", "kind", "voice")}
    joined["mel"] = np.concatenate([p["mel"] for p in parts], axis=1)
    joined["target"] = np.concatenate([p["target"] for p in parts], axis=1)
    bases, n = [], 0
    for p in parts:
        bases.append(np.where(p["base"] >= 0, p["base"] + n, -1))
        n += len(p["voice"])
    joined["base"] = np.concatenate(bases).astype(np.int32)
    return joined


# ----------------------------------------------------------------------------------------------------------------------
# Model (torch) and export (onnx.helper)
# ----------------------------------------------------------------------------------------------------------------------


def make_net(arch: str = "conv2d", n_phonemes: int = 0) -> Any:
    import torch
    from torch import nn

    class Articulator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.arch = arch
            if arch == "conv2d":  # frequency x time front end (shift-tolerant formant detectors), stride 2 in frequency
                self.f1 = nn.Conv2d(1, F2D, (5, 3), stride=(2, 1), padding=(2, 1))
                self.f2 = nn.Conv2d(F2D, F2D, (3, 3), stride=(2, 1), padding=(1, 1))
                self.c1 = nn.Conv1d(F2D * N_MELS // 4, WIDTH, 1)
            else:
                self.c1 = nn.Conv1d(N_MELS, WIDTH, 3, padding=1)
            self.c2 = nn.Conv1d(WIDTH, WIDTH, 3, padding=1)
            self.c3 = nn.Conv1d(WIDTH, WIDTH, 3, padding=2, dilation=2)
            self.c4 = nn.Conv1d(WIDTH, WIDTH, 3, stride=2, padding=1)
            self.fc1 = nn.Linear(WIDTH * span() // 2, HIDDEN)
            self.fc2 = nn.Linear(HIDDEN, 4)
            n_ext = len(EXTENDED_NAMES)
            self.ext_head = (nn.Sequential(nn.Linear(HIDDEN, EXT_HIDDEN), nn.ReLU(), nn.Linear(EXT_HIDDEN, n_ext))
                             if EXTENDED else None)  # fmt: skip
            self.aux = nn.Linear(HIDDEN, n_phonemes) if n_phonemes else None  # training only: phoneme identity
            self.drop = nn.Dropout(0.1)
            self.register_buffer("level_w", torch.from_numpy(level_weights()))
            self.register_buffer("spectrum_prior", torch.zeros(N_MELS))  # set by train(); exported as metadata
            self.closure_floor = False  # set after training: press = max(learned press, v1's closure dip)

        def level(self, x: torch.Tensor) -> torch.Tensor:
            """(B,16) level of the centred 16 columns of (B,80,span) clipped mel, in mel units."""
            return torch.log(torch.einsum("bft,f->bt", torch.exp(POWER_C * x[:, :, PAST:]), self.level_w)) / POWER_C

        def gates(self, x: torch.Tensor) -> torch.Tensor:
            """(B,4) multipliers of open, spread, round, press for (B,80,16) clipped mel."""
            level = self.level(x)

            def rmp(v: torch.Tensor) -> torch.Tensor:
                return ((v - GATE_LO) / (GATE_HI - GATE_LO)).clamp(0.0, 1.0)

            gate = rmp(level[:, GATE_COLS[0] : GATE_COLS[1]].amin(dim=1))
            side = rmp(torch.minimum(level[:, SIDE_BEFORE[0] : SIDE_BEFORE[1]].amax(dim=1),
                                     level[:, SIDE_AFTER[0] : SIDE_AFTER[1]].amax(dim=1)))  # fmt: skip
            both = torch.maximum(gate, side)
            return torch.stack([both if BRIDGE else gate] * 3 + [both], dim=1)

        def forward(self, mel: torch.Tensor, spec: torch.Tensor | None = None) -> torch.Tensor:
            return self.forward_all(mel, spec)[0]

        def forward_all(
            self, mel: torch.Tensor, spec: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
            """(articulation, phoneme logits or None, extended outputs or None); ``spec`` (B,80): the recording's
            mean speech spectrum, which the net's input is relative to (CMVN) while the gates read the absolute
            levels. The extended outputs (F/V, L probabilities) are not gated: a voiceless f after a pause is quiet, and
            the cues take silence from ``open`` anyway."""
            x = mel.reshape(-1, N_MELS, span()).clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE)
            xn = x if spec is None else x - spec[:, :, None]
            if self.arch == "conv2d":
                f = torch.relu(self.f1(xn.unsqueeze(1) * (1.0 / MAX_ABS_VALUE)))
                f = torch.relu(self.f2(f))  # (B, F2D, 20, 16)
                h = torch.relu(self.c1(f.reshape(-1, F2D * N_MELS // 4, span())))
            else:
                h = torch.relu(self.c1(xn * (1.0 / MAX_ABS_VALUE)))
            h = h + torch.relu(self.c2(h))
            h = h + torch.relu(self.c3(h))
            h = torch.relu(self.c4(h))
            h = torch.relu(self.fc1(self.drop(h.flatten(1))))
            out = torch.sigmoid(self.fc2(h)) * self.gates(x)
            ext = torch.sigmoid(self.ext_head(h)) if self.ext_head is not None else None
            if self.closure_floor:
                out = torch.cat([out[:, :3], torch.maximum(out[:, 3:], self.dip(x))], dim=1)
            return out, (self.aux(h) if self.aux is not None else None), ext

        def dip(self, x: torch.Tensor) -> torch.Tensor:
            """(B,1) v1's closure cue: the centre (columns 7-9) 0.5-1.0 mel units below the louder columns on BOTH
            sides (3-6 and 10-13): a stop closure between two sounds; exactly 0 in silence and steady noise."""
            level = self.level(x)
            hole = level[:, GATE_COLS[0] : GATE_COLS[1]].amin(dim=1, keepdim=True)
            sides = torch.minimum(level[:, SIDE_BEFORE[0] : SIDE_BEFORE[1]].amax(dim=1, keepdim=True),
                                  level[:, SIDE_AFTER[0] : SIDE_AFTER[1]].amax(dim=1, keepdim=True))  # fmt: skip
            return ((sides - hole - DIP_LO) / (DIP_HI - DIP_LO)).clamp(0.0, 1.0)

    return Articulator()


def export_onnx(net: Any, path: Path, meta: dict[str, str]) -> None:
    """Write the trained net and its gates as an ONNX graph with onnx.helper (opset 17, like v1)."""
    import onnx
    from build_models import GraphBuilder  # the same tiny builder as v1

    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    g = GraphBuilder("a2v_articulator_v2")
    mel = g.input("mel", ["B", 1, N_MELS, span()])
    x = g.op("Clip", mel, g.const(-MAX_ABS_VALUE, "lo"), g.const(MAX_ABS_VALUE, "hi"), name="clip_input")
    x = g.op("Reshape", x, g.ints([-1, N_MELS, span()]), name="b_mel_t")

    def ramp_op(v: str, name: str) -> str:
        return g.clip01(g.affine(v, 1.0 / (GATE_HI - GATE_LO), -GATE_LO / (GATE_HI - GATE_LO), name + "_lin"), name)

    with g.scope("gate"):
        xt = g.op("Transpose", x, perm=[0, 2, 1], name="b_t_mel")
        power = g.op("Exp", g.mul(xt, g.const(POWER_C, "db_to_power")), name="power")
        lv = g.op("MatMul", power, g.const(level_weights()[:, None], "level_weights"), name="band_power")  # [B,16,1]
        lv = g.mul(g.op("Log", lv, name="log_power"), g.const(1.0 / POWER_C, "power_to_mel"), name="level_b_t_1")
        lv = g.op("Reshape", lv, g.ints([-1, span()]), name="level")  # [B,PAST+16]

        def cols(lo: int, hi: int, reduce: str, name: str) -> str:
            s = g.op("Slice", lv, g.ints([PAST + lo], name + "_lo"), g.ints([PAST + hi], name + "_hi"), g.ints([1]),
                     name=name)
            return g.op(reduce, s, axes=[1], keepdims=1, name=name + "_" + reduce.lower())

        gate = ramp_op(cols(*GATE_COLS, "ReduceMin", "centre"), "gate")
        before = cols(*SIDE_BEFORE, "ReduceMax", "before")
        after = cols(*SIDE_AFTER, "ReduceMax", "after")
        side = ramp_op(g.op("Min", before, after, name="sides"), "side")
        press_gate = g.op("Max", gate, side, name="press_gate")
        shape_gate = press_gate if BRIDGE else gate
        gates = g.op("Concat", shape_gate, shape_gate, shape_gate, press_gate, axis=1, name="gates")  # [B,4]
        depth = g.sub(g.op("Min", before, after, name="sides_for_dip"), cols(*GATE_COLS, "ReduceMin", "hole"),
                      name="depth")  # fmt: skip
        dip = g.clip01(g.affine(depth, 1.0 / (DIP_HI - DIP_LO), -DIP_LO / (DIP_HI - DIP_LO), "dip_lin"), "dip")

    def conv(h: str, name: str, pad: int, dilation: int = 1, stride: int = 1) -> str:
        w = sd[name + ".weight"]
        return g.op("Conv", h, g.const(w, name + "_w"), g.const(sd[name + ".bias"], name + "_b"), pads=[pad, pad],
                    dilations=[dilation], strides=[stride], kernel_shape=list(w.shape[2:]), name=name)  # fmt: skip

    def conv2d(h: str, name: str, stride: tuple[int, int], pad: tuple[int, int]) -> str:
        w = sd[name + ".weight"]
        return g.op("Conv", h, g.const(w, name + "_w"), g.const(sd[name + ".bias"], name + "_b"),
                    pads=[pad[0], pad[1], pad[0], pad[1]], strides=list(stride), kernel_shape=list(w.shape[2:]),
                    name=name)  # fmt: skip

    with g.scope("net"):
        if CMVN:  # the net reads the window relative to the recording's mean speech spectrum
            spectrum = g.input("spectrum", ["B", N_MELS])
            x = g.sub(x, g.op("Unsqueeze", spectrum, g.ints([2]), name="spectrum_b_mel_1"), name="relative")
        h = g.mul(x, g.const(1.0 / MAX_ABS_VALUE, "scale"), name="scaled")
        if "f1.weight" in sd:
            h = g.op("Unsqueeze", h, g.ints([1]), name="b_1_mel_t")
            h = g.op("Relu", conv2d(h, "f1", (2, 1), (2, 1)), name="g1")
            h = g.op("Relu", conv2d(h, "f2", (2, 1), (1, 1)), name="g2")
            h = g.op("Reshape", h, g.ints([-1, F2D * N_MELS // 4, span()]), name="g_flat")
            h = g.op("Relu", conv(h, "c1", 0), name="h1")
        else:
            h = g.op("Relu", conv(h, "c1", 1), name="h1")
        h = g.add(h, g.op("Relu", conv(h, "c2", 1)), name="h2")
        h = g.add(h, g.op("Relu", conv(h, "c3", 2, dilation=2)), name="h3")
        h = g.op("Relu", conv(h, "c4", 1, stride=2), name="h4")
        h = g.op("Reshape", h, g.ints([-1, WIDTH * span() // 2]), name="flat")
        h = g.op("Relu", g.op("Gemm", h, g.const(sd["fc1.weight"], "fc1_w"), g.const(sd["fc1.bias"], "fc1_b"),
                              transB=1, name="fc1"), name="h5")  # fmt: skip
        net_out = g.op("Sigmoid", g.op("Gemm", h, g.const(sd["fc2.weight"], "fc2_w"), g.const(sd["fc2.bias"], "fc2_b"),
                                       transB=1, name="fc2"), name="sigmoid")  # fmt: skip
        ext = None
        if "ext_head.0.weight" in sd:  # v5: F/V and L probabilities, not gated (a quiet f after a pause is an f)
            e = g.op("Relu", g.op("Gemm", h, g.const(sd["ext_head.0.weight"], "ext1_w"),
                                  g.const(sd["ext_head.0.bias"], "ext1_b"), transB=1, name="ext1"), name="ext_h")
            e = g.op("Gemm", e, g.const(sd["ext_head.2.weight"], "ext2_w"), g.const(sd["ext_head.2.bias"], "ext2_b"),
                     transB=1, name="ext2")
            ext = g.op("Sigmoid", e, name="ext_sigmoid")
            meta = {**meta, "extended_outputs": ",".join(EXTENDED_NAMES)}
    gated = g.mul(net_out, gates, name="gated")
    open_spread_round = g.op("Slice", gated, g.ints([0]), g.ints([3]), g.ints([1]), name="open_spread_round")
    press = g.op("Slice", gated, g.ints([3]), g.ints([4]), g.ints([1]), name="press_learned")
    out = g.op("Concat", open_spread_round, g.op("Max", press, dip, name="press"), axis=1, name="articulation_out")
    g.output(out, "articulation", ["B", 4])
    if ext is not None:
        g.output(ext, "extended", ["B", len(EXTENDED_NAMES)])
    doc = (
        "a2v articulator v2: Wav2Lip log-mel window [B,1,80,16] of level-normalized 16 kHz speech (centre column 8 ="
        " video frame centre) -> articulation [B,4] = open, spread, round, press in 0..1. A small conv net trained on"
        " augmented espeak-ng speech, times a fixed energy gate (open/spread/round exactly 0 in silence and low noise)."
        " Trained by models/train_articulator.py, see models/TRAINING.md."
    )
    model = g.model(doc)
    model.producer_name = "a2v models/train_articulator.py"
    if CMVN:
        meta = {**meta, "spectrum_prior": ",".join(f"{v:.6g}" for v in sd["spectrum_prior"]),
                "spectrum_prior_columns": str(PRIOR_COLUMNS)}  # fmt: skip
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def param_count(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------

LOSS_WEIGHTS = (1.0, 0.5, 0.5, 0.5)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def f1_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean predictions against boolean truth (0 when either is empty)."""
    tp = float(np.sum(pred & truth))
    return 2 * tp / max(float(pred.sum() + truth.sum()), 1.0)


def phoneme_classes(phon: np.ndarray, idx: np.ndarray, min_count: int = 500) -> tuple[list[str], np.ndarray]:
    """The auxiliary target's vocabulary (phonemes seen at least ``min_count`` times at ``idx``, then "other"), and
    every column's class id."""
    names, counts = np.unique(phon[idx], return_counts=True)
    vocab = sorted(str(n) for n, c in zip(names, counts, strict=True) if c >= min_count)
    lookup = {n: i for i, n in enumerate(vocab)}
    uniq, inverse = np.unique(phon, return_inverse=True)
    ids = np.array([lookup.get(str(u), len(vocab)) for u in uniq], dtype=np.int64)[inverse]
    return [*vocab, "other"], ids


def recording_spectra(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S,80) mean clipped mel of each recording's speech columns (gate open) pulled towards the prior as the app does
    (``SpectrumMeter.spectrum``), each column's recording index (the padding between recordings belongs to the
    recording before it), and the prior: the mean over every speech column."""
    key = data["base"].astype(np.int64) * 16 + data["version"].astype(np.int64)
    change = np.flatnonzero((np.diff(key) != 0) & (data["base"][1:] >= 0)) + 1
    seg_of = np.zeros(len(key), np.int64)
    seg_of[change] = 1
    seg_of = np.cumsum(seg_of)
    m = np.clip(data["mel"], -MAX_ABS_VALUE, MAX_ABS_VALUE)
    lv = column_level(m)
    speech = (lv > SPEECH_LEVEL) & (data["base"] >= 0)
    n = int(seg_of[-1]) + 1
    sums = np.zeros((n, N_MELS), np.float64)
    np.add.at(sums, seg_of[speech], m[:, speech].T)
    counts = np.bincount(seg_of[speech], minlength=n)[:, None]
    prior = sums.sum(axis=0) / max(int(counts.sum()), 1)
    spectra = pulled_mean(sums, counts, prior, PRIOR_COLUMNS)  # the app's rule (SpectrumMeter.spectrum)
    return spectra.astype(np.float32), seg_of, prior.astype(np.float32)


def warp_positions(alpha: np.ndarray) -> np.ndarray:
    """(B,80) fractional mel-band positions to read for a frequency warp by ``alpha`` (B,): band k takes what the
    unwarped spectrum has at centre_k / alpha (VTLP: a longer vocal tract, alpha > 1, lowers every formant)."""
    from a2v_cli.engine.features import mel_center_hz

    centres = mel_center_hz()
    src = centres[None, :] / alpha[:, None]
    return np.interp(src, centres, np.arange(N_MELS, dtype=np.float64)).astype(np.float32)


def warp_bands(x: Any, pos: Any) -> Any:
    """Read (B,...,80,T) or (B,80) tensors ``x`` at the fractional band positions ``pos`` (B,80)."""
    import torch

    lo = pos.floor().long().clamp(0, N_MELS - 1)
    hi = (lo + 1).clamp(max=N_MELS - 1)
    w = pos - lo.float()
    if x.dim() == 2:
        return torch.gather(x, 1, lo) * (1 - w) + torch.gather(x, 1, hi) * w
    shape = x.shape  # (B,1,80,T)
    flat = x.reshape(shape[0], N_MELS, -1)
    idx_lo = lo[:, :, None].expand(-1, -1, flat.shape[2])
    idx_hi = hi[:, :, None].expand(-1, -1, flat.shape[2])
    out = torch.gather(flat, 1, idx_lo) * (1 - w)[:, :, None] + torch.gather(flat, 1, idx_hi) * w[:, :, None]
    return out.reshape(shape)


def load_onnx_weights(net: Any, path: Path) -> None:
    """Copy a committed articulator's weights (and spectrum prior) into ``net``, so that a new head can be trained on
    its frozen trunk: the ONNX initializers are named like the torch parameters (``net/c1_w`` = ``c1.weight``)."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    state = net.state_dict()
    for key in state:
        module, _, kind = key.rpartition(".")
        name = f"net/{module}_{'w' if kind == 'weight' else 'b'}"
        if name in weights and not key.startswith("ext_head"):
            state[key] = torch.from_numpy(weights[name].copy())
    meta = {p.key: p.value for p in model.metadata_props}
    state["spectrum_prior"] = torch.tensor([float(v) for v in meta["spectrum_prior"].split(",")])
    net.load_state_dict(state)


def train(
    data: dict[str, np.ndarray], recipe: Recipe, steps: int, batch: int, lr: float, work: Path, arch: str,
    aux_weight: float = 0.0, extend_from: Path | None = None, train_seed: int | None = None,
) -> Any:
    """Train the net on ``data``; with ``extend_from`` (an articulator graph), train only the extended head on that
    graph's frozen trunk, so its four outputs stay exactly as they were."""
    import torch

    seed = recipe.seed if train_seed is None else train_seed  # initial weights and window draws; not the data
    torch.manual_seed(seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    mel = torch.from_numpy(data["mel"])
    target = torch.from_numpy(data["target"])
    base = data["base"]
    dev_clips = np.flatnonzero(np.isin(data["voice"], recipe.dev_voices))
    is_val = np.isin(base, dev_clips)
    train_idx = np.flatnonzero(data["valid"] & ~is_val & (base >= 0))
    val_all = np.flatnonzero(is_val)  # every column of the validation clips (gated ones too)
    val_idx = val_all[np.random.default_rng(1).permutation(len(val_all))[:20000]]
    print(f"train: {len(train_idx)} windows; development ({len(dev_clips)} clips of unseen voices):"
          f" {len(val_all)} columns ({len(val_idx)} used)", flush=True)
    offs = torch.arange(span()) - CENTRE - PAST

    def windows(idx: np.ndarray) -> torch.Tensor:
        cols = torch.from_numpy(idx)[:, None] + offs[None, :]
        return mel[:, cols].permute(1, 0, 2).unsqueeze(1).contiguous()  # (B,1,80,16)

    seg_spec, seg_of, prior = recording_spectra(data) if CMVN else (None, None, None)

    def specs(idx: np.ndarray) -> torch.Tensor | None:
        return None if seg_spec is None else torch.from_numpy(seg_spec[seg_of[idx]])

    from benchmarks import lipsync_clips as lc

    # the extended targets: is the phoneme at the column F/V, is it L (the benchmark's Rhubarb G and H)
    ext_t = torch.from_numpy(np.stack([np.isin(data["phon"], sorted(ph)) for ph in (lc.LABIODENTALS, lc.LATERALS)],
                                      axis=1).astype(np.float32)) if EXTENDED else None  # fmt: skip
    vocab, phon_ids = phoneme_classes(data["phon"], train_idx) if aux_weight > 0 else ([], np.zeros(0, np.int64))
    phon_t = torch.from_numpy(phon_ids)
    net = make_net(arch, len(vocab))
    if prior is not None:
        net.spectrum_prior.copy_(torch.from_numpy(prior))
    if extend_from is not None:
        load_onnx_weights(net, extend_from)
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("ext_head"))
    print(f"model ({arch}): {param_count(net)} parameters; auxiliary phoneme classes: {len(vocab)}"
          f" (weight {aux_weight})", flush=True)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.08)
    w = torch.tensor(LOSS_WEIGHTS)
    rng = np.random.default_rng(seed)
    cdf = None
    if NATURAL_WEIGHT != 1.0:
        natural = np.array([k.startswith(("festival", "flite", "piper", "mbrola")) for k in data["kind"]])
        draw = np.where(natural[base[train_idx]], NATURAL_WEIGHT, 1.0)
        cdf = np.cumsum(draw)
        print(f"real-speaker windows drawn x{NATURAL_WEIGHT}: {draw[natural[base[train_idx]]].sum() / cdf[-1]:.2f}"
              " of the draws", flush=True)  # fmt: skip
    vx = windows(val_idx)
    vs = specs(val_idx)
    vy = target[:, torch.from_numpy(val_idx)].T
    vext = ext_t[torch.from_numpy(val_idx)].numpy() if ext_t is not None else None
    t0 = time.perf_counter()
    log = []
    for step in range(1, steps + 1):
        net.train(extend_from is None)  # a frozen trunk runs as at inference (no dropout)
        if cdf is None:
            idx = train_idx[rng.integers(0, len(train_idx), size=batch)]
        else:
            idx = train_idx[np.minimum(np.searchsorted(cdf, rng.random(batch) * cdf[-1]), len(train_idx) - 1)]
        x = windows(idx)
        y = target[:, torch.from_numpy(idx)].T
        spec_b = specs(idx)
        if WARP > 0:
            pos = torch.from_numpy(warp_positions(rng.uniform(1 - WARP, 1 + WARP, size=batch)))
            x = warp_bands(x, pos)
            spec_b = None if spec_b is None else warp_bands(spec_b, pos)
        pred, logits, ext = net.forward_all(x, spec_b)
        loss = (((pred - y) ** 2).mean(dim=0) * w).sum() if extend_from is None else torch.zeros(())
        if ext is not None and ext_t is not None:
            loss = loss + EXTENDED_WEIGHT * len(EXTENDED_NAMES) * torch.nn.functional.binary_cross_entropy(
                ext.clamp(1e-6, 1 - 1e-6), ext_t[torch.from_numpy(idx)])
        if logits is not None:
            loss = loss + aux_weight * torch.nn.functional.cross_entropy(logits, phon_t[torch.from_numpy(idx)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps:
            net.eval()
            with torch.no_grad():
                both = [net.forward_all(vx[i : i + 4096], None if vs is None else vs[i : i + 4096])
                        for i in range(0, len(vx), 4096)]  # fmt: skip
            vp = torch.cat([b[0] for b in both])
            ext_note = ""
            if vext is not None:
                ve = torch.cat([b[2] for b in both]).numpy() >= 0.5
                ext_note = "  " + " ".join(f"{n} F1 {f1_score(ve[:, k], vext[:, k] > 0.5):.3f}"
                                           for k, n in enumerate(EXTENDED_NAMES))  # fmt: skip
            rs = [pearson(vp[:, k].numpy(), vy[:, k].numpy()) for k in range(4)]
            vloss = float((((vp - vy) ** 2).mean(dim=0) * w).sum())
            el = time.perf_counter() - t0
            tl = float(loss.detach())
            log.append({"step": step, "loss": tl, "val_loss": vloss, "val_r": rs, "s": round(el, 1)})
            print(f"  step {step}/{steps}  loss {tl:.4f}  dev {vloss:.4f}  dev r open {rs[0]:.3f} spread {rs[1]:.3f}"
                  f" round {rs[2]:.3f} press {rs[3]:.3f}{ext_note}  {el:.0f} s", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), work / "articulator.pt")
    (work / "train-log.json").write_text(json.dumps(log, indent=1))
    net.eval()
    net.closure_floor = True
    return net


def load_trained(work: Path, arch: str) -> Any:
    """The checkpoint that ``train`` saved under ``work``, ready to export."""
    import torch

    net = make_net(arch)
    state = torch.load(work / "articulator.pt")
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux.")})
    net.eval()
    net.closure_floor = True
    return net


def verify_export(net: Any, path: Path, data: dict[str, np.ndarray]) -> float:
    """Max |onnxruntime - torch| over real training windows, silence and random windows."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(3)
    idx = rng.choice(np.flatnonzero(data["base"] >= 0), size=2000, replace=False)
    cols = idx[:, None] + (np.arange(span()) - CENTRE - PAST)[None, :]
    x = data["mel"][:, cols].transpose(1, 0, 2)[:, None].astype(np.float32)
    x = np.concatenate([x, np.full((4, 1, N_MELS, span()), -4.0, np.float32),
                        rng.uniform(-6, 6, size=(64, 1, N_MELS, span())).astype(np.float32)])  # fmt: skip
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"mel": x}
    if CMVN:
        feeds["spectrum"] = rng.uniform(-3, 1, size=(len(x), N_MELS)).astype(np.float32)
    got = sess.run(None, feeds)
    with torch.no_grad():
        want, _, ext = net.forward_all(torch.from_numpy(x), torch.from_numpy(feeds["spectrum"]) if CMVN else None)
    wants = [want.numpy()] + ([ext.numpy()] if ext is not None else [])
    if len(got) != len(wants):
        raise SystemExit(f"ONNX export has {len(got)} outputs, torch {len(wants)}")
    return max(float(np.max(np.abs(a - b))) for a, b in zip(got, wants, strict=True))


# ----------------------------------------------------------------------------------------------------------------------
# Held-out evaluation, exactly as the app runs the articulator
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EvalClip:
    name: str
    group: str
    windows: np.ndarray  # (N,1,80,16)
    target: np.ndarray  # (N,) step-wise openness at frame centres (lipsync_clips' ground truth)
    silence: np.ndarray  # (N,) bool
    pbm: np.ndarray  # frame indices of p/b/m midpoints
    spectrum: Any  # features.SpectrumMeter of the recording, as the app measures it


def app_windows(audio: np.ndarray, sample_rate: int, tmp: Path) -> tuple[np.ndarray, Any]:
    """The app's own path: 16-bit WAV -> a2v decode (soxr to 16 kHz, level meter) -> renderer's mel windows, and
    the recording's speech spectrum."""
    import soundfile as sf

    from a2v_cli.engine.audio import PcmReader, decode
    from a2v_cli.engine.lipsync import window_count
    from a2v_cli.engine.render import mel_windows

    wav = tmp / "speech.wav"
    sf.write(str(wav), np.clip(audio, -1, 1), sample_rate, subtype="PCM_16")
    prepared = decode(wav, tmp, 1e9)
    reader = PcmReader(prepared)
    try:
        n = window_count(prepared.duration, FPS)
        out = [mel_windows(reader, centered_window_starts(np.arange(s, min(s + 25, n)), FPS)) for s in range(0, n, 25)]
        spectrum = speech_spectrum(reader.read, reader.n)
    finally:
        reader.close()
    return np.concatenate(out), spectrum


def eval_clip(name: str, group: str, audio: np.ndarray, sample_rate: int, target: np.ndarray, silence: np.ndarray,
              pbm: np.ndarray, tmp: Path) -> EvalClip:  # fmt: skip
    """An evaluation clip through the app's path (``app_windows``), cut to the shorter of windows and truth."""
    win, spectrum = app_windows(audio, sample_rate, tmp)
    m = min(len(win), len(target))
    return EvalClip(name, group, win[:m], target[:m], silence[:m], pbm[pbm < m], spectrum)


def heldout_clips(n: int, seed: int, condition: str) -> list[EvalClip]:
    """lipsync_clips' held-out split (the benchmark's clips for n=24, seed=0) under ``condition``.

    clean; noise35 (white noise 35 dB under the speech level, as eval_articulator.py); degraded (reverb, EQ,
    noise at 15-40 dB SNR, level, lossy codec: the training chain with held-out seeds, applied to held-out clips).
    """
    import soxr

    from benchmarks import lipsync_clips as lc

    out = []
    with tempfile.TemporaryDirectory(prefix="a2v-eval-") as tmp:
        for k, clip in enumerate(lc.make_clips("heldout", n, seed)):
            truth = lc.clip_truth(clip)
            audio, sr = clip.audio.astype(np.float32), clip.sample_rate
            if condition != "clean":
                rng = np.random.default_rng([99991, seed, k])
                x = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
                if condition == "noise35":
                    lvl = 10.0 ** (np.percentile(frame_rms_db(x)[frame_rms_db(x) > -80], 95) / 20.0)
                    x = x + (rng.standard_normal(len(x)) * lvl * 10.0 ** (-35 / 20)).astype(np.float32)
                else:
                    x, _ = degrade(x, rng)
                audio, sr = x, SAMPLE_RATE
            group = "en" if clip.language.startswith("en") else clip.language
            out.append(eval_clip(clip.name, group, audio, sr, truth.target, truth.silence, truth.pbm, Path(tmp)))
    return out


def festival_clips() -> list[EvalClip]:
    """Festival voices (kal diphones of a real male voice, slt HTS): a synthesizer never used for training."""
    from benchmarks import lipsync_clips as lc
    from models import eval_articulator as ea

    out = []
    with tempfile.TemporaryDirectory(prefix="a2v-eval-") as tmp:
        for vi, voice in enumerate(ea.FESTIVAL_VOICES):
            for si, text in enumerate(ea.CORPUS):
                audio, sr, ph = ea.festival_synthesize(text, voice, ea.FESTIVAL_STRETCH[ea.RATES[(si + vi) % 3]])
                duration = len(audio) / sr
                n = max(1, math.ceil(duration * FPS - 1e-9))
                centres = (np.arange(n) + 0.5) / FPS
                target = np.zeros(n)
                for s, e, name in ph:
                    for i in np.flatnonzero((centres >= s) & (centres < e)):
                        target[i] = ea.openness(name, (centres[i] - s) / max(e - s, 1e-6))
                cmu = [(s, e, "_" if name in ("cmu:pau", "cmu:h#") else name[4:]) for s, e, name in ph]
                truth = lc.ground_truth(cmu, duration)
                group = voice.split("_")[0]  # kal (trained on other sentences), slt (never trained on)
                out.append(eval_clip(f"festival-{voice}-{si}", group, audio.astype(np.float32), sr, target,
                                     truth.silence, truth.pbm, Path(tmp)))  # fmt: skip
    return out


def truth_eval_clips(clips: Sequence[Any], group: str) -> list[EvalClip]:
    """lipsync_clips ``Clip``s (espeak-named phonemes) as evaluation clips through the app's path."""
    from benchmarks import lipsync_clips as lc

    out = []
    with tempfile.TemporaryDirectory(prefix="a2v-eval-") as tmp:
        for clip in clips:
            truth = lc.clip_truth(clip)
            out.append(eval_clip(clip.name, group, clip.audio, clip.sample_rate, truth.target, truth.silence,
                                 truth.pbm, Path(tmp)))  # fmt: skip
    return out


def human_eval_clips(clips: Sequence[Any] | None = None) -> list[EvalClip]:
    """Recorded human speech with forced-aligned phonemes (benchmarks/human_clips.py, its cache by default; never
    trained on)."""
    from benchmarks.human_clips import human_clips

    clips = human_clips() if clips is None else clips
    if not clips:
        raise FileNotFoundError("no human clips in the cache")
    return truth_eval_clips(clips, "human")


def flite_eval_clips() -> list[EvalClip]:
    """models/eval_articulator.py's corpus in Flite's slt (an American woman; never trained on), three rates."""
    from benchmarks import lipsync_clips as lc
    from benchmarks.flite_clips import flite_clip
    from models import eval_articulator as ea

    specs = [lc.ClipSpec("flite", si, "flite:slt", ea.RATES[si % 3], 0, (text,), (), 0.3)
             for si, text in enumerate(ea.CORPUS)]  # fmt: skip
    return truth_eval_clips([flite_clip(s) for s in specs], "slt")


def piper_eval_clips(n: int = 12) -> list[EvalClip]:
    """Held-out sentences in a Piper (neural) voice, exact phoneme timings (benchmarks/piper_clips.py)."""
    from benchmarks.piper_clips import piper_clips

    return truth_eval_clips(piper_clips(n), "piper")


def mbrola_eval_clips(n: int = 12) -> list[EvalClip]:
    """Held-out sentences in MBROLA's us2 (a real speaker's diphones; never trained on)."""
    from benchmarks.mbrola_clips import mbrola_clips

    return truth_eval_clips(mbrola_clips(n), "us2")


def run_model(path: Path, clips: list[EvalClip]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    relative = "spectrum" in {i.name for i in sess.get_inputs()}
    from a2v_cli.engine.lipsync import spectrum_prior

    prior, prior_columns = spectrum_prior(sess)

    def feeds(c: EvalClip) -> dict[str, np.ndarray]:
        if not relative:
            return {"mel": c.windows}
        spec = c.spectrum.spectrum(prior, prior_columns)
        return {"mel": c.windows, "spectrum": np.repeat(spec[None], len(c.windows), axis=0)}

    return [sess.run(None, feeds(c))[0] for c in clips]


def best_lag(opens: list[np.ndarray], targets: list[np.ndarray], max_lag: int = 5) -> int:
    def r_at(lag: int) -> float:
        a, b = [], []
        for o, t in zip(opens, targets, strict=True):
            n = min(len(o), len(t))
            if lag >= 0:
                a.append(o[lag:n]), b.append(t[: n - lag])
            else:
                a.append(o[: n + lag]), b.append(t[-lag:n])
        return pearson(np.concatenate(a), np.concatenate(b))

    return max(range(-max_lag, max_lag + 1), key=lambda k: (round(r_at(k), 9), -abs(k)))


def metrics(clips: list[EvalClip], outs: list[np.ndarray]) -> dict[str, float]:
    opens = [o[:, 0] for o in outs]
    t = np.concatenate([c.target for c in clips])
    o = np.concatenate(opens)
    sil = np.concatenate([op[c.silence] for c, op in zip(clips, opens, strict=True)])
    sil_all = np.concatenate([out[c.silence] for c, out in zip(clips, outs, strict=True)])
    closed = total = 0
    for c, op in zip(clips, opens, strict=True):
        lo, hi = float(op.min()), float(op.max())
        closed += int(np.sum(op[c.pbm] <= lo + 0.25 * (hi - lo)))
        total += len(c.pbm)
    return {
        "clips": len(clips),
        "frames": len(o),
        "r": pearson(o, t),
        "r_clip": float(np.mean([pearson(op, c.target) for c, op in zip(clips, opens, strict=True)])),
        "lag": best_lag(opens, [c.target for c in clips]),
        "silence_zero": float(np.mean(sil == 0.0)) if len(sil) else float("nan"),
        "silence_all_zero": float(np.mean(np.all(sil_all == 0.0, axis=1))) if len(sil) else float("nan"),
        "pbm_closed": closed / max(total, 1),
        "silence_frames": len(sil),
        "pbm": total,
    }


def evaluate(models: dict[str, Path], n: int = 24, seed: int = 0, festival: bool = True) -> dict[str, Any]:
    sets: dict[str, list[EvalClip]] = {}
    t0 = time.perf_counter()
    for cond in ("clean", "noise35", "degraded"):
        sets[f"heldout/{cond}"] = heldout_clips(n, seed, cond)
    if festival and shutil.which("festival"):
        try:
            sets["festival/clean"] = festival_clips()
        except Exception as err:  # Festival voices missing: skip, say so
            print(f"festival skipped: {err}", file=sys.stderr)
    if shutil.which("flite"):
        sets["flite/clean"] = flite_eval_clips()
    from benchmarks import mbrola_clips as mc

    if shutil.which("mbrola") and mc.available(mc.HELDOUT_VOICE):
        sets["mbrola/us2"] = mbrola_eval_clips()
    try:
        sets["piper/joe"] = piper_eval_clips()
    except Exception as err:  # not fetched: `python -m benchmarks.piper_clips --fetch`
        print(f"piper voice skipped: {err}", file=sys.stderr)
    try:
        sets["human/recorded"] = human_eval_clips()
    except Exception as err:  # not fetched: `python -m benchmarks.human_clips --fetch`
        print(f"human recordings skipped: {err}", file=sys.stderr)
    print(f"evaluation clips ready in {time.perf_counter() - t0:.0f} s", flush=True)
    results: dict[str, Any] = {}
    for name, clips in sets.items():
        groups = {"all": list(range(len(clips)))}
        if len({c.group for c in clips}) > 1:  # a set of several voices is also reported voice by voice
            for i, c in enumerate(clips):
                groups.setdefault(c.group, []).append(i)
        for model, path in models.items():
            outs = run_model(path, clips)
            for gname, idx in groups.items():
                results[f"{name}/{gname}/{model}"] = metrics([clips[i] for i in idx], [outs[i] for i in idx])
    return results


def print_results(results: dict[str, Any]) -> None:
    print("\n| set | group | model | r (pooled) | r (per clip) | lag | silence open==0 | silence all 4 ==0 |"
          " p/b/m closed | clips | frames |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, m in results.items():
        cond, g, model = key.rsplit("/", 2)
        print(f"| {cond} | {g} | {model} | {m['r']:.3f} | {m['r_clip']:.3f} | {m['lag']:+d} | {m['silence_zero']:.4f}"
              f" ({m['silence_frames']}) | {m['silence_all_zero']:.4f} | {m['pbm_closed']:.3f} ({m['pbm']}) |"
              f" {m['clips']} | {m['frames']} |")


# ----------------------------------------------------------------------------------------------------------------------


def main() -> None:
    global WIDTH, HIDDEN, PAST, CMVN, BRIDGE, NATURAL_WEIGHT, EXTENDED, WARP
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=WORK, help="datasets, checkpoints, logs (default /tmp/a2v-train)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the trained graph (default: --work/a2v-articulator-v5.onnx; never models/ unless it ships)")
    ap.add_argument("--model", type=Path, action="append", default=[], metavar="PATH",
                    help="also compare this articulator .onnx, e.g. an old version rebuilt (repeatable)")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--arch", choices=("conv1d", "conv2d"), default="conv2d")
    ap.add_argument("--aux-weight", type=float, default=AUX_WEIGHT,
                    help="weight of the auxiliary phoneme-identity loss (training only; 0 = none)")
    ap.add_argument("--width", type=int, default=WIDTH, help="channels of the 1-D conv trunk")
    ap.add_argument("--hidden", type=int, default=HIDDEN, help="units of the hidden fully connected layer")
    ap.add_argument("--past", type=int, default=PAST,
                    help="extra past mel columns before the centred window (experiments only: the app feeds 16)")
    ap.add_argument("--cmvn", action=argparse.BooleanOptionalAction, default=CMVN,
                    help="input relative to the recording's mean speech spectrum (a second input, `spectrum`)")
    ap.add_argument("--natural", type=int, default=Recipe.natural_clips,
                    help="clips of Flite's awb and rms voices; half as many in the Piper voice, a third as many in"
                         " Festival's Russian and in its Czech voices (0: none, as v3)")
    ap.add_argument("--mbrola", type=int, default=Recipe.mbrola_clips,
                    help="clips of real speakers' MBROLA diphones (benchmarks/mbrola_clips.py; 0: none)")
    ap.add_argument("--mbrola-accent", type=int, default=Recipe.mbrola_accent_clips,
                    help="clips of English in other languages' MBROLA voices (with --mbrola)")
    ap.add_argument("--bridge", action=argparse.BooleanOptionalAction, default=BRIDGE,
                    help="let open/spread/round through inside short gaps with speech on both sides (stop closures),"
                         " as press is; silences over ~125 ms stay exactly closed")
    ap.add_argument("--natural-weight", type=float, default=NATURAL_WEIGHT,
                    help="draw windows of the real-speaker voices (Festival, Flite, Piper) this much more often")
    ap.add_argument("--extended", action=argparse.BooleanOptionalAction, default=EXTENDED,
                    help="a second output, `extended`: F/V and L probabilities (Rhubarb's G and H mouth cues)")
    ap.add_argument("--extend-from", type=Path, default=None,
                    help="train only the extended head, on this articulator graph's frozen trunk (its outputs stay)")
    ap.add_argument("--warp", type=float, default=WARP,
                    help="experiment: warp each training window's frequency axis by a random factor in 1 +- WARP")
    ap.add_argument("--train-seed", type=int, default=None,
                    help="seed of the initial weights and window draws (default: the recipe's; the data stay)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the data generation")
    ap.add_argument("--quick", action="store_true", help="a small pilot run (few clips and steps), to --work/pilot")
    ap.add_argument("--eval-only", action="store_true",
                    help="only compare the shipped articulator (and --model, --out) on held-out clips")
    ap.add_argument("--export-only", action="store_true", help="export the checkpoint in --work (no training)")
    ap.add_argument("--no-eval", action="store_true", help="stop after the export")
    ap.add_argument("--no-festival", action="store_true", help="skip the Festival voices in the evaluation")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    WIDTH, HIDDEN, PAST, CMVN, BRIDGE = args.width, args.hidden, args.past, args.cmvn, args.bridge
    NATURAL_WEIGHT, EXTENDED, WARP = args.natural_weight, args.extended, args.warp
    if not args.eval_only:
        recipe = Recipe(natural_clips=args.natural, mbrola_clips=args.mbrola, mbrola_accent_clips=args.mbrola_accent)
        if args.quick:
            recipe = Recipe(train_split_clips=12, extra_clips=48, foreign_clips=16, festival_clips=8, natural_clips=6)
            args.steps = min(args.steps, 600)
            args.work = args.work / "pilot"
            if args.out is None:
                args.out = args.work / "a2v-articulator-v5-pilot.onnx"
        if args.out is None:
            args.out = args.work / "a2v-articulator-v5.onnx"
        t_all = time.perf_counter()
        data = build_all(recipe, args.work, args.workers)
        t_data = time.perf_counter() - t_all
        t1 = time.perf_counter()
        if args.export_only:
            net = load_trained(args.work, args.arch)
        else:
            net = train(data, recipe, args.steps, args.batch, args.lr, args.work, args.arch, args.aux_weight,
                        args.extend_from, args.train_seed)
        t_train = time.perf_counter() - t1
        meta = {"recipe": json.dumps(recipe.__dict__), "arch": args.arch, "steps": str(args.steps),
                "width": str(WIDTH), "hidden": str(HIDDEN), "past": str(PAST), "aux_weight": str(args.aux_weight),
                "bridge": str(BRIDGE), "natural_weight": str(NATURAL_WEIGHT), "extended": str(EXTENDED),
                "warp": str(WARP), "extend_from": args.extend_from.name if args.extend_from else "",
                **({"train_seed": str(args.train_seed)} if args.train_seed is not None else {}),
                "batch": str(args.batch), "parameters": str(param_count(net)), "dataset": dataset_key(recipe)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(net, args.out, meta)
        err = verify_export(net, args.out, data)
        print(f"exported {args.out} ({args.out.stat().st_size} bytes, {param_count(net)} parameters);"
              f" max |onnxruntime - torch| = {err:.2e}; data {t_data:.0f} s, training {t_train:.0f} s", flush=True)
        if err > 1e-4:
            raise SystemExit("ONNX export does not match torch")
        if args.quick or args.no_eval:
            return
    models = {k: v for k, v in VERSIONS.items() if v.is_file()}
    for path in [*args.model, *([args.out] if args.out is not None else [])]:
        if path.resolve() not in {p.resolve() for p in models.values()}:
            models[path.stem.removeprefix("a2v-articulator-")] = path
    results = evaluate(models, festival=not args.no_festival)
    print_results(results)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "heldout.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

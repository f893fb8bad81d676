"""The lip-sync quality benchmark's metrics, ground truth and clip recipes, on synthetic signals (no rendering)."""

from __future__ import annotations

import ctypes.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_lipsync as bl
from benchmarks import lipsync_clips as lc

ROOT = Path(__file__).resolve().parents[1]


# a 4 s utterance: pause, words rich in p/b/m and open vowels, a 0.3 s pause, a 0.1 s pause, more words, pause
PHONEMES = [
    (0.0, 0.40, "_"), (0.40, 0.52, "p"), (0.52, 0.70, "A:"), (0.70, 0.80, "t"), (0.80, 0.96, "m"),
    (0.96, 1.10, "i:"), (1.10, 1.40, "_:"), (1.40, 1.50, "b"), (1.50, 1.70, "aI"), (1.70, 1.80, "_"),
    (1.80, 1.92, "f"), (1.92, 2.10, "O:"), (2.10, 2.20, "l"), (2.20, 2.40, "E"), (2.40, 2.52, "m"),
    (2.52, 2.70, "u:"), (2.70, 2.80, "s"), (2.80, 2.95, "p"), (2.95, 3.20, "a"), (3.20, 3.40, "n"),
    (3.40, 4.00, "_:"),
]  # fmt: skip
DURATION = 4.0


def truth() -> lc.GroundTruth:
    return lc.ground_truth(PHONEMES, DURATION, "en")


def test_phoneme_mapping_follows_rhubarb_shapes() -> None:
    assert lc.openness("p") == lc.openness("b") == lc.openness("m") == 0.0
    assert lc.openness("_:") == lc.openness("_") == 0.0
    assert lc.openness("A:") == 1.0 and lc.openness("0") == 1.0  # AA
    assert lc.openness("E") == 0.6 and lc.openness("a") == 0.6  # EH, AE (English a)
    assert lc.openness("O:") == 0.55 and lc.openness("3:") == 0.55  # AO, ER
    assert lc.openness("u:") == lc.openness("oU") == lc.openness("w") == 0.35  # UW, OW, W
    assert lc.openness("f") == lc.openness("v") == 0.15
    assert lc.openness("l") == 0.4
    assert lc.openness("i:") == lc.openness("I2") == lc.openness("t") == lc.openness("s") == 0.25  # EE, consonants
    assert lc.openness("aI", 0.2) == 1.0 and lc.openness("aI", 0.8) == 0.25  # diphthong: first, then second half
    assert lc.openness("a", language="es") == 1.0  # Spanish /a/ is the open vowel
    assert lc.openness("y", language="fr") == 0.35  # French y is rounded, not EE
    assert lc.openness("A@", 0.8, "en-us") == 0.25 and lc.openness("A@", 0.8, "en") == 1.0  # rhotic vs not
    assert lc.language_of("en-us-nyc+m4") == "en-us" and lc.language_of("en-gb-x-rp") == "en"
    assert lc.language_of("fr+f2") == "fr"


def test_markers_take_the_next_phoneme_and_unknowns_are_reported() -> None:
    g = lc.ground_truth([(0.0, 0.08, "_!"), (0.08, 0.4, "a:"), (0.4, 0.6, "qq9")], 0.6, "de")
    assert g.target[0] == 1.0 and not g.silence.any()  # a glottal stop is shaped like the vowel after it
    assert g.target[-1] == 0.25 and "de:qq9" in lc.unmapped()


def test_ground_truth_frames_pauses_and_bilabials() -> None:
    g = truth()
    assert len(g.target) == 100 and len(g.labels) == 100
    assert g.labels[0] == "_" and g.labels[15] == "A:" and g.target[15] == 1.0  # centre of frame 15 = 0.62 s
    # pauses >= 0.2 s: the first (0-0.4), 1.1-1.4 and the last; the 0.1 s one (1.7-1.8) is too short
    assert g.silence[:10].all() and g.silence[28:35].all() and not g.silence[43] and g.silence[86:].all()
    assert not g.silence[10:27].any()
    assert list(g.pbm) == [11, 22, 36, 61, 71]  # frames holding the midpoints of p m b m p
    assert lc.frame_count(4.0) == 100 and lc.frame_count(4.001) == 101 and lc.frame_count(0.0) == 1


def test_perfect_signal_scores_perfectly() -> None:
    g = truth()
    s = bl.score_clip("c", "en-us", g.target.copy(), g)
    assert s.r == pytest.approx(1.0) and s.lag == 0
    assert s.silence_closed == s.silence_frames > 0 and s.pbm_closed == s.pbm_count == 5
    row = bl.pool("perfect", [s], [g.target], [g])
    assert row.r == pytest.approx(1.0) and row.lag == 0 and row.silence_closed == 1.0 and row.pbm_closed == 1.0


@pytest.mark.parametrize("shift", [3, -2, 1])
def test_shifted_signal_reports_its_lag(shift: int) -> None:
    g = truth()
    late = np.zeros_like(g.target)  # measured[t] = target[t - shift]: the video is `shift` frames late
    if shift > 0:
        late[shift:] = g.target[:-shift]
    else:
        late[:shift] = g.target[-shift:]
    s = bl.score_clip("c", "en-us", late, g)
    assert s.lag == shift and s.r < 0.9
    curve = bl.lag_curve([late], [g.target])
    assert curve[shift] == pytest.approx(1.0) and bl.best_lag(curve) == shift


def test_pooling_is_blind_to_each_clips_scale_and_offset() -> None:
    g = truth()
    loud, soft = g.target * 40.0 + 7.0, g.target * 0.01 - 3.0
    scores = [bl.score_clip(n, "en-us", m, g) for n, m in (("a", loud), ("b", soft))]
    row = bl.pool("m", scores, [loud, soft], [g, g])
    assert row.r == pytest.approx(1.0) and row.clips == 2 and row.frames == 200


def test_open_mouth_in_pauses_and_on_bilabials_is_caught() -> None:
    g = truth()
    bad = g.target.copy()
    bad[g.silence] = 0.8  # mouth open in every pause
    bad[g.pbm] = 0.9  # and on every p/b/m
    s = bl.score_clip("c", "en-us", bad, g)
    assert s.silence_closed == 0 and s.pbm_closed == 0 and s.r < 0.5
    flat = bl.score_clip("c", "en-us", np.ones(100), g)  # a mouth that never moves correlates with nothing
    assert flat.r == 0.0


def test_frame_and_av_mismatch_are_recorded() -> None:
    g = truth()
    s = bl.score_clip("c", "en-us", g.target[:98], g, frames_decoded=98, audio_seconds=4.0)
    assert s.frames == 98 and s.frames_expected == 100 and s.av_mismatch_ms == pytest.approx(80.0)
    row = bl.pool("m", [s], [g.target[:98]], [g])
    assert row.frames_exact == 0 and row.max_av_ms == pytest.approx(80.0) and not row.meets_targets()
    ok = bl.score_clip("c", "en-us", g.target, g, frames_decoded=100, audio_seconds=3.99)
    assert bl.pool("m", [ok], [g.target], [g]).meets_targets()


def test_rms_baseline_follows_the_audio() -> None:
    sr = 16000
    audio = np.zeros(sr, dtype=np.float32)  # 1 s: silence, then a 0.5 amplitude tone from 0.4 to 0.6 s
    t = np.arange(int(0.2 * sr)) / sr
    audio[int(0.4 * sr) : int(0.6 * sr)] = 0.5 * np.sin(2 * np.pi * 200 * t)
    rms = bl.rms_signal(audio, sr, 25)
    assert rms[:9].max() == 0.0 and rms[-9:].max() == 0.0
    assert rms[11:14] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_interior_area_counts_the_dark_opening_only() -> None:
    skin, lip, inner = 220, 130, 45
    frames = np.full((3, 40, 60), skin, dtype=np.uint8)
    frames[:, 18:22, 10:50] = lip  # closed lips in every frame
    frames[1, 16:24, 15:45] = inner  # frame 1: an 8 x 30 opening
    frames[2, 12:28, 15:45] = inner  # frame 2: 16 x 30
    frames[2, 12:14, 15:45] = 250  # with upper teeth showing
    area = bl.interior_area(frames, inner, inner + bl.DARK_SPLIT * (skin - inner))
    assert list(area) == pytest.approx([0.0, 240.0, 420.0])
    dark, thr = bl.interior_threshold([frames[[1, 2] * 50]])
    assert dark == inner and lip > thr > inner


def test_mouth_crops_follow_the_head_sway() -> None:
    box = bl.MouthBox(cx=30.0, cy=20.0, half_w=8, half_h=5, region=(0, 0, 60, 40))
    yy, xx = np.mgrid[0:40, 0:60].astype(np.float64)
    offsets = np.array([[0.0, 0.0], [1.0, -2.0], [0.25, 0.75]])
    # a smooth picture moving with the head: crops at the moved box must all be the same patch
    frames = np.stack([
        np.repeat((100 + 60 * np.sin((xx - dx) / 5) * np.cos((yy - dy) / 4))[..., None], 3, axis=2)
        for dx, dy in offsets
    ]).astype(np.uint8)  # fmt: skip
    crops = bl.mouth_crops(frames, box, offsets)
    assert crops.shape == (3, 11, 17, 3)
    assert np.abs(crops[1] - crops[0]).max() <= 1.0 and np.abs(crops[2] - crops[0]).max() <= 6.0
    still = bl.mouth_crops(frames, box, np.zeros((3, 2)))
    assert np.abs(still[1] - still[0]).max() > 20  # without following the sway the patch differs


def test_clip_recipes_split_sentences_and_voices() -> None:
    train, held = lc.clip_specs("train", 24, 0), lc.clip_specs("heldout", 24, 0)
    assert {s.voice for s in train} == set(lc.TRAIN_VOICES) and {s.voice for s in held} == set(lc.HELDOUT_VOICES)
    train_sentences = {t for s in train for t in s.sentences}
    held_sentences = {t for s in held for t in s.sentences}
    assert train_sentences <= set(lc.TRAIN_SENTENCES) and not train_sentences & held_sentences
    assert set(lc.TRAIN_SENTENCES).isdisjoint(lc.HELDOUT_SENTENCES)
    assert len(lc.TRAIN_SENTENCES) + len(lc.HELDOUT_SENTENCES) + sum(map(len, lc.FOREIGN_SENTENCES.values())) >= 30
    assert {lc.language_of(s.voice) for s in held} >= {"de", "es", "fr"}
    assert lc.clip_specs("heldout", 6, 0) == held[:6]  # prefix-stable
    assert lc.clip_specs("heldout", 6, 1) != held[:6]
    for s in train + held:
        assert 120 <= s.rate <= 220 and 30 <= s.pitch <= 70 and 2 <= len(s.sentences) <= 3
        assert len(s.gaps) == len(s.sentences) - 1 and all(0.3 <= g <= 0.8 for g in s.gaps)
    with pytest.raises(ValueError):
        lc.make_clips("test", 1, 0)


@pytest.mark.skipif(ctypes.util.find_library("espeak-ng") is None, reason="libespeak-ng is not installed")
def test_make_clips_synthesizes_speech_with_pauses() -> None:
    (clip,) = lc.make_clips("heldout", 1, 0, (2, 2))
    assert clip.sample_rate > 0 and clip.audio.dtype == np.float32 and clip.duration > 1.5
    assert clip.voice == lc.HELDOUT_VOICES[0] and len(clip.sentences) == 2
    starts = [p[0] for p in clip.phonemes]
    assert starts == sorted(starts) and clip.phonemes[-1][1] == pytest.approx(clip.duration, abs=1e-3)
    g = lc.clip_truth(clip)
    assert g.silence[:3].all() and g.silence.sum() >= 0.6 * 25  # lead-in + the gap between the sentences
    assert len(g.pbm) > 0 and g.target.max() >= 0.6
    assert not lc.unmapped() or all(not u.startswith("en") for u in lc.unmapped())


def test_piper_frames_become_tiling_espeak_phonemes() -> None:
    """Piper's per-symbol frame counts: padding shared by its neighbours, stress marks and word gaps before a stop
    given forward, IPA pairs (long vowels, diphthongs, affricates) joined into one espeak phoneme."""
    from benchmarks.piper_clips import HOP, _segments

    sr = 22050
    f = HOP / sr
    symbols = ["^", "_", "b", "_", "ˈ", "_", "ɑ", "_", "ː", "_", " ", "_", "p", "_", "e", "_", "ɪ", "_", " ", "_",
               "tʃ"[0], "_", "tʃ"[1], "_", ".", "_", "$"]  # fmt: skip
    frames = np.array([4, 2, 3, 2, 2, 0, 6, 1, 2, 1, 3, 1, 2, 2, 5, 1, 3, 1, 2, 2, 2, 0, 2, 2, 6, 2, 4], dtype=float)
    segs = _segments(symbols, frames, sr)
    assert [n for _, _, n in segs] == ["_", "b", "A:", "p", "eI", "tS", "_", "_"]
    assert segs[0][0] == 0.0 and segs[-1][1] == pytest.approx(frames.sum() * f)
    assert all(abs(a[1] - b[0]) < 1e-12 for a, b in itertools.pairwise(segs))  # gap-free
    # "^" 4 + half its padding 1; b: the other half 1 + 3 + half of the next padding 1
    assert segs[0][1] == pytest.approx(5 * f)
    assert segs[1][1] - segs[1][0] == pytest.approx(5 * f)
    # the stress mark (2 frames and half of its 0-frame padding) is the way into the vowel: the vowel gets it
    a_dur = 1 + 2 + 0 + 6 + 1 + 2 + 0.5  # (stress + pads) + ɑ + pad + ː + half pad
    assert segs[2][1] - segs[2][0] == pytest.approx(a_dur * f)
    # the word gap before "p" (a stop) is its closure: (0.5 + 3 + 0.5) + (0.5 + 2 + 1)
    assert segs[3][1] - segs[3][0] == pytest.approx(7.5 * f)
    # the word gap before "tʃ" is a stop's closure too (affricate starts with t)
    assert segs[5][1] - segs[5][0] == pytest.approx((0.5 + 2 + 1 + 1 + 2 + 0 + 2 + 1) * f)


def test_rhubarb_shapes_of_phonemes() -> None:
    assert [lc.rhubarb_shapes(n) for n in ("_:", "p", "f", "v", "l", "@L", "A:", "E", "t", "i:", "O:", "u:")] == [
        "X", "A", "G", "G", "H", "H", "D", "C", "B", "B", "E", "F"]  # fmt: skip
    assert lc.rhubarb_shapes("@") == "BC"  # schwa is not a Rhubarb shape: either neighbour is right
    assert lc.rhubarb_shapes("aI", 0.2) == "D" and lc.rhubarb_shapes("aI", 0.8) == "B"  # diphthong halves
    assert lc.rhubarb_shapes("a", 0.5, "de") == "D"  # German /a/ is open


def test_cue_scores_reward_the_right_shapes_and_only_them() -> None:
    from a2v_cli.engine.cues import Cue
    from benchmarks import bench_cues as bc

    clip = lc.Clip(np.zeros(int(DURATION * 16000), np.float32), 16000, PHONEMES, "t", "en-us")
    times = (np.arange(int(DURATION * bc.RATE)) + 0.5) / bc.RATE
    truth_track = bc.truth_track(clip, times)
    perfect = [Cue(round(t - 0.005, 3), round(t + 0.005, 3), s[0]) for t, s in zip(times, truth_track, strict=True)]
    good = bc.score_clip(clip, perfect)
    assert good["accuracy"] == [len(times), len(times)]
    for key in ("A hit", "G hit", "H hit", "A prec", "G prec", "H prec", "X in pauses"):
        assert good[key][0] == good[key][1] > 0, key
    # cueing everything B: nothing found, no G/H time at all, and only the B-shaped phonemes right
    flat = bc.score_clip(clip, [Cue(0.0, DURATION, "B")])
    assert flat["G hit"] == [0, 1] and flat["H hit"] == [0, 1] and flat["A hit"][0] == 0
    assert flat["G prec"][1] == 0 and flat["X in pauses"][0] == 0
    assert flat["accuracy"][0] == sum("B" in t for t in truth_track)
    # G everywhere: every F/V found, but at low precision
    spam = bc.score_clip(clip, [Cue(0.0, DURATION, "G")])
    assert spam["G hit"] == [1, 1] and spam["G prec"][0] / spam["G prec"][1] < 0.1


def test_mbrola_phone_file_becomes_tiling_espeak_phonemes() -> None:
    """An MBROLA phoneme file (as espeak-ng --pho writes it) gives gap-free segments of its durations, in espeak's
    names, each with its Rhubarb openness: American SAMPA, British SAMPA and Italian stress digits."""
    from benchmarks.mbrola_clips import parse_pho

    pho = "; comment\n_\t120\nh\t70\n@\t20\t 0 179 100 191\nl\t65\n@U\t63\t 0 232\n\nr=\t96\np_h\t94\n{\t48\n_\t1\n"
    segs = parse_pho(pho, "en-us")
    assert [n for _, _, n in segs] == ["_", "h", "@", "l", "oU", "3:", "p", "a", "_"]
    assert segs[0][0] == 0.0 and segs[-1][1] == pytest.approx((120 + 70 + 20 + 65 + 63 + 96 + 94 + 48 + 1) / 1000)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segs))
    assert segs[3][1] - segs[3][0] == pytest.approx(0.065)
    shapes = [lc.openness(n, 0.0, "en-us") for _, _, n in segs]
    assert shapes[0] == 0.0 and shapes[6] == 0.0 and shapes[7] == pytest.approx(0.6)  # pause, p, AE
    british = [n for _, _, n in parse_pho("Q\t60\n5\t50\nA:\t80\ne\t40\n", "en")]
    assert british == ["0", "l", "A:", "E"] and lc.openness("0", 0.0, "en") == 1.0
    assert [n for _, _, n in parse_pho("a1\t80\nE1\t70\ni/\t30\nh\\\t40\nd'\t50\n", "it")] == ["a", "E", "j", "h", "d"]
    assert not lc.unmapped() or all(not u.startswith("en") for u in lc.unmapped())

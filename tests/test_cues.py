"""`a2v cues`: Rhubarb shapes and layouts from the built-in articulator."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FIXTURES, SPEECH_PAUSE, run_cli, wav_duration

from a2v_cli.engine.cues import Cue, _merge, check_extended, restrict, shape_of, to_json, to_tsv
from a2v_cli.errors import InputError

FVL = FIXTURES / "speech_fvl.wav"  # espeak-ng, a voice never trained on; phoneme times in speech_fvl.json


def test_shape_mapping() -> None:
    assert shape_of(0.0, 0.0, 0.0, 0.0) == "X"
    assert shape_of(0.0, 0.0, 0.0, 0.9) == "A"
    assert shape_of(0.9, 0.2, 0.0, 0.0) == "D"
    assert shape_of(0.5, 0.6, 0.0, 0.0) == "C"
    assert shape_of(0.2, 0.8, 0.0, 0.0) == "B"
    assert shape_of(0.3, 0.0, 0.8, 0.0) == "F"
    assert shape_of(0.6, 0.0, 0.8, 0.0) == "E"
    assert shape_of(0.15, 0.1, 0.0, 0.0, 0.9, 0.0) == "G"
    assert shape_of(0.4, 0.1, 0.0, 0.0, 0.1, 0.8) == "H"
    assert shape_of(0.0, 0.0, 0.0, 0.0, 0.01, 0.9) == "X"  # silence wins over everything but F/V ...
    assert shape_of(0.0, 0.0, 0.0, 0.0, 0.9, 0.0) == "G"  # ... as a quiet f is below the silence gate
    assert shape_of(0.05, 0.0, 0.0, 0.9, 0.01, 0.0) == "A"
    assert shape_of(0.05, 0.0, 0.0, 0.9, 0.6, 0.0) == "G"  # press rises on F/V too


def test_extended_shapes_fall_back_like_rhubarb() -> None:
    assert [restrict(s, "") for s in "ABCDEFGHX"] == list("ABCDEFBCA")
    assert [restrict(s, "GHX") for s in "GHX"] == list("GHX")
    assert restrict("G", "HX") == "B" and restrict("X", "gh".upper()) == "A"
    assert check_extended("gx") == "GX" and check_extended("") == ""
    with pytest.raises(InputError):
        check_extended("GQ")


def test_short_runs_merge_and_cues_tile_the_clip() -> None:
    shapes = ["X"] * 30 + ["B"] * 2 + ["D"] * 20 + ["A"] * 10 + ["X"] * 8
    cues = _merge(shapes, 0.01, 0.70)
    assert [c.value for c in cues] == ["X", "D", "A", "X"]
    assert cues[0].start == 0.0 and cues[-1].end == 0.70
    assert all(a.end == b.start for a, b in itertools.pairwise(cues))
    assert all(c.end - c.start >= 0.04 for c in cues)


def test_layouts() -> None:
    cues = [Cue(0.0, 0.3, "X"), Cue(0.3, 0.5, "D")]
    assert to_tsv(cues) == "0.00\tX\n0.30\tD\n0.50\tX\n"
    doc = json.loads(to_json(cues, "a.wav", 0.5))
    assert doc["metadata"] == {"soundFile": "a.wav", "duration": 0.5}
    assert doc["mouthCues"][1] == {"start": 0.3, "end": 0.5, "value": "D"}


def test_cues_command_on_speech_with_a_pause(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("cues", str(SPEECH_PAUSE), "--format", "json")
    assert r.code == 0, r.stderr
    cues = json.loads(r.stdout)["mouthCues"]
    assert cues[0]["start"] == 0.0 and abs(cues[-1]["end"] - wav_duration(SPEECH_PAUSE)) < 0.02
    values = {c["value"] for c in cues}
    assert values & {"C", "D"} and "X" in values
    audio, rate = sf.read(SPEECH_PAUSE)
    # the 1.2 s digital silence in the middle is one idle (X) stretch
    silent = np.abs(audio) < 1e-4
    run = np.convolve(silent, np.ones(int(rate * 0.5)), "valid") == int(rate * 0.5)  # 0.5 s of digital silence
    first = int(np.flatnonzero(run)[0])
    last = int(np.flatnonzero(run)[-1]) + int(rate * 0.5)
    t0, t1 = first / rate + 0.15, last / rate - 0.15
    inside = [c for c in cues if c["end"] > t0 and c["start"] < t1]
    assert [c["value"] for c in inside] == ["X"], inside
    tsv = run_cli("cues", str(SPEECH_PAUSE), "-o", str(tmp_path / "c.tsv"))
    lines = (tmp_path / "c.tsv").read_text().splitlines()
    assert tsv.code == 0 and lines[0].startswith("0.00\t") and lines[-1].endswith("\tX")
    assert all(line.split("\t")[1] in "ABCDEFGHX" for line in lines)


def test_g_and_h_cues_land_on_f_v_and_l(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("cues", str(FVL), "--format", "json")
    assert r.code == 0, r.stderr
    cues = json.loads(r.stdout)["mouthCues"]
    phonemes = json.loads(FVL.with_suffix(".json").read_text())

    def cued_at(t: float) -> set[str]:  # shapes within 40 ms of t
        return {c["value"] for c in cues if c["start"] <= t + 0.04 and c["end"] > t - 0.04}

    fv = [(s, e) for s, e, n in phonemes if n in ("f", "v")]
    ll = [(s, e) for s, e, n in phonemes if n == "l" and e - s >= 0.04]  # espeak folds some final l into the vowel
    assert len(fv) >= 8 and len(ll) >= 5
    assert sum("G" in cued_at((s + e) / 2) for s, e in fv) >= 0.6 * len(fv)
    assert sum("H" in cued_at((s + e) / 2) for s, e in ll) >= 0.4 * len(ll)
    for shape, spans in (("G", fv), ("H", [(s, e) for s, e, n in phonemes if n == "l"])):
        cued = [c for c in cues if c["value"] == shape]
        near = [c for c in cued if any(c["start"] < e + 0.06 and c["end"] > s - 0.06 for s, e in spans)]
        assert len(near) >= 0.7 * len(cued), (shape, cued)
    # an animator whose art has no G or H: stand-ins only, same timing for everything else
    plain = run_cli("cues", str(FVL), "--extended-shapes", "X", "-o", str(tmp_path / "c.tsv"))
    assert plain.code == 0, plain.stderr
    values = [line.split("\t")[1] for line in (tmp_path / "c.tsv").read_text().splitlines()]
    assert set(values) <= set("ABCDEFX") and "X" in values


def test_unknown_extended_shape_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "c.tsv"
    r = run_cli("cues", str(FVL), "--extended-shapes", "GHQ", "-o", str(out))
    assert r.code == 2 and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "GHQ" in r.stderr and "Traceback" not in r.stderr


def test_output_extension_picks_or_contradicts_the_format(isolated: Path) -> None:
    """`cues talk.wav -o talk.json` used to write TSV into a .json file, exit 0; now the extension picks JSON,
    and an extension that contradicts --format / --json is exit 2 before anything is decoded."""
    r = run_cli("cues", str(SPEECH_PAUSE), "-o", "c.json")
    assert r.code == 0, r.stderr
    assert json.loads((isolated / "c.json").read_text())["mouthCues"]
    for args in (["--format", "json", "-o", "c.tsv"], ["--json", "-o", "c.TSV"], ["--format", "tsv", "-o", "c2.json"]):
        bad = run_cli("cues", str(SPEECH_PAUSE), *args)
        assert bad.code == 2, bad.stderr
        assert "says" in bad.stderr.strip().splitlines()[-1], bad.stderr
    assert sorted(p.name for p in isolated.iterdir()) == ["c.json"]

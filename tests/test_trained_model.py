"""The trained articulator in use (models/a2v-articulator-v6.onnx: three runs of models/train_articulator.py, merged).

Only onnxruntime is needed: torch is a training-time dependency, never a runtime one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, synthetic_vowel

from a2v_cli.engine.features import (
    SAMPLE_RATE,
    centered_window_starts,
    clip_spectrum,
    clip_windows,
)
from a2v_cli.engine.lipsync import ARTICULATOR_FILE

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "models" / ARTICULATOR_FILE
FIXTURES = Path(__file__).parent / "fixtures"
FPS = 25.0

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained() -> object:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(TRAINED), so, providers=["CPUExecutionProvider"])


def prior(sess: object) -> tuple[np.ndarray, float]:
    from a2v_cli.engine.lipsync import spectrum_prior

    p, columns = spectrum_prior(sess)
    assert p is not None and columns > 0
    return p, columns


def articulate(sess: object, windows: np.ndarray, spectrum: np.ndarray | None = None) -> np.ndarray:
    """(N,4) for (N,1,80,16) windows of a recording whose speech spectrum is ``spectrum`` (default: the prior)."""
    spec = prior(sess)[0] if spectrum is None else spectrum
    feeds = {"mel": windows, "spectrum": np.repeat(spec[None].astype(np.float32), len(windows), axis=0)}
    return sess.run(None, feeds)[0]  # type: ignore[attr-defined]


def windows_for(audio: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Exactly the app's path: level normalization, Wav2Lip mel, windows centred on 25 fps frames."""
    return clip_windows(audio, FPS, normalize)


def run_clip(sess: object, audio: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(N,4) for a whole clip: its windows and its own speech spectrum, as the renderer feeds them."""
    return articulate(sess, windows_for(audio, normalize), clip_spectrum(audio, normalize).spectrum(*prior(sess)))


def app_articulation(sess: object, wav: Path, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N,4) articulation of a WAV file through the app's own path (decode, level meter, renderer's windows),
    and the 16 kHz samples."""
    from a2v_cli.engine.audio import PcmReader, decode
    from a2v_cli.engine.features import speech_spectrum
    from a2v_cli.engine.lipsync import window_count
    from a2v_cli.engine.render import mel_windows

    prepared = decode(wav, workdir, 600.0)
    reader = PcmReader(prepared)
    try:
        n = window_count(prepared.duration, FPS)
        windows = np.concatenate([mel_windows(reader, centered_window_starts(np.arange(s, min(s + 25, n)), FPS))
                                  for s in range(0, n, 25)])  # fmt: skip
        samples = reader.read(0, prepared.num_samples) / np.float32(prepared.gain)
        spectrum = speech_spectrum(reader.read, reader.n).spectrum(*prior(sess))
    finally:
        reader.close()
    return articulate(sess, windows, spectrum), samples


def test_loads_with_its_contract_and_a_dynamic_batch(trained: object) -> None:
    ins = trained.get_inputs()  # type: ignore[attr-defined]
    outs = trained.get_outputs()  # type: ignore[attr-defined]
    assert [i.name for i in ins] == ["mel", "spectrum"] and [o.name for o in outs] == ["articulation", "extended"]
    assert ins[0].shape[1:] == [1, 80, 16] and ins[0].type == "tensor(float)"
    assert ins[1].shape[1:] == [80] and ins[1].type == "tensor(float)"
    assert outs[0].shape[1:] == [4] and outs[0].type == "tensor(float)"
    assert outs[1].shape[1:] == [2] and outs[1].type == "tensor(float)"  # F/V and L probabilities (cues G, H)
    meta = trained.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    assert meta["extended_outputs"] == "labiodental,lateral"
    assert not isinstance(ins[0].shape[0], int)  # symbolic batch
    rng = np.random.default_rng(0)
    mel = rng.uniform(-4.0, 1.0, size=(7, 1, 80, 16)).astype(np.float32)
    batch = articulate(trained, mel)
    assert batch.shape == (7, 4) and batch.dtype == np.float32
    one = np.concatenate([articulate(trained, mel[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(one, batch, atol=1e-5)


def test_outputs_are_in_0_1_for_any_window(trained: object) -> None:
    rng = np.random.default_rng(1)
    mel = rng.uniform(-4.0, 4.0, size=(64, 1, 80, 16)).astype(np.float32)
    mel[:8] = rng.uniform(-40.0, 40.0, size=(8, 1, 80, 16))  # out-of-range input is clipped, not trusted
    out = articulate(trained, mel)
    assert out.shape == (64, 4) and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_digital_silence_gives_exactly_zero(trained: object) -> None:
    assert np.all(articulate(trained, np.full((5, 1, 80, 16), -4.0, dtype=np.float32)) == 0.0)
    assert np.all(run_clip(trained, np.zeros(SAMPLE_RATE, dtype=np.float32)) == 0.0)
    rng = np.random.default_rng(4)  # whatever the recording's spectrum: the gate reads absolute levels
    silent = np.full((5, 1, 80, 16), -4.0, dtype=np.float32)
    for _ in range(4):
        assert np.all(articulate(trained, silent, rng.uniform(-4, 2, 80).astype(np.float32)) == 0.0)


@pytest.mark.parametrize("level_db", [-40.0, -35.0, -30.0])
def test_low_noise_keeps_the_mouth_exactly_still(trained: object, level_db: float) -> None:
    """White noise 30-40 dB below the normalized speech level (-20 dBFS): every output exactly 0."""
    rng = np.random.default_rng(2)
    noise = (rng.standard_normal(2 * SAMPLE_RATE) * 10 ** ((-20.0 + level_db) / 20)).astype(np.float32)
    assert np.all(run_clip(trained, noise, normalize=False) == 0.0)


def test_speech_opens_the_mouth_with_a_clear_range(trained: object, tmp_path: Path) -> None:
    out, _ = app_articulation(trained, FIXTURES / "speech_en.wav", tmp_path)
    opens = out[:, 0]
    assert opens.max() > 0.5, opens.max()
    assert np.percentile(opens, 90) - np.percentile(opens, 10) > 0.4
    assert np.mean(opens == 0.0) < 0.5  # mostly speech: not stuck closed
    assert out[:, 1].max() > 0.3 and out[:, 3].max() > 0.3  # spread and press are used too


def test_the_pause_is_closed(trained: object, tmp_path: Path) -> None:
    """speech_pause.wav: "We open the window." 1.2 s of digital silence (plus espeak's own) "Then we sleep."."""
    out, samples = app_articulation(trained, FIXTURES / "speech_pause.wav", tmp_path)
    quiet = np.abs(samples) < 1e-4
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2)
    start, end = runs[np.argmax(runs[:, 1] - runs[:, 0])] / SAMPLE_RATE  # the longest silent stretch
    assert end - start > 1.2
    centres = (np.arange(len(out)) + 0.5) / FPS
    pause = (centres > start) & (centres < end)
    inner = (centres > start + 0.06) & (centres < end - 0.06)
    assert np.mean(out[pause, 0] == 0.0) >= 0.9
    assert np.all(out[inner] == 0.0)  # all four outputs: the mouth does not move at all
    speech = (centres < start - 0.1) | (centres > end + 0.1)
    assert out[speech, 0].max() > 0.5


def test_open_vowel_opens_more_than_close_vowels(trained: object) -> None:
    """Steady synthetic vowels: AA opens clearly more than EE and OO (as v1's test)."""

    def vowel(formants: tuple[float, float, float]) -> np.ndarray:
        return synthetic_vowel(formants, rate=SAMPLE_RATE)

    def middle(formants: tuple[float, float, float]) -> np.ndarray:
        pad = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
        out = run_clip(trained, np.concatenate([pad, vowel(formants), pad]))
        k = len(out) // 2
        return out[k - 3 : k + 3].mean(axis=0)

    aa, ee, oo = middle((750.0, 1200.0, 2600.0)), middle((280.0, 2300.0, 3000.0)), middle((300.0, 870.0, 2250.0))
    assert aa[0] > 0.4 and aa[0] > ee[0] + 0.2 and aa[0] > oo[0] + 0.2, (aa, ee, oo)


def test_a_coloured_channel_changes_the_mouth_little(trained: object, tmp_path: Path) -> None:
    """A strong tilt (+-4 dB/octave around 1 kHz, a bright or a muffled microphone): the relative input keeps open
    close to the clean recording's, better than the same graph fed a flat spectrum does."""
    import soundfile as sf
    import soxr

    audio, rate = sf.read(str(FIXTURES / "speech_en.wav"), dtype="float32")
    audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    rate = SAMPLE_RATE
    spec = np.fft.rfft(audio)
    octaves = np.log2(np.maximum(np.fft.rfftfreq(len(audio), 1 / rate), 50.0) / 1000.0)
    clean = run_clip(trained, audio)[:, 0]
    for tilt in (4.0, -4.0):
        coloured = np.fft.irfft(spec * 10 ** (tilt * octaves / 20), n=len(audio)).astype(np.float32)
        relative = run_clip(trained, coloured)[:, 0]
        flat = articulate(trained, windows_for(coloured))[:, 0]
        r_rel = np.corrcoef(clean, relative)[0, 1]
        r_flat = np.corrcoef(clean, flat)[0, 1]
        assert r_rel > 0.9 and r_rel > r_flat, (tilt, r_rel, r_flat)


def test_the_app_feeds_the_articulator_as_it_was_trained(trained: object, tmp_path: Path) -> None:
    """lipsync.Articulator (renderer and cues) measures the recording and feeds the same spectrum as the training
    and evaluation path (windows + the recording's prior-pulled speech spectrum)."""
    from a2v_cli.engine.audio import PcmReader, decode
    from a2v_cli.engine.lipsync import ARTICULATOR_FILE, Articulator

    assert TRAINED.name == ARTICULATOR_FILE
    (tmp_path / "a").mkdir()
    want, _ = app_articulation(trained, FIXTURES / "speech_pause.wav", tmp_path / "a")
    prepared = decode(FIXTURES / "speech_pause.wav", tmp_path, 600.0)
    reader = PcmReader(prepared)
    try:
        art = Articulator("cpu")
        assert art.relative and art.prior is not None
        before = art.spectrum.copy()
        art.begin(reader)
        assert np.abs(art.spectrum - before).max() > 0.05  # measured, not the prior alone
        windows = np.concatenate([mel_windows_for(reader, s, len(want)) for s in range(0, len(want), 25)])
        np.testing.assert_allclose(art.run(windows), want, atol=1e-5)
    finally:
        reader.close()


def mel_windows_for(reader: object, start: int, n: int) -> np.ndarray:
    from a2v_cli.engine.render import mel_windows

    return mel_windows(reader, centered_window_starts(np.arange(start, min(start + 25, n)), FPS))  # type: ignore[arg-type]


def test_extended_outputs_tell_f_v_and_l_from_vowels(tmp_path: Path) -> None:
    """The second output (F/V and L probabilities, for Rhubarb's G and H cues) at the phonemes espeak reported, in a
    voice never trained on."""
    import json

    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.cues import CUE_RATE, articulation_track

    wav = FIXTURES / "speech_fvl.wav"
    track = articulation_track(decode(wav, tmp_path, 600.0), "cpu", TRAINED)
    assert track.shape[1] == 6 and np.all((track >= 0) & (track <= 1))
    phonemes = json.loads(wav.with_suffix(".json").read_text())

    def at(names: set[str], column: int, min_s: float = 0.0) -> np.ndarray:
        mids = [int((s + e) / 2 * CUE_RATE) for s, e, n in phonemes if n in names and e - s >= min_s]
        return track[mids, column]

    vowels = {"aI2", "V", "i", "aI@", "I2", "E", "0", "@", "aI", "I", "oU"}
    fv, ll = at({"f", "v"}, 4), at({"l"}, 5, 0.04)
    assert np.median(fv) > 4 * np.median(at(vowels, 4)) and np.median(fv) > np.median(at({"l"}, 4))
    assert np.median(ll) > 4 * np.median(at(vowels, 5)) and np.median(ll) > np.median(at({"f", "v"}, 5))


def test_the_ensemble_graph_is_the_mean_of_its_members(tmp_path: Path) -> None:
    """models/ensemble_articulator.py on two trained articulators (v4 and v5, split out of the shipped v6): one graph,
    the same inputs, the mean of their articulation, the extended output of the member that has one, and refusal of
    members with another prior."""
    onnx = pytest.importorskip("onnx")
    ens = load_script("models/ensemble_articulator.py")
    members = dict(ens.split(onnx.load(str(TRAINED))))  # type: ignore[attr-defined]
    v4, v5 = tmp_path / "v4.onnx", tmp_path / "v5.onnx"
    v4.write_bytes(members["v4"].SerializeToString())
    v5.write_bytes(members["v5"].SerializeToString())
    model = ens.ensemble([onnx.load(str(v4)), onnx.load(str(v5))], ["v4", "v5"])  # type: ignore[attr-defined]
    path = tmp_path / "mean.onnx"
    path.write_bytes(model.SerializeToString())
    merged = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    one, two = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (v4, v5))
    assert [o.name for o in one.get_outputs()] == ["articulation"]  # v4 predates the extended output
    assert [o.name for o in merged.get_outputs()] == ["articulation", "extended"]
    meta = merged.get_modelmeta().custom_metadata_map
    assert meta["members"] == "v4,v5" and meta["extended_members"] == "v5"
    rng = np.random.default_rng(3)
    feeds = {"mel": rng.uniform(-4, 1, (16, 1, 80, 16)).astype(np.float32),
             "spectrum": np.repeat(prior(two)[0][None], 16, axis=0).astype(np.float32)}  # fmt: skip
    art, ext = merged.run(None, feeds)
    a4, (a5, e5) = one.run(None, feeds)[0], two.run(None, feeds)
    np.testing.assert_allclose(art, (a4 + a5) / 2, atol=1e-6)
    np.testing.assert_array_equal(ext, e5)
    assert np.abs(a4 - a5).max() > 1e-3  # the members differ, so the mean is a third answer
    other = onnx.load(str(v4))
    for p in other.metadata_props:
        if p.key == "spectrum_prior":
            p.value = "0," + p.value.split(",", 1)[1]
    with pytest.raises(ValueError, match="spectrum_prior"):
        ens.ensemble([onnx.load(str(v5)), other], ["v5", "x"])  # type: ignore[attr-defined]


def test_split_members_merge_back_into_the_shipped_graph() -> None:
    """The old v4 and v5 are rebuilt exactly from v6 (``ensemble_articulator.py --split``): merging the split members
    again gives v6's graph byte for byte, each member alone answers exactly as its part of v6 does."""
    onnx = pytest.importorskip("onnx")
    ens = load_script("models/ensemble_articulator.py")
    shipped = onnx.load(str(TRAINED))
    members = ens.split(shipped)  # type: ignore[attr-defined]
    assert [name for name, _ in members] == ["v4", "v5", "v5-seed2"]
    merged = ens.ensemble([m for _, m in members], [n for n, _ in members])  # type: ignore[attr-defined]
    assert merged.graph.SerializeToString() == shipped.graph.SerializeToString()
    rng = np.random.default_rng(7)
    feeds = {"mel": rng.uniform(-4, 1, (8, 1, 80, 16)).astype(np.float32),
             "spectrum": rng.uniform(-3, 0, (8, 80)).astype(np.float32)}  # fmt: skip
    whole = ort.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"])
    parts = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["articulation"],
             feeds)[0] for _, m in members]  # fmt: skip
    np.testing.assert_allclose(whole.run(["articulation"], feeds)[0], np.mean(parts, axis=0), atol=1e-6)
    assert min(np.abs(a - b).max() for a, b in itertools.pairwise(parts)) > 1e-3  # three different nets


def test_the_built_in_articulator_is_the_mean_of_three_trained_ones(trained: object) -> None:
    meta = trained.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    assert meta["members"].split(",") == ["v4", "v5", "v5-seed2"] and meta["extended_members"] == "v5,v5-seed2"

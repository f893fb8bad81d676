"""Audio features: the streamed per-batch mel equals the whole-clip mel, level meter, decoding."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEECH

from a2v_cli.engine.audio import PcmReader, decode
from a2v_cli.engine.features import (
    SPECTRUM_SECONDS,
    LevelMeter,
    SpectrumMeter,
    centered_window_starts,
    column_level,
    frame_rms_db,
    mel_center_hz,
    mel_spectrogram,
    normalizing_gain,
    speech_spectrum,
    stack_windows,
)
from a2v_cli.engine.render import mel_windows


def test_batched_windows_equal_whole_clip_windows() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = decode(SPEECH, Path(tmp), 600)
        reader = PcmReader(prepared)
        audio = reader.read(0, prepared.num_samples)
        whole = mel_spectrogram(audio)
        n = int(np.ceil(prepared.duration * 25))
        starts = centered_window_starts(np.arange(n), 25)
        expected = stack_windows(whole, starts)
        got = np.concatenate([mel_windows(reader, starts[i : i + 7]) for i in range(0, n, 7)])
        reader.close()
    inner = slice(4, n - 4)  # the first and last frames differ only by edge padding (zeros vs reflection)
    assert np.abs(got[inner] - expected[inner]).max() < 1e-3


def test_sine_peaks_in_its_mel_band() -> None:
    t = np.arange(16000) / 16000
    mel = mel_spectrogram((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape[0] == 80 and mel.min() >= -4 and mel.max() <= 4
    band = int(np.argmax(mel[:, 40]))
    assert abs(mel_center_hz()[band] - 1000) < 60


@pytest.mark.parametrize("scale", [0.01, 0.1, 0.8])
def test_level_meter_matches_the_batch_gain(scale: float) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(16000 * 5) * scale * np.repeat(rng.uniform(0, 1, 500), 160)).astype(np.float32)
    meter = LevelMeter()
    for i in range(0, len(x), 4999):
        meter.add(x[i : i + 4999])
    assert meter.gain() == pytest.approx(normalizing_gain(frame_rms_db(x)), rel=0.01)


def test_silence_gets_unit_gain() -> None:
    meter = LevelMeter()
    meter.add(np.zeros(16000, np.float32))
    assert meter.gain() == 1.0


def test_decode_resamples_to_16k_mono(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "s.wav", np.zeros((44100, 2), np.float32) + 0.1, 44100)
    prepared = decode(tmp_path / "s.wav", tmp_path, 600)
    assert prepared.source_rate == 44100 and prepared.source_channels == 2
    assert abs(prepared.num_samples - 16000) <= 2 and prepared.duration == pytest.approx(1.0, abs=1e-3)


def test_speech_spectrum_is_the_mean_of_the_speech_columns_of_the_whole_clip() -> None:
    """Read in 10 s blocks through the renderer's reader, it equals the mean over the whole clip's mel columns above
    the speech level (what the trained articulator saw in training)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = decode(SPEECH, Path(tmp), 600)
        reader = PcmReader(prepared)
        try:
            audio = reader.read(0, prepared.num_samples)
            meter = speech_spectrum(reader.read, reader.n)
        finally:
            reader.close()
    mel = mel_spectrogram(audio)
    speech = column_level(mel) > -1.6
    assert 0.3 < speech.mean() < 1.0
    np.testing.assert_allclose(meter.spectrum(), mel[:, speech].mean(axis=1), atol=0.02)
    assert abs(meter.columns - int(speech.sum())) <= 2


def test_speech_spectrum_of_a_long_recording_reads_a_bounded_sample() -> None:
    rng = np.random.default_rng(0)
    n = int((SPECTRUM_SECONDS * 3) * 16000)
    reads: list[int] = []

    def read(start: int, count: int) -> np.ndarray:
        reads.append(count)
        return (rng.standard_normal(count) * 0.1).astype(np.float32)

    meter = speech_spectrum(read, n)
    assert sum(reads) < 0.5 * n  # excerpts, not the whole hour
    assert meter.columns > 0 and np.isfinite(meter.spectrum()).all()


def test_prior_pulls_a_short_clip_and_not_a_long_one() -> None:
    prior = np.full(80, -1.0, dtype=np.float32)
    mel = np.full((80, 40), 1.0, dtype=np.float32)  # loud: every column is speech
    short, long_ = SpectrumMeter(), SpectrumMeter()
    short.add(mel)
    for _ in range(100):
        long_.add(mel)
    assert np.allclose(short.spectrum(), 1.0) and np.allclose(short.spectrum(prior, 0.0), 1.0)
    assert np.allclose(short.spectrum(prior, 160.0), (40 - 160) / 200)  # mostly prior
    assert np.allclose(long_.spectrum(prior, 160.0), (4000 - 160) / 4160)  # mostly itself
    assert np.all(SpectrumMeter().spectrum() == 0.0) and np.allclose(SpectrumMeter().spectrum(prior, 160.0), -1.0)

"""Audio features: the streamed per-batch mel equals the whole-clip mel, level meter, decoding."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEECH

from a2v_cli.engine.audio import PcmReader, decode
from a2v_cli.engine.features import (
    LevelMeter,
    centered_window_starts,
    frame_rms_db,
    mel_center_hz,
    mel_spectrogram,
    normalizing_gain,
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

"""Audio features shared by every lip-sync model: Wav2Lip's log-mel spectrogram.

All models see 16 kHz mono float32 audio. The mel definition follows Wav2Lip exactly
(pre-emphasis 0.97, STFT n_fft 800 / hop 200 / win 800 Hann, 80 Slaney mel bands 55-7600 Hz,
20*log10(max(1e-5, x)) - 20 dB, normalized to [-4, 4] with a -100 dB floor), so that a user's
Wav2Lip export and a2v's own models read the same input. 80 mel frames per second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel frames per second
WINDOW_FRAMES = 16  # mel frames per model window (200 ms)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """(80, n_fft//2+1) Slaney-normalized triangular filters, as librosa.filters.mel builds them."""
    fftfreqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS])
    return (weights * enorm[:, None]).astype(np.float32)


def mel_center_hz() -> np.ndarray:
    """Centre frequency (Hz) of each of the 80 mel bands."""
    return _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))[1:-1]


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    # periodic Hann, as scipy.signal.get_window('hann', 800, fftbins=True) used by librosa
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)


def log_mel(samples: np.ndarray, prev_sample: float = 0.0) -> np.ndarray:
    """Normalized log-mel (80, T) of already-padded samples, one frame per HOP, no centring.

    Frame k covers samples[k*HOP : k*HOP + N_FFT]. ``prev_sample`` is the sample just before
    ``samples[0]`` so that pre-emphasis is identical whether audio is processed whole or in chunks.
    """
    x = np.asarray(samples, dtype=np.float32)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    emph = np.empty_like(x)
    emph[0] = x[0] - PREEMPHASIS * prev_sample
    emph[1:] = x[1:] - PREEMPHASIS * x[:-1]
    n_frames = 1 + (len(emph) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        emph, shape=(n_frames, N_FFT), strides=(emph.strides[0] * HOP, emph.strides[0])
    )
    spec = np.abs(np.fft.rfft(frames * _hann(), axis=1)).astype(np.float32)  # (T, 401)
    mel = mel_basis() @ spec.T  # (80, T)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """Whole-clip mel with librosa's centre=True reflect padding, exactly as Wav2Lip computes it."""
    audio = np.asarray(audio, dtype=np.float32)
    pad = N_FFT // 2
    mode = "reflect" if len(audio) > pad else "constant"
    return log_mel(np.pad(audio, (pad, pad), mode=mode))


# Speech level of a mel column: the power mean of the bands centred in 100-7600 Hz, in mel units (12.5 dB).
POWER_C = (100.0 / (2 * MAX_ABS_VALUE)) * math.log(10.0) / 10.0  # mel units -> natural log of power
LEVEL_BAND_HZ = (100.0, 7600.0)
SPEECH_LEVEL = -1.6  # columns above this level count as speech (the built-in articulator's gate opens here)
SPECTRUM_SECONDS = 120.0  # longer recordings: the speech spectrum is estimated from evenly spread excerpts
SPECTRUM_EXCERPTS = 60


@lru_cache(maxsize=1)
def level_weights() -> np.ndarray:
    """(80,) power-averaging weights of the level band."""
    fc = mel_center_hz()
    sel = (fc >= LEVEL_BAND_HZ[0]) & (fc < LEVEL_BAND_HZ[1])
    return (sel / sel.sum()).astype(np.float32)


def column_level(mel: np.ndarray) -> np.ndarray:
    """(..., T) level in mel units of each column of (..., 80, T) mel."""
    m = np.clip(mel, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)
    p = np.einsum("...ft,f->...t", np.exp(np.float32(POWER_C) * m), level_weights())
    return np.log(p) / np.float32(POWER_C)


class SpectrumMeter:
    """Mean mel spectrum of the speech columns of a recording (level above SPEECH_LEVEL).

    The trained articulator reads its input relative to this (cepstral mean normalization): a
    microphone's or a voice's overall colouring then matters less than the changes within speech.
    """

    def __init__(self) -> None:
        self._sum = np.zeros(N_MELS, dtype=np.float64)
        self._count = 0

    def add(self, mel: np.ndarray) -> None:
        m = np.clip(mel, -MAX_ABS_VALUE, MAX_ABS_VALUE)
        speech = column_level(m) > SPEECH_LEVEL
        self._sum += m[:, speech].sum(axis=1, dtype=np.float64)
        self._count += int(speech.sum())

    @property
    def columns(self) -> int:
        return self._count

    def spectrum(self, prior: np.ndarray | None = None, prior_columns: float = 0.0) -> np.ndarray:
        """(80,) float32 mean, pulled towards ``prior`` as if it had been seen for ``prior_columns`` columns.

        The prior keeps a short clip (one sustained vowel, a single word) from being its own reference,
        which would erase the very contrast the articulator reads. Zeros when nothing was speech and
        there is no prior (the gate keeps the mouth shut then anyway).
        """
        return pulled_mean(self._sum, self._count, prior, prior_columns).astype(np.float32)


def pulled_mean(
    total: np.ndarray, count: np.ndarray | int, prior: np.ndarray | None, prior_columns: float
) -> np.ndarray:
    """(total + prior * prior_columns) / (count + prior_columns): a mean over ``count`` columns pulled towards
    ``prior``; the plain mean (0 for no columns) without a prior. Broadcasts, so the training script applies the
    app's rule to every recording at once."""
    if prior is None or prior_columns <= 0:
        return total / np.maximum(count, 1)
    return (total + np.asarray(prior, dtype=np.float64) * prior_columns) / (count + prior_columns)


def mel_columns(read: Callable[[int, int], np.ndarray], first: int, count: int) -> np.ndarray:
    """(80, count) mel of columns first .. first+count-1 read through ``read(start, n)``, identical to those
    columns of the whole recording's mel (centred frames; the sample before feeds the pre-emphasis)."""
    # with centring, mel frame k covers samples [k*HOP - N_FFT/2, k*HOP + N_FFT/2)
    samples = read(first * HOP - N_FFT // 2 - 1, (count - 1) * HOP + N_FFT + 1)
    return log_mel(samples[1:], prev_sample=float(samples[0]))


def speech_spectrum(read: Callable[[int, int], np.ndarray], num_samples: int) -> SpectrumMeter:
    """``SpectrumMeter`` over a recording read through ``read(start, count)`` (normalized samples).

    Up to SPECTRUM_SECONDS the whole recording is used, in 10 s blocks; longer ones are sampled
    with SPECTRUM_EXCERPTS evenly spread 2 s excerpts, so the cost does not grow with length.
    """
    meter = SpectrumMeter()
    if num_samples <= SPECTRUM_SECONDS * SAMPLE_RATE:
        block = 10 * SAMPLE_RATE
        starts = list(range(0, max(num_samples, 1), block))
    else:
        block = 2 * SAMPLE_RATE
        starts = [int(k * (num_samples - block) / (SPECTRUM_EXCERPTS - 1)) for k in range(SPECTRUM_EXCERPTS)]
    for s in starts:
        # columns centred on samples s .. s+block-1 (step HOP), as the renderer's mel has them
        first = -(-s // HOP)
        count = max(0, (min(s + block, num_samples) - 1) // HOP - first + 1)
        if count > 0:
            meter.add(mel_columns(read, first, count))
    return meter


def centered_window_starts(frame_indices: np.ndarray, fps: float) -> np.ndarray:
    """First mel frame of the 16-frame window centred on each video frame's centre time.

    With centre=True mel frame k is centred at k*HOP samples, so the window
    [c-8, c+8) spans the 200 ms around the video frame's centre time (100 ms lookahead).
    """
    centre = np.rint((np.asarray(frame_indices, dtype=np.float64) + 0.5) * MEL_FPS / fps).astype(np.int64)
    return centre - WINDOW_FRAMES // 2


def stack_windows(mel: np.ndarray, starts: np.ndarray, mel_offset: int = 0) -> np.ndarray:
    """Gather [B, 1, 80, 16] windows from ``mel`` (whose column 0 is mel frame ``mel_offset``).

    Columns outside ``mel`` read as silence (-4), so the first and last frames need no special case.
    """
    idx = (np.asarray(starts)[:, None] - mel_offset) + np.arange(WINDOW_FRAMES)[None, :]
    valid = (idx >= 0) & (idx < mel.shape[1])
    out = np.where(
        valid[:, None, :], mel[:, np.clip(idx, 0, max(mel.shape[1] - 1, 0))].transpose(1, 0, 2), -MAX_ABS_VALUE
    )
    return out[:, None, :, :].astype(np.float32)


SPEECH_LEVEL_DBFS = -20.0
MAX_GAIN_DB = 30.0


def frame_rms_db(audio: np.ndarray, frame: int = 320) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames (16 kHz), for level normalization."""
    n = len(audio) // frame
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    blocks = np.asarray(audio[: n * frame], dtype=np.float32).reshape(n, frame)
    return (10.0 * np.log10(np.mean(blocks * blocks, axis=1) + 1e-12)).astype(np.float32)


def normalizing_gain(frame_db: np.ndarray) -> float:
    """Linear gain that puts the clip's speech level (95th percentile of 20 ms RMS) at -20 dBFS.

    Capped at +/-30 dB so near-silent clips are not blown up into noise. Silent clips get 1.0.
    """
    loud = frame_db[frame_db > -80.0] if len(frame_db) else frame_db
    if len(loud) == 0:
        return 1.0
    gain_db = float(np.clip(SPEECH_LEVEL_DBFS - np.percentile(loud, 95), -MAX_GAIN_DB, MAX_GAIN_DB))
    return float(10.0 ** (gain_db / 20.0))


class LevelMeter:
    """Streaming version of ``normalizing_gain(frame_rms_db(audio))`` in constant memory.

    Keeps a 0.05 dB histogram of 20 ms frame levels instead of every frame, so a one-hour file
    costs the same as a one-second one.
    """

    FRAME = 320
    LO, HI, STEP = -140.0, 20.0, 0.05

    def __init__(self) -> None:
        self._hist = np.zeros(int((self.HI - self.LO) / self.STEP) + 1, dtype=np.int64)
        self._rest = np.zeros(0, dtype=np.float32)

    def add(self, samples: np.ndarray) -> None:
        x = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32)])
        n = len(x) // self.FRAME
        self._rest = x[n * self.FRAME :]
        if n:
            db = frame_rms_db(x[: n * self.FRAME], self.FRAME)
            idx = np.clip(np.rint((db - self.LO) / self.STEP), 0, len(self._hist) - 1).astype(np.int64)
            np.add.at(self._hist, idx, 1)

    def gain(self) -> float:
        first = int(np.ceil((-80.0 - self.LO) / self.STEP))
        # frames strictly above -80 dB, as normalizing_gain selects them
        while first < len(self._hist) and self.LO + first * self.STEP <= -80.0:
            first += 1
        hist = self._hist[first:]
        total = int(hist.sum())
        if total == 0:
            return 1.0
        # numpy's default percentile interpolates; on 0.05 dB bins the nearest rank is as good
        rank = 0.95 * (total - 1)
        cum = np.cumsum(hist)
        level = self.LO + (first + int(np.searchsorted(cum, rank + 1))) * self.STEP
        gain_db = float(np.clip(SPEECH_LEVEL_DBFS - level, -MAX_GAIN_DB, MAX_GAIN_DB))
        return float(10.0 ** (gain_db / 20.0))


def clip_windows(audio16k: np.ndarray, fps: float, normalize: bool = True) -> np.ndarray:
    """[N,1,80,16] windows for a whole in-memory clip, one per video frame, as the renderer builds them.

    For evaluation and tests; the renderer itself streams (see render.mel_windows).
    """
    x = _normalized(audio16k, normalize)
    n = max(1, math.ceil(len(x) / SAMPLE_RATE * fps - 1e-9))
    return stack_windows(mel_spectrogram(x), centered_window_starts(np.arange(n), fps))


def clip_spectrum(audio16k: np.ndarray, normalize: bool = True) -> SpectrumMeter:
    """``speech_spectrum`` of a whole in-memory clip, as the renderer measures it (for evaluation and tests)."""
    x = _normalized(audio16k, normalize)

    def read(start: int, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.float32)
        lo, hi = max(start, 0), min(start + count, len(x))
        if hi > lo:
            out[lo - start : hi - start] = x[lo:hi]
        return out

    return speech_spectrum(read, len(x))


def _normalized(audio16k: np.ndarray, normalize: bool) -> np.ndarray:
    """float32 audio, level-normalized as the renderer's PcmReader delivers it when ``normalize``."""
    x = np.asarray(audio16k, dtype=np.float32)
    return x * np.float32(normalizing_gain(frame_rms_db(x))) if normalize else x

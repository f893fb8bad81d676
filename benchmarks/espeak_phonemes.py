"""Speech with phoneme timings from libespeak-ng, through ctypes.

``synthesize(text)`` returns the audio at espeak's native rate (22050 Hz) together with the
phoneme segments espeak reports (``espeakEVENT_PHONEME`` events: eSpeak mnemonic + audio position).
It is a measuring tool for the lip-sync models: the phoneme at a video frame's centre time gives a
ground-truth mouth shape for synthetic speech.

Layout of ``espeak_EVENT`` (speak_lib.h, libespeak-ng-dev 1.51, checked against the installed header)::

    typedef struct {
        espeak_EVENT_TYPE type;          // int
        unsigned int unique_identifier;
        int text_position;
        int length;
        int audio_position;              // ms from the start of this synthesis
        int sample;
        void* user_data;
        union { int number; const char *name; char string[8]; } id;  // phoneme name for PHONEME events
    } espeak_EVENT;

Phoneme names are eSpeak mnemonics ("a", "aI", "@", "p", "_:" ...); the pause phonemes start with "_".
Each phoneme runs from its event's audio position to the next phoneme event (the last one to the end
of the audio). espeak-ng keeps global state, so calls are serialized with a lock.

Timing check (``python -m benchmarks.espeak_phonemes``): pause phonemes coincide with digital silence to within
a few ms, but espeak reports a voiceless stop (p, t, k ...) at its burst: the silent closure before it is
synthesized at the end of the previous phoneme. With ``stop_closures=True`` (the default) that trailing
silence is given to the stop, so that e.g. a "p" spans its closure (lips shut) and its release.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
PARAM_RATE = 1
PARAM_PITCH = 3

EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
EVENT_SAMPLERATE = 8


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_void_p), ("string", ctypes.c_char * 8)]


class EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class EspeakVoice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(EspeakEvent))

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_sample_rate = 0
_callback_ref: object = None
_chunks: list[np.ndarray] = []
_events: list[tuple[int, int, str]] = []  # (type, audio_position ms, name)


def _on_synth(wav: ctypes._Pointer, numsamples: int, events: ctypes._Pointer) -> int:
    if wav and numsamples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    i = 0
    while events[i].type != EVENT_LIST_TERMINATED:
        ev = events[i]
        name = ""
        if ev.type == EVENT_PHONEME:
            name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
        _events.append((int(ev.type), int(ev.audio_position), name))
        if ev.type == EVENT_MSG_TERMINATED:
            break
        i += 1
    return 0


def _load() -> ctypes.CDLL:
    global _lib, _sample_rate, _callback_ref
    if _lib is not None:
        return _lib
    path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    lib = ctypes.CDLL(path)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(EspeakVoice)]
    lib.espeak_SetVoiceByProperties.restype = ctypes.c_int
    lib.espeak_GetCurrentVoice.argtypes = []
    lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(EspeakVoice)
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError("espeak_Initialize failed (is espeak-ng-data installed?)")
    _callback_ref = _CALLBACK(_on_synth)
    lib.espeak_SetSynthCallback(_callback_ref)
    _sample_rate = int(rate)
    _lib = lib
    return lib


def _set_voice(lib: ctypes.CDLL, voice: str) -> None:
    """Select ``voice`` by name/file ("en-us", "en+f3"), else by language ("en-gb", "en-gb+f2")."""
    if lib.espeak_SetVoiceByName(voice.encode()) == 0:
        return
    language, _, variant = voice.partition("+")
    spec = EspeakVoice(languages=language.encode())
    if lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != 0:
        raise ValueError(f"espeak voice not found: {voice!r}")
    if variant:
        current = lib.espeak_GetCurrentVoice()
        ident = current.contents.identifier if current else None
        if not ident or lib.espeak_SetVoiceByName(ident + b"+" + variant.encode()) != 0:
            raise ValueError(f"espeak voice variant not found: {voice!r}")


STOPS = frozenset({"p", "b", "t", "d", "k", "g", "tS", "dZ", "t#", "t2", "d#", "t[", "?"})


def _closure_start(audio: np.ndarray, sr: int, start: float, floor: float, block_s: float = 0.001) -> float:
    """Start of the (near-)silent stretch that ends at ``start`` (``start`` itself when there is none)."""
    block = max(1, int(sr * block_s))
    end = int(start * sr)
    k = end
    while k - block >= 0 and float(np.max(np.abs(audio[k - block : k]))) <= floor:
        k -= block
    return k / sr if end - k >= 0.01 * sr else start


def synthesize(
    text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, stop_closures: bool = True
) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """Speak ``text``; return (float32 audio in [-1, 1], sample rate, [(start_s, end_s, mnemonic)]).

    ``voice`` is an espeak voice name, optionally with a variant ("en-us", "en-gb", "en+f3", "en-us+m3").
    ``rate`` is in words per minute (80-450), ``pitch`` 0-100 (50 normal). Pause phonemes ("_", "_:",
    "_!" ...) are kept so that callers can find silences. ``stop_closures``: see the module docstring.
    """
    with _lock:
        lib = _load()
        _set_voice(lib, voice)
        lib.espeak_SetParameter(PARAM_RATE, int(rate), 0)
        lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
        _chunks.clear()
        _events.clear()
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        err = lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with {err}")
        lib.espeak_Synchronize()
        pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
        events = list(_events)
        sr = _sample_rate
    audio = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    duration = len(audio) / sr
    marks = [(pos / 1000.0, name) for typ, pos, name in events if typ == EVENT_PHONEME and name]
    phonemes: list[tuple[float, float, str]] = []
    for i, (start, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else duration
        end = min(max(end, start), duration)
        phonemes.append((min(start, duration), end, name))
    if stop_closures:
        for i in range(1, len(phonemes)):
            start, end, name = phonemes[i]
            p_start, _, p_name = phonemes[i - 1]
            if name in STOPS and not p_name.startswith("_"):
                # never take more than the previous phoneme minus 10 ms
                closure = max(_closure_start(audio, sr, start, floor=1e-3), p_start + 0.01)
                if closure < start:
                    phonemes[i - 1] = (p_start, closure, p_name)
                    phonemes[i] = (closure, end, name)
    return audio, sr, phonemes


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Speak a sentence with espeak-ng and print its phoneme timings.")
    ap.add_argument("text", nargs="?", default="Hello world, the big brown bear ate my apple pie.")
    ap.add_argument("--voice", default="en-us")
    ap.add_argument("--rate", type=int, default=160)
    ap.add_argument("--pitch", type=int, default=50)
    ap.add_argument("--wav", help="write the audio here")
    ap.add_argument("--raw", action="store_true", help="espeak's own stop timings (no closure correction)")
    ap.add_argument("--phonemes-json", help="write the timings here: [[start_s, end_s, mnemonic], ...]")
    args = ap.parse_args()
    audio, sr, phonemes = synthesize(args.text, args.voice, args.rate, args.pitch, stop_closures=not args.raw)
    print(f"{len(audio) / sr:.3f} s at {sr} Hz, {len(phonemes)} phonemes")
    for start, end, name in phonemes:
        seg = audio[int(start * sr) : max(int(end * sr), int(start * sr) + 1)]
        rms_db = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12)
        print(f"{start:7.3f} {end:7.3f} {name:6s} {rms_db:7.1f} dB")
    if args.wav:
        import soundfile

        soundfile.write(args.wav, audio, sr)
    if args.phonemes_json:
        import json
        from pathlib import Path

        Path(args.phonemes_json).write_text(json.dumps([[round(s, 4), round(e, 4), n] for s, e, n in phonemes]) + "\n")


if __name__ == "__main__":
    main()

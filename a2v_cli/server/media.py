"""Recognise audio containers by their first bytes before ffmpeg sees a client's file.

ffmpeg reads far more than audio: a playlist (HLS, ffconcat) names other files and URLs and ffmpeg
would open them, which turns an uploaded or downloaded file into a way to read this machine's files.
Only containers that hold their media inline get through.
"""

from __future__ import annotations

from pathlib import Path

from a2v_cli.errors import InputError

SUPPORTED = "WAV, FLAC, OGG/Opus, MP3, AAC, M4A/MP4, WebM/Matroska, AIFF, CAF, AMR, WavPack, AU or WMA"


def audio_container(head: bytes) -> str | None:
    """The container ``head`` (the first 16+ bytes) starts, or None when it is not one we accept."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mpeg-audio"  # MP1/2/3 frame sync, and AAC in ADTS
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:5] == b"#!AMR":
        return "amr"
    if head[:4] == b"wvpk":
        return "wavpack"
    if head[:4] == b".snd":
        return "au"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "asf"
    return None


def check_audio_file(path: Path, name: str = "audio_url") -> str:
    """The container of ``path``; InputError when the file is empty or not an accepted audio container."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise InputError(f"{name} is empty (0 bytes)")
    kind = audio_container(head)
    if kind is None:
        raise InputError(f"{name} is not an audio file this server accepts ({SUPPORTED})")
    return kind

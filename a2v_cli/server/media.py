"""Recognise audio containers by their first bytes before ffmpeg sees a client's file.

ffmpeg reads far more than audio: a playlist (HLS, ffconcat) names other files and URLs and ffmpeg
would open them, which turns an uploaded or downloaded file into a way to read this machine's files.
Only containers that hold their media inline get through, and `sanitise` hands ffmpeg the demuxer
for the container found here (`-f`, `-format_whitelist`) and `-protocol_whitelist file`: ffmpeg's own
probe would skip an ID3v2 tag and guess again (sdp, concat...), and a demuxer could open other files
or URLs. The renderer then reads a plain WAV file the server wrote.
"""

from __future__ import annotations

import subprocess
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


# container (as `audio_container` names it) -> the one ffmpeg demuxer allowed to read it
DEMUXERS = {
    "wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "aac": "aac", "mp4": "mov", "matroska": "matroska",
    "aiff": "aiff", "caf": "caf", "amr": "amr", "wavpack": "wv", "au": "au", "asf": "asf",
}
SANITISE_TIMEOUT_S = 120.0  # ffmpeg decodes 10 minutes of audio in about a second


ID3_SKIP_MAX = 1 << 16  # zero padding tolerated between an ID3v2 tag and the audio


def container_of(path: Path) -> str | None:
    """The container of ``path`` (as DEMUXERS names it), looking past ID3v2 tags; None when not accepted.

    ffmpeg's own probe also skips an ID3v2 tag and then guesses again from what follows, where a
    playlist (ffconcat, SDP, HLS) would be found: so what follows the tags must itself be audio here.
    """
    with open(path, "rb") as f:
        offset = 0
        for _ in range(4):  # a few stacked tags at most
            f.seek(offset)
            head = f.read(16)
            if head[:3] != b"ID3" or len(head) < 10:
                break
            size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
            offset += 10 + size + (10 if head[5] & 0x10 else 0)
            f.seek(offset)
            pad = f.read(ID3_SKIP_MAX)
            offset += len(pad) - len(pad.lstrip(b"\0"))
        else:
            return None
    kind = audio_container(head)
    if kind == "mp3":  # a truncated tag, or more tags than we look past
        return None
    if kind == "mpeg-audio":
        kind = "aac" if _adts(head) else "mp3"
    return kind


def demuxer(path: Path) -> str:
    """The one ffmpeg demuxer allowed to read ``path``; InputError when it is not accepted audio."""
    check_audio_file(path)
    kind = container_of(path)
    assert kind is not None
    return DEMUXERS[kind]


def _adts(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def sanitise(path: Path, dest: Path, max_seconds: float, name: str = "audio_url") -> Path:
    """Decode a client's file with the demuxer its first bytes name into a plain WAV at ``dest``.

    The only ffmpeg that reads the client's bytes is this one: one demuxer, local files only, no
    stdin, at most ``max_seconds`` (+1, so "too long" is still seen) and SANITISE_TIMEOUT_S.
    """
    from a2v_cli.engine.audio import ffmpeg_exe

    fmt = demuxer(path)
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error",
        "-protocol_whitelist", "file", "-format_whitelist", fmt, "-f", fmt, "-i", f"file:{path}",
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", f"{max_seconds + 1:g}",
        "-c:a", "pcm_s16le", "-rf64", "auto", "-f", "wav", "-y", f"file:{dest}",
    ]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=SANITISE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"{name} took longer than {SANITISE_TIMEOUT_S:g} s to decode") from None
    if proc.returncode != 0 or not dest.is_file():
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1][:200] if lines else f"ffmpeg exited with {proc.returncode}"
        raise InputError(f"{name} could not be decoded as audio ({why})", f"send a file in one of: {SUPPORTED}")
    return dest


def check_audio_file(path: Path, name: str = "audio_url") -> str:
    """The container of ``path``; InputError when the file is empty or not an accepted audio container."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise InputError(f"{name} is empty (0 bytes)")
    kind = container_of(path)
    if kind is None:
        raise InputError(f"{name} is not an audio file this server accepts ({SUPPORTED})")
    return kind

"""`a2v generate` end to end in local mode: real speech, real onnxruntime, real bundled ffmpeg.

Outputs are checked by decoding them: frame counts, durations, streams, mask values, mouth pixels.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import (
    ROOT,
    SPEECH,
    SPEECH_PAUSE,
    decode_audio,
    decode_frames,
    ffmpeg,
    file_server,
    probe,
    run_cli,
    wav_duration,
)

from a2v_cli.errors import ExitCode

POSE = "ava-front"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mouth_box(pose_id: str = POSE, pad: int = 8) -> tuple[slice, slice]:
    """Frame region that contains the mouth wherever idle sway moves it."""
    from a2v_cli.engine import catalog
    from a2v_cli.engine.compose import MAX_SWAY
    from a2v_cli.engine.lipsync import PATCH_H

    art = catalog.pose_art(pose_id)
    x = art.head_origin[0] + art.mouth_center[0]
    y = art.head_origin[1] + art.mouth_center[1]
    hw, hh = art.mouth_style.half_width + art.mouth_style.lip_thickness + MAX_SWAY + pad, PATCH_H // 3
    return slice(int(y - hh), int(y + hh)), slice(int(x - hw), int(x + hw))


def generate(audio: Path | str, *extra: str, pose: str = POSE, out: str = "out.mp4") -> dict:
    r = run_cli("generate", "--pose", pose, "--audio", str(audio), "-o", out, "--json", *extra)
    assert r.code == 0, r.stderr
    return r.json()


@pytest.fixture(scope="module")
def speech_render(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One render of the speech fixture, shared by the checks below."""
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("work")
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), "-o", str(work / "speech.mp4"), "--json",
                env={"A2V_HOME": str(home)})
    assert r.code == 0, r.stderr
    return {"video": r.json(), "home": home, "work": work, "stderr": r.stderr}


def test_generate_json_is_the_video_record(speech_render: dict) -> None:
    v = speech_render["video"]
    assert v["status"] == "finished" and v["video_id"].startswith("vid_")
    assert v["video_url"].startswith("file://") and v["mask_video_url"].startswith("file://")
    assert v["pose_id"] == POSE
    # the history keeps its own copy under A2V_HOME; -o (and the mask beside it) get the same bytes
    kept = Path(v["video_url"].removeprefix("file://"))
    assert kept.is_relative_to(speech_render["home"])
    assert kept.read_bytes() == (speech_render["work"] / "speech.mp4").read_bytes()
    kept_mask = Path(v["mask_video_url"].removeprefix("file://"))
    assert kept_mask.read_bytes() == (speech_render["work"] / "speech.mask.mp4").read_bytes()


def test_stderr_says_where_the_files_are_and_stdout_is_only_json(speech_render: dict) -> None:
    work = speech_render["work"]
    assert f"Saved {work / 'speech.mp4'}" in speech_render["stderr"]
    assert f"Saved {work / 'speech.mask.mp4'}" in speech_render["stderr"]


def test_video_format_frame_count_and_durations(speech_render: dict) -> None:
    video = speech_render["work"] / "speech.mp4"
    mask = speech_render["work"] / "speech.mask.mp4"
    duration = wav_duration(SPEECH)
    expected = math.ceil(duration * 25)
    info = probe(video)
    assert (info.video_codec, info.pix_fmt, info.width, info.height, info.fps) == ("h264", "yuv420p", 512, 512, 25.0)
    assert info.audio_codec == "aac"
    assert (video.stat().st_mode & 0o777) == 0o666 & ~_umask()  # an ordinary file, not mkstemp's 0600
    frames = decode_frames(video)
    assert len(frames) == expected == speech_render["video"]["frame_count"]
    mask_frames = decode_frames(mask, "gray")
    assert len(mask_frames) == expected
    assert probe(mask).pix_fmt == "yuv420p"
    audio_s = len(decode_audio(video)) / 16000
    assert abs(audio_s - duration) < 1 / 25 + 0.03  # AAC frames pad a few ms
    assert abs(expected / 25 - audio_s) <= 1 / 25 + 0.03


def test_metadata_marks_synthetic(speech_render: dict) -> None:
    meta = probe(speech_render["work"] / "speech.mp4").metadata
    assert "a2v" in meta["comment"] and "Synthetic" in meta["comment"] and POSE in meta["comment"]
    assert meta.get("synthetic") == "true" and meta.get("a2v_pose") == POSE


def test_mask_is_white_on_avatar_black_elsewhere(speech_render: dict) -> None:
    mask = decode_frames(speech_render["work"] / "speech.mask.mp4", "gray")[..., 0].astype(int)
    first = mask[0]
    assert first[0, 0] < 8 and first[5, -5] < 8  # background corners transparent
    h, w = first.shape
    assert first[h // 2, w // 2] > 247 and first[-1, w // 2] > 247  # face and torso opaque
    ratio = ((first < 16) | (first > 239)).mean()
    assert ratio > 0.97  # a matte: nearly everything is 0 or 1, edges are thin
    # the mask follows the idle head sway: not a frozen picture
    assert np.abs(mask[0] - mask[len(mask) // 2]).max() > 30


def test_history_finds_the_video(speech_render: dict) -> None:
    env = {"A2V_HOME": str(speech_render["home"])}
    vid = speech_render["video"]["video_id"]
    listed = run_cli("video", "list", "--json", env=env).json()
    assert [v["video_id"] for v in listed] == [vid]
    got = run_cli("video", "get", vid, "--json", env=env)
    assert got.code == 0 and got.json() == speech_render["video"]


def test_local_download_copies_video_and_mask(speech_render: dict, tmp_path: Path) -> None:
    env = {"A2V_HOME": str(speech_render["home"])}
    vid = speech_render["video"]["video_id"]
    r = run_cli("video", "download", vid, "-o", str(tmp_path), "--json", env=env)
    assert r.code == 0, r.stderr
    assert (tmp_path / f"{vid}.mp4").read_bytes() == (speech_render["work"] / "speech.mp4").read_bytes()
    assert (tmp_path / f"{vid}.mask.mp4").read_bytes() == (speech_render["work"] / "speech.mask.mp4").read_bytes()
    again = run_cli("video", "download", vid, "-o", str(tmp_path), env=env)
    assert again.code == ExitCode.USAGE and "--force" in again.stderr


def test_mouth_moves_in_speech_and_rests_in_silence(tmp_path: Path) -> None:
    """Frames in the pause of speech_pause.wav match a silent render of the same length; speech frames don't."""
    n = len(sf.read(SPEECH_PAUSE)[0])
    rate = sf.info(str(SPEECH_PAUSE)).samplerate
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(n, np.float32), rate)
    talk = decode_frames(Path(generate(SPEECH_PAUSE, out="talk.mp4")["video_url"].removeprefix("file://")))
    rest = decode_frames(Path(generate(silence, out="rest.mp4")["video_url"].removeprefix("file://")))
    assert talk.shape == rest.shape
    ys, xs = mouth_box()
    diff = np.abs(talk[:, ys, xs].astype(int) - rest[:, ys, xs].astype(int)).mean(axis=(1, 2, 3))
    # speech_pause.wav: a phrase, 1.2 s of digital silence, another phrase (see fixtures/make_fixtures.sh)
    energy = np.array([np.sqrt(np.mean(c**2)) if len(c) else 0 for c in np.array_split(sf.read(SPEECH_PAUSE)[0],
                                                                                         len(diff))])
    quiet = np.convolve(energy < 1e-4, np.ones(9), "same") >= 9  # frames well inside the pause
    loud = energy > np.percentile(energy, 60)
    assert quiet.sum() >= 15 and loud.sum() >= 15
    assert diff[quiet].max() < 2.0, diff[quiet]
    assert diff[loud].mean() > 3.0 and np.median(diff[loud]) > 2 * diff[quiet].max(), diff[loud]
    # outside the mouth nothing differs beyond compression noise
    assert np.abs(talk[:, :100].astype(int) - rest[:, :100].astype(int)).mean() < 1.0


def test_silence_only_is_valid_and_mouth_closed(tmp_path: Path) -> None:
    silence = tmp_path / "quiet.wav"
    sf.write(silence, np.zeros(16000 * 2, np.float32), 16000)
    v = generate(silence)
    frames = decode_frames(Path(v["video_url"].removeprefix("file://")))
    assert len(frames) == 50
    # the closed mouth is the rest pose: the mouth region changes only by the idle head sway
    ys, xs = mouth_box()
    dark = (frames[:, ys, xs].astype(int).sum(axis=3) < 150).sum(axis=(1, 2))
    assert dark.max() - dark.min() < 40, dark


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "m4a", "mp4"])
def test_audio_formats(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / f"speech.{fmt}"
    args = {
        "flac": ["-ar", "44100", "-ac", "2"],
        "ogg": ["-c:a", "libvorbis"],
        "mp3": ["-c:a", "libmp3lame", "-ar", "48000"],
        "m4a": ["-c:a", "aac"],
        "mp4": [],
    }[fmt]
    if fmt == "mp4":  # audio track of a video file
        cmd = [ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=c=blue:s=64x64:r=10", "-i", str(SPEECH),
               "-shortest", "-c:v", "libx264", "-c:a", "aac", str(src)]
    else:
        cmd = [ffmpeg(), "-v", "error", "-i", str(SPEECH), *args, str(src)]
    subprocess.run(cmd, check=True)
    v = generate(src)
    frames = decode_frames(Path(v["video_url"].removeprefix("file://")))
    assert abs(len(frames) - math.ceil(wav_duration(SPEECH) * 25)) <= 1


def test_stdin_audio(isolated: Path) -> None:
    r = run_cli("generate", "--pose", POSE, "--audio", "-", "--json", input=SPEECH.read_bytes())
    assert r.code == 0, r.stderr
    v = r.json()
    out = isolated / f"a2v-{v['video_id']}.mp4"
    assert out.is_file() and (isolated / f"a2v-{v['video_id']}.mask.mp4").is_file()
    assert len(decode_frames(out)) == math.ceil(wav_duration(SPEECH) * 25)


def test_http_url_audio(tmp_path: Path) -> None:
    shutil.copy(SPEECH, tmp_path / "s.wav")
    with file_server(tmp_path) as url:
        v = generate(f"{url}/s.wav")
        assert len(decode_frames(Path(v["video_url"].removeprefix("file://")))) == math.ceil(wav_duration(SPEECH) * 25)
        r = run_cli("generate", "--pose", POSE, "--audio", f"{url}/missing.wav", "-o", "x.mp4")
        assert r.code == ExitCode.USAGE and "404" in r.stderr


def test_alpha_webm_and_mov(isolated: Path) -> None:
    v = generate(SPEECH, "--alpha-format", "webm")
    webm = isolated / "out.alpha.webm"
    assert webm.read_bytes() == Path(v["alpha_video_url"].removeprefix("file://")).read_bytes()
    rgba = decode_frames(webm, "rgba", codec="libvpx-vp9")
    mask = decode_frames(Path(v["mask_video_url"].removeprefix("file://")), "gray")[..., 0]
    assert len(rgba) == len(mask)
    assert np.abs(rgba[..., 3].astype(int) - mask.astype(int)).mean() < 3
    v = generate(SPEECH, "--alpha-format", "mov", out="pro.mp4")
    mov = Path(v["alpha_video_url"].removeprefix("file://"))
    assert mov.suffix == ".mov" and "prores" in probe(mov).text.lower()
    assert decode_frames(mov, "rgba")[..., 3].min() == 0


# --- bad input: one line on stderr, documented exit code, nothing written --------------------------------


def assert_clean_failure(r, code: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert r.code == code, (r.code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    for w in words:
        assert w in r.stderr, r.stderr


def no_outputs(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.suffix in (".mp4", ".part", ".webm", ".mov")]


def test_missing_file(isolated: Path) -> None:
    assert_clean_failure(run_cli("generate", "--pose", POSE, "--audio", "nope.wav"), ExitCode.USAGE, "not found")
    assert no_outputs(isolated)


def test_not_audio(isolated: Path) -> None:
    (isolated / "notes.wav").write_text("this is text, not sound\n" * 50)
    assert_clean_failure(run_cli("generate", "--pose", POSE, "--audio", "notes.wav"), ExitCode.USAGE, "audio")
    assert no_outputs(isolated)
    assert run_cli("video", "list", "--json").json() == []


def test_empty_and_zero_length_audio(isolated: Path) -> None:
    (isolated / "empty.wav").write_bytes(b"")
    assert_clean_failure(run_cli("generate", "--pose", POSE, "--audio", "empty.wav"), ExitCode.USAGE, "empty")
    sf.write(isolated / "zero.wav", np.zeros(0, np.float32), 16000)
    assert_clean_failure(run_cli("generate", "--pose", POSE, "--audio", "zero.wav"), ExitCode.USAGE, "no audio")
    assert no_outputs(isolated)


def test_audio_over_the_length_limit(isolated: Path) -> None:
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), env={"A2V_MAX_AUDIO_SECONDS": "2"})
    assert_clean_failure(r, ExitCode.USAGE, "longer than", "A2V_MAX_AUDIO_SECONDS")
    assert no_outputs(isolated)


def test_unknown_pose_suggests(isolated: Path) -> None:
    r = run_cli("generate", "--pose", "ava-frnt", "--audio", str(SPEECH))
    assert_clean_failure(r, ExitCode.NOT_FOUND, "unknown pose", "'ava-front'")


def test_unwritable_output(isolated: Path) -> None:
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), "-o", "no/such/dir/out.mp4")
    assert_clean_failure(r, ExitCode.USAGE, "does not exist")
    (isolated / "afile").write_text("x")
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), "-o", "afile/out.mp4")
    assert_clean_failure(r, ExitCode.USAGE)


def test_existing_output_refused_unless_force(isolated: Path) -> None:
    (isolated / "keep.mp4").write_bytes(b"precious")
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), "-o", "keep.mp4")
    assert_clean_failure(r, ExitCode.USAGE, "already exists", "--force")
    assert (isolated / "keep.mp4").read_bytes() == b"precious"
    r = run_cli("generate", "--pose", POSE, "--audio", str(SPEECH), "-o", "keep.mp4", "--force")
    assert r.code == 0, r.stderr
    assert probe(isolated / "keep.mp4").video_codec == "h264"


def test_ctrl_c_leaves_nothing_and_marks_failed(isolated: Path, tmp_path: Path) -> None:
    audio, rate = sf.read(SPEECH, dtype="float32")
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.tile(audio, 80), rate)  # ~6 minutes: still rendering when interrupted
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "generate", "--pose", POSE, "--audio", str(long_wav), "-o", "long.mp4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    home = Path(os.environ["A2V_HOME"])
    deadline = time.monotonic() + 60
    while not list(home.glob("videos/*/.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the render ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    assert list(isolated.iterdir()) == [], list(isolated.iterdir())
    assert not [p for p in home.rglob("*") if p.suffix in (".part", ".mp4")]
    videos = run_cli("video", "list", "--json").json()
    assert len(videos) == 1 and videos[0]["status"] == "failed" and videos[0]["error"] == "interrupted"


def test_ctrl_c_after_the_render_fails_the_video(isolated: Path, tmp_path: Path) -> None:
    """SIGINT the moment the render's own files appear in the history, before the outputs are placed: the video
    stayed "processing" for ever (`video delete` refuses such a video) with its files kept."""
    interrupted = 0
    for attempt in range(8):
        home, out = tmp_path / f"home{attempt}", f"o{attempt}.mp4"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "A2V_HOME": str(home)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "a2v_cli", "generate", "--pose", POSE, "--audio", str(SPEECH), "-o", out],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        while proc.poll() is None and not list(home.glob("videos/*/video.mp4")):
            time.sleep(0.0005)
        proc.send_signal(signal.SIGINT)  # a no-op where it has exited already
        _, err = proc.communicate(timeout=120)
        (video,) = run_cli("video", "list", "--json", env={"A2V_HOME": str(home)}).json()
        if (isolated / out).is_file():  # the signal came too late (exit 0, or 130 just after): the outputs are saved
            assert video["status"] == "finished" and proc.returncode in (0, ExitCode.INTERRUPTED), err
            assert probe(isolated / out).video_codec == "h264"
            continue
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert (video["status"], video["error"]) == ("failed", "interrupted"), video
        # this attempt's outputs only (o4*: "*4*" also matched every earlier attempt's saved .mp4)
        assert not list(home.glob("videos/*/*")) and not list(isolated.glob(f"o{attempt}.*")), attempt
        interrupted += 1
        if interrupted == 2:
            break
    assert interrupted, "never interrupted between the render and the outputs"


def test_ctrl_c_while_the_outputs_are_placed_comes_after_them(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C between two steps of placing the outputs (a link made, not yet recorded) left an output in place
    while the video was marked failed. It is held until the outputs are all in place: then the command stops
    (exit 130), the video finished and both files whole. Sent here at the worst moment, on purpose."""
    import a2v_cli.backend.local as local
    from a2v_cli.backend import GenerateOptions

    real = local.place_all

    def interrupted_place_all(pairs, force):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)  # delivered at once, unless held
        return real(pairs, force)

    monkeypatch.setattr(local, "place_all", interrupted_place_all)
    backend = local.LocalBackend()
    with pytest.raises(KeyboardInterrupt):
        backend.generate(POSE, str(SPEECH), GenerateOptions(output=isolated / "held.mp4"))
    (video,) = run_cli("video", "list", "--json").json()
    assert video["status"] == "finished", video
    n = math.ceil(wav_duration(SPEECH) * 25)
    assert len(decode_frames(isolated / "held.mp4")) == len(decode_frames(isolated / "held.mask.mp4", "gray")) == n
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_nvenc_that_will_not_open_falls_back_to_x264(tmp_path: Path) -> None:
    """NVENC is asked for; where the GPU encoder cannot open (no NVIDIA GPU: here and on most CI machines) the
    render restarts on x264 and its outputs are as valid as ever; where it opens, they are NVENC's."""
    from a2v_cli.engine import encode
    from a2v_cli.engine.audio import decode
    from a2v_cli.engine.render import RenderJob, render

    assert not encode.use_nvenc("cpu")  # the CPU default never tries it
    prepared = decode(SPEECH, tmp_path, 1e9)
    out = tmp_path / "out"
    result = render(RenderJob(POSE, prepared, out / "v.mp4", out / "m.mp4", device="cpu", encoder="nvenc"))
    opens = encode.nvenc_opens()
    assert result.encoder == ("h264_nvenc" if opens else "libx264")
    n = math.ceil(wav_duration(SPEECH) * 25)
    assert len(decode_frames(out / "v.mp4")) == len(decode_frames(out / "m.mp4", "gray")) == n == result.frame_count
    assert (b"x264 - core" in (out / "v.mp4").read_bytes()) != opens  # x264 signs its stream
    assert sorted(p.name for p in out.iterdir()) == ["m.mp4", "v.mp4"]  # the failed attempt left no temp file

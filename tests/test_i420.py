"""A photo pose's frames handed to the encoder as I420 (yuv.py): the same pictures as the RGB path, exactly
before the encoder and within its noise after it, through the real photo pose, ffmpeg and the CLI."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEECH, decode_frames, ffmpeg, probe, run_cli, wav_duration
from photo_bundle import astronaut, write_photo_bundle
from test_photo import psnr

from a2v_cli.engine import yuv


def _ffmpeg_i420(rgb: np.ndarray) -> np.ndarray:
    """ffmpeg's own conversion, with the filter the encoder ran on RGB frames (encode.colour_filter)."""
    from a2v_cli.engine.encode import colour_filter

    h, w = rgb.shape[:2]
    out = subprocess.run([ffmpeg(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
                          *colour_filter("yuv420p"), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                         input=rgb.tobytes(), capture_output=True, check=True).stdout  # fmt: skip
    return np.frombuffer(out, np.uint8)


def test_numpy_conversion_is_ffmpegs_and_a_rectangle_converts_as_in_the_whole_frame() -> None:
    rgb = astronaut()[0]
    ours, theirs = yuv.to_i420(rgb).astype(int), _ffmpeg_i420(rgb).astype(int)
    luma, chroma = np.abs(ours - theirs)[: 512 * 512], np.abs(ours - theirs)[512 * 512 :]
    assert luma.max() <= 1 and luma.mean() < 0.02, (luma.max(), luma.mean())
    # ffmpeg filters chroma a little wider than a 2x2 mean: at the photo's sharpest colour edges a few levels apart
    assert chroma.max() <= 8 and chroma.mean() < 0.25, (chroma.max(), chroma.mean())
    # saturated primaries land on BT.709's limited-range values
    prim = np.zeros((2, 6, 3), np.uint8)
    prim[:, 0:2] = (255, 0, 0)
    prim[:, 2:4] = (255, 255, 255)
    y, u, v = yuv.planes(yuv.to_i420(prim), 2, 6)
    assert (y[0, 0], u[0, 0], v[0, 0]) == (63, 102, 240) and (y[0, 2], u[0, 1], v[0, 1]) == (235, 128, 128)
    # an odd rectangle widened to whole chroma blocks, converted into a frame, gives the whole frame's conversion
    other = np.ascontiguousarray(rgb[::-1])
    mixed = rgb.copy()
    mixed[101:180, 203:311] = other[101:180, 203:311]
    frame = yuv.to_i420(rgb)
    y0, y1, x0, x1 = yuv.even_rect(101, 180, 203, 311)
    assert (y0, y1, x0, x1) == (100, 180, 202, 312)
    yuv.Converter((512, 512)).write_rect(frame, mixed[y0:y1, x0:x1], y0, x0)
    assert np.array_equal(frame, yuv.to_i420(mixed))


def test_i420_frames_are_the_rgb_frames_converted_exactly() -> None:
    """Over sway, blinks, speech and silence, and with the idle motion off: bit for bit, masks and mouths too."""
    from a2v_cli.engine.frames import open_source
    from a2v_cli.engine.photo_pose import photo_idle_state

    write_photo_bundle(Path(os.environ["A2V_HOME"]))
    rng = np.random.default_rng(1)
    for still in (False, True):
        rgb_src = open_source("astro-photo", 25, still=still, device="cpu")
        i420_src = open_source("astro-photo", 25, still=still, device="cpu")
        assert i420_src.i420  # type: ignore[attr-defined]
        blinks = 0
        for start in (0, 25, 110, 200 + 25):  # the second loop: cached frames with their blinks
            frames = range(start, start + 25)
            art = rng.random((25, 4)).astype(np.float32)
            art[::4] = 0.0  # silence: a closed mouth
            rgb, mask, _, mouths = rgb_src.compose(frames, art)
            out, mask2, straight, mouths2 = i420_src.compose_i420(frames, art)  # type: ignore[attr-defined]
            assert straight is None and out.shape == (25, 512 * 512 * 3 // 2)
            assert np.array_equal(out, np.stack([yuv.to_i420(f) for f in rgb]))
            assert np.array_equal(mask, mask2) and np.array_equal(mouths, mouths2)
            blinks += sum(photo_idle_state(f, 25, still).blink > 0 for f in frames)
        assert (blinks > 0) != still


def test_photo_render_reads_the_same_through_both_encoder_inputs() -> None:
    """`generate` on a photo pose feeds I420; with --alpha-format it feeds RGB (the alpha video needs it): the two
    MP4s decode to the same pictures within the encoder's noise, with the same masks, tags and soundtrack."""
    write_photo_bundle(Path(os.environ["A2V_HOME"]))
    args = ("generate", "--pose", "astro-photo", "--audio", str(SPEECH), "--json")
    fast = run_cli(*args, "-o", "i420.mp4")
    assert fast.code == 0, fast.stderr
    rgb_path = run_cli(*args, "-o", "rgb.mp4", "--alpha-format", "webm")
    assert rgb_path.code == 0, rgb_path.stderr
    a, b = decode_frames(Path("i420.mp4")), decode_frames(Path("rgb.mp4"))
    assert len(a) == len(b) == math.ceil(wav_duration(SPEECH) * 25)
    # two CRF 16 encodes of inputs a rounding apart differ by the encoder's noise (about 38 dB from the source):
    # a wrong matrix, range or chroma placement would cost far more
    between = [psnr(x, y) for x, y in zip(a, b, strict=True)]
    assert min(between) > 38.0 and np.mean(between) > 40.0, (min(between), np.mean(between))
    # against the photo, above the face (the head sways: its top rows are the photo, shifted), equally faithful
    rgb, matte, _ = astronaut()
    assert abs(psnr(a[:, :150], rgb[:150]) - psnr(b[:, :150], rgb[:150])) < 0.3
    ma, mb = decode_frames(Path("i420.mask.mp4"), "gray"), decode_frames(Path("rgb.mask.mp4"), "gray")
    assert np.array_equal(ma, mb)
    assert np.abs(ma[0, ..., 0].astype(int) - matte).mean() < 3.0
    for path in ("i420.mp4", "rgb.mp4"):
        info = probe(Path(path))
        assert info.pix_fmt == "yuv420p" and "bt709" in info.text and info.audio_codec == "aac", info.text


def test_a_photo_pose_whose_png_is_not_what_its_manifest_says_is_one_clear_line() -> None:
    """The bundle's PNGs are read in-process (no ffmpeg child): a wrong size or another format is refused before a
    pixel is decoded, as damage, with no traceback and no output."""
    from photo_bundle import write_png
    from PIL import Image

    from a2v_cli.errors import ExitCode

    folder = write_photo_bundle(Path(os.environ["A2V_HOME"])) / "astro-photo"
    rgb, matte, _ = astronaut()
    for name, bad in (("matte.png", lambda p: write_png(matte[:256], p)),
                      ("image.png", lambda p: Image.fromarray(rgb).save(p, format="JPEG"))):  # fmt: skip
        good = (folder / name).read_bytes()
        bad(folder / name)
        r = run_cli("generate", "--pose", "astro-photo", "--audio", str(SPEECH), "-o", "x.mp4")
        assert r.code == ExitCode.USAGE, r.stderr
        assert "damaged" in r.stderr and name in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2 and not Path("x.mp4").exists()
        (folder / name).write_bytes(good)


def _video_pose(tmp_path: Path, frames: int = 30) -> str:
    """A clip of a moving head, through the real ingest (`avatars add --video`): its pose id."""
    from test_avatars_add import panning, write_clip

    clip = write_clip(tmp_path / "pan.mp4", panning(frames)[0])
    added = run_cli("avatars", "add", "--video", str(clip), "--id", "pan", "--size", "256")
    assert added.code == 0, added.stderr
    return "pan-video"


def test_video_pose_i420_frames_are_the_rgb_frames_converted_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video pose hands the encoder I420 too (issue 13: video poses as fast as photo ones): each clip frame is
    converted once and per frame only the rectangle around its mouth; bit for bit the RGB frames converted, masks
    and mouths too, across the clip's turn (forward, then back) and with `still`. A clip whose converted frames do
    not fit the budget goes to the encoder as RGB."""
    from a2v_cli.engine import photo_pose
    from a2v_cli.engine.frames import open_source

    pose = _video_pose(tmp_path)
    rng = np.random.default_rng(2)
    for still in (False, True):
        rgb_src = open_source(pose, 25, still=still, device="cpu")
        i420_src = open_source(pose, 25, still=still, device="cpu")
        assert i420_src.i420  # type: ignore[attr-defined]
        for start in (0, 20, 45, 70):  # 20 and 45 cross the turns at clip frames 29 and 0
            frames = range(start, start + 25)
            art = rng.random((25, 4)).astype(np.float32)
            art[::4] = 0.0
            rgb, mask, _, mouths = rgb_src.compose(frames, art)
            out, mask2, straight, mouths2 = i420_src.compose_i420(frames, art)  # type: ignore[attr-defined]
            assert straight is None and out.shape == (25, 256 * 256 * 3 // 2)
            assert np.array_equal(out, np.stack([yuv.to_i420(f) for f in rgb]))
            assert np.array_equal(mask, mask2) and np.array_equal(mouths, mouths2)
    monkeypatch.setattr(photo_pose, "I420_BUDGET", 30 * yuv.frame_size(256, 256) - 1)
    assert not open_source(pose, 25, device="cpu").i420  # type: ignore[attr-defined]


def test_video_render_reads_the_same_through_both_encoder_inputs(tmp_path: Path) -> None:
    """`generate` on a video pose feeds I420, with --alpha-format RGB: the same pictures within the encoder's noise,
    the same masks."""
    pose = _video_pose(tmp_path)
    args = ("generate", "--pose", pose, "--audio", str(SPEECH), "--json")
    assert (fast := run_cli(*args, "-o", "i420.mp4")).code == 0, fast.stderr
    assert (slow := run_cli(*args, "-o", "rgb.mp4", "--alpha-format", "webm")).code == 0, slow.stderr
    a, b = decode_frames(Path("i420.mp4")), decode_frames(Path("rgb.mp4"))
    assert len(a) == len(b) == math.ceil(wav_duration(SPEECH) * 25)
    between = [psnr(x, y) for x, y in zip(a, b, strict=True)]
    assert min(between) > 38.0 and np.mean(between) > 40.0, (min(between), np.mean(between))
    assert np.array_equal(decode_frames(Path("i420.mask.mp4"), "gray"), decode_frames(Path("rgb.mask.mp4"), "gray"))
    info = probe(Path("i420.mp4"))
    assert info.pix_fmt == "yuv420p" and "bt709" in info.text, info.text

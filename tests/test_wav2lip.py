"""Wav2Lip-compatible models: a small ONNX model of the same signature, built here, run end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SPEECH, decode_frames, run_cli, wav_duration
from onnx import TensorProto, helper, numpy_helper

from a2v_cli.engine import catalog
from a2v_cli.engine.sessions import load_session
from a2v_cli.engine.wav2lip import detect_contract, face_box, feather_mask, wav2lip_window_starts
from a2v_cli.errors import ExitCode, InputError


def build_fake_wav2lip(
    path: Path, size: int = 96, names: tuple[str, str] = ("mel_spectrogram", "video_frames")
) -> Path:
    """out = reference face with its lower half darkened by the mel window's loudness, in BGR 0..1."""
    mel_name, face_name = names
    lower = np.zeros((1, 1, size, size), np.float32)
    lower[..., size // 2 :, size // 4 : 3 * size // 4] = 1.0
    nodes = [
        helper.make_node("Slice", [face_name, "c3", "c6", "axis1"], ["ref"]),
        helper.make_node("ReduceMean", [mel_name, "axes"], ["loud"], keepdims=1),  # [B,1,1,1]
        helper.make_node("Mul", ["loud", "gain"], ["loud2"]),
        helper.make_node("Sigmoid", ["loud2"], ["open"]),
        helper.make_node("Mul", ["open", "lower"], ["dark"]),
        helper.make_node("Sub", ["one", "dark"], ["keep"]),
        helper.make_node("Mul", ["ref", "keep"], ["face_out"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([3], np.int64), "c3"),
        numpy_helper.from_array(np.array([6], np.int64), "c6"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array(2.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(lower, "lower"),
    ]
    graph = helper.make_graph(
        nodes, "fake_wav2lip",
        [helper.make_tensor_value_info(mel_name, TensorProto.FLOAT, ["B", 1, 80, 16]),
         helper.make_tensor_value_info(face_name, TensorProto.FLOAT, ["B", 6, size, size])],
        [helper.make_tensor_value_info("face_out", TensorProto.FLOAT, ["B", 3, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("size", "names"), [(96, ("mel_spectrogram", "video_frames")), (256, ("mel", "vid")),
                                             (288, ("source", "target"))])
def test_contract_detected_from_shapes(tmp_path: Path, size: int, names: tuple[str, str]) -> None:
    path = build_fake_wav2lip(tmp_path / "m.onnx", size, names)
    c = detect_contract(load_session(str(path), "cpu").session)
    assert (c.mel_input, c.face_input, c.size) == (names[0], names[1], size)


def test_other_models_are_refused_with_their_inputs(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "other.onnx")
    with pytest.raises(InputError, match=r"x\[1, 3\]"):
        detect_contract(load_session(str(tmp_path / "other.onnx"), "cpu").session)


def test_window_alignment_matches_wav2lip() -> None:
    starts = wav2lip_window_starts(np.arange(6), 25)
    assert list(starts) == [int(80 * i / 25) for i in range(6)]


def test_feather_has_no_hard_edge() -> None:
    m = feather_mask(160)[..., 0]
    assert m.max() == pytest.approx(1.0) and m[0].max() == 0 and m[:, 0].max() == 0 and m[-1].max() < 0.05
    assert np.abs(np.diff(m, axis=0)).max() < 0.1 and np.abs(np.diff(m, axis=1)).max() < 0.1


def test_generate_with_wav2lip_model_end_to_end(isolated: Path) -> None:
    models = Path(str(isolated.parent / "a2v-home")) / "models"
    models.mkdir(parents=True)
    build_fake_wav2lip(models / "fake96.onnx")
    listed = run_cli("models", "list", "--json")
    assert listed.code == 0, listed.stderr
    kinds = {m["name"]: m["kind"] for m in listed.json()}
    assert kinds["builtin"] == "a2v built-in" and kinds["fake96"] == "wav2lip 96x96"

    base = run_cli("generate", "--pose", "leo-front", "--audio", str(SPEECH), "-o", "base.mp4", "--json",
                   "--model", "fake96")
    assert base.code == 0, base.stderr
    frames = decode_frames(Path(base.json()["video_url"].removeprefix("file://")))
    assert len(frames) == math.ceil(wav_duration(SPEECH) * 25)
    mask = decode_frames(Path(base.json()["mask_video_url"].removeprefix("file://")), "gray")
    assert len(mask) == len(frames)

    # the model's darkening follows the audio's loudness inside the face box, and nothing outside it
    art = catalog.pose_art("leo-front")
    size, mouth_y = face_box(art)
    mx = art.head_origin[0] + art.mouth_center[0]
    my = art.head_origin[1] + art.mouth_center[1]
    inner = frames[:, int(my) : int(my + size * 0.2), int(mx - size * 0.15) : int(mx + size * 0.15)]
    darkness = 255 - inner.astype(float).mean(axis=(1, 2, 3))
    import soundfile as sf

    audio, _ = sf.read(SPEECH, dtype="float32")
    loud = np.array([np.sqrt(np.mean(c**2)) for c in np.array_split(audio, len(frames))])
    assert np.corrcoef(darkness, loud)[0, 1] > 0.3
    # outside the face box the frames are the idle animation untouched (up to compression noise)
    from a2v_cli.engine.compose import Compositor

    idle, _, _, _ = Compositor(art, 25).compose(range(len(frames)))
    top = int(my - mouth_y - 10)
    assert np.abs(frames[:, :top].astype(int) - idle[:, :top].astype(int)).mean() < 1.5
    by_path = run_cli("generate", "--pose", "leo-front", "--audio", str(SPEECH), "-o", "ref.mp4", "--json",
                      "--model", str(models / "fake96.onnx"))
    assert by_path.code == 0, by_path.stderr


def test_unknown_model_name_suggests(isolated: Path) -> None:
    r = run_cli("generate", "--pose", "ava-front", "--audio", str(SPEECH), "--model", "wav2lipp")
    assert r.code == ExitCode.NOT_FOUND and "unknown model" in r.stderr
    r = run_cli("generate", "--pose", "ava-front", "--audio", str(SPEECH), "--model", "missing.onnx")
    assert r.code == ExitCode.USAGE and "not found" in r.stderr

"""The hand-built models: the shipped mouth v3 and warp match their source (models/build_models.py); the analytic
v1 articulator and mouth v2 (no longer committed) are rebuilt from it for their contract and for v3's reference."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, synthetic_vowel

from a2v_cli.engine.features import (
    clip_windows,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SR = 16_000
FPS = 25.0
STYLE = np.array([0.82, 0.38, 0.43, 0.36, 0.10, 0.12, 0.97, 0.96, 0.93, 24.0, 5.5, 19.0], dtype=np.float32)

ort = pytest.importorskip("onnxruntime")


def session(path: Path) -> object:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def build_models() -> object:
    pytest.importorskip("onnx")
    return load_script("models/build_models.py")


@pytest.fixture(scope="module")
def reference(build_models: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The old v1 articulator and mouth v2, rebuilt from the recipe (``build_models.py --reference DIR``)."""
    out = tmp_path_factory.mktemp("reference")
    for name, model in build_models.build_reference().items():  # type: ignore[attr-defined]
        (out / name).write_bytes(model.SerializeToString())
    return {name: out / name for name in build_models.build_reference()}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def articulator(reference: dict[str, Path]) -> object:
    return session(reference["a2v-articulator-v1.onnx"])


@pytest.fixture(scope="module")
def mouth(reference: dict[str, Path]) -> object:
    return session(reference["a2v-mouth-v2.onnx"])


def articulate(sess: object, windows: np.ndarray) -> np.ndarray:
    return sess.run(None, {"mel": windows})[0]  # type: ignore[attr-defined]


def windows_for(audio: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Exactly the app's path: level normalization, Wav2Lip mel, windows centred on 25 fps frames."""
    return clip_windows(audio, FPS, normalize)


def vowel(formants: tuple[float, float, float], seconds: float = 0.6, f0: float = 120.0) -> np.ndarray:
    return synthetic_vowel(formants, seconds, f0, SR)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


AA = (750.0, 1200.0, 2600.0)
EE = (280.0, 2300.0, 3000.0)
OO = (300.0, 870.0, 2250.0)


# ---------------------------------------------------------------------------------------------------------------------
# files and contract
# ---------------------------------------------------------------------------------------------------------------------


def test_files_load_with_the_documented_io(articulator: object, mouth: object) -> None:
    ins = {i.name: i for i in articulator.get_inputs()}  # type: ignore[attr-defined]
    outs = {o.name: o for o in articulator.get_outputs()}  # type: ignore[attr-defined]
    assert list(ins) == ["mel"] and list(outs) == ["articulation"]
    assert ins["mel"].shape[1:] == [1, 80, 16] and ins["mel"].type == "tensor(float)"
    assert outs["articulation"].shape[1:] == [4] and outs["articulation"].type == "tensor(float)"
    ins = {i.name: i for i in mouth.get_inputs()}  # type: ignore[attr-defined]
    outs = {o.name: o for o in mouth.get_outputs()}  # type: ignore[attr-defined]
    assert list(ins) == ["articulation", "style", "offset"] and list(outs) == ["rgb", "alpha"]
    assert [ins[k].shape[1:] for k in ins] == [[4], [12], [2]]
    assert outs["rgb"].shape[1:] == [3, 96, 128] and outs["alpha"].shape[1:] == [1, 96, 128]


def test_committed_files_match_their_build_script(build_models: object) -> None:
    """Rebuilding gives the same graphs, so the committed .onnx cannot drift from models/build_models.py.

    Byte-identical with the onnx version that built them; with another onnx version, node for node and
    initializer for initializer (numerically) identical. Every model build_models.py makes that ships is checked,
    and only those are committed.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    shipped = set(re.findall(r'^"models/([^"/]+\.onnx)"', (ROOT / "pyproject.toml").read_text(), re.M))
    built_all = build_models.build_all()  # type: ignore[attr-defined]
    assert {"a2v-mouth-v3.onnx", "a2v-warp-v1.onnx"} <= set(built_all) <= shipped
    assert {p.name for p in MODELS.glob("*.onnx")} == shipped  # old models are rebuilt, never committed
    for name, built in built_all.items():
        data = (MODELS / name).read_bytes()
        if data == built.SerializeToString():
            continue
        committed = onnx.load_from_string(data)
        stale = f"{name} is stale: run python -m models.build_models"
        assert [(n.op_type, list(n.input), list(n.output), [a.SerializeToString() for a in n.attribute])
                for n in committed.graph.node] == [
            (n.op_type, list(n.input), list(n.output), [a.SerializeToString() for a in n.attribute])
            for n in built.graph.node], stale  # fmt: skip
        inits = {t.name: numpy_helper.to_array(t) for t in committed.graph.initializer}
        for t in built.graph.initializer:
            assert t.name in inits, stale
            np.testing.assert_array_equal(inits[t.name], numpy_helper.to_array(t), err_msg=stale)
        assert len(inits) == len(built.graph.initializer), stale


# ---------------------------------------------------------------------------------------------------------------------
# articulator
# ---------------------------------------------------------------------------------------------------------------------


def test_articulator_output_is_float32_in_0_1_for_any_window(articulator: object) -> None:
    rng = np.random.default_rng(0)
    mel = rng.uniform(-4.0, 4.0, size=(64, 1, 80, 16)).astype(np.float32)
    mel[:8] = rng.uniform(-40.0, 40.0, size=(8, 1, 80, 16))  # out of range input is clipped, not trusted
    out = articulate(articulator, mel)
    assert out.shape == (64, 4) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_digital_silence_gives_exactly_zero(articulator: object) -> None:
    out = articulate(articulator, np.full((5, 1, 80, 16), -4.0, dtype=np.float32))
    assert np.all(out == 0.0)
    out = articulate(articulator, windows_for(silence(1.0)))
    assert np.all(out == 0.0)


@pytest.mark.parametrize("level_db", [-35.0, -30.0])
def test_noise_below_speech_level_keeps_the_mouth_exactly_still(articulator: object, level_db: float) -> None:
    """White noise 35 (and 30) dB below the normalized speech level (-20 dBFS): every output exactly 0."""
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(2 * SR) * 10 ** ((-20.0 + level_db) / 20)).astype(np.float32)
    out = articulate(articulator, windows_for(noise, normalize=False))
    assert np.all(out == 0.0)


def test_pauses_in_noisy_speech_are_exactly_closed(articulator: object) -> None:
    """Vowel, 0.5 s pause, vowel, with white noise 35 dB below the vowels, through the app's gain normalization."""
    rng = np.random.default_rng(2)
    clean = np.concatenate([silence(0.3), vowel(AA, 0.5), silence(0.5), vowel(EE, 0.5), silence(0.3)])
    speech_rms = float(np.sqrt(np.mean(vowel(AA, 0.5) ** 2)))
    noisy = clean + (rng.standard_normal(len(clean)) * speech_rms * 10 ** (-35 / 20)).astype(np.float32)
    out = articulate(articulator, windows_for(noisy))
    centres = (np.arange(len(out)) + 0.5) / FPS
    in_pause = ((centres > 0.84) & (centres < 1.26)) | (centres < 0.26) | (centres > 1.84)
    assert np.all(out[in_pause, 0] == 0.0)
    assert out[(centres > 0.4) & (centres < 0.7), 0].min() > 0.3


def test_open_vowel_opens_the_mouth_and_close_vowels_less(articulator: object) -> None:
    def middle(formants: tuple[float, float, float]) -> np.ndarray:
        out = articulate(articulator, windows_for(np.concatenate([silence(0.3), vowel(formants), silence(0.3)])))
        k = len(out) // 2
        return out[k - 3 : k + 3].mean(axis=0)

    aa, ee, oo = middle(AA), middle(EE), middle(OO)
    assert aa[0] > 0.3, aa
    assert aa[0] > ee[0] + 0.2 and aa[0] > oo[0] + 0.2
    assert ee[1] > 0.5 and ee[1] > aa[1] + 0.3  # EE spreads the lips
    assert oo[2] > 0.5 and oo[2] > aa[2] + 0.3  # OO rounds them


def test_level_does_not_matter_after_normalization(articulator: object) -> None:
    audio = np.concatenate([silence(0.3), vowel(AA, 0.4), silence(0.08), vowel(AA, 0.4), silence(0.3)])
    loud = articulate(articulator, windows_for(audio))
    quiet = articulate(articulator, windows_for(audio * 0.05))
    np.testing.assert_allclose(loud, quiet, atol=1e-3)


def test_closure_between_vowels_presses_and_closes_the_lips(articulator: object) -> None:
    """A 70 ms silent closure (like the p in "papa") between two open vowels."""
    audio = np.concatenate([silence(0.3), vowel(AA, 0.3), silence(0.07), vowel(AA, 0.3), silence(0.3)])
    out = articulate(articulator, windows_for(audio))
    centres = (np.arange(len(out)) + 0.5) / FPS
    closure = np.flatnonzero((centres > 0.6) & (centres < 0.67))
    vowels = (centres > 0.4) & (centres < 0.55)
    assert out[closure, 0].max() < 0.1 and out[closure, 3].max() > 0.5
    assert out[vowels, 0].min() > 0.3 and out[vowels, 3].max() < 0.2


def test_open_is_smooth_over_a_steady_vowel(articulator: object) -> None:
    out = articulate(articulator, windows_for(np.concatenate([silence(0.3), vowel(AA, 1.0), silence(0.3)])))
    steady = out[12:30, 0]
    assert np.abs(np.diff(steady)).max() < 0.05


# ---------------------------------------------------------------------------------------------------------------------
# mouth renderer
# ---------------------------------------------------------------------------------------------------------------------


def render(mouth: object, art: list[tuple[float, float, float, float]], style: np.ndarray | None = None,
           offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    a = np.array(art, dtype=np.float32)
    s = np.repeat((STYLE if style is None else style)[None], len(a), axis=0).astype(np.float32)
    o = np.zeros((len(a), 2), dtype=np.float32) if offset is None else offset.astype(np.float32)
    rgb, alpha = mouth.run(None, {"articulation": a, "style": s, "offset": o})  # type: ignore[attr-defined]
    return rgb, alpha


def test_mouth_outputs_premultiplied_rgb_and_alpha_in_range(mouth: object) -> None:
    rng = np.random.default_rng(3)
    art = rng.uniform(0, 1, size=(32, 4))
    rgb, alpha = render(mouth, [tuple(x) for x in art], offset=rng.uniform(-2, 2, size=(32, 2)))
    assert rgb.shape == (32, 3, 96, 128) and alpha.shape == (32, 1, 96, 128)
    assert rgb.dtype == np.float32 and alpha.dtype == np.float32
    assert rgb.min() >= 0.0 and alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert np.all(rgb <= alpha + 1e-6)  # premultiplied
    assert alpha.max() == 1.0


def test_mouth_stays_inside_the_patch_for_extreme_inputs(mouth: object) -> None:
    corners = [(o, s, r, p) for o in (0, 1) for s in (0, 1) for r in (0, 1) for p in (0, 1)]
    styles = [np.array([*STYLE[:9], hw, lt, mo], dtype=np.float32)
              for hw, lt, mo in ((20, 4, 16), (32, 7, 26), (40, 10, 30), (500, 500, 500), (-5, -5, -5))]  # fmt: skip
    for style in styles:
        for offset in ((-2.0, -2.0), (2.0, 2.0), (9.0, -9.0)):
            off = np.tile(np.array(offset, dtype=np.float32), (len(corners), 1))
            rgb, alpha = render(mouth, corners, style, off)
            assert np.isfinite(rgb).all() and np.isfinite(alpha).all()
            border = np.concatenate([alpha[:, 0, :2].ravel(), alpha[:, 0, -2:].ravel(),
                                     alpha[:, 0, :, :2].ravel(), alpha[:, 0, :, -2:].ravel()])  # fmt: skip
            assert border.max() == 0.0


def test_closed_and_open_mouths_differ_and_grow_with_open(mouth: object) -> None:
    rgb, alpha = render(mouth, [(0, 0, 0, 0), (0.5, 0, 0, 0), (1, 0, 0, 0)])
    assert np.abs(alpha[0] - alpha[2]).sum() > 100 and np.abs(rgb[0] - rgb[2]).sum() > 100
    areas = alpha.sum(axis=(1, 2, 3))
    assert areas[0] < areas[1] < areas[2]
    # the open mouth shows dark inner mouth and light teeth at its centre column; the closed one is all lip
    col = rgb[2, :, :, 64] / np.maximum(alpha[2, :, :, 64], 1e-6)
    lum = col.mean(axis=0)[alpha[2, 0, :, 64] > 0.99]
    assert lum.min() < 0.25 and lum.max() > 0.9


def test_rest_width_is_twice_half_width(mouth: object) -> None:
    for hw in (20.0, 26.0, 32.0):
        style = np.array([*STYLE[:9], hw, 5.0, 20.0], dtype=np.float32)
        _, alpha = render(mouth, [(0, 0, 0, 0)], style)
        width = alpha[0, 0].max(axis=0).sum()  # coverage of the widest row profile, in px
        assert abs(width - 2 * hw) < 2.5, (hw, width)


def test_spread_widens_and_round_narrows(mouth: object) -> None:
    _, alpha = render(mouth, [(0.5, 0, 0, 0), (0.5, 1, 0, 0), (0.5, 0, 1, 0)])
    widths = alpha[:, 0].max(axis=1).sum(axis=1)
    assert widths[1] > widths[0] + 4 and widths[2] < widths[0] - 8


def dark_area(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(B,) px of inner-mouth darkness: how far each pixel, composited on white, is below mid grey."""
    lum = (rgb + (1.0 - alpha)).mean(axis=1)  # on a white background
    return np.clip((0.5 - lum) / 0.5, 0, 1).sum(axis=(1, 2))


def test_opening_area_follows_open_whatever_the_shape(mouth: object) -> None:
    shapes = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0, 0.5, 0.5)]
    for o in (0.25, 0.5):  # a wide-open O is capped in height (open_max): not tested above 0.5
        areas = dark_area(*render(mouth, [(o, s, r, p) for s, r, p in shapes]))
        assert areas.max() < 1.35 * areas.min(), (o, areas.round())  # v1: 1.9
    # and it grows in proportion to open (teeth and tongue are fixed shares of the opening)
    opens = np.linspace(0.1, 1.0, 10)
    areas = dark_area(*render(mouth, [(o, 0, 0, 0) for o in opens]))
    assert np.corrcoef(opens, areas)[0, 1] > 0.995
    assert np.all(np.diff(areas) > 0)


def test_press_thins_the_lips(mouth: object) -> None:
    _, alpha = render(mouth, [(0, 0, 0, 0), (0, 0, 0, 1)])
    heights = alpha[:, 0].max(axis=2).sum(axis=1)
    assert heights[1] < heights[0] - 3


def test_subpixel_offset_moves_the_mouth(mouth: object) -> None:
    offsets = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, -1.25]], dtype=np.float32)
    _, alpha = render(mouth, [(0.6, 0, 0, 0)] * 3, offset=offsets)
    ys, xs = np.mgrid[0:96, 0:128] + 0.5
    cx = (alpha[:, 0] * xs).sum(axis=(1, 2)) / alpha[:, 0].sum(axis=(1, 2))
    cy = (alpha[:, 0] * ys).sum(axis=(1, 2)) / alpha[:, 0].sum(axis=(1, 2))
    assert abs(cx[0] - 64.0) < 0.05
    assert abs((cx[1] - cx[0]) - 0.5) < 0.02 and abs((cy[2] - cy[0]) + 1.25) < 0.02


def test_windowed_mouth_is_the_full_patch_cropped(mouth: object) -> None:
    """v3 (the renderer in use) draws only a window of the patch: exactly v2's pixels there, for any input."""
    v3 = session(MODELS / "a2v-mouth-v3.onnx")
    rng = np.random.default_rng(5)
    art = rng.uniform(0, 1, size=(16, 4)).astype(np.float32)
    art[:4] = [(0, 0, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1)]
    offsets = rng.uniform(-2, 2, size=(16, 2)).astype(np.float32)
    rgb, alpha = render(mouth, [tuple(a) for a in art], offset=offsets)
    for x0, y0, w, h in ((0, 0, 128, 96), (34, 32, 61, 41), (60, 40, 9, 17)):
        feeds = {"articulation": art, "style": np.repeat(STYLE[None], 16, axis=0), "offset": offsets,
                 "window": np.array([x0, y0, w, h], dtype=np.float32)}
        rgb3, alpha3 = v3.run(None, feeds)  # type: ignore[attr-defined]
        assert rgb3.shape == (16, 3, h, w) and alpha3.shape == (16, 1, h, w)
        np.testing.assert_allclose(rgb3, rgb[:, :, y0 : y0 + h, x0 : x0 + w], atol=1e-6)
        np.testing.assert_allclose(alpha3, alpha[:, :, y0 : y0 + h, x0 : x0 + w], atol=1e-6)
    assert alpha[:4].max(axis=(1, 2, 3)).min() == 1.0  # the windows above cut through real mouths


@pytest.mark.parametrize("pose", ["ava-front", "leo-side"])
def test_builtin_model_paints_through_its_window_what_the_full_patch_paints(pose: str) -> None:
    """The window measured at load time changes no pixel of a real render, and a mouth that leaves a (here
    deliberately too small) window is drawn whole."""
    from a2v_cli.engine import lipsync
    from a2v_cli.engine.frames import open_source

    src = open_source(pose, 25)
    model = lipsync.BuiltinModel(src.art, "cpu")  # type: ignore[attr-defined]
    assert model.window[2] * model.window[3] < 128 * 96 / 3  # a fraction of the patch
    windows = windows_for(np.concatenate([vowel(AA), silence(0.3), vowel(OO), vowel(EE)]))
    rgb, _, _, mouths = src.compose(range(len(windows)))
    for window in (model.window, np.array([60, 44, 8, 8], np.float32)):
        model.window = window
        a, b = rgb.copy(), rgb.copy()
        model.paint(windows, mouths, [a])
        model.window = lipsync.FULL_PATCH
        model.paint(windows, mouths, [b])
        assert np.array_equal(a, b)
        assert (a != rgb).any()


def test_articulator_runs_identical_windows_once_with_the_same_answers() -> None:
    """Pauses of digital silence repeat one window; each is computed once and every frame gets its own answer."""
    from a2v_cli.engine.lipsync import Articulator

    windows = windows_for(np.concatenate([silence(0.6), vowel(AA), silence(0.6), vowel(OO), silence(0.6)]))
    art = Articulator("cpu")
    flat = windows.reshape(len(windows), -1)
    assert len(np.unique(flat, axis=0)) < len(windows) - 10  # the pauses repeat
    got = art.run(windows)
    one_by_one = np.concatenate([art.loaded.session.run(["articulation"], art.feeds(w[None]))[0] for w in windows])
    np.testing.assert_allclose(got, one_by_one, atol=1e-6)
    assert got[:, 0].max() > 0.3  # the vowels open the mouth

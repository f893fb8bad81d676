"""Lip-sync models: the part of the renderer that turns audio into mouth pixels.

Every model sees the same things for a batch of frames: the composed idle frames, the
Wav2Lip log-mel window of each frame (``[B,1,80,16]``) and where the mouth is, and paints the
mouth in place. The built-in model is two small ONNX graphs shipped with the package:
an articulator (mel -> open, spread, round, press) and a mouth renderer (articulation + the
pose's lip colours -> premultiplied RGB and alpha of a 128x96 mouth patch, drawn only inside the
window that this pose's mouths can reach: the same pixels at a fraction of the cost).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from a2v_cli.engine.audio import PcmReader
from a2v_cli.engine.drawn import PoseArt
from a2v_cli.engine.features import N_MELS, centered_window_starts, speech_spectrum
from a2v_cli.engine.sessions import LoadedSession, load_session
from a2v_cli.errors import InputError, not_found

if TYPE_CHECKING:
    from a2v_cli.engine.frames import FrameSource

ARTICULATOR_FILE = "a2v-articulator-v6.onnx"  # the mean of three trained ones; older ones: rebuilt (MODEL_CARD.md)
MOUTH_FILE = "a2v-mouth-v3.onnx"  # v2 plus a window input: exactly v2's pixels, drawn only where asked
PATCH_H, PATCH_W = 96, 128
FULL_PATCH = np.array([0, 0, PATCH_W, PATCH_H], dtype=np.float32)
WINDOW_MARGIN = 2  # px around the extremes measured at load time


def model_dir() -> Path:
    """Where the bundled ONNX files are: inside the installed package, or ``models/`` of a checkout."""
    packaged = Path(str(resources.files("a2v_cli"))) / "_models"
    if (packaged / ARTICULATOR_FILE).is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


class LipSyncModel(Protocol):
    """What the renderer needs from a lip-sync model."""

    name: str
    # optional: ``paints``, False where ``paint`` leaves the frames alone (they are then not even handed over)

    @property
    def provider(self) -> str: ...

    def window_starts(self, frames: np.ndarray, fps: float) -> np.ndarray:
        """First mel frame of each frame's 16-frame window (models differ in alignment)."""
        ...

    def begin(self, reader: PcmReader) -> None:
        """Called once before the first batch, with the whole (normalized) recording at hand."""
        ...

    def paint(self, mel: np.ndarray, mouths: np.ndarray, targets: list[np.ndarray]) -> np.ndarray | None:
        """Paint mouths into every array of ``targets`` ((B,H,W,3) uint8, modified in place).

        ``mel`` is (B,1,80,16); ``mouths`` (B,2) the mouth centres (x, y) in frame pixels.
        Returns the per-frame articulation (B,4) when the model has one.
        """
        ...


def spectrum_prior(session: object) -> tuple[np.ndarray | None, float]:
    """The typical speech spectrum a relative articulator was trained with (its ONNX metadata), and its weight in
    columns: a recording's own spectrum is pulled towards it (see ``SpectrumMeter.spectrum``)."""
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    if "spectrum_prior" not in meta:
        return None, 0.0
    prior = np.array([float(v) for v in meta["spectrum_prior"].split(",")], dtype=np.float32)
    if prior.shape != (N_MELS,):
        raise ValueError("articulator metadata: spectrum_prior must hold 80 values")
    return prior, float(meta.get("spectrum_prior_columns", "0"))


def check_device(device: str) -> None:
    """Raise UnavailableError now when ``device`` cannot run the model.

    Why: a server or worker started with ``--device cuda`` on a host without a usable GPU would otherwise
    accept jobs that can only fail, each spending a try."""
    if device == "cuda":
        load_session(str(model_dir() / ARTICULATOR_FILE), device)


class Articulator:
    """The built-in articulator graph (mel windows -> open, spread, round, press), fed as it was trained.

    A graph with a ``spectrum`` input reads each window relative to the recording's mean speech
    spectrum, so ``begin`` must measure it before the first ``run``. A graph with an ``extended``
    output (v5, v6) also tells F/V and L apart, for Rhubarb's G and H cues.
    """

    def __init__(self, device: str = "auto", path: Path | None = None) -> None:
        self.loaded: LoadedSession = load_session(str(path or model_dir() / ARTICULATOR_FILE), device)
        self.relative = "spectrum" in {i.name for i in self.loaded.session.get_inputs()}
        self.extended = "extended" in {o.name for o in self.loaded.session.get_outputs()}
        self.prior, self.prior_columns = spectrum_prior(self.loaded.session)
        self.spectrum = self.prior if self.prior is not None else np.zeros(N_MELS, dtype=np.float32)

    def begin(self, reader: PcmReader) -> None:
        """Measure the recording's speech spectrum (bounded cost for any length)."""
        if self.relative:
            self.spectrum = speech_spectrum(reader.read, reader.n).spectrum(self.prior, self.prior_columns)

    def feeds(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"mel": np.ascontiguousarray(mel, dtype=np.float32)}
        if self.relative:
            feeds["spectrum"] = np.repeat(self.spectrum[None], len(mel), axis=0)
        return feeds

    def run(self, mel: np.ndarray) -> np.ndarray:
        """(B,4) in 0..1 for (B,1,80,16) mel windows (the renderer's need: the F/V-L head is not computed).

        Identical windows (a pause of digital silence, as text-to-speech leaves between sentences) are run once:
        each window's output depends on that window alone.
        """
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        seen: dict[bytes, int] = {}
        rows = [seen.setdefault(window.tobytes(), len(seen)) for window in mel]  # index of each window's first twin
        if len(seen) == len(mel):
            return self.loaded.session.run(["articulation"], self.feeds(mel))[0]
        firsts = np.unique(rows, return_index=True)[1]  # rows are numbered in order of first appearance
        return self.loaded.session.run(["articulation"], self.feeds(mel[firsts]))[0][rows]

    def run_all(self, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B,4) articulation and, from a graph that has them, (B,2) F/V and L probabilities (else None)."""
        outs = self.loaded.session.run(None, self.feeds(mel))
        return outs[0], (outs[1] if self.extended else None)


class BuiltinModel:
    """a2v's own model: articulator + mouth renderer, styled by the pose's lip colours.

    Without ``art`` (a photo or video pose, whose frame source moves the pose's own mouth by the
    articulation) only the articulator runs and ``paint`` leaves the frames alone.
    """

    name = "a2v-builtin-v6"

    def __init__(self, art: PoseArt | None, device: str = "auto") -> None:
        root = model_dir()
        self.articulator = Articulator(device)
        self.mouth: LoadedSession | None = None
        if art is not None:
            self.mouth = load_session(str(root / MOUTH_FILE), device)
            s = art.mouth_style
            self.style = np.array(
                [*s.lip, *s.inner, *s.teeth, s.half_width, s.lip_thickness, s.max_open], dtype=np.float32
            )
            self.window = self._reach()

    @property
    def provider(self) -> str:
        return self.articulator.loaded.provider

    @property
    def paints(self) -> bool:
        """Whether ``paint`` changes the frames (a drawn pose's mouth); else the renderer may skip it."""
        return self.mouth is not None

    def window_starts(self, frames: np.ndarray, fps: float) -> np.ndarray:
        return centered_window_starts(frames, fps)

    def begin(self, reader: PcmReader) -> None:
        self.articulator.begin(reader)

    def articulate(self, mel: np.ndarray) -> np.ndarray:
        """(B,4) open, spread, round, press in 0..1 for (B,1,80,16) mel windows."""
        return self.articulator.run(mel)

    def _draw(self, art: np.ndarray, offsets: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.mouth is not None
        n = len(art)
        return self.mouth.session.run(None, {"articulation": art, "style": np.repeat(self.style[None], n, axis=0),
                                             "offset": offsets, "window": window})  # fmt: skip

    def _reach(self) -> np.ndarray:
        """The window (x0, y0, w, h) of the patch that this style's mouths can touch: the extremes of every
        articulator output, at both ends of the sub-pixel offset range, plus a margin."""
        levels = (0.0, 1.0)  # a mouth the corners miss is still drawn whole (paint's edge check)
        art = np.array([(o, s, r, p) for o in levels for s in levels for r in levels for p in levels], np.float32)
        art = np.concatenate([art, art])
        offsets = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]], np.float32), len(art) // 2, axis=0)
        # in render-sized batches: onnxruntime keeps its arena at the largest batch it has seen
        alpha = np.concatenate([self._draw(art[i : i + 27], offsets[i : i + 27], FULL_PATCH)[1]
                                for i in range(0, len(art), 27)])  # fmt: skip
        rows = np.flatnonzero(alpha.max(axis=(0, 1, 3)) > 0)
        cols = np.flatnonzero(alpha.max(axis=(0, 1, 2)) > 0)
        if len(rows) == 0:
            return FULL_PATCH
        m = WINDOW_MARGIN
        x0, y0 = max(cols[0] - m, 0), max(rows[0] - m, 0)
        x1, y1 = min(cols[-1] + 1 + m, PATCH_W), min(rows[-1] + 1 + m, PATCH_H)
        return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)

    def paint(self, mel: np.ndarray, mouths: np.ndarray, targets: list[np.ndarray]) -> np.ndarray | None:
        if self.mouth is None:
            return None  # the frame source has moved the pose's own mouth already
        art = self.articulate(mel)
        n = len(mel)
        floor = np.floor(mouths)
        offsets = (mouths - floor).astype(np.float32)  # sub-pixel part, drawn by the renderer
        window = self.window
        rgb, alpha = self._draw(art, offsets, window)
        edge = max(alpha[:, 0, 0].max(), alpha[:, 0, -1].max(), alpha[:, 0, :, 0].max(), alpha[:, 0, :, -1].max())
        if edge > 0 and not np.array_equal(window, FULL_PATCH):  # a mouth the probe did not foresee: all of it
            window = FULL_PATCH
            rgb, alpha = self._draw(art, offsets, window)
        # blend only the rows and columns any mouth of this batch covers
        rows = np.flatnonzero(alpha.max(axis=(0, 1, 3)) > 0)
        cols = np.flatnonzero(alpha.max(axis=(0, 1, 2)) > 0)
        if len(rows) == 0:
            return art
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        rgb = rgb[:, :, r0:r1, c0:c1].transpose(0, 2, 3, 1) * np.float32(255.0)  # premultiplied
        alpha = alpha[:, :, r0:r1, c0:c1].transpose(0, 2, 3, 1)
        wx, wy = int(window[0]), int(window[1])
        for i in range(n):
            x0 = int(floor[i, 0]) - PATCH_W // 2 + wx + c0
            y0 = int(floor[i, 1]) - PATCH_H // 2 + wy + r0
            for target in targets:
                blend_patch(target[i], rgb[i], alpha[i], x0, y0)
        return art


def blend_patch(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Premultiplied ``over`` of a patch onto a uint8 frame at (x0, y0), clipped to the frame."""
    h, w = frame.shape[:2]
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + rgb.shape[0], h), min(x0 + rgb.shape[1], w)
    if ye <= ys or xe <= xs:
        return
    py, px = ys - y0, xs - x0
    region = frame[ys:ye, xs:xe]
    p_rgb = rgb[py : py + ye - ys, px : px + xe - xs]
    p_a = alpha[py : py + ye - ys, px : px + xe - xs]
    out = p_rgb + region * (1.0 - p_a)
    np.clip(out + 0.5, 0, 255, out=out)
    region[...] = out.astype(np.uint8)


BUILTIN = "builtin"


def user_models_dir() -> Path:
    """The folder users drop Wav2Lip-style ONNX files into: `$A2V_HOME/models` (only read: listing models
    needs no writable home, and an unusable one just has no user models)."""
    from a2v_cli import config

    return config.home_path() / "models"


def available_models() -> dict[str, Path | None]:
    """Model names `--model` accepts: the built-in one and every .onnx in the models folder."""
    found: dict[str, Path | None] = {BUILTIN: None}
    folder = user_models_dir()
    if folder.is_dir():
        for p in sorted(folder.glob("*.onnx")):
            found[p.stem] = p
    return found


def resolve_model(spec: str | None) -> Path | None:
    """None for the built-in model, else the ONNX file named by a path or a models-folder name."""
    if spec in (None, "", BUILTIN):
        return None
    assert spec is not None
    path = Path(spec).expanduser()
    if path.suffix == ".onnx" or "/" in spec:
        if not path.is_file():
            raise InputError(f"model file not found: {spec}", "check the path, or see `a2v models list`")
        return path
    models = available_models()
    if spec not in models:
        raise not_found("model", spec, list(models))
    return models[spec]


def preload_builtin(device: str = "auto") -> None:
    """Load the built-in graphs' sessions (cached by ``load_session``): run in a thread while the pose loads,
    as onnxruntime builds a session outside the GIL; errors surface again, in order, when the model loads."""
    try:
        for name in (ARTICULATOR_FILE, MOUTH_FILE):
            load_session(str(model_dir() / name), device)
    except Exception:  # load_model raises the same error where it belongs
        pass


def load_model(spec: str | None, pose: PoseArt | FrameSource, device: str = "auto") -> LipSyncModel:
    """The model ``spec`` names, for a drawn pose's layers or any pose's frame source."""
    path = resolve_model(spec)
    art = pose if isinstance(pose, PoseArt) else getattr(pose, "art", None)
    if path is None:
        return BuiltinModel(art, device)
    from a2v_cli.engine.wav2lip import Wav2LipModel

    return Wav2LipModel(path, pose, device)


def window_count(duration: float, fps: float) -> int:
    """Frames for ``duration`` seconds: ceil(duration x fps), never zero for non-empty audio."""
    return max(1, math.ceil(duration * fps - 1e-9))

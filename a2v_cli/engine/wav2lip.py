"""Wav2Lip-style ONNX models: mel ``[B,1,80,16]`` + face ``[B,6,S,S]`` (0..1) -> face ``[B,3,S,S]``.

The contract is read from the model's input shapes, whatever the export named them
(`mel_spectrogram`/`video_frames`, `mel`/`vid`, `source`/`target`...). The face crop is the frame
source's face box (from the drawing for built-ins, from the landmarks for photo poses) and follows
the idle head sway; its lower half is zeroed in the first three channels (the model must draw the
mouth), the last three are the unmasked reference, BGR in 0..1. The reference shows a neutral closed
mouth, as Wav2Lip was trained with: a photo's own, or for a drawn head (which has none) the built-in
mouth renderer's closed mouth.
The generated face is pasted back through a feathered mask, so no box edge shows, and the avatar's
alpha mask is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2v_cli.engine.audio import PcmReader
from a2v_cli.engine.drawn import PoseArt
from a2v_cli.engine.features import MAX_ABS_VALUE, MEL_FPS
from a2v_cli.engine.sessions import load_session
from a2v_cli.errors import InputError

FACE_SIZES = (96, 256, 288, 384)


@dataclass(frozen=True)
class Wav2LipContract:
    mel_input: str
    face_input: str
    size: int


def detect_contract(session: object) -> Wav2LipContract:
    """Find the mel and face inputs by shape; InputError naming what was found otherwise."""
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    mel = face = None
    size = 0
    for i in inputs:
        shape = list(i.shape)
        if len(shape) == 4 and shape[1:] == [1, 80, 16]:
            mel = i.name
        elif len(shape) == 4 and shape[1] == 6 and shape[2] == shape[3] and shape[2] in FACE_SIZES:
            face, size = i.name, int(shape[2])
    outputs = session.get_outputs()  # type: ignore[attr-defined]
    if mel is None or face is None or len(outputs) < 1:
        found = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
        raise InputError(
            f"not a Wav2Lip-style model (inputs: {found})",
            "expected mel [B,1,80,16] and face [B,6,S,S] with S in 96, 256, 288, 384",
        )
    return Wav2LipContract(mel, face, size)


def wav2lip_window_starts(frames: np.ndarray, fps: float) -> np.ndarray:
    """Wav2Lip's own alignment: the window for frame i starts at mel frame int(80 * i / fps)."""
    return (np.asarray(frames, dtype=np.float64) * (MEL_FPS / fps)).astype(np.int64)


def _resize_plan(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling indices and weights from ``src`` to ``dst`` pixels (pixel-centre aligned)."""
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, src - 1)
    hi = np.clip(lo + 1, 0, src - 1)
    w = np.clip(pos - np.floor(pos), 0, 1).astype(np.float32)
    return lo, hi, w


def _resize(img: np.ndarray, plan_y: tuple, plan_x: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """Bilinear resize of (..., H, W, C) with precomputed plans."""
    ly, hy, wy = plan_y
    lx, hx, wx = plan_x
    rows = img[..., ly, :, :] * (1 - wy)[:, None, None] + img[..., hy, :, :] * wy[:, None, None]
    return rows[..., lx, :] * (1 - wx)[:, None] + rows[..., hx, :] * wx[:, None]


def face_box(art: PoseArt) -> tuple[int, int]:
    """(size, mouth offset from the box top) of the square face crop: about a face wide, mouth 70% down."""
    size = round(art.mouth_style.half_width * 6.4)
    size += size % 2
    return size, round(size * 0.70)


def feather_mask(size: int) -> np.ndarray:
    """(size, size, 1) weights: 1 over the lower-middle face, easing to 0 well inside the crop's edges."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cx, cy = size / 2, size * 0.62
    rx, ry = size * 0.36, size * 0.26
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    m = np.clip((1.25 - d) / 0.5, 0, 1)
    m = m * m * (3 - 2 * m)  # smoothstep
    return m[..., None].astype(np.float32)


class Wav2LipModel:
    """Runs a user's Wav2Lip-style ONNX export on the pose's face crop."""

    paints = True  # every frame's face crop is replaced

    def __init__(self, path: Path, pose: PoseArt | object, device: str = "auto") -> None:
        """``pose``: a drawn pose's layers, or any pose's frame source (which gives the face boxes)."""
        self.path = path
        self.name = f"wav2lip:{path.name}"
        self._loaded = load_session(str(path), device)
        self.contract = detect_contract(self._loaded.session)
        art = pose if isinstance(pose, PoseArt) else getattr(pose, "art", None)
        if art is not None:
            self.box, self.mouth_y = face_box(art)
        else:  # a photo or video pose: the square box its landmarks give, relative to the mouth centre
            x0, y0, x1, _ = pose.face_boxes(np.zeros((1, 2), dtype=np.float32))[0]  # type: ignore[attr-defined]
            self.box = round(float(x1 - x0))
            self.mouth_y = round(float(-y0))
        self._closer = None
        if art is not None:  # a drawn head has no mouth: the reference gets the built-in closed one
            from a2v_cli.engine.lipsync import BuiltinModel

            self._closer = BuiltinModel(art, device)
        s = self.contract.size
        self._down = (_resize_plan(self.box, s), _resize_plan(self.box, s))
        self._up = (_resize_plan(s, self.box), _resize_plan(s, self.box))
        self._feather = feather_mask(self.box)

    @property
    def provider(self) -> str:
        return self._loaded.provider

    def window_starts(self, frames: np.ndarray, fps: float) -> np.ndarray:
        return wav2lip_window_starts(frames, fps)

    def begin(self, reader: PcmReader) -> None:
        """Nothing to measure: Wav2Lip reads each window on its own."""

    def paint(self, mel: np.ndarray, mouths: np.ndarray, targets: list[np.ndarray]) -> None:
        frames = targets[0]
        n, h, w = frames.shape[:3]
        b = self.box
        x0 = np.rint(mouths[:, 0] - b / 2).astype(int)
        y0 = np.rint(mouths[:, 1] - self.mouth_y).astype(int)
        crops = np.zeros((n, b, b, 3), dtype=np.uint8)
        for i in range(n):
            ys, xs = max(y0[i], 0), max(x0[i], 0)
            ye, xe = min(y0[i] + b, h), min(x0[i] + b, w)
            crops[i, ys - y0[i] : ye - y0[i], xs - x0[i] : xe - x0[i]] = frames[i, ys:ye, xs:xe]
        if self._closer is not None:
            silence = np.full((n, 1, 80, 16), -MAX_ABS_VALUE, dtype=np.float32)
            self._closer.paint(silence, mouths - np.stack([x0, y0], axis=1), [crops])
        face = _resize(crops.astype(np.float32), *self._down)[..., ::-1] / np.float32(255.0)  # RGB -> BGR, 0..1
        s = self.contract.size
        masked = face.copy()
        masked[:, s // 2 :] = 0.0
        x = np.concatenate([masked, face], axis=3).transpose(0, 3, 1, 2)
        out = self._loaded.session.run(
            None, {self.contract.mel_input: mel.astype(np.float32), self.contract.face_input: np.ascontiguousarray(x)}
        )[0]
        gen = np.clip(out.transpose(0, 2, 3, 1)[..., ::-1], 0, 1) * np.float32(255.0)  # BGR -> RGB
        gen = _resize(gen, *self._up)
        for target in targets:
            for i in range(n):
                ys, xs = max(y0[i], 0), max(x0[i], 0)
                ye, xe = min(y0[i] + b, h), min(x0[i] + b, w)
                region = target[i, ys:ye, xs:xe].astype(np.float32)
                sl = (slice(ys - y0[i], ye - y0[i]), slice(xs - x0[i], xe - x0[i]))
                m = self._feather[sl]
                target[i, ys:ye, xs:xe] = np.clip(gen[i][sl] * m + region * (1 - m) + 0.5, 0, 255).astype(np.uint8)

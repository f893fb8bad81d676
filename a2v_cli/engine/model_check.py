"""A test run of a user's Wav2Lip-style model before it renders anything.

Why: an export can load and have the right inputs yet answer with another shape; that would fail
deep inside the compositor as an IndexError after the video was started. One inference on zeros
finds it first and says so in one line (exit 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from a2v_cli.engine.sessions import ort_message
from a2v_cli.errors import InputError


def check_wav2lip_output(session: Any, mel_input: str, face_input: str, size: int, name: str) -> None:
    """InputError unless the model maps one mel window and one 6-channel face to a [1, 3, size, size] face."""
    feeds = {
        mel_input: np.zeros((1, 1, 80, 16), np.float32),
        face_input: np.zeros((1, 6, size, size), np.float32),
    }
    try:
        out = session.run(None, feeds)
    except Exception as err:
        raise InputError(
            f"model {name} fails on a test input: {ort_message(err)[:200]}", "give a Wav2Lip-style .onnx export"
        ) from err
    shape = tuple(np.asarray(out[0]).shape) if out else ()
    if shape != (1, 3, size, size):
        raise InputError(
            f"model {name} answers with shape {list(shape)}, not a face [B, 3, {size}, {size}]",
            "give a Wav2Lip-style .onnx export (its first output is the generated face)",
        )

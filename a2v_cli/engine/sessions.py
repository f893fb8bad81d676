"""One cached factory for ONNX Runtime sessions, with an explicit device choice.

`auto` tries CUDA when this onnxruntime build offers it and it really loads (the CUDA libraries
are present and a GPU answers), then the CPU. `cuda` that cannot load is an error, not a silent
fallback. onnxruntime's own log lines are kept off the user's terminal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from a2v_cli.errors import InputError, UnavailableError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class LoadedSession:
    session: Any  # onnxruntime.InferenceSession
    provider: str  # the provider the session really got, e.g. "CPUExecutionProvider"

    @property
    def device(self) -> str:
        return "cuda" if self.provider.startswith(("CUDA", "Tensorrt")) else "cpu"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - a broken install
        raise UnavailableError(
            f"onnxruntime cannot be imported ({err})", "reinstall a2v: pip install --force-reinstall a2v-cli"
        ) from err
    onnxruntime.set_default_logger_severity(4)  # fatal only: its warnings are not the user's business
    return onnxruntime


@lru_cache(maxsize=1)
def _cuda_dlls_loaded() -> bool:
    """Load the CUDA/cuDNN libraries shipped as pip packages, if any; quiet on machines without them."""
    ort = _ort()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return True
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            preload()
    except Exception:
        return False
    return True


@lru_cache(maxsize=16)
def load_session(path: str, device: str = "auto", threads: int = 0) -> LoadedSession:
    """Create (once per path/device) an InferenceSession and report the provider it really uses."""
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}", "use auto, cpu or cuda")
    if not Path(path).is_file():
        raise InputError(f"model file not found: {path}", "check the path")
    ort = _ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The renderer runs beside two ffmpeg encoders: a spinning thread pool would only steal their cores
    opts.intra_op_num_threads = threads or (2 if (os.cpu_count() or 1) >= 8 else 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    want_cuda = device in ("auto", "cuda") and _cuda_dlls_loaded()
    if device == "cuda" and not want_cuda:
        raise UnavailableError(
            "CUDA is not available to onnxruntime on this machine",
            "install onnxruntime-gpu with CUDA 12 and cuDNN 9, or use --device cpu",
        )
    providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
    try:
        try:
            session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception:
            if not (want_cuda and device == "auto"):
                raise
            session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise model_error(Path(path).name, err) from err
    provider = session.get_providers()[0]
    if device == "cuda" and not provider.startswith("CUDA"):
        raise UnavailableError("CUDA could not be initialised (no GPU or driver found)", "use --device cpu")
    return LoadedSession(session, provider)


def ort_message(err: BaseException) -> str:
    """onnxruntime's message without its "[ONNXRuntimeError] : 7 : KIND :" prefix or C++ signatures."""
    import re

    text = " ".join(str(err).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/\S+\.(?:cc|h|cpp):\d+ \S+\(.*?\) (?=[A-Z])", "", text)  # file:line Namespace::Fn(args)
    return text.strip()


def model_error(name: str, err: BaseException) -> InputError:
    """One clear line for a model file onnxruntime cannot load (exit 2)."""
    import re

    text = ort_message(err)
    ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if ir:
        return InputError(
            f"model {name} needs a newer onnxruntime (ONNX IR version {ir.group(1)}; this one reads up to "
            f"{ir.group(2)})",
            "export it with an older IR version, or upgrade onnxruntime",
        )
    if "INVALID_PROTOBUF" in str(err) or "Protobuf parsing failed" in text:
        return InputError(
            f"model {name} is not an ONNX file (it cannot be parsed)", "give a Wav2Lip-style .onnx export"
        )
    first = re.split(r"(?<=[.!])\s", text, maxsplit=1)[0]
    return InputError(f"cannot load model {name}: {first[:200]}", "check that it is a valid ONNX file")

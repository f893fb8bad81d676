"""Convert MediaPipe's Apache-2.0 face detector, face mesh and selfie segmentation from TFLite to ONNX.

Build time only: the tools (mediapipe 0.10.21, tensorflow-cpu, tf2onnx) need numpy<2 and protobuf<5, so they
live in a throwaway virtual environment, never in a2v's own dependencies. a2v itself runs the committed ONNX
files with onnxruntime (see ``a2v_cli/engine/face.py``); nothing is downloaded at run time.

    python3.11 -m venv /tmp/facebuild
    /tmp/facebuild/bin/pip install "mediapipe==0.10.21" "numpy<2" "protobuf<5" "tensorflow-cpu==2.17.*" \\
        "tf2onnx==1.17.0" "onnx==1.16.2" onnxruntime
    /tmp/facebuild/bin/python -m models.build_face_models [--check IMAGE.png ...]

Writes next to this file:

- ``mediapipe-face-detection-short-range.onnx``: BlazeFace short range, input [1,128,128,3] RGB in [-1,1],
  outputs regressors [1,896,16] and classificators [1,896,1] (logits).
- ``mediapipe-face-landmark.onnx``: the 468-point face mesh, input [1,192,192,3] RGB in [0,1], outputs
  landmarks [1,1,1,1404] (x,y,z in input pixels) and a face-presence logit [1,1,1,1].
- ``mediapipe-selfie-segmentation.onnx``: input [1,256,256,3] RGB in [0,1], output [1,256,256,1] person
  probability. tf2onnx leaves MediaPipe's custom ``Convolution2DTransposeBias`` op as an unknown node; this
  script rewrites it as Transpose -> ConvTranspose(stride 2, bias) -> Transpose, which ONNX Runtime runs.

Each ONNX file is checked against the reference: the TFLite interpreter for the detector and the mesh, and
MediaPipe's own SelfieSegmentation solution for the segmenter (the TFLite interpreter cannot run the custom
op); the maximum absolute differences are printed and go into MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPSET = 14  # HardSwish (selfie segmentation) is an ONNX op from opset 14

SOURCES = {
    "mediapipe-face-detection-short-range.onnx": "face_detection/face_detection_short_range.tflite",
    "mediapipe-face-landmark.onnx": "face_landmark/face_landmark.tflite",
    "mediapipe-selfie-segmentation.onnx": "selfie_segmentation/selfie_segmentation.tflite",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mediapipe_modules() -> Path:
    import mediapipe

    version = getattr(mediapipe, "__version__", "?")
    if version != "0.10.21":
        print(f"warning: mediapipe {version}, the model card describes 0.10.21", file=sys.stderr)
    return Path(mediapipe.__file__).parent / "modules"


def convert(tflite: Path) -> object:
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    return model_proto


def fix_transpose_conv_bias(model: object, tflite: Path) -> None:
    """Rewrite MediaPipe's custom TFL_Convolution2DTransposeBias (NHWC, OHWI weights) as standard ONNX ops."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {i.name: i for i in graph.initializer}
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "TFL_Convolution2DTransposeBias":
            continue
        x, w_name, b_name = node.input
        w = numpy_helper.to_array(inits[w_name])  # (out, kh, kw, in)
        b = numpy_helper.to_array(inits[b_name])
        kh, kw = w.shape[1], w.shape[2]
        # MediaPipe's op always upsamples by its kernel stride (2x2, padding SAME); the output shape confirms it
        stride = [2, 2]
        w_onnx = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # (in, out, kh, kw)
        name = node.name
        new_w = numpy_helper.from_array(w_onnx.astype(np.float32), f"{name}_W")
        new_b = numpy_helper.from_array(b.astype(np.float32), f"{name}_B")
        graph.initializer.extend([new_w, new_b])
        pads = [(kh - stride[0]) // 2, (kw - stride[1]) // 2, (kh - stride[0] + 1) // 2, (kw - stride[1] + 1) // 2]
        nodes = [
            helper.make_node("Transpose", [x], [f"{name}_nchw"], perm=[0, 3, 1, 2], name=f"{name}_to_nchw"),
            helper.make_node(
                "ConvTranspose", [f"{name}_nchw", new_w.name, new_b.name], [f"{name}_out_nchw"],
                kernel_shape=[kh, kw], strides=stride, pads=pads, name=f"{name}_convT",
            ),
            helper.make_node("Transpose", [f"{name}_out_nchw"], list(node.output), perm=[0, 2, 3, 1],
                             name=f"{name}_to_nhwc"),
        ]
        graph.node.remove(node)
        for offset, new in enumerate(nodes):
            graph.node.insert(index + offset, new)
    # drop the custom opset import tf2onnx added for the unknown op, and now-unused initializers
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]  # type: ignore[attr-defined]
    del model.opset_import[:]  # type: ignore[attr-defined]
    model.opset_import.extend(keep)  # type: ignore[attr-defined]
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    onnx.checker.check_model(model)


def tflite_run(tflite: Path, x: np.ndarray) -> list[np.ndarray]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(str(tflite))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def onnx_run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def load_rgb(path: Path, size: int) -> np.ndarray:
    from skimage import io, transform

    img = io.imread(str(path))[..., :3]
    return (transform.resize(img, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def check(out: Path, tflite: Path, images: list[Path]) -> float:
    """Max abs difference between the ONNX file and the reference, over random and real inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shape = sess.get_inputs()[0].shape
    size = int(shape[1])
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)]
    inputs += [load_rgb(p, size)[None].astype(np.float32) / 255 for p in images]
    worst = 0.0
    for x in inputs:
        if "detection" in out.name:
            x = x * 2 - 1
        if "selfie" in out.name:  # the reference takes uint8 pixels: give both the same quantised image
            pixels = np.clip(x[0] * 255 + 0.5, 0, 255).astype(np.uint8)
            got = [onnx_run(out, pixels[None].astype(np.float32) / 255)[0].reshape(size, size)]
            ref = [mediapipe_selfie(pixels)]
        else:
            got = onnx_run(out, x)
            ref = tflite_run(tflite, x)
        for g, r in zip(got, ref):
            worst = max(worst, float(np.abs(g.reshape(r.shape) - r).max()))
    return worst


def mediapipe_selfie(rgb: np.ndarray) -> np.ndarray:
    """MediaPipe's own selfie-segmentation result on a 256x256 image (the model's input size: no resampling)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        return seg.process(rgb).segmentation_mask.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="real images to compare outputs on")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    modules = mediapipe_modules()
    for name, rel in SOURCES.items():
        tflite = modules / rel
        model = convert(tflite)
        if "selfie" in name:
            fix_transpose_conv_bias(model, tflite)
        model.producer_name = "a2v models/build_face_models.py (tf2onnx)"  # type: ignore[attr-defined]
        dest = args.out / name
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(model.SerializeToString())  # type: ignore[attr-defined]
        tmp.replace(dest)
        diff = check(dest, tflite, args.check)
        print(f"{name}: source {rel} sha256 {sha256(tflite)}; onnx sha256 {sha256(dest)}, "
              f"{dest.stat().st_size} bytes; max abs diff vs reference {diff:.2e}")


if __name__ == "__main__":
    main()

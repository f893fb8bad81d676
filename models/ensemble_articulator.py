"""One articulator graph that averages several trained ones: ``python models/ensemble_articulator.py A.onnx B.onnx
... --out models/a2v-articulator-vN.onnx``.

Members trained on the same data from different starting points make different errors; their mean is a steadier
estimate (the usual variance reduction of an ensemble). The members share the inputs (``mel``, ``spectrum``) and must
share the spectrum prior in their metadata, so the app feeds the merged graph exactly as it fed one member.
``articulation`` is the members' mean; ``extended`` the mean of the members that have that output. Each member's
nodes and weights are kept under its own name prefix, so the merged graph still runs on onnxruntime's CPU and CUDA
providers alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8
SHARED_INPUTS = ("mel", "spectrum")
SAME_META = ("spectrum_prior", "spectrum_prior_columns")


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def prefixed(model: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """``model``'s graph with every name prefixed except the shared inputs."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)

    def name(n: str) -> str:
        return n if (n in SHARED_INPUTS or not n) else prefix + n

    for node in graph.node:
        node.name = prefix + node.name
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
    for init in graph.initializer:
        init.name = name(init.name)
    for vi in [*graph.output, *graph.value_info]:
        vi.name = name(vi.name)
    return graph


def mean_of(names: list[str], out: str, prefix: str) -> list[onnx.NodeProto]:
    """Nodes computing ``out`` = mean of ``names`` (same shape)."""
    if len(names) == 1:
        return [helper.make_node("Identity", names, [out], name=prefix + "identity")]
    total = names[0]
    nodes = []
    for k, n in enumerate(names[1:]):
        nxt = out + f"_sum{k}" if k < len(names) - 2 else out + "_sum"
        nodes.append(helper.make_node("Add", [total, n], [nxt], name=f"{prefix}add{k}"))
        total = nxt
    nodes.append(helper.make_node("Mul", [total, out + "_weight"], [out], name=prefix + "scale"))
    return nodes


def ensemble(members: list[onnx.ModelProto], names: list[str]) -> onnx.ModelProto:
    """Merge ``members`` (articulator graphs with the same inputs and prior) into one graph of their mean."""
    metas = [metadata(m) for m in members]
    for key in SAME_META:
        if len({md.get(key) for md in metas}) != 1:
            raise ValueError(f"members differ in {key}: they were not trained on the same data")
    inputs = {i.name: i for i in members[0].graph.input}
    for m in members[1:]:
        if {i.name for i in m.graph.input} != set(inputs):
            raise ValueError("members have different inputs")
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outs: dict[str, list[str]] = {"articulation": [], "extended": []}
    out_info: dict[str, onnx.ValueInfoProto] = {}
    for k, m in enumerate(members):
        g = prefixed(m, f"m{k}/")
        nodes.extend(g.node)
        inits.extend(g.initializer)
        for o in m.graph.output:
            outs[o.name].append(f"m{k}/{o.name}")
            out_info.setdefault(o.name, o)
    outputs = []
    for out, parts in outs.items():
        if not parts:
            continue
        if len(parts) > 1:
            inits.append(helper.make_tensor(out + "_weight", TensorProto.FLOAT, [], [1.0 / len(parts)]))
        nodes.extend(mean_of(parts, out, f"mean_{out}/"))
        outputs.append(out_info[out])
    graph = helper.make_graph(nodes, "a2v_articulator_ensemble", list(inputs.values()), outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="a2v models/ensemble_articulator.py")  # fmt: skip
    # the metadata of the members, the later ones (v5's extended_outputs) over the earlier ones, plus the roster
    params = sum(int(md.get("parameters", 0)) for md in metas)
    meta = {**{k: v for md in metas for k, v in md.items()}, "parameters": str(params), "members": ",".join(names),
            "extended_members": ",".join(n for n, md in zip(names, members, strict=True)
                                         if any(o.name == "extended" for o in md.graph.output))}  # fmt: skip
    for key in ("dataset", "train_seed"):
        meta.pop(key, None)
    helper.set_model_props(model, meta)
    model.doc_string = (f"a2v articulator: the mean of {len(members)} trained articulators ({', '.join(names)}), same"
                        " inputs and outputs as each. Built by models/ensemble_articulator.py; see models/TRAINING.md.")
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("members", nargs="+", type=Path, help="articulator graphs trained on the same data")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    members = [onnx.load(str(p)) for p in args.members]
    names = [p.stem.removeprefix("a2v-articulator-") for p in args.members]
    model = ensemble(members, names)
    args.out.write_bytes(model.SerializeToString())
    import onnxruntime as ort

    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"mel": rng.uniform(-4, 0, (8, 1, 80, 16)).astype(np.float32),
             "spectrum": rng.uniform(-3, 0, (8, 80)).astype(np.float32)}  # fmt: skip
    got = sess.run(None, feeds)
    want = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["articulation"], feeds)[0]
            for p in args.members]  # fmt: skip
    err = float(np.abs(got[0] - np.mean(want, axis=0)).max())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, members {', '.join(names)});"
          f" max |graph - mean of members| = {err:.2e}")
    return 0 if err < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

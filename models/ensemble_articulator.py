"""One articulator graph that averages several trained ones: ``python -m models.ensemble_articulator A.onnx B.onnx
... --out models/a2v-articulator-vN.onnx``; ``--split models/a2v-articulator-v6.onnx --out DIR`` gives its members back.

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


def split(model: onnx.ModelProto) -> list[tuple[str, onnx.ModelProto]]:
    """The members of an ``ensemble`` graph, by name, each its own graph again: the trained weights exactly (so the
    old v4 and v5, v6's members, are rebuilt from the shipped v6 without retraining). Their metadata is the
    ensemble's shared part (the spectrum prior the app feeds them with), not each member's training record."""
    meta = metadata(model)
    names = meta["members"].split(",")
    outputs = {o.name: o for o in model.graph.output}
    shared = {k: v for k, v in meta.items() if k not in ("members", "extended_members", "parameters")}
    members = []
    for k, name in enumerate(names):
        prefix = f"m{k}/"

        def own(n: str, prefix: str = prefix) -> str:
            return n.removeprefix(prefix)

        nodes = [onnx.NodeProto() for n in model.graph.node if n.name.startswith(prefix)]
        for node, src in zip(nodes, (n for n in model.graph.node if n.name.startswith(prefix)), strict=True):
            node.CopyFrom(src)
            node.name = own(node.name)
            node.input[:] = [own(n) for n in node.input]
            node.output[:] = [own(n) for n in node.output]
        inits = [onnx.TensorProto() for t in model.graph.initializer if t.name.startswith(prefix)]
        for init, src in zip(inits, (t for t in model.graph.initializer if t.name.startswith(prefix)), strict=True):
            init.CopyFrom(src)
            init.name = own(init.name)
        produced = {o for n in nodes for o in n.output}
        outs = [outputs[o] for o in outputs if o in produced]
        graph = helper.make_graph(nodes, f"a2v_articulator_{name}", list(model.graph.input), outs, inits)
        member = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                   producer_name="a2v models/ensemble_articulator.py --split")  # fmt: skip
        params = sum(int(np.prod(t.dims)) for t in inits)
        own_meta = {**shared, "parameters": str(params)}
        if "extended" not in produced:
            own_meta.pop("extended_outputs", None)
        helper.set_model_props(member, own_meta)
        member.doc_string = f"a2v articulator {name}: one member of {model.graph.name}, split out of the ensemble."
        onnx.checker.check_model(member, full_check=True)
        members.append((name, member))
    return members


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("members", nargs="*", type=Path, help="articulator graphs trained on the same data")
    ap.add_argument("--split", type=Path, metavar="ENSEMBLE",
                    help="write the members of this ensemble graph into --out (a folder) instead")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.split:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, member in split(onnx.load(str(args.split))):
            path = args.out / f"a2v-articulator-{name}.onnx"
            path.write_bytes(member.SerializeToString())
            print(f"wrote {path} ({path.stat().st_size} bytes)")
        return 0
    if not args.members:
        ap.error("give the member graphs to merge, or --split ENSEMBLE")
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

"""zoo's own ONNX -> PyTorch converter (``zoo.onnx_torch``).

An ONNX graph becomes a ``torch.nn.Module`` (:class:`OnnxModule`): initializers
become parameters (floating point) or buffers, under valid, stable attribute
names derived from their ONNX names; each node runs through the handler its op
type registered in ``converters/onnx_ops`` (one small function per op). Shape
computations run on :class:`~zoo.converters.onnx_torch.ops.core.Static` values, so while
``torch.export`` traces they are symbolic and the graph's dynamic axes (batch,
sequence) stay dynamic in the exported program.

Every op and attribute value is checked before anything is built:
:func:`check_supported` lists all unsupported nodes in one ConversionError.
:func:`export_pt2` writes the ``.pt2`` (``torch.export.save``), with the ONNX
graph's named dims as dynamic dims.

Why not onnx2torch: version 1.5 has no converter for what torch's dynamo
exporter writes (opset-18 ReduceMean with axes as an input, Reshape with
allowzero=1, GreaterOrEqual) and fails on TorchScript-exported resnet50.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from zoo import errors

CONVERTER = "zoo.onnx_torch"
MIN_OPSET = 7
_DEFAULT_DOMAINS = ("", "ai.onnx")
_CONSTANT_ATTRS = {"value", "value_float", "value_int", "value_floats", "value_ints"}


def load_onnx(path: Path) -> Any:
    """The ONNX model with external data and local functions inlined."""
    import onnx
    from onnx import inliner

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise errors.InvalidModelError(f"{path.name} is not a readable ONNX model: {str(exc)[:300]}") from exc
    return inliner.inline_local_functions(model) if model.functions else model


def model_opset(model: Any) -> int:
    return next((i.version for i in model.opset_import if i.domain in _DEFAULT_DOMAINS), 0)


def _decode(attr: Any) -> Any:
    from onnx import AttributeProto, helper, numpy_helper

    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return attr  # subgraphs (If, Loop, Scan) are refused by check_supported
    value = helper.get_attribute_value(attr)
    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if attr.type == AttributeProto.STRINGS:
        return [v.decode() for v in value]
    return value


def node_defs(model: Any, constants: dict[str, Any]) -> list[Any]:
    """Every node as a NodeDef (attributes decoded, constant inputs attached)."""
    from zoo.converters.onnx_torch.ops.core import NodeDef

    opset = model_opset(model)
    defs = []
    for i, node in enumerate(model.graph.node):
        consts = {k: constants[n] for k, n in enumerate(node.input) if n in constants}
        defs.append(NodeDef(node.op_type, node.name or f"{node.op_type}_{i}", tuple(node.input), tuple(node.output),
                            {a.name: _decode(a) for a in node.attribute}, opset, consts))
    return defs


def _unsupported(node: Any, onnx_node: Any) -> str | None:
    from onnx import AttributeProto

    from zoo.converters.onnx_torch.ops import OPS

    if onnx_node.domain not in _DEFAULT_DOMAINS:
        return f"operator domain {onnx_node.domain!r}"
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in onnx_node.attribute):
        return "subgraphs (control flow)"
    if node.op_type == "Constant":
        return None if {a.name for a in onnx_node.attribute} & _CONSTANT_ATTRS else "a sparse or string value"
    spec = OPS.get(node.op_type)
    if spec is None:
        return "no converter for this op"
    return spec.check(node) if spec.check else None


def unsupported_nodes(model: Any) -> list[dict[str, str]]:
    """Every node zoo cannot convert: op type, node name and why."""
    nodes = node_defs(model, {})
    return [{"op": d.op_type, "node": d.name, "reason": reason}
            for d, n in zip(nodes, model.graph.node) if (reason := _unsupported(d, n))]


def check_supported(model: Any, name: str) -> None:
    """Raise one ConversionError naming every unsupported node, before anything is written."""
    opset = model_opset(model)
    if opset < MIN_OPSET:
        raise errors.ConversionError(f"{CONVERTER}: {name} uses ONNX opset {opset}; the converter supports {MIN_OPSET} and later",
                                     hint="re-export the model with a newer opset, or upgrade it with onnx.version_converter")
    bad = unsupported_nodes(model)
    if bad:
        by_op: dict[str, list[str]] = {}
        for b in bad:
            by_op.setdefault(f"{b['op']} ({b['reason']})", []).append(b["node"])
        listing = "; ".join(f"{op}: {', '.join(nodes[:5])}{' ...' if len(nodes) > 5 else ''}" for op, nodes in by_op.items())
        raise errors.ConversionError(
            f"{CONVERTER} cannot convert {name} to PyTorch: {len(bad)} unsupported node(s): {listing}",
            hint="supported ops are listed in docs/onnx-torch.md; convert the source model to PyTorch directly, "
                 "or export the ONNX file without these ops", unsupported=bad)


def _attr_name(onnx_name: str, taken: set[str]) -> str:
    """A valid, stable attribute name for an initializer (``layer1.0.conv1.weight`` -> ``layer1_0_conv1_weight``)."""
    import torch

    base = re.sub(r"\W", "_", onnx_name).strip("_") or "tensor"
    base = f"t_{base}" if base[0].isdigit() else base
    name, i = base, 1
    while name in taken or hasattr(torch.nn.Module, name):
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


ONNX_OUTPUT = "zoo.onnx_output"  # the key of each exported node's custom metadata: the ONNX output it computes


class NodeError(RuntimeError):
    """A handler failed on a node; names the node so the error points at the graph."""


def _constants(model: Any) -> dict[str, Any]:
    """Initializers and Constant node outputs, as numpy arrays."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            values[node.output[0]] = _constant_value(node)
    return values


def _constant_value(node: Any) -> Any:
    import numpy as np

    attrs = {a.name: _decode(a) for a in node.attribute}
    if "value" in attrs:
        return attrs["value"]
    if "value_float" in attrs:
        return np.array(attrs["value_float"], np.float32)
    if "value_int" in attrs:
        return np.array(attrs["value_int"], np.int64)
    if "value_floats" in attrs:
        return np.array(attrs["value_floats"], np.float32)
    if "value_ints" in attrs:
        return np.array(attrs["value_ints"], np.int64)
    raise errors.ConversionError(f"{CONVERTER}: Constant node {node.name!r} holds a {', '.join(attrs)} value, which is not supported")


def _module_class() -> type:
    import torch

    from zoo.converters.onnx_torch.ops import OPS
    from zoo.converters.onnx_torch.ops.core import Static, static_from_array, tensor

    class OnnxModule(torch.nn.Module):
        """An ONNX graph as a torch module: ``forward(*inputs)`` returns a tuple of the graph's outputs."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            constants = _constants(model)
            self.input_names = [i.name for i in model.graph.input if i.name not in constants]
            self.output_names = [o.name for o in model.graph.output]
            self.tensor_names: dict[str, str] = {}  # ONNX name -> attribute name
            self.statics: dict[str, Any] = {}
            taken: set[str] = set()
            for name, array in constants.items():
                static = static_from_array(array)
                if static is not None:
                    self.statics[name] = static
                    continue
                value = torch.from_numpy(array.copy())
                attr = _attr_name(name, taken)
                if value.is_floating_point():
                    self.register_parameter(attr, torch.nn.Parameter(value, requires_grad=False))
                else:
                    self.register_buffer(attr, value)
                self.tensor_names[name] = attr
            nodes = [n for n in node_defs(model, constants) if n.op_type != "Constant"]
            self.nodes = topological_order(nodes, set(self.input_names) | set(constants))
            self.release = _release_plan(self.nodes, set(self.output_names))

        def forward(self, *inputs: Any) -> tuple:
            from torch.fx.traceback import annotate

            env: dict[str, Any] = dict(self.statics)
            env.update({name: getattr(self, attr) for name, attr in self.tensor_names.items()})
            env.update(zip(self.input_names, inputs))
            for node, dead in zip(self.nodes, self.release):
                args = [env[n] if n else None for n in node.inputs]
                try:
                    # each traced op records the ONNX output it computes (node.meta["custom"]): where it diverges
                    with annotate({ONNX_OUTPUT: next((o for o in node.outputs if o), node.name)}):
                        out = OPS[node.op_type].fn(node, *args)
                except NodeError:
                    raise
                except Exception as exc:  # noqa: BLE001 - name the node whatever the handler raised
                    raise NodeError(f"node {node.name!r} ({node.op_type}): {type(exc).__name__}: {str(exc)[:400]}") from exc
                outs = out if isinstance(out, tuple) else (out,)
                env.update((n, v) for n, v in zip(node.outputs, outs) if n)
                for n in dead:
                    env.pop(n, None)
            return tuple(tensor(env[n]) if isinstance(env[n], Static) else env[n] for n in self.output_names)

    return OnnxModule


def topological_order(nodes: list[Any], available: set[str]) -> list[Any]:
    """The nodes in an order that runs: ONNX requires one, but some tools (the fp16 converter) append nodes.
    Kahn's algorithm taking the lowest index first, so a sorted graph keeps its order."""
    import heapq

    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}
    waiting = [{p for x in n.inputs if x and x not in available and (p := producer.get(x)) is not None and p != i}
               for i, n in enumerate(nodes)]
    unknown = sorted({x for n in nodes for x in n.inputs if x and x not in available and x not in producer})
    consumers: dict[int, list[int]] = {}
    for i, deps in enumerate(waiting):
        for d in deps:
            consumers.setdefault(d, []).append(i)
    queue = [i for i, deps in enumerate(waiting) if not deps]
    order = []
    while queue:
        i = heapq.heappop(queue)
        order.append(i)
        for c in consumers.get(i, []):
            waiting[c].discard(i)
            if not waiting[c]:
                heapq.heappush(queue, c)
    if unknown or len(order) != len(nodes):
        what = f"reads values nothing produces ({', '.join(unknown[:5])})" if unknown else "has a cycle"
        raise errors.ConversionError(f"{CONVERTER}: the graph {what}", hint="check the file with onnx.checker.check_model")
    return [nodes[i] for i in order]


def _release_plan(nodes: list[Any], keep: set[str]) -> list[list[str]]:
    """Per node, the values no later node reads: dropped after it runs, to bound memory."""
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for n in node.inputs:
            last[n] = i
    for i, node in enumerate(nodes):  # outputs nothing reads go right after they are made
        for n in node.outputs:
            last.setdefault(n, i)
    plan: list[list[str]] = [[] for _ in nodes]
    for name, i in last.items():
        if name and name not in keep:
            plan[i].append(name)
    return plan


def build_module(path: Path) -> Any:
    """The ONNX file as an ``OnnxModule`` (eval mode), or a ConversionError listing what is unsupported."""
    import zoo.converters.onnx_torch.ops  # noqa: F401 - fills the registry

    model = load_onnx(path)
    check_supported(model, path.name)
    return _module_class()(model).eval()


def _dynamic_shapes(spec: list[dict[str, Any]]) -> tuple:
    """Every symbolic or unknown dim of every input is dynamic. torch.export.Dim.DYNAMIC lets the
    tracer narrow a range the graph implies (a BERT's sequence <= its position table), and
    :func:`_check_dynamic` then fails the conversion if a dim was fixed instead."""
    import torch

    return (tuple({i: torch.export.Dim.DYNAMIC for i, d in enumerate(s["shape"]) if not isinstance(d, int)}
                  for s in spec),)


def _check_dynamic(program: Any, spec: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The exported input shapes (symbols as strings); a ConversionError if a dynamic dim was specialised."""
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes: dict[str, list[Any]] = {}
    for item, name in zip(spec, names):
        dims = list(placeholders[name].meta["val"].shape)
        for axis, declared in enumerate(item["shape"]):
            if not isinstance(declared, int) and isinstance(dims[axis], int):
                raise errors.ConversionError(
                    f"{CONVERTER}: dim {axis} ({declared or 'unnamed'}) of input {item['name']!r} is dynamic in the ONNX "
                    f"graph but the graph's computation fixes it to {dims[axis]} when traced",
                    hint="the model only works at that size; export the ONNX file with a static shape")
        shapes[item["name"]] = [d if isinstance(d, int) else str(d) for d in dims]
    return shapes


def export_pt2(onnx_path: Path, out_path: Path) -> dict[str, Any]:
    """Convert ``onnx_path`` and write the ``torch.export`` program to ``out_path``; return what was done."""
    import time

    import onnx
    import torch

    from zoo.converters.loaders.pt2_archive import save_program
    from zoo.converters.parity.inputs import file_input_sets, onnx_signature

    start = time.perf_counter()
    module = build_module(onnx_path)
    spec, _, metadata = onnx_signature(onnx_path)
    graph = onnx.load(str(onnx_path), load_external_data=False)  # its graph says what inputs fit (table ranges, sizes)
    feeds = file_input_sets(spec, metadata, model=graph)[0].feeds
    example = tuple(torch.from_numpy(feeds[s["name"]]) for s in spec)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.fx.traceback.preserve_node_meta():  # keeps forward's ONNX_OUTPUT annotations
                program = torch.export.export(module, example, dynamic_shapes=_dynamic_shapes(spec))
    except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds
        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, NodeError):
            cause = cause.__cause__
        raise errors.ConversionError(f"{CONVERTER}: torch.export could not trace {onnx_path.name}: "
                                     f"{type(cause).__name__}: {str(cause)[:500]}",
                                     hint="report the model with this message; the ONNX file itself is unchanged") from exc
    shapes = _check_dynamic(program, spec)
    signature = {"inputs": spec, "outputs": module.output_names, "source": "onnx", "converter": CONVERTER,
                 "metadata": {k: v for k, v in metadata.items() if k.startswith("zoo.")}}
    try:
        save_program(program, out_path, signature)
    except Exception as exc:  # noqa: BLE001 - torch.export.save overflows on some programs, among others
        if errors.storage_cause(exc) is not None:
            raise
        raise errors.ConversionError(f"{CONVERTER}: torch.export.save could not write {out_path.name}: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}",
                                     hint="the program converted but could not be saved; convert to onnx instead, "
                                          "or report the model with this message") from exc
    ops = sorted({n.op_type for n in module.nodes})
    return {"converter": CONVERTER, "torch": torch.__version__, "onnx_opset": module.nodes[0].opset if module.nodes else None,
            "ops": ops, "parameters": len(module.tensor_names), "exported_shapes": shapes,
            "range_constraints": {str(k): str(v) for k, v in program.range_constraints.items()},
            "seconds": round(time.perf_counter() - start, 3)}

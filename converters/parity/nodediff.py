"""Per-node comparison of two artifacts of one model on the same inputs: every intermediate tensor the two
share by name (ONNX node outputs through onnxruntime with each one exposed as a graph output; ``.tflite``
tensors through the LiteRT interpreter with all tensors preserved; a ``.pt2`` zoo compiled from ONNX through
``torch.fx.Interpreter``, named by the ONNX output each op records), in the first artifact's graph order.

What ``zoo diff A B`` prints, and what locates the first diverging node of an ONNX -> fp16/int8 edge or a
``.tflite`` -> quantised ``.tflite`` edge when its parity fails. Names match because those converters keep
them: onnxruntime's fp16 and dynamic-int8 converters give the node that replaces one the same output name,
and ai-edge-quantizer keeps every activation tensor's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zoo import errors

FLOAT_KINDS = "fc"  # numpy dtype kinds compared numerically: float and complex; integers must be equal


class Value(NamedTuple):
    """One intermediate tensor of a run: the node that wrote it, its op, its name, its value, and the names of
    the node's inputs (to tell where an error grows: a node's own error against its inputs')."""

    node: str
    op: str
    tensor: str
    value: np.ndarray
    inputs: tuple[str, ...] = ()


def onnx_values(path: Path, feeds: dict[str, np.ndarray]) -> list[Value]:
    """Every node output (node name, op type, tensor name, value, the node's inputs), in graph order."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    order: list[tuple[str, str, str, tuple[str, ...]]] = []
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if not out:
                continue
            order.append((node.name or out, node.op_type, out, tuple(i for i in node.input if i)))
            if out not in existing:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                existing.add(out)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written, names kept
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name: _fit(feeds, i.name) for i in session.get_inputs()}
    values = dict(zip(names, session.run(None, inputs)))
    return [Value(node, op, out, np.asarray(values[out]), ins) for node, op, out, ins in order if out in values]


def tflite_values(path: Path, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[Value]:
    """Every tensor an operator writes (named by itself: LiteRT ops have no names), in execution order."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise errors.MissingDependencyError("ai-edge-litert is needed to inspect .tflite tensors",
                                            hint="pip install 'zoo-hub[litert]'") from exc
    from ai_edge_litert.interpreter import OpResolverType

    # no XNNPACK delegate: it would fuse the graph into DELEGATE ops whose inner tensors cannot be read
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = interpreter.get_input_details()
    for i, detail in enumerate(details):
        value = feeds[input_names[i]]
        if value.dtype == np.int64 and detail["dtype"] == np.int32:
            value = value.astype(np.int32)
        if tuple(detail["shape"]) != value.shape:
            interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for i, detail in enumerate(details):
        value = feeds[input_names[i]]
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    interpreter.invoke()
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only way to list ops in execution order
        for index in op["outputs"]:
            if index < 0:
                continue
            try:
                value = interpreter.get_tensor(index)
            except ValueError:
                continue
            name = names.get(index, str(index))
            ins = tuple(names.get(i, str(i)) for i in op["inputs"] if i >= 0)
            out.append(Value(name, op["op_name"], name, np.array(value), ins))
    return out


def pt2_onnx_values(path: Path, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[Any]:
    """The ONNX tensors a ``.pt2`` made by zoo's ONNX -> PyTorch compiler computes, as ``nodediff.Value`` rows named
    by the ONNX output each traced op records (``onnx_torch.module.ONNX_OUTPUT``): the last op of each ONNX node
    holds its output. A program without those records gives none."""
    import torch

    from zoo.converters.loaders.pt2_archive import load_program
    from zoo.converters.onnx_torch.module import ONNX_OUTPUT
    from zoo.converters.parity.runners import torch_inputs

    graph_module = load_program(path)[0].module()
    last: dict[str, Any] = {}
    for node in graph_module.graph.nodes:
        name = (node.meta.get("custom") or {}).get(ONNX_OUTPUT)
        if node.op == "call_function" and name:
            last[name] = node
    wanted = {node: name for name, node in last.items()}
    values: list[Any] = []

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n in wanted and isinstance(out, torch.Tensor):
                values.append(Value(n.name, str(n.target), wanted[n], out.detach().cpu().numpy().copy()))
            return out

    with torch.no_grad():
        Recorder(graph_module).run(*torch_inputs(feeds, input_names))
    return values


def _fit(feeds: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in feeds:
        raise errors.UsageError(f"no input named {name!r} (have {', '.join(feeds)})")
    return feeds[name]


def values_of(path: Path, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[Value]:
    if path.suffix == ".onnx":
        return onnx_values(path, feeds)
    if path.suffix == ".tflite":
        return tflite_values(path, feeds, input_names)
    if path.suffix == ".pt2":  # zoo's ONNX -> PyTorch program: its values by the ONNX outputs they compute
        return pt2_onnx_values(path, feeds, input_names)
    raise errors.UnsupportedFormatError(f"zoo diff compares .onnx, .tflite and .pt2 artifacts, not {path.name}",
                                        hint="pull the formats to compare as onnx/onnx-fp16/onnx-int8, tflite/tflite-int8/"
                                             "tflite-fp16, or onnx and the pt2 made from it")


def _pairs(a: list[Value], b: list[Value]):
    """(a's value record, b's value) for each tensor both hold by name with the same shape, in a's order."""
    other = {v.tensor: v.value for v in b}
    for v in a:
        theirs = other.get(v.tensor)
        if theirs is not None and theirs.shape == v.value.shape and v.value.size:
            yield v, theirs


def _row(v: Value, theirs: np.ndarray) -> dict[str, Any]:
    value = v.value
    if value.dtype.kind in FLOAT_KINDS or theirs.dtype.kind in FLOAT_KINDS:
        x, y = value.astype(np.float64), theirs.astype(np.float64)
        finite = np.isfinite(x) & np.isfinite(y)
        diff = np.abs(x[finite] - y[finite])
        max_abs = float(diff.max()) if diff.size else 0.0
        if not bool(np.all((x == y) | finite)):  # NaN/inf where the other has a number
            max_abs = float("inf")
        scale = float(np.abs(x[finite]).max()) if finite.any() else 0.0
    else:
        max_abs = float(np.abs(value.astype(np.int64) - theirs.astype(np.int64)).max())
        scale = float(np.abs(value.astype(np.int64)).max())
    return {"node": v.node, "op_type": v.op, "tensor": v.tensor, "shape": list(value.shape), "max_abs_diff": max_abs,
            "max_rel_diff": max_abs / max(scale, 1e-12) if max_abs else 0.0, "scale": scale}


NOISE = 1e-6  # float32 rounding: a difference within NOISE * max(1, max|a|) is no error (a LayerNorm mean near 0)


def compare(a: list[Value], b: list[Value]) -> list[dict[str, Any]]:
    """One row per tensor both sides hold (by name, same shape), in ``a``'s order: the largest absolute and
    relative error (``max|a-b| / max|a|``), and how much of it the node adds: ``growth``, its relative error
    less the largest of its inputs' (``input_rel_diff``; a weight or an unmatched input counts 0, so a node
    that quantises its weights owns the error it makes). A difference at float32 rounding (``NOISE``) counts 0
    there: a tensor of tiny values (a mean near zero) would otherwise show a large relative error of nothing.
    Integer tensors compare exactly."""
    rows, rel = [], {}
    for v, theirs in _pairs(a, b):
        row = _row(v, theirs)
        own = 0.0 if row["max_abs_diff"] <= NOISE * max(1.0, row["scale"]) else row["max_rel_diff"]
        before = max((rel[t] for t in v.inputs if t in rel), default=0.0)
        row["input_rel_diff"] = before
        row["growth"] = own - before if np.isfinite(own) else float("inf")
        rel[v.tensor] = own
        rows.append(row)
    return rows


def grows_most(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row where the relative error grows most over its inputs' (the first of equals), with its index."""
    if not rows:
        return None
    i = max(range(len(rows)), key=lambda k: (rows[k]["growth"], -k))
    return {**rows[i], "index": i}


def label(tensor: str, node: str | None = None) -> str:
    """A readable name for a tensor: litert-torch's module-path names without their package qualifiers and root
    (``YolosLayer_1/YolosAttention_attention/...;8``), the first of a fused op's names; others: the node's name."""
    first = tensor.split(";;")[0]
    segments = first.split("/")
    if len(segments) < 2 or "." not in segments[0]:  # not a module path (an ONNX name starts with "/")
        return node or tensor
    return "/".join(re.sub(r"^(?:[a-z_]\w*\.)+", "", s) for s in segments[1:])  # the package path, not the attr


def first_diverging(a: list[Value], b: list[Value], atol: float, rtol: float,
                    scaled: bool = True) -> tuple[dict[str, Any] | None, int]:
    """The first tensor (``a``'s graph order) where some element leaves parity's rule, ``|b - a| <= atol_eff +
    rtol * |a|`` with ``atol_eff = atol * max(1, max|a|)`` when ``scaled``; and how many tensors were compared."""
    count = 0
    for v, theirs in _pairs(a, b):
        count += 1
        x, y = v.value.astype(np.float64), theirs.astype(np.float64)
        scale = float(np.abs(x[np.isfinite(x)]).max(initial=0.0))
        allowed = atol * (max(1.0, scale) if scaled else 1.0) + rtol * np.abs(x)
        ok = (np.abs(x - y) <= allowed) | (x == y)
        if not bool(np.all(ok)):
            row = _row(v, theirs)
            row["elements_out"] = int((~ok).sum())
            row["index"] = count - 1
            return row, count
    return None, count


def locate_between(a: Path, b: Path, feeds: dict[str, np.ndarray], input_names: list[str], *, atol: float,
                   rtol: float, edge: str, scaled: bool = True) -> dict[str, Any]:
    """The first node of ``b`` (the edge's output) whose tensor leaves tolerance against ``a`` (its input), and
    where the relative error grows most (``grows_most``) and is largest (``worst``) over the matched tensors:
    a task check (detections, masks, CTC ids) can fail while every tensor stays within the elementwise rule."""
    ran_a, ran_b = values_of(a, feeds, input_names), values_of(b, feeds, input_names)
    found, compared = first_diverging(ran_a, ran_b, atol, rtol, scaled)
    rows = compare(ran_a, ran_b)
    keep = ("node", "op_type", "tensor", "max_abs_diff", "max_rel_diff", "input_rel_diff", "growth", "index")
    growth = grows_most(rows)
    extra: dict[str, Any] = {"compared": len(rows)}
    if growth is not None:
        worst = max(range(len(rows)), key=lambda k: (rows[k]["input_rel_diff"] + rows[k]["growth"], -k))
        extra["grows_most"] = {**{k: growth[k] for k in keep}, "label": label(growth["tensor"], growth["node"])}
        extra["worst"] = {**{k: rows[worst][k] for k in keep if k != "index"}, "index": worst,
                          "label": label(rows[worst]["tensor"], rows[worst]["node"])}
    if found is None:
        return {"edge": edge, "node": None, **extra,
                "note": f"every one of {compared} matched intermediate tensors is within the elementwise tolerance; the "
                        "difference shows only in the final outputs or the task's own check"
                        + ("; grows_most names where the error grows most" if growth is not None else "")}
    return {"edge": edge, **found, "label": label(found["tensor"], found["node"]), **extra, "what": "values differ"}

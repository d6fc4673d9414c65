"""Per-node comparison of two artifacts of one model on the same inputs: every intermediate tensor the two
share by name (ONNX node outputs through onnxruntime with each one exposed as a graph output; ``.tflite``
tensors through the LiteRT interpreter with all tensors preserved), in the first artifact's graph order.

What ``zoo diff A B`` prints, and what locates the first diverging node of an ONNX -> fp16/int8 edge or a
``.tflite`` -> quantised ``.tflite`` edge when its parity fails. Names match because those converters keep
them: onnxruntime's fp16 and dynamic-int8 converters give the node that replaces one the same output name,
and ai-edge-quantizer keeps every activation tensor's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo import errors

FLOAT_KINDS = "fc"  # numpy dtype kinds compared numerically: float and complex; integers must be equal


def onnx_values(path: Path, feeds: dict[str, np.ndarray]) -> list[tuple[str, str, str, np.ndarray]]:
    """(node name, op type, tensor name, value) of every node output, in graph order."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    order: list[tuple[str, str, str]] = []
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if not out:
                continue
            order.append((node.name or out, node.op_type, out))
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
    return [(node, op, out, np.asarray(values[out])) for node, op, out in order if out in values]


def tflite_values(path: Path, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[tuple[str, str, str, np.ndarray]]:
    """(tensor name, op type, tensor name, value) of every tensor an operator writes, in execution order."""
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
            out.append((names.get(index, str(index)), op["op_name"], names.get(index, str(index)), np.array(value)))
    return out


def _fit(feeds: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in feeds:
        raise errors.UsageError(f"no input named {name!r} (have {', '.join(feeds)})")
    return feeds[name]


def values_of(path: Path, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[tuple[str, str, str, np.ndarray]]:
    if path.suffix == ".onnx":
        return onnx_values(path, feeds)
    if path.suffix == ".tflite":
        return tflite_values(path, feeds, input_names)
    raise errors.UnsupportedFormatError(f"zoo diff compares .onnx and .tflite artifacts, not {path.name}",
                                        hint="pull the formats to compare as onnx/onnx-fp16/onnx-int8 or tflite/tflite-int8/tflite-fp16")


def _pairs(a: list[tuple[str, str, str, np.ndarray]], b: list[tuple[str, str, str, np.ndarray]]):
    """(node, op, tensor, a's value, b's value) for each tensor both hold by name with the same shape, in a's order."""
    other = {tensor: value for _, _, tensor, value in b}
    for node, op, tensor, value in a:
        theirs = other.get(tensor)
        if theirs is not None and theirs.shape == value.shape and value.size:
            yield node, op, tensor, value, theirs


def _row(node: str, op: str, tensor: str, value: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
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
    return {"node": node, "op_type": op, "tensor": tensor, "shape": list(value.shape), "max_abs_diff": max_abs,
            "max_rel_diff": max_abs / max(scale, 1e-12) if max_abs else 0.0, "scale": scale}


def compare(a: list[tuple[str, str, str, np.ndarray]], b: list[tuple[str, str, str, np.ndarray]]) -> list[dict[str, Any]]:
    """One row per tensor both sides hold (by name, same shape), in ``a``'s order: the largest absolute and
    relative error (``max|a-b| / max|a|``). Integer tensors compare exactly."""
    return [_row(*pair) for pair in _pairs(a, b)]


def first_diverging(a: list[tuple[str, str, str, np.ndarray]], b: list[tuple[str, str, str, np.ndarray]], atol: float,
                    rtol: float, scaled: bool = True) -> tuple[dict[str, Any] | None, int]:
    """The first tensor (``a``'s graph order) where some element leaves parity's rule, ``|b - a| <= atol_eff +
    rtol * |a|`` with ``atol_eff = atol * max(1, max|a|)`` when ``scaled``; and how many tensors were compared."""
    count = 0
    for node, op, tensor, value, theirs in _pairs(a, b):
        count += 1
        x, y = value.astype(np.float64), theirs.astype(np.float64)
        scale = float(np.abs(x[np.isfinite(x)]).max(initial=0.0))
        allowed = atol * (max(1.0, scale) if scaled else 1.0) + rtol * np.abs(x)
        ok = (np.abs(x - y) <= allowed) | (x == y)
        if not bool(np.all(ok)):
            row = _row(node, op, tensor, value, theirs)
            row["elements_out"] = int((~ok).sum())
            return row, count
    return None, count


def locate_between(a: Path, b: Path, feeds: dict[str, np.ndarray], input_names: list[str], *, atol: float,
                   rtol: float, edge: str, scaled: bool = True) -> dict[str, Any]:
    """The first node of ``b`` (the edge's output) whose tensor leaves tolerance against ``a`` (its input)."""
    found, compared = first_diverging(values_of(a, feeds, input_names), values_of(b, feeds, input_names), atol, rtol, scaled)
    if found is None:
        return {"edge": edge, "node": None, "compared": compared,
                "note": f"every one of {compared} matched intermediate tensors is within tolerance; the difference "
                        "appears only in the final outputs"}
    return {"edge": edge, **found, "compared": compared, "what": "values differ"}

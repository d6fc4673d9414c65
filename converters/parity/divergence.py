"""Where a torch -> ONNX conversion goes wrong: the first module, in execution
order, whose output differs between the PyTorch model and the ONNX graph.

The dynamo exporter records each ONNX node's module path
(``pkg.torch.onnx.name_scopes``); the TorchScript exporter encodes it in node
names (``/layer1/layer1.0/conv1/Conv``). zoo exposes the last node of every
module as an extra graph output, records every leaf module's output in
PyTorch with forward hooks, and compares them in the order PyTorch ran them.
Modules that left no node of their own (a BatchNorm folded into its Conv) are
compared at the node that carries them.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np


def _module_of(node: Any) -> str | None:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return scopes[-2] if len(scopes) >= 2 and scopes[-2] else None
    parts = node.name.split("/")
    if not node.name.startswith("/") or len(parts) < 3:
        return None
    # TorchScript scopes: "/layer4/layer4.0/act1/Relu" -> layer4.0.act1 (a segment repeats its parent's path,
    # or names a child of it)
    path = ""
    for segment in parts[1:-1]:
        path = segment if not path or segment.startswith(path + ".") else f"{path}.{segment}"
    return path or None


def torch_outputs(tm: Any, feeds: dict[str, np.ndarray], strip: bool = True) -> list[tuple[str, str, np.ndarray]]:
    """(module path, module type, output) of every leaf module, in the order PyTorch ran them; ``strip``: paths
    without the wrapper's ``inner.`` (as exporters name them), else as ``tm.module`` names them."""
    import torch

    from zoo.converters.parity.runners import torch_inputs

    inner = tm.module
    records: list[tuple[str, str, np.ndarray]] = []
    seen: set[str] = set()
    handles = []
    prefix_strip = "inner." if strip and hasattr(inner, "inner") else ""

    def hook_for(name: str):
        def hook(module: Any, _inputs: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if name not in seen and isinstance(tensor, torch.Tensor):
                seen.add(name)
                # copy: an in-place op later in the network (ReLU(inplace=True)) would rewrite a shared buffer
                records.append((name.removeprefix(prefix_strip), type(module).__name__, tensor.detach().cpu().numpy().copy()))
        return hook

    for name, module in inner.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            inner(*torch_inputs(feeds, tm.input_names))
    finally:
        for h in handles:
            h.remove()
    return records


def locate_divergence(tm: Any, onnx_path: Path, feeds: dict[str, np.ndarray], *, atol: float = 1e-4,
                      rtol: float = 1e-4) -> dict[str, Any] | None:
    """The first diverging module, or None when none can be found."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    last_node: dict[str, Any] = {}
    for node in model.graph.node:
        module = _module_of(node)
        if module and node.output:
            last_node[module] = node
    torch_records = torch_outputs(tm, feeds)
    wanted = torch_records_with_nodes(torch_records, last_node)
    if not wanted:
        return None
    existing = {o.name for o in model.graph.output}
    for _, _, _, node in wanted:
        if node.output[0] not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.output[0]))
            existing.add(node.output[0])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})))
    return first_off(torch_records, last_node, lambda node: values.get(node.output[0]), atol, rtol, _finding)


def first_off(records: list[tuple[str, str, np.ndarray]], last_node: dict[str, Any], value_of: Any, atol: float,
              rtol: float, finding: Any, shape_differs: bool = True) -> dict[str, Any] | None:
    """The first module (PyTorch's order) whose output leaves tolerance on the other side: ``last_node`` maps a
    module path to the other side's node carrying it, ``value_of(node)`` gives that node's value (None: not
    read), ``finding(module, type, node, what, max_abs)`` makes the report. ``shape_differs``: a shape
    mismatch is itself a finding (else the module is skipped: a layout the other side keeps differently)."""
    for name, kind, ref, node in torch_records_with_nodes(records, last_node):
        got = value_of(node)
        if got is None:
            continue
        if got.shape != ref.shape:
            if shape_differs:
                return finding(name, kind, node, f"shape {tuple(got.shape)} vs {tuple(ref.shape)}", None)
            continue
        diff = _diff(got, ref, atol, rtol)
        if diff is None:
            continue
        # A module that left no node of its own (a BatchNorm the TorchScript exporter folded into the Conv
        # before it) is carried by this node: its output is what the node's output must match.
        folded = _folded_after(records, name, last_node)
        if any(r.shape == got.shape and _diff(got, r, atol, rtol) is None for r in folded):
            continue
        return finding(name, kind, node, "values differ", diff)
    return None


def torch_records_with_nodes(records: list[tuple[str, str, np.ndarray]], last_node: dict[str, Any]) -> list[tuple]:
    return [(name, kind, value, last_node[name]) for name, kind, value in records if name in last_node]


def _folded_after(records: list[tuple[str, str, np.ndarray]], name: str, last_node: dict[str, Any]) -> list[np.ndarray]:
    """Outputs of the modules that ran right after ``name`` and have no ONNX node of their own."""
    index = next(i for i, (n, _, _) in enumerate(records) if n == name)
    out = []
    for later, _, value in records[index + 1:]:
        if later in last_node:
            break
        out.append(value)
    return out


def _diff(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> float | None:
    """The max abs difference when it is over tolerance, else None."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    return None if np.all(diff <= atol * scale + rtol * np.abs(ref)) else float(diff.max())


def _finding(module: str, kind: str, node: Any, what: str, max_abs: float | None) -> dict[str, Any]:
    return {"edge": "torch->onnx", "module": module, "module_type": kind, "onnx_node": node.name, "op_type": node.op_type,
            "what": what, "max_abs_diff": max_abs}

"""Where a PyTorch -> ``.pt2`` or PyTorch -> ``.tflite`` (litert-torch) conversion goes wrong: the first module,
in the order PyTorch ran them, whose output differs between the source model (forward hooks, as ``divergence``
does for ONNX) and the converted file's intermediate tensors on the same inputs; and where an ONNX -> ``.pt2``
conversion (zoo's own compiler) does: the first ONNX node whose output differs in the program.

- ``.pt2``: the ExportedProgram's graph is run node by node (``torch.fx.Interpreter``); ``torch.export`` records
  each node's module path in ``nn_module_stack``, so the last node of every module carries its output.
- ``.tflite`` from litert-torch: the LiteRT interpreter keeps every tensor (as ``nodediff`` reads them), and
  litert-torch names each tensor by the module path that wrote it (``pkg.Model/pkg.Sequential_inner/
  pkg.Conv2d_0;``; a fused op lists each module it absorbed, the last one first). Convolutions run channels-last
  inside the file, so a tensor is compared with the module's output as it is or moved to channels-last.
- ONNX -> ``.pt2``: the compiler records, on every op it traces, the ONNX output it computes
  (``node.meta["custom"]``); those are compared with onnxruntime's node outputs (``nodediff``), by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.converters.parity.divergence import first_off, torch_outputs


def locate_pt2(tm: Any, path: Path, feeds: dict[str, np.ndarray], input_names: list[str], *, atol: float,
               rtol: float) -> dict[str, Any] | None:
    """The first module whose output leaves tolerance in the ``.pt2`` program, or None when none does."""
    import torch

    from zoo.converters.loaders.pt2_archive import load_program
    from zoo.converters.parity.runners import torch_inputs

    graph_module = load_program(path)[0].module()  # refuses archives that would unpickle or run code
    last_node: dict[str, Any] = {}
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if node.op == "call_function" and stack:
            last_node[list(stack.values())[-1][0]] = node
    wanted = set(last_node.values())
    values: dict[Any, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            tensor = out[0] if isinstance(out, (tuple, list)) and out else out
            if n in wanted and isinstance(tensor, torch.Tensor):
                values[n] = tensor.detach().cpu().numpy().copy()
            return out

    with torch.no_grad():
        Recorder(graph_module).run(*torch_inputs(feeds, input_names))
    records = torch_outputs(tm, feeds, strip=False)  # the program's paths are tm.module's own ("inner.encoder...")

    def finding(module: str, kind: str, node: Any, what: str, diff: float | None) -> dict[str, Any]:
        return {"edge": "torch->pt2", "module": module.removeprefix("inner."), "module_type": kind, "node": node.name,
                "op_type": str(node.target), "what": what, "max_abs_diff": diff}

    return first_off(records, last_node, values.get, atol, rtol, finding)


def locate_onnx_pt2(onnx_path: Path, path: Path, feeds: dict[str, np.ndarray], input_names: list[str], *,
                    atol: float, rtol: float, scaled: bool = True) -> dict[str, Any]:
    """The first ONNX node whose output leaves tolerance in the ``.pt2`` zoo compiled from it, and where the
    relative error grows most (``nodediff``'s rows, in the ONNX graph's order)."""
    from zoo.converters.parity.nodediff import compare, first_diverging, grows_most, onnx_values, pt2_onnx_values

    ours = pt2_onnx_values(path, feeds, input_names)
    if not ours:
        return {"edge": "onnx->pt2", "node": None, "located": False,
                "note": f"{path.name} records no ONNX node names (a .pt2 zoo's ONNX -> PyTorch compiler made before "
                        "it recorded them): only the final outputs were compared"}
    theirs = onnx_values(onnx_path, feeds)
    found, _ = first_diverging(theirs, ours, atol, rtol, scaled)
    rows = compare(theirs, ours)
    grows = grows_most(rows)
    out: dict[str, Any] = {"edge": "onnx->pt2", "compared": len(rows), "node": None, **(found or {})}
    if grows is not None:
        out["grows_most"] = {k: grows[k] for k in ("node", "op_type", "tensor", "max_rel_diff", "input_rel_diff",
                                                   "growth", "index")}
    if found is None:
        out["note"] = f"every one of {len(rows)} matched ONNX node outputs is within tolerance in the .pt2 program"
    else:
        out["what"] = "values differ"
    return out


def litert_modules(tensor_name: str, known: dict[str, list[str]]) -> list[str]:
    """The module paths a litert-torch tensor name lists (the module that wrote it first), each a real path of
    the model. A segment ``pkg.Class_attr`` names child ``attr`` (which may hold ``_`` and ``.``); a ModuleList
    or ModuleDict leaves no segment of its own (``YolosEncoder_encoder/YolosLayer_1`` is ``encoder.layer.1``).
    ``known``: every module path by its last component (``module_index``)."""
    found = []
    for part in tensor_name.split(";"):
        segments = part.split("/")
        if len(segments) < 2:
            continue
        path = ""
        for segment in segments[1:]:  # the first names the root module's class
            cuts = [i for i, c in enumerate(segment) if c == "_"]
            path = next((p for i in cuts if (p := _child(path, segment[i + 1:], known))), "")
            if not path:
                break
        if path and path not in found:
            found.append(path)
    return found


def module_index(names: list[str]) -> dict[str, list[str]]:
    """Every module path and its parents', by last component."""
    index: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            full = ".".join(parts[:i])
            if full not in index.setdefault(parts[i - 1], []):
                index[parts[i - 1]].append(full)
    return index


def _child(path: str, attr: str, known: dict[str, list[str]]) -> str | None:
    """``path``'s child ``attr``, directly or through one unnamed container (a ModuleList)."""
    direct = f"{path}.{attr}" if path else attr
    prefix = f"{path}." if path else ""
    hits = [n for n in known.get(attr.split(".")[-1], []) if n.startswith(prefix)]
    if direct in hits:
        return direct
    through = [n for n in hits if n.endswith("." + attr) and n[len(prefix):].count(".") == attr.count(".") + 1]
    return through[0] if len(through) == 1 else None


def locate_litert(tm: Any, path: Path, feeds: dict[str, np.ndarray], input_names: list[str], *, atol: float,
                  rtol: float) -> dict[str, Any] | None:
    """The first module whose output leaves tolerance in a litert-torch ``.tflite`` file, or None."""
    from zoo.converters.parity.nodediff import label, tflite_values

    records = torch_outputs(tm, feeds, strip=False)
    known = module_index([name for name, _, _ in records])
    last_node: dict[str, Any] = {}
    for value in tflite_values(path, feeds, input_names):
        modules = litert_modules(value.tensor, known)
        if modules:  # the tensor is the output of the first module it names (a fused op: the last one it ran)
            before = last_node[modules[0]][1] if modules[0] in last_node else []
            last_node[modules[0]] = (value, before + [m for m in modules if m not in before])

    def value_of(entry: tuple) -> np.ndarray:
        return entry[0].value

    def finding(module: str, kind: str, entry: tuple, what: str, diff: float | None) -> dict[str, Any]:
        value, modules = entry
        return {"edge": "torch->tflite", "module": module.removeprefix("inner."), "module_type": kind,
                "node": value.tensor, "label": label(value.tensor), "op_type": value.op, "what": what, "max_abs_diff": diff,
                "fused": [m.removeprefix("inner.") for m in modules]}

    laid = [(name, kind, _as_laid(ref, last_node[name][0].value.shape) if name in last_node else ref)
            for name, kind, ref in records]
    return first_off(laid, last_node, value_of, atol, rtol, finding, shape_differs=False)


def _as_laid(ref: np.ndarray, shape: tuple) -> np.ndarray:
    """The module's output in the layout the file holds it: as it is, or channels-last (NCHW -> NHWC)."""
    if ref.shape == tuple(shape) or ref.ndim < 3:
        return ref
    moved = np.moveaxis(ref, 1, -1)
    return moved if moved.shape == tuple(shape) else ref

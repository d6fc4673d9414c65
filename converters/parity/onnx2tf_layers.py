"""Where an ONNX -> TensorFlow SavedModel or ONNX -> ``.tflite`` conversion (onnx2tf) goes wrong: the first ONNX
node whose output differs in the converted model, on the inputs that failed.

onnx2tf's files keep no ONNX names: a ``.tflite`` tensor is named after the Keras op that wrote it
(``model/tf.linalg.matmul_1/MatMul``), a SavedModel's intermediate tensors are not reachable by name at all. So zoo
does what Polygraphy does to compare two runtimes layer by layer ("mark all" outputs): it exposes every
input-dependent node output of the ONNX graph as a graph output, converts that graph again through
the same edge (the same onnx2tf call, re-signing, TFLite converter), and reads each tensor from the converted model's
outputs by its ONNX name. Against onnxruntime's node outputs (``nodediff.onnx_values``) that gives the first node out
of tolerance and where the relative error grows most, as for every other edge.

onnx2tf keeps channels-last inside (NHWC), so a converted tensor is compared in whichever transposition gives the
ONNX tensor's shape and the smallest error (onnx2tf's own ``-cotof`` check matches layouts the same way), and a
shape vector it took of a channels-last tensor (``[N, H, W, C]``) is read back in the ONNX order.
Exposing a tensor can change what a converter does (a fusion it no longer makes), so the report says whether the
marked conversion reproduces the artifact's outputs (``reproduced``) and, when every node matches, says that the
failure did not show with the intermediates exposed.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zoo.converters.parity.nodediff import Value

MARKED_KINDS = "fiub"  # every numeric and boolean tensor: a wrong shape computation shows in its integers
MAX_MARKED = 2000  # beyond this many outputs a converted signature is impractical; the first ones in graph order


def marked_model(onnx_path: Path, out: Path, values: list[Value], input_names: list[str]) -> list[str]:
    """Write ``onnx_path`` to ``out`` with every node output that depends on an input (onnx2tf folds the others
    into constants, which cannot be outputs) exposed as a graph output after the model's own; the names of the
    outputs added, in graph order."""
    import onnx

    model = onnx.load(str(onnx_path))
    graph = model.graph
    live = set(input_names)
    for node in graph.node:
        if any(i in live for i in node.input if i):
            live.update(o for o in node.output if o)
    kinds = {v.tensor: v.value for v in values}
    existing = {o.name for o in graph.output}
    added = []
    for node in graph.node:
        for name in node.output:
            value = kinds.get(name)
            if name and name in live and name not in existing and value is not None and value.dtype.kind in MARKED_KINDS \
                    and value.size and len(added) < MAX_MARKED:
                graph.output.append(onnx.helper.make_tensor_value_info(
                    name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), None))
                existing.add(name)
                added.append(name)
    large = sum(t.ByteSize() for t in graph.initializer) > 1_800_000_000
    onnx.save_model(model, str(out), save_as_external_data=large, location=out.name + ".data" if large else None)
    return added


def as_laid(theirs: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``theirs`` transposed to ``ref``'s shape, the transposition with the smallest error (as it is first); as it
    is when no transposition gives that shape."""
    if ref.ndim == 1 and ref.dtype.kind in "iu" and theirs.shape == ref.shape and 3 <= ref.size <= 5:
        back = theirs[[0, ref.size - 1, *range(1, ref.size - 1)]]  # a shape vector onnx2tf took of an NHWC tensor
        return back if np.array_equal(back, ref) else theirs
    if theirs.shape == ref.shape and theirs.ndim < 3:
        return theirs
    best, best_err = None, np.inf
    for perm in itertools.permutations(range(theirs.ndim)):
        if tuple(theirs.shape[p] for p in perm) != ref.shape:
            continue
        moved = np.transpose(theirs, perm)
        err = float(np.nanmax(np.abs(moved.astype(np.float64) - ref))) if ref.size else 0.0
        if best is None or err < best_err:
            best, best_err = moved, err
        if err == 0.0:
            break
    return theirs if best is None else best


def convert_marked(marked: Path, target: str, work: Path) -> Path:
    """The marked graph through zoo's own onnx2tf edge for ``target`` (``tf`` or ``tflite``)."""
    from zoo.converters.edges.tf import onnx_to_saved_model, onnx_to_tflite
    from zoo.converters.graph import EdgeContext

    ctx = EdgeContext(opset=0)
    run = onnx_to_saved_model if target == "tf" else onnx_to_tflite
    return run(marked, work, ctx)


def locate_onnx2tf(onnx_path: Path, artifact: Path, feeds: dict[str, np.ndarray], input_names: list[str],
                   output_names: list[str], *, target: str, atol: float, rtol: float,
                   scaled: bool = True) -> dict[str, Any]:
    """The first ONNX node whose output leaves tolerance in onnx2tf's conversion of ``onnx_path`` to ``target``
    (``artifact``: the file that failed), or whose shape no layout explains, and where the relative error grows
    most, in the ONNX graph's order. An artifact that raises on the feeds is located from TensorFlow's error, which
    names the op by the ONNX name onnx2tf gave it."""
    from zoo.converters.parity.nodediff import compare, first_diverging, grows_most, onnx_values
    from zoo.converters.parity.runners import artifact_runner

    edge = f"onnx->{target}"
    theirs_ref = onnx_values(onnx_path, feeds)
    try:
        shipped = artifact_runner(artifact, input_names, output_names)(feeds)
    except Exception as exc:  # noqa: BLE001 - a file that cannot run on the feeds: its error names the op
        raised = raised_at(exc, onnx_path, edge)
        if raised is not None:
            return raised
        raise
    work = Path(tempfile.mkdtemp(prefix="zoo-onnx2tf-locate-"))
    try:
        marked = work / "marked.onnx"
        added = marked_model(onnx_path, marked, theirs_ref, input_names)
        names = [*output_names, *added]
        (work / "out").mkdir()
        converted = convert_marked(marked, target, work / "out")
        got = artifact_runner(converted, input_names, names)(feeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by_name = dict(zip(names, got))
    reference = {v.tensor: v.value for v in theirs_ref}
    laid = [(v, as_laid(np.asarray(by_name[v.tensor]), v.value)) for v in theirs_ref if v.tensor in by_name]
    ours = [Value(v.node, v.op, v.tensor, value, v.inputs) for v, value in laid]
    # does the marked conversion compute what the artifact does? (exposing tensors can change a conversion)
    finals = list(zip(got[:len(output_names)], shipped))
    drift = max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                 for a, b in finals if np.shape(a) == np.shape(b) and np.size(a)), default=0.0)
    scale = max((float(np.max(np.abs(reference[n]))) for n in output_names if n in reference and reference[n].size),
                default=1.0)
    reproduced = drift <= atol * max(1.0, scale) and all(np.shape(a) == np.shape(b) for a, b in finals)
    found, _ = first_diverging(theirs_ref, ours, atol, rtol, scaled)
    order = {v.tensor: i for i, v in enumerate(theirs_ref)}
    reshaped = next(((v, value) for v, value in laid if value.shape != v.value.shape), None)
    if reshaped is not None and (found is None or order[reshaped[0].tensor] < order[found["tensor"]]):
        v, value = reshaped  # a tensor no layout explains comes first: its shape is the finding
        found = {"node": v.node, "op_type": v.op, "tensor": v.tensor, "shape": list(v.value.shape),
                 "converted_shape": list(value.shape), "index": order[v.tensor]}
    rows = compare(theirs_ref, ours)
    grows = grows_most(rows)
    out: dict[str, Any] = {"edge": edge, "compared": len(rows), "marked": len(added), "reproduced": reproduced,
                           "marked_vs_artifact_max_abs_diff": drift, "node": None, **(found or {})}
    if grows is not None:
        out["grows_most"] = {k: grows[k] for k in ("node", "op_type", "tensor", "max_rel_diff", "input_rel_diff",
                                                   "growth", "index")}
    if found is not None:
        out["what"] = (f"shape {tuple(found['converted_shape'])} in the converted model, {tuple(found['shape'])} in "
                       "ONNX, in any layout" if "converted_shape" in found else "values differ")
        if not reproduced:
            out["note"] = (f"exposing the intermediate tensors changed onnx2tf's conversion (its outputs differ from the "
                           f"artifact's by up to {drift:.3g}, or in shape): the node found is where the marked "
                           "conversion diverges")
    elif reproduced:
        out["note"] = (f"every one of {len(rows)} matched ONNX node outputs is within tolerance in onnx2tf's {target} "
                       "conversion; the difference appears only in the final outputs or the task's own check")
    else:
        out["note"] = (f"the failure did not reproduce with the intermediate tensors exposed: onnx2tf's conversion of "
                       f"the marked graph matches at every one of {len(rows)} node outputs, while the artifact's "
                       f"outputs differ from it by up to {drift:.3g}")
    return out


def raised_at(exc: BaseException, onnx_path: Path, edge: str) -> dict[str, Any] | None:
    """The ONNX node a TensorFlow run-time error names: onnx2tf names each TF op after its ONNX node or output,
    a leading ``/`` written ``wa/`` (``model_2/tf.compat.v1.pad/wa/Pad``: node ``/Pad``)."""
    import re

    import onnx

    message = str(exc)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    by_node = {n.name: n for n in graph.node}
    by_output = {o: n for n in graph.node for o in n.output if o}
    for match in re.finditer(r"wa/([\w.\-/]+)", message):  # the longest ``/``-prefix that names a node or output
        parts = match.group(1).split("/")
        node = next((found for k in range(len(parts), 0, -1)
                     if (found := by_node.get("/" + "/".join(parts[:k])) or by_output.get("/" + "/".join(parts[:k])))),
                    None)
        if node is not None:
            first = next((line.strip() for line in message.splitlines() if "must" in line or "Error" in line), "")
            return {"edge": edge, "node": node.name, "op_type": node.op_type, "tensor": node.output[0], "index":
                    list(graph.node).index(node), "what": f"raised at run time: {type(exc).__name__}: "
                    f"{(first or message.splitlines()[0])[:200]}", "compared": 0}
    return None

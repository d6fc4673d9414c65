"""Refuse a SavedModel that would do anything but compute when loaded or served.

A SavedModel is a program: loading it runs its initialisers (and, for a TF1
model, the saver's restore op), serving runs its signature. Before zoo loads
one, this reads ``saved_model.pb`` as data and checks every node of every
meta graph and every function of the function library against an allow-list
of compute ops (``tf_ops.COMPUTE_OPS``; an ``XlaCallModule``, jax2tf's op, when the StableHLO it holds only
computes: ``stablehlo_check``). Checkpoint ops (``RestoreV2``,
``SaveV2``...) are allowed only in the saver's own graph: the nodes the
``SaverDef`` names and what they need (TF1), or the functions only they call
(TF2), and only where nothing else (a signature, an initialiser, any other
node or function) reaches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from zoo import errors
from zoo.converters.loaders.stablehlo_check import xla_call_module_refusal
from zoo.converters.loaders.tf_ops import CHECKPOINT_OPS, COMPUTE_OPS


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _called(node: Any, functions: dict[str, Any]) -> Iterator[str]:
    """Functions a NodeDef calls: by op name, or through function-valued attributes."""
    if node.op in functions:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (f.name for f in value.list.func)


def _ancestors(nodes: dict[str, Any], start: Iterable[str]) -> set[str]:
    """The graph nodes running ``start`` runs: their inputs and control inputs, transitively."""
    seen: set[str] = set()
    pending = [n for n in start if n in nodes]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_node_name(i) for i in nodes[name].input if _node_name(i) in nodes)
    return seen


def _reached(roots: Iterable[str], functions: dict[str, Any]) -> set[str]:
    """The library functions ``roots`` call, transitively."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            pending.extend(_called(node, functions))
    return seen


def _refused(node: Any, allowed: frozenset[str], functions: dict[str, Any]) -> str | None:
    """The op (with why, for an XlaCallModule) when the allow-list refuses ``node``, else None."""
    if node.op == "XlaCallModule":  # jax2tf: StableHLO, read as data (stablehlo_check)
        why = xla_call_module_refusal(node)
        return None if why is None else f"XlaCallModule ({why})"
    return None if node.op in allowed or node.op in functions else node.op


def _check_meta_graph(meta: Any) -> list[tuple[str, str]]:
    """(op, node) of every node the allow-list refuses in one meta graph."""
    graph = meta.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = {n.name: n for n in graph.node}
    saver_roots = {_node_name(meta.saver_def.save_tensor_name), _node_name(meta.saver_def.restore_op_name)} - {""}
    saver_nodes = _ancestors(nodes, saver_roots)
    # Everything else may run when the model is loaded (initialisers, collections) or served.
    served = _ancestors(nodes, set(nodes) - saver_nodes)
    saver_only = saver_nodes - served
    bad = [(op, n.name) for n in nodes.values()
           if (op := _refused(n, COMPUTE_OPS | CHECKPOINT_OPS if n.name in saver_only else COMPUTE_OPS, functions))]
    calls = lambda names: [f for name in names for f in _called(nodes[name], functions)]  # noqa: E731
    open_functions = _reached(calls(served) + list(meta.object_graph_def.concrete_functions), functions)
    saver_functions = _reached(calls(saver_only), functions) - open_functions
    for name, function in functions.items():  # every function, reachable or not
        allowed = COMPUTE_OPS | CHECKPOINT_OPS if name in saver_functions else COMPUTE_OPS
        bad += [(op, f"{name}/{n.name}") for n in function.node_def if (op := _refused(n, allowed, functions))]
    return bad


def check_saved_model(directory: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString((directory / "saved_model.pb").read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise errors.InvalidModelError(f"{directory}/saved_model.pb is not a SavedModel: {exc}") from exc
    bad = [found for meta in model.meta_graphs for found in _check_meta_graph(meta)]
    if bad:
        ops = sorted({op for op, _ in bad})
        raise errors.UnsafeModelError(
            f"{directory.name}: the SavedModel uses {', '.join(ops[:8])}{' ...' if len(ops) > 8 else ''} "
            f"(node {bad[0][1][:120]!r}): zoo loads only SavedModels whose ops compute (no file, network or "
            "Python ops; checkpoint ops only in the saver)",
            hint="re-export the model without those ops (for example as a Keras .keras file or ONNX)")

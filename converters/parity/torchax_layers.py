"""Where a PyTorch -> JAX conversion (torchax + ``jax.export``) goes wrong: the first module, in the order its
forward finished, whose output differs between PyTorch and torchax's run of the same module on the same inputs.

A ``jax.export`` file is StableHLO: it keeps no intermediate values, and nothing in it names a module. What the
export traced is ``torchax.extract_jax(module)``'s function (``edges/jax_export.py``): the module's own Python
with every ATen op lowered to jax by torchax. Here that same function is called eagerly, not under ``jax.jit``,
with forward hooks on every submodule, so each module's output is a concrete jax array; the same hooks run in
plain PyTorch. A wrong lowering (an op torchax maps onto the wrong jax function) or a wrong weight handed to jax
shows at the first module whose output carries it; a module's output is recorded when its forward returns, so a
wrong op inside a module with children (an attention's softmax) names that module, after its children matched.

What this does not compare: the serialised program itself. When every module matches, the eager run did not
reproduce the failure; the report then says how far the serialised program's outputs are from the eager run's
(an error of ``jax.jit``/``jax.export``'s lowering, or of code outside every module), never a guess at a layer.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zoo.converters.parity.divergence import first_off
from zoo.converters.parity.nodediff import Value, compare, grows_most

EDGE = "torch->jax"
COMPARES = ("each module's output in torchax's eager run of the PyTorch module (the function jax.export traced, "
            "run op by op instead of jitted) against PyTorch's, on the same inputs; not the serialised StableHLO "
            "program, which keeps no intermediate values")
AGAINST = "torchax's eager run of it (what jax.export traced)"
IN = "<input>"  # a module's first input, recorded beside its output (how much error the module adds)


def _recorded(module: Any, run: Any, value_of: Any) -> tuple[list[tuple[str, str, Any, np.ndarray]], Any]:
    """(path, type, first input, output) of every submodule in the order their forward returned (first call of
    each), while ``run()`` runs, and what it returned. ``value_of(tensor)``: a numpy copy, or None (not a tensor)."""
    records: list[tuple[str, str, Any, np.ndarray]] = []
    seen: set[str] = set()

    def hook_for(name: str):
        def hook(mod: Any, inputs: Any, output: Any) -> None:
            if name in seen:
                return
            got = value_of(output[0] if isinstance(output, (tuple, list)) and output else output)
            if got is None:
                return
            seen.add(name)
            first = next((v for v in map(value_of, inputs) if v is not None), None)
            records.append((name, type(mod).__name__, first, got))
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in module.named_modules() if n]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return records, out


def _torch_value(t: Any) -> np.ndarray | None:
    import torch

    return t.detach().cpu().numpy().copy() if isinstance(t, torch.Tensor) else None


def torch_records(tm: Any, feeds: dict[str, np.ndarray]) -> list[tuple[str, str, Any, np.ndarray]]:
    """Every submodule's input and output in PyTorch (``tm.module``'s paths)."""
    import torch

    from zoo.converters.parity.runners import torch_inputs

    with torch.no_grad():
        return _recorded(tm.module, lambda: tm.module(*torch_inputs(feeds, tm.input_names)), _torch_value)[0]


def torchax_records(tm: Any, feeds: dict[str, np.ndarray]) -> tuple[list[tuple[str, str, Any, np.ndarray]], list]:
    """Every submodule's input and output in torchax's eager run of ``tm.module`` (``torchax.extract_jax``, as the
    export calls it), and the run's outputs (flattened, as the export returns them)."""
    import jax
    import torch

    from zoo.converters.edges.jax_export import import_torchax

    torchax = import_torchax()
    from torchax.tensor import Tensor
    from torchax.view import View

    def value_of(t: Any) -> np.ndarray | None:
        return np.array(t.jax()) if isinstance(t, (Tensor, View)) else None

    args = tuple(jax.numpy.asarray(feeds[n]) for n in tm.input_names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights, fn = torchax.extract_jax(tm.module.eval())
        records, out = _recorded(tm.module, lambda: fn(weights, args), value_of)
    return records, [np.asarray(o) for o in jax.tree_util.tree_leaves(out)]


def _values(records: list[tuple[str, str, Any, np.ndarray]]) -> list[Value]:
    """The records as ``nodediff`` rows: each module's input, then its output, which names the input as its own."""
    out = []
    for name, kind, first, value in records:
        if first is not None:
            out.append(Value(name + IN, "input", name + IN, np.asarray(first)))
        out.append(Value(name, kind, name, value, (name + IN,) if first is not None else ()))
    return out


def locate_jax(tm: Any, path: Path, feeds: dict[str, np.ndarray], input_names: list[str], *, atol: float,
               rtol: float) -> dict[str, Any]:
    """The first module whose output leaves tolerance in torchax's eager run, with where the relative error grows
    most over the module's own input (``nodediff.compare``'s rule, rounding noise counted 0); or ``located: false``
    with how far the serialised program is from that eager run."""
    if getattr(tm, "seq2seq", None) is not None:
        return {"edge": EDGE, "module": None, "located": False,
                "note": "an encoder-decoder pair's jax files are not compared module by module: only the final "
                        "outputs were compared"}
    ours = torch_records(tm, feeds)
    theirs, eager_out = torchax_records(tm, feeds)
    by_name = {name: value for name, _, _, value in theirs}
    rows = [r for r in compare(_values(ours), _values(theirs)) if r["op_type"] != "input"]
    leaves = {n for n, m in tm.module.named_modules() if n and not any(True for _ in m.children())}
    # where the error grows most: among leaf modules (a container's output carries every child's error over its
    # own input's, so the outermost module would always win)
    grows = grows_most([r for r in rows if r["node"] in leaves])
    extra: dict[str, Any] = {"compares": COMPARES, "compared": len(rows)}
    if grows is not None:
        extra["grows_most"] = {k: grows[k] for k in ("node", "op_type", "max_abs_diff", "max_rel_diff",
                                                     "input_rel_diff", "growth", "index")}
        extra["grows_most"]["node"] = extra["grows_most"]["label"] = grows["node"].removeprefix("inner.")

    carried = {r["node"]: r["input_rel_diff"] for r in rows}

    def finding(module: str, kind: str, _value: Any, what: str, diff: float | None) -> dict[str, Any]:
        if carried.get(module):  # its input was already off: born in code that ran before it, outside submodules
            what += f" (its input already differs, relative error {carried[module]:.3g})"
        named = module.removeprefix("inner.")
        return {"edge": EDGE, "module": named, "module_type": kind, "node": named, "op_type": kind, "against": AGAINST,
                "what": what, "max_abs_diff": diff, "input_rel_diff": carried.get(module, 0.0)}

    found = first_off([(n, k, v) for n, k, _, v in ours], by_name, lambda v: v, atol, rtol, finding)
    if found is not None:
        return {**found, **extra}
    return {"edge": EDGE, "module": None, "located": False, **extra,
            "note": f"torchax's eager run matches PyTorch at every one of {len(rows)} modules: the failure did not "
                    f"reproduce eagerly; {_serialised_vs_eager(path, feeds, input_names, eager_out, atol, rtol)}"}


def _serialised_vs_eager(path: Path, feeds: dict[str, np.ndarray], input_names: list[str], eager: list,
                         atol: float, rtol: float) -> str:
    """How far the serialised program's outputs are from the eager run's: where the failure lives."""
    from zoo.converters.parity.runners import jax_runner

    if Path(path).suffix != ".jax":
        return "the serialised program was not run"
    try:
        served = jax_runner(Path(path), input_names)(feeds)
    except Exception as exc:  # noqa: BLE001 - the eager finding stands; say why the file was not compared
        return f"the serialised program could not be run: {type(exc).__name__}: {str(exc)[:200]}"
    diffs = [float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
             for a, b in zip(served, eager) if a.shape == b.shape]
    if len(diffs) != len(served) or len(served) != len(eager):
        return (f"the serialised program's outputs ({[list(a.shape) for a in served]}) do not line up with the eager "
                f"run's ({[list(b.shape) for b in eager]})")
    worst = max(diffs, default=0.0)
    off = first_off([(str(i), "output", b) for i, b in enumerate(eager)], {str(i): a for i, a in enumerate(served)},
                    lambda v: v, atol, rtol, lambda *a: a)
    if off is not None:
        return (f"the serialised program's outputs differ from the eager run's by up to {worst:.3g}: jax.jit/jax.export "
                "lowered the traced function differently, inside a program that keeps no intermediate values")
    return (f"the serialised program matches the eager run too (max abs diff {worst:.3g}): the difference comes from "
            "code outside every submodule (the model's own forward) or from the input set's handling")

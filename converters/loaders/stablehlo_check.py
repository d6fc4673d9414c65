"""What an ``XlaCallModule`` op of a SavedModel may hold for zoo to load it (jax2tf's native serialization).

``XlaCallModule`` runs a serialized StableHLO module: XLA compiles it to tensor computations, and no Python of
the model travels with it. Two things in it could reach beyond computing, and both are refused:

- ``stablehlo.custom_call``: a call into whatever native function the process registered under that name
  (jaxlib registers Python callbacks this way). Only jax's own ``shape_assertion`` (a check of symbolic
  dimensions, which raises) is allowed;
- ``function_list``: TensorFlow functions the module calls back (jax2tf's ``call_tf``).

Every operation must be a ``stablehlo``, ``chlo``, ``func`` or ``builtin`` op. The module is read as data with
jax's StableHLO bindings (no compilation, nothing runs); without jax the op is refused.
"""

from __future__ import annotations

from typing import Any

ALLOWED_DIALECTS = ("stablehlo.", "chlo.", "func.", "builtin.")
ALLOWED_CUSTOM_CALLS = frozenset({"shape_assertion"})


def _walk(op: Any, found: list[tuple[str, str]]) -> None:
    name = op.operation.name
    if name == "stablehlo.custom_call":
        target = str(op.operation.attributes["call_target_name"]).strip('"')
        if target not in ALLOWED_CUSTOM_CALLS:
            found.append((name, target))
    elif not name.startswith(ALLOWED_DIALECTS):
        found.append((name, ""))
    for region in op.operation.regions:
        for block in region.blocks:
            for inner in block.operations:
                _walk(inner, found)


def xla_call_module_refusal(node: Any) -> str | None:
    """Why zoo refuses this ``XlaCallModule`` NodeDef, or None when it only computes."""
    if node.attr["function_list"].list.func:
        return "it calls TensorFlow functions back from StableHLO (function_list)"
    try:
        from jax.extend.mlir import ir
        from jax.extend.mlir.dialects import stablehlo
    except ImportError:
        return "jax is needed to read the StableHLO module inside it (pip install 'zoo-hub[jax]')"
    context = ir.Context()
    stablehlo.register_dialect(context)
    context.allow_unregistered_dialects = True  # an op of another dialect is read, then refused by name
    try:
        module = stablehlo.deserialize_portable_artifact(context, node.attr["module"].s)
    except Exception as exc:  # noqa: BLE001 - a module jax cannot read is not one zoo can vouch for
        return f"its StableHLO module cannot be read: {type(exc).__name__}: {str(exc).strip()[:120]}"
    found: list[tuple[str, str]] = []
    _walk(module.operation, found)
    if found:
        op, target = found[0]
        return f"its StableHLO module holds {op}{f' @{target}' if target else ''}" + \
            (f" and {len(found) - 1} more" if len(found) > 1 else "")
    return None

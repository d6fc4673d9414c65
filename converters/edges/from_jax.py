"""JAX -> ONNX with jax2onnx: the ``jax-fn`` node (a ``JaxFunction``: a function of ``(params, *inputs)``,
from ``zoo.convert_jax`` or a Flax module rebuilt from its checkpoint) traced with its parameters closed
over as constants. Dynamic axes of the input spec (a name instead of a size) stay symbolic in the ONNX
graph. From ONNX on, the existing graph takes the model to every other format.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

PRIMARY = "model.onnx"
# jax2onnx's plugin discovery (``import_all_plugins``) imports every module under jax2onnx/plugins, and its
# equinox and example trees build and jit-compile example models when imported: 44 s measured on the first
# conversion of any process, against 6 s for the trees that convert primitives and Flax modules.
_SKIPPED_PLUGIN_TREES = ("equinox", "examples")


def load_jax2onnx() -> Any:
    """``jax2onnx.to_onnx``, with its primitive and Flax plugins registered (not its equinox and example
    trees; see ``_SKIPPED_PLUGIN_TREES``)."""
    try:
        from jax2onnx import to_onnx
        from jax2onnx.plugins import plugin_system
    except ImportError as exc:
        raise errors.MissingDependencyError("jax2onnx is needed to convert a JAX or Flax model but is not installed",
                                            hint="pip install 'zoo-hub[flax]'") from exc
    if not getattr(plugin_system, "_already_imported_plugins", True):
        root = Path(plugin_system.__file__).parent
        for py in sorted(root.rglob("*.py")):
            rel = py.relative_to(root).with_suffix("").parts
            if rel[0] in _SKIPPED_PLUGIN_TREES or py.name in ("plugin_system.py", "__init__.py"):
                continue
            try:
                importlib.import_module(".".join(("jax2onnx.plugins", *rel)))
            except Exception:  # noqa: BLE001, S112 - as import_all_plugins: a plugin that cannot load is left out
                continue
        plugin_system._already_imported_plugins = True  # discovery done: to_onnx would import the rest
    return to_onnx


def input_specs(jf: Any) -> list[Any]:
    """jax2onnx's abstract inputs: the spec's shapes (a dynamic axis by its name) and dtypes."""
    import jax

    from zoo.converters.loaders.flax_models import np_dtype

    specs = []
    for s in jf.input_spec:
        shape = jax.export.symbolic_shape(", ".join(str(d) for d in s["shape"])) if s["shape"] else ()
        specs.append(jax.ShapeDtypeStruct(shape, np_dtype(s["dtype"])))
    return specs


@edge("jax-fn", "onnx", name="jax2onnx", primary=PRIMARY, tools=("jax2onnx", "jax", "jaxlib", "flax", "onnx"))
def jax_to_onnx(jf: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import onnx

    from zoo.versions import dist_versions

    to_onnx = load_jax2onnx()
    params, fn = jf.params, jf.fn

    def call(*inputs: Any) -> Any:
        return fn(params, *inputs)

    out = out_dir / PRIMARY
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = to_onnx(call, input_specs(jf), model_name="zoo_jax", opset=ctx.opset,
                            input_names=jf.input_names, output_names=jf.output_names or None)
    except errors.ZooError:
        raise
    except Exception as exc:
        first = errors.first_line(exc, 400)
        raise errors.ConversionError(f"jax2onnx could not convert {jf.label}: {type(exc).__name__}: {first}",
                                     edge="jax-fn->onnx", hint="a primitive jax2onnx lacks: see its supported list, "
                                     "or report the model with this message") from exc
    rewritten = inference_dropout_to_identity(model)
    onnx.save(model, str(out))
    ctx.info["jax-fn->onnx"] = {"exporter": "jax2onnx", "versions": dist_versions(("jax2onnx", "jax", "jaxlib", "flax")),
                                "opset": ctx.opset}
    if rewritten:
        ctx.info["jax-fn->onnx"]["rewrites"] = f"{rewritten} inference-mode Dropout node(s) -> Identity"
    return out


def inference_dropout_to_identity(model: Any) -> int:
    """jax2onnx writes a Flax ``Dropout`` as an ONNX ``Dropout`` whose ``training_mode`` is a constant false:
    the identity, which onnx2tf cannot translate (its ``rate`` comes as an array). Such nodes (mask output
    unused) become ``Identity``; a Dropout that can train is left alone. Returns how many were rewritten."""
    from onnx import numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    count = 0
    for node in model.graph.node:
        if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
            continue
        training = node.input[2] if len(node.input) > 2 else ""
        if training and (training not in consts or bool(numpy_helper.to_array(consts[training]).any())):
            continue
        if len(node.output) > 1 and node.output[1] and node.output[1] in used:
            continue
        x, y = node.input[0], node.output[0]
        node.op_type = "Identity"
        del node.input[:]
        node.input.append(x)
        del node.output[:]
        node.output.append(y)
        del node.attribute[:]
        count += 1
    return count

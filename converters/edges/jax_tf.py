"""JAX -> TensorFlow SavedModel with ``jax2tf``: one more route to ``tf`` (torch -> jax -> tf), beside onnx2tf.

The ``jax.export`` artifact of ``edges/jax_export.py`` (the PyTorch module run through torchax, as StableHLO)
is wrapped by ``jax2tf.convert`` into a ``tf.function`` and saved with ``tf.saved_model.save``. jax 0.10 only
has native serialization: ``native_serialization=False`` (graph mode, plain TF ops) is deprecated and ignored,
so the SavedModel's signature calls one ``XlaCallModule`` op that holds the StableHLO module and its weights.
``tf.saved_model.load`` and TF Serving run it (XLA compiles the module on the first call). TF 2.19's TFLite
converter lowers the StableHLO inside for some families only: timm ConvNeXt and the transformers ViT with a
dynamic batch, timm's ViT with static shapes only (``vhlo.dynamic_gather_v1`` unsupported); never BERT
(``'vhlo.reduce_v1' op is not part of the vhlo support yet``, from the embedding's boolean reduce, with static
shapes; ``'mhlo.gather' op Dynamic shaped operand is not supported`` with dynamic ones). So
``tflite`` comes through this SavedModel only as the last route (``graph.DETOURS``: torch -> jax -> tf -> tflite,
after onnx2tf and litert-torch), parity-checked like every rung. onnx2tf's SavedModel (plain TF ops, which TFLite, TF.js and other TF tools read)
is tried first; this route is for the families onnx2tf stops at (transformers ViT, BERT-like encoders, timm ViT,
timm ConvNeXt with its GELU): see ``graph.routes``.

Two versions must match the TensorFlow that loads the file, not the jax that wrote it: the calling convention of
``jax.export`` (jax 0.10 writes v10, TF 2.19 runs up to v9: ``tfxla.call_module_maximum_supported_version``) and
the StableHLO portable-artifact version (jax serialises "4 weeks old" StableHLO, newer than TF 2.19 can read).
``_tf_stablehlo_version`` asks this TensorFlow, once per process, which versions it deserialises, newest first,
and the conversion serialises at that version, without Shardy attributes (TF 2.19's XLA predates them).

The signature keeps the source's I/O contract: the model's input names (dots included: the SignatureDef holds
``past_key_values.0.key``; only the Python keyword of a loaded signature is sanitised, recorded in
``io_contract["python_keywords"]``) and dtypes (int64 ids and masks are cast
to the int32 the export takes inside the graph, refused by an ``Assert`` when a value does not fit), its output
names, and the export's symbolic axes (batch, sequence) as ``None`` dimensions; a static export stays static.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from pathlib import Path
from typing import Any, Iterator

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

SAVED_MODEL = "saved_model.pb"
# StableHLO versions to try, newest first, below jax's own (``_tf_stablehlo_version``): the minor releases of
# 2024-2026, and 1.0.0, which every TensorFlow with XlaCallModule v9 reads.
STABLEHLO_CANDIDATES = ("1.13.0", "1.12.0", "1.11.0", "1.10.0", "1.9.0", "1.8.0", "1.5.0", "1.0.0")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".")[:3])


@contextlib.contextmanager
def _serialization(target: str | None, convention: int) -> Iterator[None]:
    """``jax.export`` as TensorFlow can read it: ``convention`` and StableHLO ``target`` (None: jax's own).
    jax has no public switch for the artifact version: its one serialiser is wrapped for the duration (a jax
    without it serialises as before, and the SavedModel then fails the probe run in ``jax_to_tf``)."""
    import jax

    saved = jax.config.jax_export_calling_convention_version
    jax.config.update("jax_export_calling_convention_version", convention)
    module = importlib.import_module("jax._src.export._export")
    original = getattr(module, "_module_to_bytecode", None)
    serialise = getattr(getattr(importlib.import_module("jax._src.lib"), "_jax", None), "mlir", None)
    if target is not None and original is not None and serialise is not None:
        module._module_to_bytecode = lambda m: serialise.serialize_portable_artifact(m, target, False)
    try:
        yield
    finally:
        if original is not None:
            module._module_to_bytecode = original
        jax.config.update("jax_export_calling_convention_version", saved)


def _tf_convention() -> int:
    """The newest ``jax.export`` calling convention both this jax writes and this TensorFlow runs."""
    import jax
    from tensorflow.compiler.tf2xla.python import xla as tfxla

    tf_max = getattr(tfxla, "call_module_maximum_supported_version", lambda: 6)()
    return min(int(tf_max), int(jax.config.jax_export_calling_convention_version))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """fd 2 parked: XLA prints a refused artifact's MLIR diagnostics there, whatever TF's log level
    (ZOO_DEBUG=1 shows them)."""
    import os

    if os.environ.get("ZOO_DEBUG", "") not in ("", "0"):
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def _tf_stablehlo_version() -> str:
    """The newest StableHLO version this TensorFlow's XlaCallModule deserialises: a tiny function converted
    and run at each candidate, newest first."""
    import jax.numpy as jnp
    import tensorflow as tf
    from jax.experimental import jax2tf
    from jax.extend.mlir.dialects import stablehlo

    current = str(stablehlo.get_current_version())
    convention = _tf_convention()
    tried = []
    for target in [c for c in STABLEHLO_CANDIDATES if _version_key(c) <= _version_key(current)]:
        with _serialization(target, convention), _quiet_stderr():
            probe = jax2tf.convert(lambda x: jnp.tanh(x) @ x.T, polymorphic_shapes=["b, 2"], with_gradient=False)
            try:
                tf.function(probe, autograph=False)(tf.ones((2, 2)))
                return target
            except Exception as exc:  # noqa: BLE001 - "Cannot deserialize computation": too new for it
                tried.append(f"{target}: {str(exc).strip().splitlines()[0][:120]}")
    raise errors.ConversionError("this TensorFlow's XlaCallModule reads none of the StableHLO versions jax writes "
                                 f"({'; '.join(tried)[:400]})", edge="jax->tf",
                                 hint="install TensorFlow and jax versions of the same year, or convert through onnx2tf")


def _specs(exported: Any, contract: dict[str, Any]) -> tuple[list[str], list[Any], list[str]]:
    """Input names, their TensorSpecs (source dtypes, symbolic axes as None), and output names."""
    import numpy as np
    import tensorflow as tf

    given = contract.get("inputs") or []
    names = [i["name"] for i in given] if len(given) == len(exported.in_avals) else \
        [f"args_{i}" for i in range(len(exported.in_avals))]
    dtypes = [i["dtype"] for i in given] if len(given) == len(exported.in_avals) else \
        [str(a.dtype) for a in exported.in_avals]
    specs = [tf.TensorSpec([d if isinstance(d, int) else None for d in a.shape], tf.as_dtype(np.dtype(dt)), name=n)
             for a, dt, n in zip(exported.in_avals, dtypes, names)]
    outputs = list(contract.get("outputs") or [])
    if len(outputs) != len(exported.out_avals):
        outputs = [f"output_{i}" for i in range(len(exported.out_avals))]
    return names, specs, outputs


def _fit(tf: Any, x: Any, dtype: Any) -> Any:
    """A signature input in the dtype the export takes; an int64 value beyond int32 is refused, not wrapped."""
    if x.dtype == dtype:
        return x
    if x.dtype == tf.int64 and dtype == tf.int32:
        limit = tf.constant(2**31 - 1, tf.int64)
        check = tf.debugging.Assert(tf.reduce_all(tf.abs(x) <= limit), ["an int64 input holds values beyond int32"])
        with tf.control_dependencies([check]):
            return tf.cast(x, tf.int32)
    return tf.cast(x, dtype)


def _concrete(tf: Any, jax2tf: Any, exported: Any, contract: dict[str, Any]) -> Any:
    """The signature function of one export: its inputs by name (int64 cast in the graph), its outputs by name."""
    names, specs, outputs = _specs(exported, contract)
    polymorphic = [", ".join(str(d) for d in a.shape) for a in exported.in_avals]
    kinds = [tf.as_dtype(a.dtype) for a in exported.in_avals]
    # the export's own constraints (sequence <= seq_max) hold inside its call; the SavedModel needs none of its own
    fn = jax2tf.convert(exported.call, polymorphic_shapes=polymorphic, with_gradient=False)

    def serve(*args: Any) -> dict[str, Any]:
        return dict(zip(outputs, fn(*[_fit(tf, x, k) for x, k in zip(args, kinds)])))

    return tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()


def convert_saved_model(exported: Any, contract: dict[str, Any], out_dir: Path,
                        more: dict[str, tuple[Any, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Write the SavedModel of ``exported`` (its ``serving_default`` signature) under ``out_dir``; ``more``: further
    signatures of the same SavedModel, by name (an encoder-decoder's ``encoder``: tasks/seq2seq_export.py); what was
    chosen, for ``ctx.info``."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    target, convention = _tf_stablehlo_version(), _tf_convention()
    with _serialization(target, convention):
        # the signatures only: a tf.function also kept as an attribute of the saved object is a second function
        # in the library, with a second copy of the XlaCallModule op and the weights inside it (measured: a
        # SavedModel twice the size of the weights)
        signatures = {"serving_default": _concrete(tf, jax2tf, exported, contract)}
        for name, (other, other_contract) in (more or {}).items():
            signatures[name] = _concrete(tf, jax2tf, other, other_contract)
        tf.saved_model.save(tf.Module(), str(out_dir), signatures=signatures)
    info = {"exporter": "jax2tf", "serialization": f"native: one XlaCallModule op (StableHLO {target}, "
            f"calling convention v{convention}); graph mode (native_serialization=False) is gone from jax 0.10",
            "tflite": "tflite comes from this SavedModel only as the last route (after onnx2tf and litert-torch): "
                      "TFLite lowers its XlaCallModule for some families only",
            "io_contract": signature_contract(exported, contract)}
    if more:
        info["signatures"] = {name: signature_contract(other, c) for name, (other, c) in more.items()}
    return info


def signature_contract(exported: Any, contract: dict[str, Any]) -> dict[str, Any]:
    """A signature's I/O contract: names, dtypes, the export's symbolic axes (``None`` dims in TF)."""
    names, specs, outputs = _specs(exported, contract)
    inputs = [{"name": n, "dtype": s.dtype.name, "shape": [str(d) if not isinstance(d, int) else d for d in a.shape]}
              for n, s, a in zip(names, specs, exported.in_avals)]
    static = all(isinstance(d, int) for a in exported.in_avals for d in a.shape)
    dynamic = {i["name"]: {k: d for k, d in enumerate(i["shape"]) if isinstance(d, str)} for i in inputs}
    differs = [] if contract.get("inputs") else ["inputs named args_N (the jax export carries no names)"]
    # the SignatureDef (TF Serving, saved_model_cli) keeps a name such as past_key_values.0.key; Python's
    # tf.saved_model.load exposes it as a keyword with the dots made underscores (it accepts either spelling)
    from zoo.converters.edges.tf import python_keyword

    keywords = {n: python_keyword(n) for n in names if python_keyword(n) != n}
    if static:
        differs.append("static shapes: the SavedModel takes exactly the shapes above (the jax export is static)")
    return {"shapes": "static" if static else "dynamic", "inputs": inputs, "outputs": outputs,
            "dynamic_axes": {n: a for n, a in dynamic.items() if a},
            "constraints": [] if static else list(contract.get("constraints") or ()), "differs": differs,
            "python_keywords": keywords}


@edge("jax", "tf", name="jax2tf", primary=SAVED_MODEL, tools=("jax", "jaxlib", "tensorflow"), alternative=True,
      pairs=True)
def jax_to_tf(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    from zoo.converters.loaders.keras_models import import_keras
    from zoo.versions import dist_versions

    import_keras()  # TensorFlow, imported quietly and without Triton (see import_keras)
    try:
        import jax
        from jax.experimental import jax2tf  # noqa: F401
    except ImportError as exc:
        raise errors.MissingDependencyError("jax is needed for the jax2tf route to tf but is not installed",
                                            hint="pip install 'zoo-hub[jax]'") from exc
    try:
        exported = jax.export.deserialize(bytearray(Path(src).read_bytes()))
    except Exception as exc:  # noqa: BLE001
        raise errors.ConversionError(f"{Path(src).name} is not a jax.export artifact: {type(exc).__name__}: "
                                     f"{str(exc)[:200]}", edge="jax->tf") from exc
    made = ctx.info.get("torch->jax") or ctx.info.get("pt2->jax") or {}
    contract = made.get("io_contract", {})
    more = {}
    if (made.get("files") or {}).get("encoder"):  # an encoder-decoder (tasks/seq2seq_export.py): one more signature
        encoder = Path(src).parent / made["files"]["encoder"]
        more["encoder"] = (jax.export.deserialize(bytearray(encoder.read_bytes())), made["encoder"]["io_contract"])
    try:
        info = convert_saved_model(exported, contract, out_dir, more)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001
        first = errors.first_line(exc)
        raise errors.ConversionError(f"jax2tf could not convert the jax export: {type(exc).__name__}: {first}",
                                     edge="jax->tf", hint="the onnx2tf route is tried before this one; "
                                     "convert to jax, onnx or pt2 if both fail") from exc
    if more:
        info["files"] = {"encoder": SAVED_MODEL, "decoder": SAVED_MODEL}
        info["signatures_of"] = {"encoder": "encoder", "decoder": "serving_default"}
    ctx.info["jax->tf"] = {**info, "jax_export_bytes": Path(src).stat().st_size,
                           "versions": dist_versions(("jax", "jaxlib", "tensorflow"))}
    return out_dir / SAVED_MODEL

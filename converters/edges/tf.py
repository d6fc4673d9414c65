"""Edges into and out of a TensorFlow SavedModel (the ``tf`` node): Keras ->
SavedModel (``ExportArchive``), ONNX -> SavedModel and ONNX -> TFLite
(onnx2tf, in a child process), SavedModel -> TFLite (TFLiteConverter) and
SavedModel -> ONNX (tf2onnx).

A ``tf`` artifact is a SavedModel directory whose ``serving_default``
signature takes and returns tensors keyed by the source's input and output
names; its primary file is ``saved_model.pb``. ONNX inputs and outputs keep
their layout (NCHW stays NCHW), so the artifact takes and gives exactly what
the ONNX and PyTorch models do.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

SAVED_MODEL = "saved_model.pb"


def saved_model_dir(path: Path) -> Path:
    """The SavedModel directory of a ``saved_model.pb`` path or of the directory itself."""
    return path.parent if path.name == SAVED_MODEL else path


def python_keyword(name: str) -> str:
    """The keyword TensorFlow gives a signature input in Python (``tf.saved_model.load``): every character that
    is not a letter or digit becomes ``_``, and a name not starting with a letter gets ``arg_`` (TF's
    ``function_type.sanitize_arg_name``): ``past_key_values.0.key`` -> ``past_key_values_0_key``."""
    swapped = "".join(c if c.isalnum() else "_" for c in name)
    return swapped if swapped[:1].isalpha() else "arg_" + swapped


def _fail(tool: str, exc: BaseException | str, hint: str = "the model may use an operation this converter lacks") -> errors.ConversionError:
    what = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc)[:300]}"
    return errors.ConversionError(f"{tool} failed: {what}", hint=hint)


def _child_env() -> dict[str, str]:
    """The environment of a converter child process (which runs the installed zoo, from a scratch
    working directory, so no folder named ``zoo`` there can shadow it): TF quiet."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


# --- Keras -> SavedModel -------------------------------------------------------------------------
@edge("keras-model", "tf", name="keras.export.ExportArchive", primary=SAVED_MODEL, tools=("keras", "tensorflow"))
def keras_to_saved_model(km: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import keras
    import tensorflow as tf

    model = km.model
    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n) for t, n in zip(model.inputs, km.input_names)]

    def serve(*args: Any) -> dict[str, Any]:
        out = model(list(args) if len(args) > 1 else args[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return dict(zip(km.output_names, out))

    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve, input_signature=specs)
        with contextlib.redirect_stdout(io.StringIO()):
            archive.write_out(str(out_dir), verbose=False)
    except Exception as exc:  # noqa: BLE001
        raise _fail("keras SavedModel export", exc) from exc
    ctx.info["keras-model->tf"] = {"keras": keras.__version__, "tensorflow": tf.__version__,
                                   "signature": "serving_default", "layout": {n: "NHWC (as the Keras model)" for n in km.input_names}}
    return out_dir / SAVED_MODEL


# --- ONNX -> SavedModel / TFLite (onnx2tf) -------------------------------------------------------
def _copy_onnx(src: Path, dst: Path) -> None:
    """A private copy of the model, external data included: onnx2tf rewrites its input."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(src), load_external_data=False)
    if not any(uses_external_data(t) for t in model.graph.initializer):
        shutil.copyfile(src, dst)
        return
    model = onnx.load(str(src))
    onnx.save_model(model, str(dst), save_as_external_data=True, location=dst.name + ".data")


def run_onnx2tf(src: Path, out_dir: Path, saved_model: Path) -> dict[str, Any]:
    """Convert ``src`` with onnx2tf in a child process working in ``out_dir/.onnx2tf``
    (removed afterwards): see ``converters/edges/onnx2tf_worker.py`` for why."""
    work = out_dir / ".onnx2tf"
    work.mkdir()
    try:
        model = work / "model.onnx"
        _copy_onnx(src, model)
        job = work / "job.json"
        log = work / "onnx2tf.log"
        job.write_text(json.dumps({"onnx": str(model), "workdir": str(work), "log": str(log),
                                   "saved_model": str(saved_model)}))
        with open(log, "wb") as fh:
            # KERAS_HOME: tf_keras writes its keras.json there at import; keep it inside the edge's directory
            proc = subprocess.run([sys.executable, "-m", "zoo.converters.edges.onnx2tf_worker", str(job)], cwd=work,
                                  stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                  env={**_child_env(), "KERAS_HOME": str(work / "keras")})
        result_file = work / "result.json"
        if not result_file.is_file():
            tail = log.read_text(errors="replace")[-400:]
            raise _fail("onnx2tf", f"its process exited with status {proc.returncode} and no result: {tail}")
        result = json.loads(result_file.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.pop("ok"):
        raise _onnx2tf_error(result)
    return result


def _onnx2tf_error(result: dict[str, Any]) -> errors.ConversionError:
    node, op_type = result.get("node"), result.get("op_type")
    if result.get("unsupported_op"):
        what = f"onnx2tf has no converter for ONNX op {op_type} (node {node!r})"
    elif node:
        what = f"onnx2tf cannot convert this model at ONNX node {node!r} (op {op_type or 'unknown'})"
    else:  # no node was being converted: name the stage, so the message still says where
        what = f"onnx2tf cannot convert this model outside any single ONNX node (in {result.get('stage') or 'setup'})"
    return errors.ConversionError(
        f"{what}: {result['error']}",
        hint="onnx2tf lacks a TensorFlow translation for this node's pattern (dynamic shapes, text models' masks); "
             "convert to onnx or pt2 instead, or from a Keras source to tf/tflite", node=node, op_type=result.get("op_type"))


@edge("onnx", "tf", name="onnx2tf", primary=SAVED_MODEL, tools=("onnx2tf", "tensorflow", "tf-keras", "onnx"))
def onnx_to_saved_model(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    ctx.info["onnx->tf"] = run_onnx2tf(src, out_dir, out_dir)
    if not (out_dir / SAVED_MODEL).is_file():
        raise _fail("onnx2tf", "no SavedModel was written")
    return out_dir / SAVED_MODEL


@edge("onnx", "tflite", name="onnx2tf + tf.lite.TFLiteConverter", primary="model.tflite",
       tools=("onnx2tf", "tensorflow", "tf-keras", "onnx"))
def onnx_to_tflite(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    """Through onnx2tf's SavedModel (re-signed with the ONNX names and layouts), not
    its own .tflite file, so the two artifacts of one ONNX model take the same inputs."""
    staged = out_dir / ".saved_model"
    try:
        info = run_onnx2tf(src, out_dir, staged)
        out = out_dir / "model.tflite"
        info["tflite"] = tflite_from_saved_model(staged, out, ctx)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    ctx.info["onnx->tflite"] = info
    return out


# --- SavedModel -> TFLite / ONNX -----------------------------------------------------------------
def tflite_from_saved_model(directory: Path, out: Path, ctx: EdgeContext) -> dict[str, Any]:
    """TFLite builtin ops when they suffice, else TensorFlow ops too (the Flex delegate)."""
    from zoo.converters.loaders.keras_models import import_keras

    import_keras()  # TensorFlow, quietly
    import tensorflow as tf

    ops = "TFLITE_BUILTINS"
    try:
        data = tf.lite.TFLiteConverter.from_saved_model(str(directory), signature_keys=["serving_default"]).convert()
    except Exception:  # noqa: BLE001 - retry with TensorFlow ops allowed
        converter = tf.lite.TFLiteConverter.from_saved_model(str(directory), signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        ops = "TFLITE_BUILTINS+SELECT_TF_OPS"
        try:
            data = converter.convert()
        except Exception as exc:  # noqa: BLE001
            raise _fail("TFLiteConverter", exc) from exc
        ctx.notes.append("the .tflite file uses TensorFlow ops: run it with the Flex delegate (full tensorflow)")
    out.write_bytes(data)
    return {"tensorflow": tf.__version__, "ops": ops, "quantization": None}


@edge("tf", "tflite", name="tf.lite.TFLiteConverter", primary="model.tflite", tools=("tensorflow",))
def saved_model_to_tflite(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    out = out_dir / "model.tflite"
    ctx.info["tf->tflite"] = tflite_from_saved_model(saved_model_dir(src), out, ctx)
    if "jax->tf" in ctx.info:  # the detour torch -> jax -> tf -> tflite (graph.DETOURS)
        ctx.info["tf->tflite"]["from"] = "jax2tf's SavedModel: its XlaCallModule's StableHLO lowered by the TFLite converter"
    return out


@edge("tf", "onnx", name="tf2onnx", primary="model.onnx", tools=("tf2onnx", "tensorflow", "onnx"))
def saved_model_to_onnx(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    from zoo.versions import dist_version

    out = out_dir / "model.onnx"
    # a child process: tf2onnx logs on stdout and changes TensorFlow's global graph state
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model_dir(src)),
                           "--signature_def", "serving_default", "--opset", str(ctx.opset), "--output", str(out)],
                          cwd=out_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_child_env())
    if proc.returncode != 0 or not out.is_file():
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln] or proc.stderr.splitlines()[-3:]
        raise _fail("tf2onnx", f"exit status {proc.returncode}: {' | '.join(lines[-3:])[:400]}")
    ctx.info["tf->onnx"] = {"exporter": "tf2onnx", "tf2onnx": dist_version("tf2onnx"), "opset": ctx.opset}
    return out


@edge("tflite", "onnx", name="tf2onnx (TFLite reader)", primary="model.onnx", tools=("tf2onnx", "tensorflow", "onnx"))
def tflite_to_onnx(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    """tf2onnx's TFLite reader; the ONNX inputs and outputs take the ``.tflite`` file's signature names
    (tf2onnx names them after tensors: ``serving_default_x:0``), so both take the same feeds."""
    import onnx

    from zoo.converters.loaders.tflite_file import tflite_signature
    from zoo.versions import dist_version

    out = out_dir / "model.onnx"
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(src), "--opset", str(ctx.opset),
                           "--output", str(out)], cwd=out_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=_child_env())
    if proc.returncode != 0 or not out.is_file():
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln] or proc.stderr.splitlines()[-3:]
        raise _fail("tf2onnx", f"exit status {proc.returncode}: {' | '.join(lines[-3:])[:400]}",
                    hint="the .tflite file may use an op tf2onnx cannot read (custom ops, some quantised kernels)")
    _, _, _, names = tflite_signature(src)
    model = onnx.load(str(out))
    renamed = {old: new for old, new in names.items() if old != new}
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renamed.get(value.name, value.name)
    for node in _all_graph_nodes(model.graph):
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    onnx.save(model, str(out))
    ctx.info["tflite->onnx"] = {"exporter": "tf2onnx", "tf2onnx": dist_version("tf2onnx"), "opset": ctx.opset,
                                "renamed": renamed}
    return out


def _all_graph_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                nodes.extend(_all_graph_nodes(sub))
    return nodes

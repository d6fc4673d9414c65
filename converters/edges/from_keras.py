"""Edges out of an in-memory Keras model (the ``keras-model`` node): ONNX
(tf2onnx), TFLite (TFLiteConverter) and the native ``.keras`` file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge


def _fail(tool: str, exc: BaseException) -> errors.ConversionError:
    return errors.ConversionError(f"{tool} failed: {type(exc).__name__}: {str(exc)[:300]}",
                                  hint="the model may use an operation this converter lacks")


@edge("keras-model", "onnx", name="tf2onnx", primary="model.onnx", tools=("tf2onnx", "tensorflow", "keras", "onnx"))
def keras_to_onnx(km: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import tensorflow as tf
    import tf2onnx

    shape = (None, *km.model.inputs[0].shape[1:])
    out = out_dir / "model.onnx"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            tf2onnx.convert.from_keras(km.model, input_signature=(tf.TensorSpec(shape, tf.float32, name="input"),),
                                       opset=ctx.opset, output_path=str(out))
    except Exception as exc:  # noqa: BLE001
        raise _fail("tf2onnx", exc) from exc
    ctx.info["keras-model->onnx"] = {"exporter": "tf2onnx", "tf2onnx": tf2onnx.__version__, "tensorflow": tf.__version__,
                               "opset": ctx.opset}
    return out


@edge("keras-model", "tflite", name="tf.lite.TFLiteConverter", primary="model.tflite", tools=("tensorflow", "keras"))
def keras_to_tflite(km: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import tensorflow as tf

    out = out_dir / "model.tflite"
    try:
        out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(km.model).convert())
    except Exception as exc:  # noqa: BLE001
        raise _fail("TFLiteConverter", exc) from exc
    ctx.info["keras-model->tflite"] = {"tensorflow": tf.__version__, "quantization": None}
    return out


@edge("keras-model", "keras", name="keras.Model.save", primary="model.keras", tools=("keras",))
def keras_to_file(km: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import keras

    out = out_dir / "model.keras"
    try:
        km.model.save(str(out))
    except Exception as exc:  # noqa: BLE001
        raise _fail("keras save", exc) from exc
    ctx.info["keras-model->keras"] = {"keras": keras.__version__}
    return out

"""What a ``.tflite`` file says about itself, read with the TFLite interpreter: its signature (the names
zoo feeds it by) and its precision class."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _interpreter(path: Path) -> Any:
    import warnings

    from zoo.converters.loaders.keras_models import import_keras

    import_keras()  # TensorFlow, quietly
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return tf.lite.Interpreter(model_path=str(path))


def tflite_signature(path: Path) -> tuple[list[dict[str, Any]], list[str], dict[str, str], dict[str, str]]:
    """Input spec and output names of a ``.tflite`` file, by its ``serving_default`` signature's names when it
    has one (else its tensor names), and the tensor name behind each of those names."""
    interpreter = _interpreter(path)
    signatures = interpreter.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures), None)
    by_tensor: dict[str, str] = {}
    if key is not None:
        runner = interpreter.get_signature_runner(key)
        for details in (runner.get_input_details(), runner.get_output_details()):
            by_tensor.update({d["name"]: name for name, d in details.items()})
    spec = [{"name": by_tensor.get(d["name"], d["name"]), "dtype": str(d["dtype"].__name__),
             "shape": [None if s < 0 else int(s) for s in d["shape_signature"]]} for d in interpreter.get_input_details()]
    outputs = [by_tensor.get(d["name"], d["name"]) for d in interpreter.get_output_details()]
    return spec, outputs, {}, {tensor: name for tensor, name in by_tensor.items()}


def _has_scales(detail: dict[str, Any]) -> bool:
    """Per-channel quantisation (ai-edge-quantizer's int8 weights) leaves ``quantization`` at (0.0, 0) and puts its
    scales in ``quantization_parameters``."""
    scales = (detail.get("quantization_parameters") or {}).get("scales")
    return scales is not None and len(scales) > 0


def tflite_precision(path: Path) -> str:
    """"int8" for a quantised ``.tflite`` (int8/uint8 tensors with quantisation scales), "float16" for fp16
    weights, else "float32"."""
    interpreter = _interpreter(path)
    kinds = {(d["dtype"].__name__, bool(d["quantization"][0]) or _has_scales(d)) for d in interpreter.get_tensor_details()}
    if ("int8", True) in kinds or ("uint8", True) in kinds:
        return "int8"
    return "float16" if any(k == "float16" for k, _ in kinds) else "float32"

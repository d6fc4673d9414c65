"""Run a model on numpy feeds, whatever its format: the callables parity compares.

Every runner is ``feeds: dict[str, np.ndarray] -> list[np.ndarray]``, outputs
in the model's declared order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from zoo import errors

Runner = Callable[[dict[str, Any]], list[Any]]


def torch_inputs(feeds: dict[str, Any], names: list[str]) -> tuple:
    import torch

    return tuple(torch.from_numpy(feeds[n]) for n in names)


def _call_torch(module: Any, feeds: dict[str, Any], names: list[str]) -> list[Any]:
    import torch

    with torch.no_grad():
        out = module(*torch_inputs(feeds, names))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [t.detach().cpu().numpy() for t in out]


def torch_runner(tm: Any) -> Runner:
    return lambda feeds: _call_torch(tm.module, feeds, tm.input_names)


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Parity alternates torch and onnxruntime in one process: ORT's worker threads spin-wait after each
    # run by default and starve torch's OpenMP threads of the cores (measured: BERT-base forwards 2-3x slower).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
        raise errors.ConversionError(f"onnxruntime cannot load {path.name}: {str(exc)[:400]}",
                                     hint="the converted graph is invalid; try another --opset, --exporter or target format") from exc
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(None, {n: feeds[n] for n in names})


def pt2_runner(path: Path, input_names: list[str]) -> Runner:
    from converters.pt2_archive import load_program

    module = load_program(path)[0].module()  # refuses archives that would unpickle or run code
    return lambda feeds: _call_torch(module, feeds, input_names)


def keras_runner(model: Any, input_names: list[str]) -> Runner:
    def run(feeds: dict[str, Any]) -> list[Any]:
        out = model([feeds[n] for n in input_names] if len(input_names) > 1 else feeds[input_names[0]], training=False)
        out = out if isinstance(out, (tuple, list)) else [out]
        return [o.numpy() if hasattr(o, "numpy") else o for o in out]

    return run


def keras_file_runner(path: Path, input_names: list[str]) -> Runner:
    from converters.keras_loading import import_keras

    keras = import_keras()
    try:  # safe_mode: no Lambda layers or arbitrary code from the file
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001
        raise errors.UnsafeModelError(f"keras refused to load {path.name} in safe mode: {str(exc)[:300]}") from exc
    return keras_runner(model, input_names)


def tflite_runner(path: Path, input_names: list[str]) -> Runner:
    import warnings

    from converters.keras_loading import import_keras

    import_keras()
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(path))

    def run(feeds: dict[str, Any]) -> list[Any]:
        details = interpreter.get_input_details()
        for i, detail in enumerate(details):
            interpreter.resize_tensor_input(detail["index"], feeds[input_names[i]].shape)
        interpreter.allocate_tensors()
        for i, detail in enumerate(details):
            interpreter.set_tensor(detail["index"], feeds[input_names[i]])
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]

    return run


def artifact_runner(path: Path, input_names: list[str]) -> Runner:
    if path.suffix == ".onnx":
        return onnx_runner(path)
    if path.suffix == ".pt2":
        return pt2_runner(path, input_names)
    if path.suffix == ".tflite":
        return tflite_runner(path, input_names)
    if path.suffix == ".keras":
        return keras_file_runner(path, input_names)
    raise errors.UnsupportedFormatError(f"zoo cannot run {path.name}", hint="supported files: .onnx, .pt2, .tflite, .keras")

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
    def run(feeds: dict[str, Any]) -> list[Any]:
        return _call_torch(tm.module, feeds, tm.input_names)

    run.torch_model = tm  # type: ignore[attr-defined]  # task checks reach the source itself (generate())
    return run


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a failing run raises with the message; its log line would only repeat it
    # Parity alternates torch and onnxruntime in one process: ORT's worker threads spin-wait after each
    # run by default and starve torch's OpenMP threads of the cores (measured: BERT-base forwards 2-3x slower).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
        raise errors.ConversionError(f"onnxruntime cannot load {path.name}: {str(exc)[:400]}",
                                     hint="the converted graph is invalid; try another --opset, --exporter or target format") from exc
    names = [i.name for i in session.get_inputs()]

    def run(feeds: dict[str, Any]) -> list[Any]:
        return session.run(None, {n: feeds[n] for n in names})

    run.path = path  # type: ignore[attr-defined]  # task checks reach the files beside it (an encoder.onnx)
    return run


def pt2_runner(path: Path, input_names: list[str]) -> Runner:
    from zoo.converters.loaders.pt2_archive import load_program

    module = load_program(path)[0].module()  # refuses archives that would unpickle or run code
    return lambda feeds: _call_torch(module, feeds, input_names)


def keras_runner(model: Any, input_names: list[str]) -> Runner:
    def run(feeds: dict[str, Any]) -> list[Any]:
        out = model([feeds[n] for n in input_names] if len(input_names) > 1 else feeds[input_names[0]], training=False)
        out = out if isinstance(out, (tuple, list)) else [out]
        return [o.numpy() if hasattr(o, "numpy") else o for o in out]

    return run


def keras_file_runner(path: Path, input_names: list[str]) -> Runner:
    from zoo.converters.loaders.keras_models import load_keras_file

    return keras_runner(load_keras_file(path), input_names)  # safe mode: no code from the file


def tflite_interpreter(path: Path) -> Any:
    """The LiteRT interpreter (ai-edge-litert) for ``path``; TensorFlow's ``tf.lite.Interpreter`` when
    ai-edge-litert is absent or cannot load the file (TensorFlow ops: the Flex delegate is TensorFlow's)."""
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()  # a file with TensorFlow (Flex) ops fails here, not at the first run
        return interpreter
    except Exception:  # noqa: BLE001 - not installed, or a file with Flex ops
        pass
    from zoo.converters.loaders.keras_models import import_keras

    import_keras()
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return tf.lite.Interpreter(model_path=str(path))


def _fit_dtype(value: Any, dtype: Any) -> Any:
    """A feed in the dtype the file takes: int64 ids/masks into int32 inputs (litert-torch's contract),
    refused when a value does not fit rather than wrapped."""
    import numpy as np

    if value.dtype == dtype:
        return value
    if value.dtype == np.int64 and dtype == np.int32:
        info = np.iinfo(np.int32)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise errors.UsageError("an int64 input holds values beyond int32, which the .tflite file takes")
        return value.astype(np.int32)
    return value


def tflite_runner(path: Path, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    interpreter = tflite_interpreter(path)
    signature = interpreter.get_signature_list().get("serving_default")
    if signature and output_names and sorted(signature["outputs"]) == sorted(output_names) \
            and sorted(signature["inputs"]) == sorted(input_names):  # by name, not tensor order
        runner = interpreter.get_signature_runner("serving_default")
        return lambda feeds: [runner(**{n: feeds[n] for n in input_names})[o] for o in output_names]
    if signature and output_names and sorted(signature["inputs"]) == [f"args_{i}" for i in range(len(input_names))] \
            and sorted(signature["outputs"]) == [f"output_{i}" for i in range(len(output_names))]:
        # litert-torch's signature: args_N / output_N, in the model's order (its io_contract says so)
        runner = interpreter.get_signature_runner("serving_default")
        kinds = {k: d["dtype"] for k, d in runner.get_input_details().items()}

        def run_positional(feeds: dict[str, Any]) -> list[Any]:
            got = runner(**{f"args_{i}": _fit_dtype(feeds[n], kinds[f"args_{i}"]) for i, n in enumerate(input_names)})
            return [got[f"output_{i}"] for i in range(len(output_names))]

        return run_positional

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


def jax_runner(path: Path, input_names: list[str]) -> Runner:
    """A ``jax.export`` artifact, deserialised (StableHLO, no Python code) and called on the feeds in order."""
    try:
        import jax
    except ImportError as exc:
        raise errors.MissingDependencyError("jax is needed to run a jax artifact", hint="pip install 'zoo-hub[jax]'") from exc
    import numpy as np

    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception as exc:  # noqa: BLE001
        raise errors.InvalidModelError(f"{path.name} is not a jax.export artifact: {type(exc).__name__}: {str(exc)[:300]}") from exc
    kinds = [a.dtype for a in exported.in_avals]

    def run(feeds: dict[str, Any]) -> list[Any]:
        out = exported.call(*[_fit_dtype(np.asarray(feeds[n]), k) for n, k in zip(input_names, kinds)])
        return [np.asarray(o) for o in jax.tree_util.tree_leaves(out)]

    return run


def load_saved_model(path: Path) -> Any:
    """A SavedModel (its directory or ``saved_model.pb``), loaded: its ``signatures`` by name.
    A SavedModel is a program: only the conversion that checks it loads it."""
    from zoo.converters.edges.tf import saved_model_dir
    from zoo.converters.loaders.keras_models import import_keras

    import_keras()
    import tensorflow as tf

    directory = saved_model_dir(path)
    try:
        return tf.saved_model.load(str(directory))
    except Exception as exc:  # noqa: BLE001
        raise errors.InvalidModelError(f"cannot load {directory} as a SavedModel: {type(exc).__name__}: {str(exc)[:300]}") from exc


def load_serving_signature(path: Path) -> Any:
    """The ``serving_default`` function of a SavedModel (its directory or ``saved_model.pb``)."""
    from zoo.converters.edges.tf import saved_model_dir

    directory = saved_model_dir(path)
    try:
        return load_saved_model(path).signatures["serving_default"]
    except KeyError as exc:
        raise errors.InvalidModelError(f"{directory} has no serving_default signature",
                                       hint="export it with one: keras Model.export, or tf.saved_model.save(..., signatures=...)") from exc


def signature_runner(fn: Any, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    """Run a SavedModel signature. Inputs are matched by their SignatureDef names (``signature_input_names``),
    else by their Python keywords, or, for one input, whatever its key; outputs come back in ``output_names`` order when the
    signature uses those keys, else in ``output_N`` order."""
    import tensorflow as tf

    named = signature_input_names(fn)
    keys = list(named)
    if sorted(named.values()) == sorted(input_names):
        bind = dict(named)
    elif sorted(keys) == sorted(input_names):
        bind = {k: k for k in keys}
    elif len(keys) == len(input_names) == 1:
        bind = {keys[0]: input_names[0]}
    else:
        raise errors.UnsupportedError(f"the SavedModel's inputs {sorted(named.values())} do not match the model's "
                                      f"{input_names}")
    order = signature_output_order(list(fn.structured_outputs), output_names)

    def run(feeds: dict[str, Any]) -> list[Any]:
        out = fn(**{k: tf.constant(feeds[n]) for k, n in bind.items()})
        return [out[k].numpy() for k in order]

    return run


def signature_input_names(fn: Any) -> dict[str, str]:
    """A loaded signature's Python keyword for each input -> the input's name in the SignatureDef. The
    SignatureDef (what TF Serving and ``saved_model_cli`` read) keeps a name such as ``past_key_values.0.key``, and
    so does the input's TensorSpec; only the Python keyword is sanitised. A keyword whose spec name does not
    sanitise to it (keras names its specs apart from its keys) is its own name."""
    from zoo.converters.edges.tf import python_keyword

    specs = fn.structured_input_signature[1]
    return {k: s.name if getattr(s, "name", None) and python_keyword(s.name) == k else k for k, s in specs.items()}


def saved_model_runner(path: Path, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    return signature_runner(load_serving_signature(path), input_names, output_names)


def signature_output_order(keys: list[str], output_names: list[str] | None) -> list[str]:
    """Signature output keys in the model's declared order."""
    if output_names and sorted(output_names) == sorted(keys):
        return list(output_names)

    def index(key: str) -> tuple[int, str]:
        tail = key.rsplit("_", 1)[-1]
        return (int(tail), key) if tail.isdigit() else (1 << 30, key)

    return sorted(keys, key=index)


def is_saved_model(path: Path) -> bool:
    return path.name == "saved_model.pb" or path.is_dir() and (path / "saved_model.pb").is_file()


def artifact_runner(path: Path, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    """The runner of the file at ``path``, whatever its format; it carries ``path`` (task checks reach the files
    beside it: an encoder-decoder's encoder)."""
    run = _runner_of(path, input_names, output_names)
    try:
        run.path = path  # type: ignore[attr-defined]
    except AttributeError:  # a bound method or builtin: wrap it
        inner = run

        def run(feeds: dict[str, Any]) -> list[Any]:
            return inner(feeds)

        run.path = path  # type: ignore[attr-defined]
    return run


def _runner_of(path: Path, input_names: list[str], output_names: list[str] | None = None) -> Runner:
    if is_saved_model(path):
        return saved_model_runner(path, input_names, output_names)
    if path.suffix == ".onnx":
        return onnx_runner(path)
    if path.suffix == ".pt2":
        return pt2_runner(path, input_names)
    if path.suffix == ".tflite" and path.name == "decoder.tflite" and (path.parent / "encoder.tflite").is_file() \
            and any(n.startswith("past_key_values.") for n in input_names):
        from zoo.converters.tasks.seq2seq_lite import PairLite  # an encoder-decoder's static decoder

        contract = {"decoder": {"inputs": list(input_names), "outputs": list(output_names or [])}}
        return PairLite(path, contract, tflite_interpreter).run
    if path.suffix == ".tflite":
        return tflite_runner(path, input_names, output_names)
    if path.suffix == ".keras":
        return keras_file_runner(path, input_names)
    if path.suffix == ".jax":
        return jax_runner(path, input_names)
    raise errors.UnsupportedFormatError(f"zoo cannot run {path.name}",
                                        hint="supported: .onnx, .pt2, .tflite, .keras, .jax files and SavedModel directories")

"""What ``assert_parity`` compares: a model name, a model file, a pulled artifact, or a model in memory
(a torch module, a Keras model, an ONNX ``ModelProto``, or any callable ``feeds -> outputs``), each made
into a runner with what it knows of its inputs. Names and files go through ``zoo.comparison``, the code
``zoo parity`` runs; nothing here runs a model another way."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from zoo import errors
from zoo.settings import Settings

Runner = Callable[[dict[str, Any]], list[Any]]


@dataclass
class Side:
    label: str
    run: Runner
    inputs: list[Any] | None = None  # InputSets zoo would feed it (a name's, or a file's signature)
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    classifiers: list[str] = field(default_factory=list)
    torch_model: Any = None  # something with .module and .input_names: the divergence locator's reference
    onnx_path: Path | None = None  # an ONNX candidate: where the divergence locator looks
    dtype: str = "float32"


def resolve(obj: Any, settings: Settings, *, like: Side | None = None) -> Side:
    """A Side for ``obj``; ``like`` (the reference) lends its input and output names to a candidate that
    does not name its own."""
    from zoo.comparison import file_dtype, file_side, is_model_file, model_side

    names = like.input_names if like else None
    outputs = like.output_names if like else None
    if hasattr(obj, "path") and hasattr(obj, "parity") and hasattr(obj, "__fspath__"):  # a PulledArtifact
        obj = obj.path
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if is_model_file(text):
            side = file_side(text, settings, names, outputs)
            return Side(side["label"], side["run"], side.get("inputs"), side.get("names") or names,
                        side.get("outputs") or outputs, onnx_path=Path(text) if text.endswith(".onnx") else None,
                        dtype=file_dtype(Path(text)))
        if Path(text).suffix.lower() in (".onnx", ".pt2", ".tflite", ".keras") and not Path(text).exists():
            raise errors.NotFoundError(f"{text} does not exist", hint="build or pull it first (zoo.testing.pull)")
        if isinstance(obj, os.PathLike) or Path(text).exists():
            raise errors.UsageError(f"{text} is not a model file zoo can run",
                                    hint="pass an .onnx, .pt2, .tflite or .keras file, a SavedModel directory, or a model name")
        side = model_side(text, settings)
        return Side(side["label"], side["run"], side["inputs"], side["names"], side["outputs"], list(side["classifiers"]),
                    torch_model=side.get("torch_model"))
    return _in_memory(obj, names, outputs)


def _in_memory(obj: Any, names: list[str] | None, outputs: list[str] | None) -> Side:
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if _is_instance(obj, "torch.nn", "Module"):
        from zoo.converters.parity.runners import torch_runner

        wrapped = SimpleNamespace(module=obj.eval(), input_names=list(names or []))
        run = torch_runner(wrapped)

        def run_torch(feeds: dict[str, Any]) -> list[Any]:
            if not wrapped.input_names:
                wrapped.input_names = list(feeds)
            return run(feeds)

        return Side(f"torch {type(obj).__name__}", run_torch, None, names, outputs, torch_model=wrapped)
    if _is_instance(obj, "keras", "Model") or _is_instance(obj, "tf_keras", "Model"):
        from zoo.converters.parity.runners import keras_runner

        own = [getattr(t, "name", None) for t in getattr(obj, "inputs", [])]
        input_names = names or [n.split(":")[0] for n in own if n]
        return Side(f"keras {getattr(obj, 'name', type(obj).__name__)}", keras_runner(obj, input_names), None, input_names,
                    outputs)
    if _is_instance(obj, "onnx", "ModelProto"):
        return _onnx_proto(obj, outputs)
    if callable(obj):
        return Side(getattr(obj, "__name__", kind), lambda feeds: list(obj(feeds)), None, names, outputs)
    raise errors.UsageError(f"assert_parity cannot run a {kind}",
                            hint="pass a model name, a model file or artifact path, a torch module, a Keras model, "
                                 "an onnx.ModelProto, or a callable feeds -> outputs")


def _onnx_proto(model: Any, outputs: list[str] | None) -> Side:
    import onnxruntime as ort

    from zoo.converters.parity.inputs import file_input_sets, onnx_signature

    spec, own_outputs, meta = onnx_signature(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [s["name"] for s in spec]
    return Side(f"onnx {model.graph.name or 'model'}", lambda feeds: session.run(None, {n: feeds[n] for n in names}),
                file_input_sets(spec, meta), names, own_outputs or outputs)


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """isinstance against a framework class, without importing the framework when the caller did not."""
    import sys

    top = sys.modules.get(module)
    if top is None:
        return False
    cls = getattr(top, name, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def input_sets(inputs: Any, reference: Side, candidate: Side) -> list[Any]:
    """The sets to feed: the caller's (one array, a dict of arrays, or a list of either or of InputSets;
    all counted as real data), else those zoo makes for the reference, else for the candidate."""
    from zoo.converters.parity.report import InputSet

    if inputs is None:
        sets = reference.inputs or candidate.inputs
        if not sets:
            raise errors.UsageError(f"zoo cannot tell what to feed {reference.label}",
                                    hint="pass inputs= (an array, a dict of arrays, or a list of them)")
        return sets
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    sets = []
    for i, item in enumerate(items):
        if isinstance(item, InputSet):
            sets.append(item)
            continue
        if not isinstance(item, dict):
            names = reference.input_names or candidate.input_names or []
            if len(names) > 1:
                raise errors.UsageError(f"the models take {len(names)} inputs ({', '.join(names)}): pass a dict of arrays")
            item = {(names[0] if names else "input"): item}
        sets.append(InputSet(f"given-{i}", dict(item), kind="sample"))
    return sets

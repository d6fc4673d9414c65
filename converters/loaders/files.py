"""Model files a user holds, as sources for ``zoo convert``: each kind is
detected from the path, opened into what the first edge of the chain takes,
and described by its own signature (the inputs parity feeds it) and a
reference runner (what the result is checked against).

Opening a source loads it: a SavedModel is a TensorFlow program (checked first
for ops that touch files or run Python, ``converters/saved_model_check.py``), a
``.keras`` file is deserialised in keras' safe mode (no Lambda bytecode, no
unregistered classes). Only the conversion process opens sources, after the
cache lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class OpenedSource:
    model: Any  # what the chain's first edge receives: a path, or an in-memory model
    spec: list[dict[str, Any]]  # name, shape (None or a name = dynamic), dtype
    outputs: list[str]
    reference: Callable[[dict[str, Any]], list[Any]]
    metadata: dict[str, str] = field(default_factory=dict)  # zoo.* metadata carried over to ONNX results
    dtype: str = "float32"  # the source's own precision class: results are checked at least this loosely
    graph: Any = None  # an ONNX source's ModelProto: its graph tells parity what inputs fit


@dataclass(frozen=True)
class SourceKind:
    name: str  # what errors and the manifest call it
    node: str  # the graph node the chain starts from
    detect: Callable[[Path], bool]
    open: Callable[[Path], OpenedSource]


def open_onnx(path: Path) -> OpenedSource:
    import onnx

    from zoo.converters.parity.inputs import onnx_signature
    from zoo.converters.parity.runners import onnx_runner
    from zoo.safety import check_onnx_external_data

    check_onnx_external_data(path)
    model = onnx.load(str(path), load_external_data=False)  # parsed once for the signature and the precision
    spec, outputs, meta = onnx_signature(model)
    # The reference session is made on first use: a graph onnxruntime cannot load (an op only a
    # converter might refuse) is then reported by that converter, naming every such node.
    return OpenedSource(path, spec, outputs, _on_first_use(lambda: onnx_runner(path)), meta, onnx_precision(model), model)


def _on_first_use(make: Callable[[], Callable[[dict[str, Any]], list[Any]]]) -> Callable[[dict[str, Any]], list[Any]]:
    made: list = []

    def run(feeds: dict[str, Any]) -> list[Any]:
        if not made:
            made.append(make())
        return made[0](feeds)

    return run


_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                  "QLinearConv", "QLinearMatMul"}


def onnx_precision(model: Any) -> str:
    """"int4" for 4-bit weights (``MatMulNBits`` with bits 4, zoo's onnx-int4), "int8" for a quantised graph,
    "float16" for one holding fp16 weights, else "float32": an fp16 or int8 file re-expressed at fp32 (onnx ->
    pt2) differs from onnxruntime's own kernels by its rounding."""
    import onnx

    for node in model.graph.node:
        if node.op_type == "MatMulNBits" and any(a.name == "bits" and a.i <= 4 for a in node.attribute):
            return "int4"
    if any(node.op_type in _QUANTIZED_OPS for node in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "float16"
    return "float32"


def open_saved_model(path: Path) -> OpenedSource:
    from zoo.converters.edges.tf import SAVED_MODEL, saved_model_dir
    from zoo.converters.loaders.saved_model_check import check_saved_model
    from zoo.converters.parity.runners import (
        load_serving_signature,
        signature_input_names,
        signature_output_order,
        signature_runner,
    )

    check_saved_model(saved_model_dir(path))  # read as data first: no file or Python ops
    fn = load_serving_signature(path)
    named = signature_input_names(fn)  # the SignatureDef's names (past_key_values.0.key), not Python's keywords
    spec = [{"name": named[key], "shape": s.shape.as_list() if s.shape.rank is not None else [None], "dtype": s.dtype.name}
            for key, s in fn.structured_input_signature[1].items()]
    outputs = signature_output_order(list(fn.structured_outputs), None)
    return OpenedSource(saved_model_dir(path) / SAVED_MODEL, spec, outputs, signature_runner(fn, [s["name"] for s in spec], outputs))


def open_keras_file(path: Path) -> OpenedSource:
    from zoo.converters.loaders.keras_models import keras_model_from, load_keras_file
    from zoo.converters.parity.runners import keras_runner

    km = keras_model_from(load_keras_file(path))
    spec = [{"name": n, "shape": [None, *t.shape[1:]], "dtype": str(t.dtype)} for n, t in zip(km.input_names, km.model.inputs)]
    return OpenedSource(km, spec, km.output_names, keras_runner(km.model, km.input_names))


def open_pt2(path: Path) -> OpenedSource:
    """A ``.pt2`` zoo wrote (the caller checks provenance; ``load_program`` checks the archive)."""
    from zoo.converters.loaders.pt2_archive import pt2_signature
    from zoo.converters.parity.runners import pt2_runner

    spec, outputs, meta = pt2_signature(path)
    return OpenedSource(path, spec, outputs, pt2_runner(path, [s["name"] for s in spec]), meta)


def open_tflite(path: Path) -> OpenedSource:
    from zoo.converters.loaders.tflite_file import tflite_precision, tflite_signature
    from zoo.converters.parity.runners import tflite_runner

    spec, outputs, meta, _ = tflite_signature(path)
    runner = tflite_runner(path, [s["name"] for s in spec], outputs)
    return OpenedSource(path, spec, outputs, runner, meta, tflite_precision(path))


def is_saved_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


# First match wins; a directory that is none of these is imported as a Hugging Face / timm model.
SOURCE_KINDS = [
    SourceKind("ONNX file", "onnx", lambda p: p.is_file() and p.suffix.lower() == ".onnx", open_onnx),
    SourceKind("TensorFlow SavedModel", "tf", is_saved_model_dir, open_saved_model),
    SourceKind("Keras file", "keras-model", lambda p: p.is_file() and p.suffix.lower() == ".keras", open_keras_file),
    SourceKind("TFLite file", "tflite", lambda p: p.is_file() and p.suffix.lower() == ".tflite", open_tflite),
    SourceKind("torch.export program (.pt2) zoo wrote", "pt2", lambda p: p.is_file() and p.suffix.lower() == ".pt2", open_pt2),
]


def detect_source(path: Path) -> SourceKind | None:
    return next((kind for kind in SOURCE_KINDS if kind.detect(path)), None)

"""The ONNX files zoo produces for each tiny model family, exported the way zoo
exports them (``zoo.converters.edges.torch_onnx.export_onnx`` with either exporter, or
tf2onnx for Keras), plus the source model to check a conversion against.

Used by the ONNX -> PyTorch tests, ``scripts/onnx_ops.py`` (the op inventory)
and ``bench/bench_onnx_torch.py``. Heavy frameworks are imported inside.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

# timm architecture -> input size (seeded random weights, as tests/builders.py makes them)
TIMM_FAMILIES = {
    "test_resnet": 160,
    "test_efficientnet": 160,
    "test_vit": 160,
    "test_convnext": 160,
    "mobilenetv3_small_050": 128,
}
TEXT_FAMILIES = {"tiny-bert": "base", "tiny-bert-sst": "sequence-classification"}  # name -> BERT head
KERAS_FAMILY = "keras-mobilenetv2"
FAMILIES = [*TIMM_FAMILIES, *TEXT_FAMILIES, KERAS_FAMILY]
EXPORTERS = ("dynamo", "torchscript")


@dataclass
class Family:
    name: str
    model: Any  # TorchModel (timm, transformers) or KerasModel
    is_text: bool
    input_shape: tuple[int, ...]  # one input set at batch 1 (text: sequence 16)

    def feeds(self, batch: int, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        if self.is_text:
            return {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64),
                    "attention_mask": np.ones((batch, seq), np.int64),
                    "token_type_ids": np.zeros((batch, seq), np.int64)}
        return {"input": rng.standard_normal((batch, *self.input_shape[1:])).astype(np.float32)}

    def reference(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The source model's outputs (PyTorch or Keras) on ``feeds``."""
        from zoo.converters.parity.runners import keras_runner, torch_runner

        if self.name == KERAS_FAMILY:
            return keras_runner(self.model.model, self.model.input_names)(feeds)
        return torch_runner(self.model)(feeds)


def build_family(name: str) -> Family:
    if name in TIMM_FAMILIES:
        return _timm_family(name)
    if name in TEXT_FAMILIES:
        return _text_family(name)
    if name == KERAS_FAMILY:
        return _keras_family()
    raise ValueError(f"unknown family {name!r}; known: {FAMILIES}")


def _timm_family(arch: str) -> Family:
    from builders import _timm_model

    from zoo.converters.loaders.torch_models import TorchModel

    module = _timm_model(arch, seed=0)
    tm = TorchModel(module, ["input"], ["logits"], {"input": {0: "batch"}, "logits": {0: "batch"}},
                    classifier_outputs=["logits"])
    size = TIMM_FAMILIES[arch]
    return Family(arch, tm, False, (1, 3, size, size))


def _text_family(name: str) -> Family:
    from builders import bert_repo

    from zoo.converters.loaders.torch_models import build_transformers
    from zoo.registry.records import ModelRecord, text_input_spec

    head = TEXT_FAMILIES[name]
    task = "text-classification" if head == "sequence-classification" else "feature-extraction"
    tmp = Path(tempfile.mkdtemp(prefix=f"zoo-{name}-"))
    for path, data in bert_repo(head).items():
        (tmp / path).write_bytes(data)
    record = ModelRecord(id=f"zoo-test/{name}", source="hf", name=name, library="transformers", arch="BertModel",
                         task=task, input_spec=text_input_spec(["input_ids", "attention_mask", "token_type_ids"]))
    tm = build_transformers(record, tmp, ["model.safetensors"], "safetensors", lambda _m: None)
    return Family(name, tm, True, (1, 16))


def _keras_family() -> Family:
    from builders import keras_mobilenet_v2_weights

    from zoo.converters.loaders.keras_models import KerasModel, import_keras

    keras = import_keras()
    file_name, data = keras_mobilenet_v2_weights(96)
    path = Path(tempfile.mkdtemp(prefix="zoo-keras-")) / file_name
    path.write_bytes(data)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=str(path), classifier_activation=None)
    return Family(KERAS_FAMILY, KerasModel(model, ["input"], ["logits"], classifier_outputs=["logits"]),
                  False, (1, 96, 96, 3))


def export_family(family: Family, exporter: str, out_dir: Path, opset: int = 18) -> Path:
    """Write ``family``'s ONNX file as zoo would (``exporter``: dynamo, torchscript; tf2onnx for Keras)."""
    from zoo.converters.graph import EdgeContext

    out_dir.mkdir(parents=True, exist_ok=True)
    if family.name == KERAS_FAMILY:
        from zoo.converters.edges.from_keras import keras_to_onnx

        return keras_to_onnx(family.model, out_dir, EdgeContext(opset=opset))
    from zoo.converters.edges.torch_onnx import export_onnx
    from zoo.converters.parity.runners import torch_inputs

    example = torch_inputs(family.feeds(2), family.model.input_names)
    path = out_dir / "model.onnx"
    export_onnx(family.model, example, path, opset=opset, exporter=exporter, seq_max=128 if family.is_text else None)
    return path


def family_exports(names: list[str] | None = None, exporters: tuple[str, ...] = EXPORTERS,
                   root: Path | None = None, on_export: Callable[[str, str, Path], None] | None = None
                   ) -> dict[tuple[str, str], tuple[Family, Path]]:
    """Every (family, exporter) ONNX file under ``root``; Keras has the one exporter, tf2onnx."""
    root = root or Path(tempfile.mkdtemp(prefix="zoo-onnx-families-"))
    out: dict[tuple[str, str], tuple[Family, Path]] = {}
    for name in names or FAMILIES:
        family = build_family(name)
        for exporter in (("tf2onnx",) if name == KERAS_FAMILY else exporters):
            path = export_family(family, exporter, root / name / exporter)
            out[(name, exporter)] = (family, path)
            if on_export:
                on_export(name, exporter, path)
    return out

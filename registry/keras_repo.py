"""Hugging Face repos holding a Keras 3 model: a ``model.keras`` file, or the
unzipped layout ``keras.saving.save_model(model, "hf://org/name")`` uploads
(``config.json``, ``metadata.json``, ``model.weights.h5``, ``assets/``,
``README.md``). Described from the config alone: no TensorFlow import here,
and no code from the repo, ever (keras loads it in safe mode later).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.registry.records import ModelRecord

KERAS_FILE = "model.keras"
KERAS_WEIGHTS = "model.weights.h5"
KERAS_METADATA = "metadata.json"
_MAX_CONFIG_BYTES = 64 << 20


def keras_files(present: set[str]) -> tuple[list[str], list[str]] | None:
    """(files, weights) to fetch when the repo holds a Keras 3 model, else None."""
    if KERAS_FILE in present:
        return [KERAS_FILE], [KERAS_FILE]
    if {KERAS_WEIGHTS, KERAS_METADATA, "config.json"} <= present:
        return ["config.json", KERAS_METADATA, KERAS_WEIGHTS], [KERAS_WEIGHTS]
    return None


def read_keras_config(root: Path, weights: str) -> dict[str, Any]:
    """The model config: ``config.json`` beside the weights, or inside a ``.keras`` zip."""
    try:
        if weights.endswith(".keras"):
            with zipfile.ZipFile(root / weights) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > _MAX_CONFIG_BYTES:
                    raise errors.InvalidModelError(f"{weights}: config.json is {info.file_size} bytes; refusing")
                return json.loads(archive.read(info).decode("utf-8"))
        return json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise errors.InvalidModelError(f"{weights}: no readable Keras config ({type(exc).__name__}: {exc})",
                                       hint="save the model with keras.saving.save_model (Keras 3)") from exc


def check_modules(config: Any) -> None:
    """Every class the config names must come from keras itself: zoo never imports other code."""
    if isinstance(config, dict):
        module = config.get("module")
        if isinstance(module, str) and module != "keras" and not module.startswith("keras."):
            raise errors.UnsafeModelError(
                f"the Keras config names a class from module {module!r} ({config.get('class_name')})",
                hint="zoo loads only built-in Keras layers; custom layers would need code from the repo, which zoo never runs")
        for value in config.values():
            check_modules(value)
    elif isinstance(config, list):
        for value in config:
            check_modules(value)


def _input_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    layers = (config.get("config") or {}).get("layers") or []
    return [layer.get("config") or {} for layer in layers if layer.get("class_name") == "InputLayer"]


def input_spec(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Input names, shapes and dtypes from the InputLayers (Functional and Sequential models)."""
    found = _input_layers(config)
    if not found and (config.get("config") or {}).get("build_input_shape"):
        found = [{"batch_shape": config["config"]["build_input_shape"], "dtype": "float32"}]
    if not found:
        raise errors.UnsupportedError("the Keras config declares no input shape",
                                      hint="build the model on an Input (keras.Input(shape=...)) before saving it")
    spec = []
    for i, layer in enumerate(found):
        shape = ["batch", *(d if d is not None else "sequence" for d in list(layer["batch_shape"])[1:])]
        dtype = layer.get("dtype") or "float32"
        dtype = dtype.get("config", {}).get("name", "float32") if isinstance(dtype, dict) else dtype
        name = "input" if len(found) == 1 else layer.get("name") or f"input_{i}"
        image = len(shape) == 4 and shape[-1] in (1, 3)
        spec.append({"name": name, "shape": shape, "dtype": dtype, **({"layout": "NHWC"} if image else {})})
    return spec


def describe_keras(base: ModelRecord, root: Path, weights: list[str]) -> ModelRecord:
    from zoo.safety import check_keras_config

    config = read_keras_config(root, weights[0])
    check_modules(config)
    check_keras_config(config, weights[0] if weights[0].endswith(".keras") else "config.json")
    spec = input_spec(config)
    image = len(spec) == 1 and spec[0].get("layout") == "NHWC"
    metadata = {}
    if (root / KERAS_METADATA).is_file():
        try:
            metadata = json.loads((root / KERAS_METADATA).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            metadata = {}
    return ModelRecord(
        id=base.id, source=base.source, name=base.name, repo_id=base.repo_id, library="keras",
        arch=(config.get("config") or {}).get("name") or config.get("class_name"), license=base.license,
        task="image-classification" if image else None, input_spec=spec,
        preprocessing={"layout": "NHWC", "input_size": [spec[0]["shape"][3], *spec[0]["shape"][1:3]]} if image else {},
        extra={"keras_class": config.get("class_name"), "keras_version": metadata.get("keras_version"),
               "keras_layout": "file" if weights[0].endswith(".keras") else "directory"},
    )

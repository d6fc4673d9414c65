"""Build a Keras application with weights from keras' own cache."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.registry.records import ModelRecord


@dataclass
class KerasModel:
    model: Any  # keras.Model
    input_names: list[str]
    output_names: list[str]
    classifier_outputs: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    tokenizer: Any = None


def import_keras() -> Any:
    """Import keras (and TensorFlow), keeping TensorFlow's start-up chatter off stderr:
    TF 2.21 logs before its log level applies, so fd 2 is parked during the import."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    if "triton" not in sys.modules:
        # TensorFlow and Triton (torch's kernel compiler) ship clashing LLVM builds: loading Triton's native
        # module after TensorFlow segfaults, and torch.export imports it (through torch._dynamo) when a chain
        # goes on from Keras to PyTorch. zoo compiles no kernels, so Triton stays out of such processes.
        sys.modules["triton"] = None  # type: ignore[assignment]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ.get("ZOO_DEBUG", "") in ("", "0")
    saved = os.dup(2) if quiet else None
    try:
        if saved is not None:
            sys.stderr.flush()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        import keras
        import tensorflow  # noqa: F401 - its C++ start-up is what logs
    except ImportError as exc:
        raise errors.MissingDependencyError("TensorFlow/Keras is needed for Keras models", hint="pip install 'zoo-hub[tf]'") from exc
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return keras


class _WeightsRequested(Exception):
    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__(request.get("fname"))
        self.request = request


def keras_weights_request(arch: str, size: int) -> dict[str, Any]:
    """The weights file ``keras.applications.<arch>(weights="imagenet")`` at ``size`` would fetch:
    ``{"fname", "origin", "file_hash"}``, as keras itself computes them (the application is built without
    weights and its call to keras' ``get_file`` is intercepted: nothing is downloaded here)."""
    keras = import_keras()
    from keras.src.utils import file_utils

    factory = _factory(keras, arch)

    def intercept(fname: Any = None, origin: Any = None, *args: Any, file_hash: Any = None, **kwargs: Any) -> Any:
        raise _WeightsRequested({"fname": fname or str(origin).rsplit("/", 1)[-1], "origin": origin,
                                 "file_hash": file_hash or kwargs.get("md5_hash")})

    real = file_utils.get_file
    file_utils.get_file = intercept
    try:
        factory(weights="imagenet", input_shape=(size, size, 3), classifier_activation=None)
    except _WeightsRequested as found:
        return found.request
    except ValueError as exc:  # e.g. an input size the application does not support
        raise errors.UsageError(f"keras:{arch} at {size}x{size}: {exc}") from exc
    finally:
        file_utils.get_file = real
    raise errors.UnsupportedError(f"keras:{arch} fetches no ImageNet weights at {size}x{size}")


def _factory(keras: Any, arch: str) -> Any:
    factory = getattr(keras.applications, arch or "", None)
    if factory is None:
        raise errors.UnsupportedError(f"keras {keras.__version__} has no application {arch!r}")
    return factory


def build_keras(record: ModelRecord, weights: Path) -> KerasModel:
    """The application with the weights file the fetch stage brought and hashed (never keras' own download)."""
    keras = import_keras()
    factory = _factory(keras, record.arch or "")
    size = record.input_spec[0]["shape"][1]
    try:
        # logits, as timm and transformers classifiers give: parity on a 1000-way softmax
        # (values ~1e-3) would hardly check anything at an absolute tolerance
        model = factory(weights=str(weights), input_shape=(size, size, 3), classifier_activation=None)
    except ValueError as exc:  # e.g. an input size the application does not support
        raise errors.UsageError(f"keras:{record.arch} at {size}x{size}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a weights file that does not fit the application
        raise errors.InvalidModelError(f"cannot build keras:{record.arch} from {weights.name}: "
                                       f"{type(exc).__name__}: {str(exc)[:300]}",
                                       hint=f"delete {weights} and pull again") from exc
    outputs = [t.name.split("/")[0].split(":")[0] for t in model.outputs]
    outputs = list(getattr(model, "output_names", None) or outputs)
    return KerasModel(model, ["input"], outputs, classifier_outputs=outputs[:1])


def keras_model_from(model: Any) -> KerasModel:
    """Wrap a loaded keras.Model: one input is called "input" (as for Keras applications),
    several keep their tensor names; outputs keep the model's output names."""
    inputs = ["input"] if len(model.inputs) == 1 else [t.name for t in model.inputs]
    outputs = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
    return KerasModel(model, inputs, outputs)


def _load_failure(what: str, exc: BaseException) -> errors.ZooError:
    text = str(exc)
    if "safe_mode" in text or "Lambda" in text:
        return errors.UnsafeModelError(f"keras refused to load {what} in safe mode: {text[:300]}",
                                       hint="the model carries Python code (a Lambda layer); zoo never runs code from model files")
    return errors.InvalidModelError(f"keras cannot load {what}: {type(exc).__name__}: {text[:300]}",
                                    hint="custom layers need their code, which zoo never loads from model files")


def load_keras_file(path: Path) -> Any:
    """A ``.keras`` or legacy ``.h5`` model from an untrusted file: zoo's static check first (no Lambda
    layers, no classes outside keras), then keras itself in safe mode, uncompiled. SavedModel directories
    are programs and are not loaded here."""
    from zoo.safety import check_keras_file

    path = Path(path)
    check_keras_file(path)
    keras = import_keras()
    try:
        return keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001
        raise _load_failure(path.name, exc) from exc


def load_keras_dir(config_path: Path, weights_path: Path) -> Any:
    """The unzipped layout keras' ``hf://`` saving writes (``config.json`` +
    ``model.weights.h5``): the model from its config in safe mode, then its weights."""
    import json

    from zoo.safety import check_keras_config

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidModelError(f"{config_path.name} is not a readable Keras config: {exc}") from None
    check_keras_config(config, f"{config_path.parent.name}/{config_path.name}")  # as for .keras files, before keras
    keras = import_keras()
    try:
        config["compile_config"] = None
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        model.load_weights(str(weights_path))
    except Exception as exc:  # noqa: BLE001
        raise _load_failure(f"{config_path.parent.name}/{config_path.name}", exc) from exc
    return model


def load_keras_snapshot(root: Path, weights: list[str]) -> KerasModel:
    """A Keras 3 model from a fetched Hugging Face snapshot (``model.keras``, or
    ``config.json`` + ``model.weights.h5``), in safe mode."""
    path = root / weights[0]
    model = load_keras_file(path) if path.name.endswith(".keras") else load_keras_dir(root / "config.json", path)
    return keras_model_from(model)

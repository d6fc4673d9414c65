"""Keras applications as a registry source (``keras:MobileNetV2``).

The catalog is a static table (no TensorFlow import). The fetch stage brings the
weights file keras names into keras' own cache (``KERAS_HOME/models``) and hashes
it into the cache key; the model is then built from that file, never from a
download of keras' own. ``mode`` is the preprocessing ``keras.applications.<family>.preprocess_input``
applies: "tf" (x/127.5 - 1), "caffe" (BGR, ImageNet means subtracted), "torch"
(x/255 then ImageNet mean/std), "none" (the model rescales raw 0..255 pixels itself).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Any, Callable

from zoo import errors
from zoo.registry.records import ModelRecord
from zoo.settings import Settings

# name: (default input size, preprocessing mode)
KERAS_APPLICATIONS: dict[str, tuple[int, str]] = {
    "MobileNet": (224, "tf"),
    "MobileNetV2": (224, "tf"),
    "MobileNetV3Small": (224, "none"),
    "MobileNetV3Large": (224, "none"),
    "ResNet50": (224, "caffe"),
    "ResNet101": (224, "caffe"),
    "ResNet50V2": (224, "tf"),
    "VGG16": (224, "caffe"),
    "VGG19": (224, "caffe"),
    "DenseNet121": (224, "torch"),
    "InceptionV3": (299, "tf"),
    "Xception": (299, "tf"),
    "EfficientNetB0": (224, "none"),
    "EfficientNetV2B0": (224, "none"),
    "ConvNeXtTiny": (224, "none"),
    "NASNetMobile": (224, "tf"),
}


def iter_catalog() -> list[ModelRecord]:
    out = []
    for name, (size, mode) in KERAS_APPLICATIONS.items():
        out.append(ModelRecord(
            id=f"keras/{name}", source="keras", name=name, library="keras", arch=name, task="image-classification",
            input_spec=[{"name": "input", "shape": ["batch", size, size, 3], "dtype": "float32", "layout": "NHWC"}],
            preprocessing={"input_size": [3, size, size], "mode": mode, "interpolation": "bilinear", "layout": "NHWC"},
            num_classes=1000, license="apache-2.0 (code); see keras.io for the weights' terms",
            is_default=True,
        ))
    return out


def with_input_size(record: ModelRecord, size: int) -> ModelRecord:
    """The same application at another square input size (keras: names take ``@96`` for 96x96)."""
    rec = ModelRecord.from_dict(record.to_dict())
    rec.input_spec[0]["shape"] = ["batch", size, size, 3]
    rec.preprocessing["input_size"] = [3, size, size]
    rec.extra["input_size"] = size
    return rec


def keras_weights_path(settings: Settings, fname: str) -> Path:
    """Where keras' own cache keeps a weights file (``KERAS_HOME/models``); the name is checked first."""
    from zoo.registry.hf_source import validate_repo_path

    if "/" in fname or "\\" in fname:
        raise errors.InvalidModelError(f"keras names a weights file with a path: {fname!r}")
    validate_repo_path(fname)
    return settings.keras_home / "models" / fname


def fetch_keras_weights(request: dict[str, Any], settings: Settings, note: Callable[[str], None]) -> Path:
    """The weights file keras asked for, from its cache or downloaded into it (verified against the hash
    keras publishes, when it publishes one, and written under a private name then renamed)."""
    path = keras_weights_path(settings, request["fname"])
    if path.is_file():
        return path
    origin, expected = request.get("origin"), request.get("file_hash")
    note(f"downloading {request['fname']} from {origin}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    try:
        hasher = hashlib.sha256() if expected and len(expected) == 64 else hashlib.md5()
        with urllib.request.urlopen(origin, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
        if expected and hasher.hexdigest() != expected:
            raise errors.IntegrityError(f"{request['fname']} from {origin} does not match the hash keras publishes",
                                        hint="retry; if it persists, the download is being tampered with")
        os.replace(tmp, path)
    except OSError as exc:  # URLError and timeouts included
        raise errors.NetworkError(f"cannot download the keras weights {request['fname']} from {origin}: {exc}",
                                  hint=f"connect to the internet once, or place the file in KERAS_HOME/models ({path})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path

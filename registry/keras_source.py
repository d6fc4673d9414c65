"""Keras applications as a registry source (``keras:MobileNetV2``).

The catalog is a static table (no TensorFlow import); weights come through
keras' own cache (``KERAS_HOME/models``), downloaded by keras itself when
missing. ``mode`` is the preprocessing ``keras.applications.<family>.preprocess_input``
applies: "tf" (x/127.5 - 1), "caffe" (BGR, ImageNet means subtracted), "torch"
(x/255 then ImageNet mean/std), "none" (the model rescales raw 0..255 pixels itself).
"""

from __future__ import annotations

from zoo.registry.records import ModelRecord

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

"""The inputs parity is checked on: seeded random batches at several batch
sizes (and sequence lengths), plus a real sample: zoo's generated images
through the model's own preprocessing, or tokenised sentences."""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.parity import InputSet, random_input_sets
from registry.records import ModelRecord

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}
SAMPLE_IMAGES = 4


def image_preprocessing(record: ModelRecord) -> dict[str, Any]:
    """timm-style preprocessing settings for the record (timm or transformers)."""
    pre = record.preprocessing
    if "image_mean" in pre or record.library == "transformers":
        _, h, w = record.input_spec[0]["shape"][1:]
        size = pre.get("size") or {}
        if isinstance(size, dict) and "height" in size:
            h, w = size["height"], size["width"]
        return {"input_size": (3, h, w), "mean": tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
                "std": tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
                "interpolation": _PIL_RESAMPLE.get(pre.get("resample", 2), "bilinear"),
                "crop_pct": 1.0, "crop_mode": "squash"}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()}


def parity_input_sets(record: ModelRecord, tokenizer: Any = None) -> list[InputSet]:
    spec = record.input_spec
    if spec and spec[0]["name"] == "input_ids":
        return _text_sets(record, tokenizer)
    return _image_sets(record)


def _image_sets(record: ModelRecord) -> list[InputSet]:
    from zoo.samples import preprocess_images, sample_images

    item = record.input_spec[0]
    sets = random_input_sets([{"name": item["name"], "shape": item["shape"], "dtype": "float32"}])
    cfg = image_preprocessing(record)
    images = [img for _, img in sample_images(SAMPLE_IMAGES, size=max(cfg["input_size"][1:]) + 32)]
    sets.append(InputSet("sample-images", {item["name"]: preprocess_images(images, **cfg).astype(np.float32)}, kind="sample"))
    return sets


def _text_sets(record: ModelRecord, tokenizer: Any) -> list[InputSet]:
    from zoo.samples import SAMPLE_SENTENCES

    vocab = int(record.extra.get("vocab_size") or getattr(tokenizer, "vocab_size", 1000))
    ranges = {"input_ids": (0, vocab), "attention_mask": (1, 2), "token_type_ids": (0, 1)}
    spec = [{"name": s["name"], "shape": s["shape"], "dtype": "int64", "low": ranges[s["name"]][0],
             "high": ranges[s["name"]][1]} for s in record.input_spec]
    sets = random_input_sets(spec, seq_lens=(16, 7, 33))
    if tokenizer is not None:
        enc = tokenizer(SAMPLE_SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
        feeds = {s["name"]: np.asarray(enc[s["name"]], dtype=np.int64) for s in record.input_spec if s["name"] in enc}
        if len(feeds) == len(record.input_spec):
            sets.append(InputSet("sample-sentences", feeds, kind="sample"))
    return sets

"""The inputs parity is checked on: seeded random batches at several batch
sizes (and sequence lengths), plus real samples: zoo's generated images and
real photographs through the model's own preprocessing, or tokenised
sentences. Models known only by their signature (files) get theirs from
``infer``/``sampling``; :func:`apply_input_request` applies what the user said
(``--input``, ``--inputs``, ``--samples``) to a registry model's sets."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from zoo.converters.parity.report import InputSet
from zoo.errors import UsageError
from zoo.registry.records import ModelRecord

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
    if (record.extra.get("io") or {}).get("files"):  # an encoder-decoder: decoder steps (tasks/seq2seq.py)
        from zoo.converters.tasks.seq2seq import input_sets as seq2seq_sets

        return seq2seq_sets(record)
    if record.task in ("automatic-speech-recognition", "audio-classification") and spec and spec[0]["name"] == "input_values":
        from zoo.converters.tasks.speech import input_sets as speech_sets

        return speech_sets(record, tokenizer)  # here the repo's feature extractor
    if record.task == "zero-shot-image-classification":
        from zoo.converters.tasks.vision import input_sets as zero_shot_sets

        return zero_shot_sets(record, tokenizer)  # here the tokenizer and image processor together
    if record.task == "object-detection" and record.library == "transformers":
        from zoo.converters.tasks.vision import detection_sets

        return detection_sets(record, tokenizer)  # here the repo's image processor
    if record.task == "image-segmentation" and ((record.extra.get("io") or {}).get("outputs") or [None])[0] == \
            "class_queries_logits":
        from zoo.converters.tasks.vision import image_sets

        return image_sets(record, tokenizer)  # here the repo's image processor (Mask2Former's)
    if record.task == "depth-estimation" and record.library == "transformers":
        from zoo.converters.tasks.depth import input_sets as depth_sets

        return depth_sets(record, tokenizer)  # here the repo's image processor
    if record.task == "multiple-choice":
        from zoo.converters.tasks.heads import multiple_choice_sets

        return multiple_choice_sets(record, tokenizer)
    if record.task == "text-generation" and record.extra.get("io"):
        from zoo.converters.tasks.text_generation import input_sets

        return input_sets(record, tokenizer)
    if spec and spec[0]["name"] == "input_ids":
        sets = _text_sets(record, tokenizer)
        if record.task == "fill-mask" and tokenizer is not None:
            from zoo.converters.tasks.heads import masked_input_sets

            sets += masked_input_sets(sets, tokenizer)
        return sets
    if record.library == "keras" and spec and spec[0].get("layout") == "NHWC":
        return _keras_sets(record)
    if record.library == "keras":  # any other Keras model: seeded random inputs from its declared shapes
        return file_input_sets(spec, {})
    return _image_sets(record)


_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def keras_preprocess(pixels: np.ndarray, mode: str) -> np.ndarray:
    """keras.applications' ``preprocess_input`` for NHWC RGB pixels in 0..255."""
    if mode == "tf":
        return pixels / 127.5 - 1.0
    if mode == "caffe":
        return pixels[..., ::-1] - _CAFFE_MEAN_BGR
    if mode == "torch":
        return (pixels / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
    return pixels  # "none": the model rescales itself


def _keras_sets(record: ModelRecord) -> list[InputSet]:

    from zoo.converters.parity.samples import sample_images, sample_photos

    _, h, w, c = record.input_spec[0]["shape"]
    sets = random_input_sets([{"name": "input", "shape": ["batch", h, w, c], "dtype": "float32"}])
    mode = record.preprocessing.get("mode", "tf")
    if mode == "none":  # the model expects raw pixels: random inputs in that range too
        for s in sets:
            s.feeds["input"] = (np.clip(s.feeds["input"] * 64 + 128, 0, 255)).astype(np.float32)
    sets.append(InputSet("sample-images", {"input": keras_images(sample_images(SAMPLE_IMAGES, size=max(h, w)), h, w, mode)},
                         kind="sample"))
    sets.append(InputSet("sample-photos", {"input": keras_images(sample_photos(SAMPLE_IMAGES), h, w, mode)}, kind="sample"))
    return sets


def keras_images(images: list, h: int, w: int, mode: str) -> np.ndarray:
    """Images resized to ``h`` x ``w`` (bilinear) through keras.applications' ``preprocess_input`` mode."""
    from PIL import Image

    resized = [img.convert("RGB").resize((w, h), Image.BILINEAR) for _, img in images]
    pixels = np.stack([np.asarray(img, dtype=np.float32) for img in resized])
    return keras_preprocess(pixels, mode).astype(np.float32)


def _image_sets(record: ModelRecord) -> list[InputSet]:
    from zoo.converters.parity.samples import preprocess_images, sample_images, sample_photos

    item = record.input_spec[0]
    sets = random_input_sets([{"name": item["name"], "shape": item["shape"], "dtype": "float32"}])
    cfg = image_preprocessing(record)
    images = [img for _, img in sample_images(SAMPLE_IMAGES, size=max(cfg["input_size"][1:]) + 32)]
    sets.append(InputSet("sample-images", {item["name"]: preprocess_images(images, **cfg).astype(np.float32)}, kind="sample"))
    photos = sample_photos(SAMPLE_IMAGES)
    sets.append(InputSet("sample-photos", {item["name"]: preprocess_images(photos, **cfg).astype(np.float32)}, kind="sample"))
    return sets


def _text_sets(record: ModelRecord, tokenizer: Any) -> list[InputSet]:
    from zoo.converters.parity.samples import SAMPLE_SENTENCES

    vocab = int(record.extra.get("vocab_size") or getattr(tokenizer, "vocab_size", 1000))
    ranges = {"input_ids": (0, vocab), "attention_mask": (1, 2), "token_type_ids": (0, 1)}
    spec = [{"name": s["name"], "shape": s["shape"], "dtype": "int64", "low": ranges[s["name"]][0],
             "high": ranges[s["name"]][1]} for s in record.input_spec]
    sets = random_input_sets(spec, seq_lens=(16, 7, 33))
    if tokenizer is not None:
        # the sentences as the tokenizer pads them, then again at the export example's length (the first set's),
        # padded or truncated: a static-shape export (litert-torch's tflite) takes only that length, and its
        # float16 and int8 variants must be checked on real text (check_parity's require_samples), not on random
        # ids alone
        length = int(sets[0].feeds["input_ids"].shape[1])
        for name, padding, limit in (("sample-sentences", True, 128),
                                     (f"sample-sentences-s{length}", "max_length", length)):
            enc = tokenizer(SAMPLE_SENTENCES, padding=padding, truncation=True, max_length=limit, return_tensors="np")
            feeds = {s["name"]: np.asarray(enc[s["name"]], dtype=np.int64) for s in record.input_spec
                     if s["name"] in enc}
            if len(feeds) == len(record.input_spec):
                sets.append(InputSet(name, feeds, kind="sample"))
    return sets


_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}


def onnx_signature(path: Any) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """Input spec (name, shape with dim names, dtype), output names and metadata_props of an ONNX file
    (or of a ModelProto already loaded)."""
    import onnx

    model = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path), load_external_data=False)
    init_names = {t.name for t in model.graph.initializer}
    spec = []
    for value in model.graph.input:
        if value.name in init_names:  # old exporters list weights as inputs
            continue
        tensor = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            from zoo import errors

            raise errors.UnsupportedError(f"input {value.name!r} has an ONNX element type zoo cannot feed ({tensor.elem_type})")
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in tensor.shape.dim]
        spec.append({"name": value.name, "shape": shape, "dtype": dtype})
    return spec, [o.name for o in model.graph.output], {p.key: p.value for p in model.metadata_props}


def file_signature(path: Any) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """Input spec, output names and zoo metadata of an ``.onnx`` or ``.pt2`` file."""
    if str(path).endswith(".pt2"):
        from zoo.converters.loaders.pt2_archive import pt2_signature

        return pt2_signature(path)
    return onnx_signature(path)


def file_input_sets(spec: list[dict[str, Any]], metadata: dict[str, str], model: Any = None) -> list[InputSet]:
    """The sets zoo makes up for a model known by its signature (``sampling.signature_input_sets``)."""
    from zoo.converters.parity.sampling import signature_input_sets

    return signature_input_sets(spec, metadata, model=model)[0]


# --- what the user said, for a registry model ---------------------------------------------------------
def record_input_notes(record: ModelRecord | None, sets: list[InputSet]) -> dict[str, str]:
    """How a registry model's sets were made, per input."""
    if not sets:
        return {}
    kinds = ", ".join(s.name for s in sets)
    notes = {}
    seq2seq = record is not None and bool((record.extra.get("io") or {}).get("files"))
    for name, value in sets[0].feeds.items():
        if name.startswith("past_key_values.") and ".encoder." in name:
            how = ("a cross-attention cache of standard normal values, its encoder length as each set's name says "
                   "(the encoder's real outputs on real samples run in the text2text-generation check)")
        elif name.startswith("past_key_values."):
            how = "a cache of standard normal values, its past length as each set's name says"
        elif name == "encoder_attention_mask":
            how = "ones, the last row's last two positions 0 in batches above 1"
        elif name == "input_ids" and seq2seq:
            how = "decoder token ids uniform in the vocabulary (real prompts run in the text2text-generation check)"
        elif name == "input_ids":
            how = "token ids uniform in the vocabulary; sample-sentences: zoo's sentences through the model's tokenizer"
        elif name in ("attention_mask", "token_type_ids"):
            how = "ones" if name == "attention_mask" else "zeros"
            how += "; sample-sentences: from the tokenizer (padded)"
        elif record is not None and record.library == "keras":
            how = f"an image through keras preprocess_input ({record.preprocessing.get('mode', 'tf')}); " \
                  "sample-images and sample-photos: zoo's images and real photographs"
        else:
            how = "an image: standard normal (after normalisation); sample-images and sample-photos: zoo's " \
                  "images and real photographs through the model's own preprocessing"
        notes[name] = f"{value.dtype} {list(value.shape[1:])} per item, sets {kinds}: {how}"
    return notes


def apply_input_request(opened: Any, request: Any, record: ModelRecord | None) -> None:
    """Apply ``--input``/``--inputs``/``--samples`` to a registry model's sets, in place (file sources apply
    them while inferring theirs: ``opened.inputs_requested``)."""
    if opened.inputs_requested:
        return
    if not opened.input_notes:
        opened.input_notes = record_input_notes(record, opened.input_sets)
    if not request:
        return
    from zoo.converters.parity.specs import npz_input_sets

    spec = [{"name": n, "dtype": str(v.dtype), "shape": list(v.shape)} for n, v in opened.input_sets[0].feeds.items()]
    if request.inputs_file is not None:
        opened.input_sets = npz_input_sets(request.inputs_file, spec)
        opened.input_notes = {s["name"]: f"from --inputs {request.inputs_file.name}" for s in spec}
        return
    for given in request.specs:
        if given.name not in opened.input_sets[0].feeds:
            raise UsageError(f"--input {given.name}: the model has no such input",
                             hint=f"its inputs are {', '.join(opened.input_names)}")
        for index, input_set in enumerate(opened.input_sets):
            input_set.feeds[given.name] = _given_array(given, input_set.feeds[given.name], 100 + index, index)
        opened.input_notes[given.name] = given.describe()
    if request.samples_dir is not None:
        samples = _record_samples(record, request.samples_dir, opened)
        opened.input_sets = [s for s in opened.input_sets if s.kind != "sample"] + samples
        for name in samples[0].feeds if samples else ():
            opened.input_notes[name] = opened.input_notes.get(name, "") + f"; {samples[0].name}: from --samples"


def _given_array(given: Any, current: np.ndarray, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if given.shape is None:
        shape = current.shape
    else:
        shape = tuple(d if isinstance(d, int) else (current.shape[i] if i < current.ndim else current.shape[0])
                      for i, d in enumerate(given.shape))
    dtype = np.dtype(given.dtype or str(current.dtype))
    if given.values:
        return np.full(shape, given.values[index % len(given.values)], dtype)
    if given.low is not None:
        if dtype.kind in "iu":
            return rng.integers(int(given.low), int(given.high), shape).astype(dtype)
        return rng.uniform(given.low, given.high, shape).astype(dtype)
    return current.reshape(shape).astype(dtype) if current.size == math.prod(shape) else \
        rng.standard_normal(shape).astype(dtype)


def _record_samples(record: ModelRecord | None, directory: Any, opened: Any) -> list[InputSet]:
    """A registry model's samples from ``--samples DIR``: images through its preprocessing, lines through its tokenizer."""
    from zoo.converters.parity.specs import read_images, read_lines, sample_files

    found = sample_files(directory)
    names = list(opened.input_sets[0].feeds)
    tokenizer = getattr(opened.torch_model, "tokenizer", None)
    if "input_ids" in names and found["text"] and tokenizer is not None:
        enc = tokenizer(read_lines(found["text"]), padding=True, truncation=True, max_length=128, return_tensors="np")
        return [InputSet("samples-text", {n: np.asarray(enc[n], dtype=np.int64) for n in names}, kind="sample")]
    if found["image"] and record is not None and len(names) == 1:
        images = read_images(found["image"])
        if record.library == "keras":
            _, h, w, _ = record.input_spec[0]["shape"]
            array = keras_images(images, h, w, record.preprocessing.get("mode", "tf"))
        else:
            from zoo.converters.parity.samples import preprocess_images

            array = preprocess_images(images, **image_preprocessing(record)).astype(np.float32)
        return [InputSet("samples-images", {names[0]: array}, kind="sample")]
    raise UsageError(f"--samples {directory}: none of its files fits the model's inputs ({', '.join(names)})",
                     hint="images for image models, .txt lines for text models")


# --- random inputs ---------------------------------------------------------------
_BATCH_DIMS = frozenset({"batch", "batch_size", "n", "b"})
_SEQUENCE_DIMS = frozenset({"sequence", "sequence_length", "seq", "seq_len", "tokens", "num_tokens"})


def random_input_sets(
    spec: Sequence[Mapping[str, Any]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    batch_sizes: Sequence[int] = (2, 1, 3),
    seq_lens: int | Sequence[int] = 16,
    dims: Mapping[str, int] | None = None,
) -> list[InputSet]:
    """One deterministic random InputSet per (seed, batch size) pair, zipped.

    ``spec`` items: ``{"name", "shape", "dtype", "low", "high"}``. In a shape,
    None at axis 0 and batch-like names ("batch", "batch_size") take the batch
    size; sequence-like names ("sequence", "seq_len", ...) take ``seq_lens``
    (one length, or one per set); any other name must be given in ``dims``.
    Float inputs are standard normal (uniform in [low, high) when either is
    given); integer inputs uniform in [low, high), default [0, 100); bool fair
    coin flips. Each set draws its inputs in spec order from
    ``np.random.default_rng(seed)``.
    """
    if len(seeds) != len(batch_sizes):
        raise UsageError(f"random_input_sets got {len(seeds)} seeds but {len(batch_sizes)} batch sizes",
                         hint="pass one batch size per seed")
    lengths = [seq_lens] * len(seeds) if isinstance(seq_lens, int) else list(seq_lens)
    if len(lengths) != len(seeds):
        raise UsageError(f"random_input_sets got {len(seeds)} seeds but {len(lengths)} sequence lengths",
                         hint="pass one sequence length, or one per seed")
    sets = []
    for seed, batch, seq_len in zip(seeds, batch_sizes, lengths):
        rng = np.random.default_rng(seed)
        sizes = {"batch": int(batch), "sequence": int(seq_len)}
        feeds = {item["name"]: _random_array(rng, item, sizes, dims or {}) for item in spec}
        sets.append(InputSet(name=f"random-b{batch}-s{seed}", feeds=feeds, kind="random"))
    return sets


def _random_array(rng: Any, item: Mapping[str, Any], sizes: dict[str, int],
                  dims: Mapping[str, int]) -> np.ndarray:
    name = item.get("name", "?")
    try:
        dtype = np.dtype(item.get("dtype", "float32"))
    except TypeError as exc:
        raise UsageError(f"input {name!r} has an unknown dtype {item.get('dtype')!r}",
                         hint="use float32, float16, float64, int64, int32 or bool") from exc
    shape = tuple(_resolve_dim(dim, axis, name, sizes, dims) for axis, dim in enumerate(item["shape"]))
    if dtype.kind == "f":
        if "low" in item or "high" in item:
            values = rng.uniform(float(item.get("low", 0.0)), float(item.get("high", 1.0)), shape)
        else:
            values = rng.standard_normal(shape)
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        low, high = int(item.get("low", 0)), int(item.get("high", 100))
        if high <= low:
            raise UsageError(f"input {name!r} needs high > low, got [{low}, {high})")
        return rng.integers(low, high, shape, dtype=dtype)
    raise UsageError(f"input {name!r} has dtype {dtype} that random inputs cannot be drawn for",
                     hint="use a float, integer or bool dtype")


def _resolve_dim(dim: Any, axis: int, name: str, sizes: dict[str, int], dims: Mapping[str, int]) -> int:
    if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0:
        return dim
    if isinstance(dim, str) and dim in dims:
        return int(dims[dim])
    if (dim is None and axis == 0) or (isinstance(dim, str) and dim.lower() in _BATCH_DIMS):
        return sizes["batch"]
    if isinstance(dim, str) and dim.lower() in _SEQUENCE_DIMS:
        return sizes["sequence"]
    raise UsageError(f"input {name!r} has a dimension {dim!r} at axis {axis} with no size",
                     hint="give its size with --input NAME:SHAPE (e.g. --input x:1x3x224x224)")

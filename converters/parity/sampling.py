"""Real samples for a model known by its signature: photographs, speech, text bytes or tokenised lines,
put into the inputs the plans (``infer``) describe, at the model's real input size; and the one
function the sources call, :func:`signature_input_sets`, which makes every set and says how."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from zoo import errors
from zoo.converters.parity.infer import Plan, Plans, make_feeds, plan_inputs, probe, random_sets
from zoo.converters.parity.specs import InputRequest

if TYPE_CHECKING:
    from zoo.converters.parity.report import InputSet

SAMPLE_PHOTOS = 4


def signature_input_sets(spec: list[dict[str, Any]], metadata: dict[str, str] | None = None, *, model: Any = None,
                         reference: Callable[[dict[str, Any]], Any] | None = None,
                         request: InputRequest | None = None) -> tuple[list[InputSet], dict[str, str]]:
    """The input sets of a model known by its signature, and for each input how its values were made.

    ``model``: the ONNX ModelProto when there is one (its graph tells tables, compared constants and the
    stride); ``reference``: the source's runner, to try the first set on (unnamed dims); ``request``: what
    the user said (``--input`` specs shape the made-up sets, ``--inputs`` replaces them all, ``--samples``
    replaces zoo's own samples)."""
    from zoo.converters.parity.specs import npz_input_sets

    request = request or InputRequest()
    if request.inputs_file is not None:
        sets = npz_input_sets(request.inputs_file, spec)
        return sets, {s["name"]: f"from --inputs {request.inputs_file.name}" for s in spec}
    if not request.specs and not request.samples_dir:
        from zoo.converters.tasks.text_generation import contract_input_sets

        contract = contract_input_sets(metadata or {})
        if contract is not None:  # a zoo text-generation file: its cache contract decides the shapes
            return contract, {s["name"]: "from the file's zoo.io cache contract" for s in spec}
    plans = plan_inputs(spec, metadata, model, request)
    if reference is not None:
        plans, _error = probe(plans, reference)  # a source that still raises is reported by run_source
    notes = plans.notes()
    sets = random_sets(plans)
    extra, how = (user_samples(plans, request) if request.samples_dir else builtin_samples(plans))
    for name, text in how.items():
        notes[name] = f"{notes[name]}; {text}"
    return sets + extra, notes


# --- zoo's own samples ---------------------------------------------------------------------------------
def builtin_samples(plans: Plans) -> tuple[list[InputSet], dict[str, str]]:
    from zoo.converters.parity.samples import SAMPLE_SENTENCES, sample_audio, sample_photos

    sets: list[InputSet] = []
    how: dict[str, str] = {}
    image = _first(plans, "image")
    if image is not None:
        photos = sample_photos(SAMPLE_PHOTOS)
        array, text = image_feed(plans, image, photos)
        sets.extend(_sample_sets(plans, "sample-photos", {image.name: array}))
        how[image.name] = f"sample-photos: {len(photos)} photographs ({', '.join(n for n, _ in photos)}), {text}"
        sets.extend(_generated_images(plans, image))
    audio = _first(plans, "audio")
    if audio is not None:
        rate, length = _rate(plans), _length(plans, audio)
        signal = sample_audio(2, rate=rate, seconds=length / rate)
        sets.extend(_sample_sets(plans, "sample-speech", {audio.name: _audio_feed(audio, signal)}))
        how[audio.name] = f"sample-speech: 2 synthesised speech-like signals, {length} samples at {rate} Hz"
    text = _first(plans, "bytes")
    if text is not None:
        sets.extend(_sample_sets(plans, "sample-text-bytes", {text.name: _bytes_feed(plans, text, SAMPLE_SENTENCES[:4])}))
        how[text.name] = "sample-text-bytes: 4 English sentences as UTF-8 bytes, zero-padded"
    return sets, how


def _first(plans: Plans, role: str) -> Plan | None:
    return next((p for p in plans.inputs if p.role == role), None)


def _size(plans: Plans, dim: Any) -> int:
    return dim if isinstance(dim, int) else plans.sizes[dim][0]


def image_feed(plans: Plans, plan: Plan, images: list[tuple[str, Any]]) -> tuple[Any, str]:
    """``images`` as the model's image input: through zoo.preprocessing when the model carries it, else
    squashed to the input size with pixels mapped to the range its random sets use."""
    import numpy as np

    from zoo.converters.parity.samples import image_array, preprocess_images

    spatial = plan.dims[2:4] if plan.layout == "NCHW" else plan.dims[1:3]
    channels = plan.dims[1] if plan.layout == "NCHW" else plan.dims[3]
    height, width = (_size(plans, d) for d in spatial)
    pre = json.loads(plans.metadata.get("zoo.preprocessing") or "{}")
    if "input_size" in pre and plan.layout == "NCHW" and tuple(pre["input_size"][1:]) == (height, width):
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()}
        return preprocess_images(images, **cfg).astype(plan.dtype), "through the model's zoo.preprocessing"
    low, high = (0.0, 255.0) if plan.dtype == "uint8" else \
        (plan.rule["low"], plan.rule["high"]) if plan.rule["kind"] in ("uniform", "int") else (0.0, 1.0)
    array = image_array(images, height=height, width=width, channels=int(channels), layout=plan.layout, low=low, high=high)
    if plan.dtype == "uint8":
        array = np.clip(np.rint(array), 0, 255)
    return array.astype(plan.dtype), f"resized to {height}x{width}, pixels mapped to {low:g}..{high:g}"


def _generated_images(plans: Plans, plan: Plan) -> list[InputSet]:
    """zoo's generated images too, for files that carry zoo's exact preprocessing (as before photographs)."""
    from zoo.converters.parity.samples import sample_images

    pre = json.loads(plans.metadata.get("zoo.preprocessing") or "{}")
    if "input_size" not in pre:
        return []
    array, _ = image_feed(plans, plan, sample_images(4, size=max(pre["input_size"][1:]) + 32))
    return _sample_sets(plans, "sample-images", {plan.name: array})


def _rate(plans: Plans) -> int:
    rate = _first(plans, "rate")
    return int(rate.rule["value"]) if rate is not None and rate.rule["kind"] == "value" else 16000


def _length(plans: Plans, plan: Plan) -> int:
    return _size(plans, plan.dims[-1])


def _audio_feed(plan: Plan, signal: Any) -> Any:
    if len(plan.dims) == 1:
        return signal[0].astype(plan.dtype)
    return (signal[:, None, :] if len(plan.dims) == 3 else signal).astype(plan.dtype)


def _bytes_feed(plans: Plans, plan: Plan, lines: list[str]) -> Any:
    import numpy as np

    from zoo.converters.parity.specs import fit_length

    arrays = [np.frombuffer(line.encode("utf-8"), dtype=np.uint8).astype(plan.dtype) for line in lines]
    length = plan.dims[-1] if isinstance(plan.dims[-1], int) else None
    array = fit_length(arrays, length)
    return array if len(plan.dims) == 2 else array.reshape(-1)[: _size(plans, plan.dims[0])]


def _sample_sets(plans: Plans, name: str, arrays: dict[str, Any]) -> list[InputSet]:
    """Sample sets: one, or one per chunk of samples when the model's batch is fixed (a [1, 3, 640, 640]
    detector takes one photograph at a time)."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    first = next(iter(arrays.values()))
    batch = first.shape[0] if first.ndim else 1
    fixed = next((p.dims[0] for p in plans.inputs if p.name in arrays and p.dims and isinstance(p.dims[0], int)
                  and len(p.dims) >= 2), None)
    if fixed and batch > fixed:
        chunks = [{k: v[i:i + fixed] for k, v in arrays.items()} for i in range(0, batch - fixed + 1, fixed)]
        return [_sample_sets(plans, f"{name}-{i + 1}", chunk)[0] for i, chunk in enumerate(chunks)]
    sizes = {key: values[0] for key, values in plans.sizes.items()}
    sizes["batch"] = batch
    for plan in plans.inputs:  # dims the samples fix (a length) hold for the other inputs that share them
        if plan.name in arrays:
            for dim, size in zip(plan.dims, arrays[plan.name].shape):
                if isinstance(dim, str):
                    sizes[dim] = size
    return [InputSet(name, make_feeds(np, np.random.default_rng(7), plans, sizes, 0, override=arrays), kind="sample")]


# --- --samples DIR -------------------------------------------------------------------------------------
def user_samples(plans: Plans, request: InputRequest) -> tuple[list[InputSet], dict[str, str]]:
    from zoo.converters.parity.specs import read_images, read_lines, read_wav, sample_files

    found = sample_files(request.samples_dir)
    sets: list[InputSet] = []
    how: dict[str, str] = {}
    image, audio = _first(plans, "image"), _first(plans, "audio")
    if found["image"] and image is not None:
        array, text = image_feed(plans, image, read_images(found["image"]))
        sets.extend(_sample_sets(plans, "samples-images", {image.name: array}))
        how[image.name] = f"samples-images: {len(found['image'])} images from --samples, {text}"
    if found["audio"] and audio is not None:
        from zoo.converters.parity.specs import fit_length

        rate = _rate(plans)
        fixed = audio.dims[-1] if isinstance(audio.dims[-1], int) else None
        signal = fit_length([read_wav(p, rate) for p in found["audio"]], fixed)
        sets.extend(_sample_sets(plans, "samples-audio", {audio.name: _audio_feed(audio, signal)}))
        how[audio.name] = f"samples-audio: {len(found['audio'])} .wav files from --samples at {rate} Hz"
    if found["text"]:
        made = _text_set(plans, read_lines(found["text"]), request)
        if made is not None:
            sets.extend(made[0])
            how.update(made[1])
    if not sets:
        raise errors.UsageError(f"--samples {request.samples_dir}: none of its files fits the model's inputs "
                                f"({', '.join(f'{p.name} ({p.role})' for p in plans.inputs)})",
                                hint="images feed image inputs, .wav files audio inputs, .txt lines byte or token inputs "
                                     "(with a tokenizer.json in the directory)")
    return sets, how


def _text_set(plans: Plans, lines: list[str], request: InputRequest) -> tuple[list[InputSet], dict[str, str]] | None:
    byte_input = _first(plans, "bytes")
    if byte_input is not None:
        return (_sample_sets(plans, "samples-text", {byte_input.name: _bytes_feed(plans, byte_input, lines)}),
                {byte_input.name: f"samples-text: {len(lines)} lines from --samples as UTF-8 bytes"})
    ids = _first(plans, "ids")
    tokenizer_file = request.samples_dir / "tokenizer.json"
    if ids is None:
        return None
    if not tokenizer_file.is_file():
        raise errors.UsageError(f"--samples: text lines for {ids.name} need the model's tokenizer",
                                hint=f"put its tokenizer.json into {request.samples_dir}, or pass --inputs FILE.npz of token ids")
    return tokenize_set(plans, lines, tokenizer_file)


def tokenize_set(plans: Plans, lines: list[str], tokenizer_file: Any) -> tuple[list[InputSet], dict[str, str]]:
    """Lines through a ``tokenizer.json`` (the tokenizers library reads it as data), padded to the longest."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(lines)
    columns = {"ids": [e.ids for e in encoded], "mask": [e.attention_mask for e in encoded],
               "type_ids": [e.type_ids for e in encoded]}
    arrays = {}
    for plan in plans.inputs:
        if plan.role in columns:
            arrays[plan.name] = np.asarray(columns[plan.role], dtype=plan.dtype)
        elif plan.role == "position_ids":
            width = len(encoded[0].ids)
            arrays[plan.name] = np.broadcast_to(np.arange(width), (len(lines), width)).astype(plan.dtype)
    how = {name: f"samples-text: {len(lines)} lines from --samples through its tokenizer.json" for name in arrays}
    return _sample_sets(plans, "samples-text", arrays), how

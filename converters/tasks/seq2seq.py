"""Encoder-decoder models as two ONNX graphs a plain onnxruntime loop can run: text2text-generation (T5, BART,
Marian, ...) and the sequence-to-sequence variant of automatic-speech-recognition (Whisper).

``encoder.onnx``: text ``input_ids``, ``attention_mask [batch, encoder_sequence]``, or speech ``input_features
[batch, mel_bins, frames]`` (the repo's feature extractor: Whisper's log-mel, padded to 30 s) ->
``last_hidden_state [batch, encoder_sequence, hidden]`` and, per decoder layer, the cross-attention cache
``present.N.encoder.key|value [batch, heads, encoder_sequence, head_dim]`` (each layer's key and value
projections of the encoder's output: computed once per input, as optimum's ``present.N.encoder.*``).

``decoder.onnx`` (the artifact's primary file): ``input_ids [batch, sequence]`` (the new decoder token(s)), for
text ``encoder_attention_mask``, and per layer the self-attention cache ``past_key_values.N.key|value [batch,
heads, past, head_dim]`` and the cross-attention cache ``past_key_values.N.encoder.key|value`` (the encoder's
``present.N.encoder.*``, the same at every step) -> ``logits [batch, sequence, vocab]`` and ``present.N.key|value``.
One graph for the first step and every later one; no step recomputes the cross-attention keys and values (with
Whisper's 1500 encoder frames that recomputation was most of a step's work: bench/bench_seq2seq.py). The first step
feeds the decoding prompt (``decoding.prompt`` in the contract: the decoder start token; for Whisper also the
language, task and no-timestamps tokens its generation config forces, the language detected by the decoder
where the config leaves it open) with past of length 0.

Parity (``seq2seq_check.generation_results``, the ``text2text-generation`` task check): greedy generation of ``NEW_TOKENS``
tokens from real samples (real-tokenizer prompts, right-padded; for speech, synthetic speech-like clips through the
repo's feature extractor), against the source's ``generate()`` itself (``output_logits``: the raw logits it chose
each token from; the encoder run once and handed to it). The ONNX pair runs once fed generate()'s prompt and
tokens (teacher forcing): its choice at every step identical to generate()'s token at float32, its logits within
``1e-4`` of their range of generate()'s, and every encoder output (the cross-attention cache generate() filled, and
``last_hidden_state``, which no decode step reads) within the same share of its range; its own prompt (Whisper:
the language it detects) must be generate()'s, and where its choices part it decodes on its own once more, to
report its own text. The contract's decoding rules applied to generate()'s own logits must choose generate()'s
tokens (no model run). This is a check of the pair: an encoder whose output is off fails it as a decoder would.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.converters.tasks.generation_rules import config_value as _get

NEW_TOKENS = 20
PROMPTS = [
    "translate English to German: The quick brown fox jumps over the lazy dog",
    "summarize: Once upon a time there was a little girl",
    "hello world",
    "What is the capital of the country where you were born",
]
CLIP_SECONDS = (2.0, 1.3, 3.1)  # synthetic clips of the speech check (each padded to 30 s by Whisper's extractor)
ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
# the formats whose artifact holds both graphs (the ONNX variants convert each; pt2 and jax: two files, tf: one SavedModel
# with two signatures: tasks/seq2seq_export.py; tflite and its quantised variants: two static files,
# tasks/seq2seq_lite.py), each checked by the same generation check (seq2seq_check.pair_runner)
FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "onnx-opt", "pt2", "jax", "tf", "tflite", "tflite-fp16", "tflite-int8")
CHECK = "text2text-generation"  # the task check's name (converters/parity/tasks.py) for both families
# below float32 (onnx-fp16, onnx-int8), as text-generation and with its bounds (text_generation.TOKEN_AGREEMENT,
# LOGIT_RTOL): a near-tie flips one token and the rest of the text with it, so the candidate is fed the
# reference's tokens and must choose the same next token at that share of the steps, its logits within that
# share of their range


def is_speech(config: Any) -> bool:
    return _get(config, "model_type") == "whisper" or _get(config, "num_mel_bins") is not None


def cache_layout(config: Any) -> tuple[int, int, int]:
    """The decoder cache's layers, heads and size per head, from any of the config spellings."""
    layers = _get(config, "num_decoder_layers") or _get(config, "decoder_layers") or _get(config, "num_layers")
    heads = _get(config, "num_heads") or _get(config, "decoder_attention_heads")
    d_kv = _get(config, "d_kv") or (_get(config, "d_model") // heads)
    return int(layers), int(heads), int(d_kv)


def decoding(config: Any, generation: dict[str, Any] | None) -> dict[str, Any]:
    """How ``generate()`` starts and constrains greedy decoding, from ``generation_config.json`` (else
    ``config.json``): the prompt (``None`` where the language is detected: the decoder's argmax over
    ``language_ids`` after the start token, as Whisper's ``detect_language``), the tokens suppressed at every
    step and at the first generated one, and a forced first token.

    Where each value comes from is what transformers does: a repo with a ``generation_config.json`` is decoded
    by that file alone (config.json's legacy ``suppress_tokens``, ``forced_decoder_ids``, ... are not read
    then); a repo without one by ``GenerationConfig.from_model_config``, the generation keys of config.json.
    The decoder starts from ``decoder_start_token_id``, else (not Whisper) ``bos_token_id``; a repo that names
    neither cannot be decoded by ``generate()`` and is refused (exit 7) before anything is downloaded further.
    The logits rules (penalties, n-gram bans, minimum lengths, ...: generation_rules.plan) come from the same
    source; a speech encoder takes no ids, so its encoder rules are not applied, by generate() either."""
    from zoo import errors
    from zoo.converters.tasks import generation_rules

    gen = dict(generation or {})
    source = gen if generation is not None else config
    pick = lambda key: _get(source, key)  # noqa: E731
    start = pick("decoder_start_token_id")
    if start is None and not is_speech(config):
        start = pick("bos_token_id")
    if start is None:
        where = "generation_config.json" if generation is not None else "config.json (the repo has no generation_config.json)"
        raise errors.InvalidModelError(
            f"{where} names no decoder_start_token_id{'' if is_speech(config) else ' nor bos_token_id'}: "
            "transformers' generate() cannot start decoding this encoder-decoder, so zoo cannot check it",
            hint="add \"decoder_start_token_id\": ID to the repo's generation_config.json (the token the decoder "
                 "starts from: <|startoftranscript|> for Whisper, the pad id for T5 and Marian, </s> for BART)")
    prompt: list[int | None] = [start]
    languages = None
    if is_speech(config):  # transformers' WhisperGenerationMixin._retrieve_init_tokens, without arguments
        lang_to_id, task_to_id = gen.get("lang_to_id") or {}, gen.get("task_to_id") or {}
        language, task = gen.get("language"), gen.get("task")
        forced = pick("forced_decoder_ids") if language is None and task is None else None
        if forced and forced[0][0] == 1:
            for i, (position, token) in enumerate(forced):
                if position != i + 1:
                    break
                prompt.append(token)
        if language is not None:
            code = language if str(language).startswith("<|") else f"<|{language}|>"
            prompt[1:2] = [lang_to_id[code]]
        elif lang_to_id and (len(prompt) <= 1 or prompt[1] is None):
            prompt[1:2] = [None]
            languages = sorted(lang_to_id.values())
        if task is not None:
            prompt = [t for t in prompt if t not in task_to_id.values()] + [task_to_id[task]]
        elif language is not None and task_to_id and not any(t in task_to_id.values() for t in prompt):
            prompt.append(task_to_id["transcribe"])
        stamp = gen.get("no_timestamps_token_id")
        if not gen.get("return_timestamps") and stamp is not None and prompt[-1] != stamp:
            prompt.append(stamp)
        prompt = [t for i, t in enumerate(prompt) if t is not None or (languages and i == 1)]
    rules = generation_rules.plan(source, encoder_ids=not is_speech(config))
    return {"prompt": prompt, "language_ids": languages, **rules, "max_length": pick("max_length")}


def io_contract(config: Any, generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The two graphs' names and axes and how to drive them: recorded in zoo.json (``record.extra["io"]``)
    and in both files' ``zoo.io`` metadata. A speech encoder other than Whisper's (filterbank features,
    Speech2Text, SpeechT5) is refused (exit 5): its inputs are not what this contract describes."""
    from zoo import errors
    from zoo.converters.tasks import generation_rules

    kind = _get(config, "model_type")
    if not is_speech(config) and (_get(config, "input_feat_per_channel") is not None
                                  or kind in ("speech_to_text", "speecht5", "speech-encoder-decoder")):
        raise errors.UnsupportedError(f"{kind}: encoder-decoder speech models other than Whisper are not supported yet",
                                      hint="supported: Whisper (automatic-speech-recognition), T5/BART-style "
                                           "text2text-generation, CTC speech heads")
    layers, heads, d_kv = cache_layout(config)
    speech = is_speech(config)
    self_past, cross_past = self_cache_names(layers), cross_cache_names(layers)
    cross_out = [n.replace("past_key_values", "present") for n in cross_past]
    cross_axes = {"present.*.encoder.*": ["batch", "num_heads", "encoder_sequence", "head_dim"]}
    if speech:
        encoder = {"inputs": ["input_features"], "outputs": ["last_hidden_state", *cross_out],
                   "axes": {"input_features": ["batch", "mel_bins", "frames"],
                            "last_hidden_state": ["batch", "encoder_sequence", "hidden"], **cross_axes},
                   "frames": 2 * int(_get(config, "max_source_positions", 1500)),
                   "num_mel_bins": _get(config, "num_mel_bins")}
        context = []
    else:
        encoder = {"inputs": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state", *cross_out],
                   "axes": {"input_ids": ["batch", "encoder_sequence"], "attention_mask": ["batch", "encoder_sequence"],
                            "last_hidden_state": ["batch", "encoder_sequence", "hidden"], **cross_axes}}
        context = ["encoder_attention_mask"]
    past = [n for i in range(layers) for n in (*self_past[2 * i:2 * i + 2], *cross_past[2 * i:2 * i + 2])]
    plan = decoding(config, generation)
    return {
        "files": {"encoder": ENCODER, "decoder": DECODER}, "check": CHECK,
        "encoder": encoder,
        "decoder": {"inputs": ["input_ids", *context, *past],
                    "outputs": ["logits", *[p.replace("past_key_values", "present") for p in self_past]],
                    "axes": {"input_ids": ["batch", "sequence"],
                             **({} if speech else {"encoder_attention_mask": ["batch", "encoder_sequence"]}),
                             "past_key_values.*.key|value": ["batch", "num_heads", "past_sequence", "head_dim"],
                             "past_key_values.*.encoder.*": ["batch", "num_heads", "encoder_sequence", "head_dim"],
                             "logits": ["batch", "sequence", "vocab"],
                             "present.*": ["batch", "num_heads", "past_sequence + sequence", "head_dim"]}},
        "cache": {"num_layers": layers, "num_heads": heads, "head_dim": d_kv,
                  "first_step": "input_ids = decoding.prompt (a null entry: the language, the argmax over "
                                "decoding.language_ids of the logits after the start token), every self-attention "
                                "past_key_values.N.key|value of length 0, past_key_values.N.encoder.* = the "
                                "encoder's present.N.encoder.*",
                  "decode": "feed present.N.key|value of the previous step as past_key_values.N.key|value, the chosen "
                            "token as input_ids; past_key_values.N.encoder.* (and the mask) stay the encoder's",
                  "cross_attention": "cached: encoder.onnx outputs each layer's keys and values "
                                     "(present.N.encoder.key|value, computed once per input); the decoder takes them "
                                     "as past_key_values.N.encoder.key|value and never recomputes them"},
        "decoding": {**plan, "greedy": generation_rules.GREEDY + " (the tokens so far: the decoder's, from the "
                                                                 "prompt on; the encoder's input ids: the text's)"},
        "padding": "right", "hidden_size": _get(config, "d_model"),
        "decoder_start_token_id": _get(config, "decoder_start_token_id"),
        "pad_token_id": _get(config, "pad_token_id"), "eos_token_id": _get(config, "eos_token_id"),
        "vocab_size": _get(config, "vocab_size"),
    }


def self_cache_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]


def cross_cache_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.encoder.{k}" for i in range(layers) for k in ("key", "value")]


def is_cross(name: str) -> bool:
    return ".encoder." in name


def self_cache_inputs(contract: dict[str, Any]) -> list[str]:
    """The decoder's self-attention cache inputs (``past_key_values.N.key|value``), in its input order."""
    return [n for n in contract["decoder"]["inputs"] if n.startswith("past_key_values.") and not is_cross(n)]


def empty_self_cache(contract: dict[str, Any], batch: int) -> dict[str, Any]:
    """The first step's self-attention cache: every ``past_key_values.N.key|value`` of length 0."""
    import numpy as np

    cache = contract["cache"]
    return {n: np.zeros((batch, cache["num_heads"], 0, cache["head_dim"]), np.float32)
            for n in self_cache_inputs(contract)}


def input_spec(contract: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoder's inputs (what the primary file takes) as a record's ``input_spec``."""
    cache = contract["cache"]
    spec = []
    for name in contract["decoder"]["inputs"]:
        if name.startswith("past_key_values."):
            length = "encoder_sequence" if is_cross(name) else "past_sequence"
            spec.append({"name": name, "shape": ["batch", cache["num_heads"], length, cache["head_dim"]],
                         "dtype": "float32", "layout": "BHSD"})
        else:
            spec.append({"name": name, "shape": contract["decoder"]["axes"][name], "dtype": "int64", "layout": "NS"})
    return spec


def input_sets(record: Any) -> list[Any]:
    """Decoder steps for the elementwise check: the first (the export example) a decode step on a random cache
    (2 new tokens after 3), then a prompt-like first step (past 0, 4 tokens) and a one-token step; a random
    cross-attention cache (encoder lengths 7, 5, 6), the text mask with padding in one row. The real samples run in
    the generation check."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    io = record.extra["io"]
    cache, names = io["cache"], io["decoder"]["inputs"]
    vocab = int(io.get("vocab_size") or 100)
    sets = []
    for seed, (batch, seq, past, enc) in enumerate(((2, 2, 3, 7), (1, 4, 0, 5), (3, 1, 9, 6))):
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(0, vocab, (batch, seq), dtype=np.int64)}
        if "encoder_attention_mask" in names:
            mask = np.ones((batch, enc), np.int64)
            mask[-1, enc - 2:] = 0 if batch > 1 else 1
            feeds["encoder_attention_mask"] = mask
        for n in names:
            if n.startswith("past_key_values."):
                length = enc if is_cross(n) else past
                feeds[n] = rng.standard_normal((batch, cache["num_heads"], length, cache["head_dim"])).astype(np.float32)
        sets.append(InputSet(f"random-b{batch}-s{seq}-past{past}-enc{enc}", {n: feeds[n] for n in names}))
    return sets


# --- the two PyTorch modules and their export ------------------------------------------------------------
@dataclass
class Pair:
    """An encoder-decoder model as the two modules the ONNX graphs are made of, with an example for each."""

    model: Any  # the transformers *ForConditionalGeneration
    preprocess: Any  # its tokenizer (text) or feature extractor (speech)
    contract: dict[str, Any]
    encoder: Any
    decoder: Any
    encoder_example: tuple
    encoder_axes: dict[str, dict[int, str]]
    decoder_axes: dict[str, dict[int, str]]
    samples: Any = None  # (feeds, the model's encoder output) of the real samples, sample_encoding's: computed once


def wrap(model: Any) -> tuple[Any, Any]:
    """(encoder, decoder) modules over plain tensors, the forward signatures of the two ONNX graphs."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    layers = cache_layout(model.config)[0]
    speech = is_speech(model.config)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    class Encoder(torch.nn.Module):
        """The encoder's output and each decoder layer's cross-attention keys and values of it: transformers'
        own projections, read from the cross-attention cache one decoder step fills (the rest of that step
        feeds no output, and the exporter drops it)."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> tuple:
            kwargs = {"input_features": inputs[0]} if speech else {"input_ids": inputs[0], "attention_mask": inputs[1]}
            hidden = self.inner.get_encoder()(**kwargs, return_dict=True).last_hidden_state
            return (hidden, *self.cross(hidden, None if speech else inputs[1]))

        def cross(self, hidden: Any, attention_mask: Any = None) -> list:
            """Each decoder layer's cross-attention key and value of the encoder output ``hidden``."""
            cache = EncoderDecoderCache(DynamicCache(config=self.inner.config), DynamicCache(config=self.inner.config))
            start = torch.zeros_like(hidden[:, :1, 0], dtype=torch.long)  # any token: the cross cache ignores it
            mask = {} if attention_mask is None else {"attention_mask": attention_mask}
            out = self.inner(encoder_outputs=(hidden,), decoder_input_ids=start, use_cache=True, return_dict=True,
                             **mask, **{cache_arg: cache})
            return [t for layer in out[cache_arg].cross_attention_cache.layers[:layers] for t in (layer.keys, layer.values)]

    class DecoderWithPast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, *rest: Any) -> tuple:
            mask, past = (None, rest) if speech else (rest[0], rest[1:])
            self_cache = DynamicCache(config=self.inner.config)
            cross_cache = DynamicCache(config=self.inner.config)
            for i in range(layers):  # per layer: key, value, encoder.key, encoder.value
                self_cache.update(past[4 * i], past[4 * i + 1], i)
                cross_cache.update(past[4 * i + 2], past[4 * i + 3], i)
            cache = EncoderDecoderCache(self_cache, cross_cache)  # cross cache filled: is_updated, never recomputed
            # the decoder reads encoder_hidden_states only for the cross-attention projections the cache replaces;
            # it is given a tensor of the right batch and length made from the cached keys
            key = past[2]
            stand_in = key.transpose(1, 2).reshape(key.shape[0], key.shape[2], -1)
            kwargs = {} if speech else {"attention_mask": mask}
            out = self.inner(encoder_outputs=(stand_in,), decoder_input_ids=input_ids, use_cache=True,
                             return_dict=True, **kwargs, **{cache_arg: cache})
            present = []
            for layer in out[cache_arg].self_attention_cache.layers[:layers]:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return Encoder(model).eval(), DecoderWithPast(model).eval()


def sample_set(pair: Pair) -> Any:
    """The decoder's first step on the real samples (the PyTorch encoder run on them, the prompt with the first
    language where it is detected): what the elementwise check compares at a real size. The samples' encoding is
    kept on ``pair`` (``samples``): the generation check's reference starts from it."""
    import numpy as np
    import torch

    from zoo.converters.parity.report import InputSet

    contract = pair.contract
    pair.samples = pair.samples or sample_encoding(pair.model, contract, pair.preprocess)
    feeds, hidden = pair.samples[0], pair.samples[1].last_hidden_state
    with torch.no_grad():
        cross = pair.encoder.cross(hidden, None if "attention_mask" not in feeds else torch.from_numpy(feeds["attention_mask"]))
    encoded = {n: t.numpy() for n, t in zip(contract["encoder"]["outputs"], (hidden, *cross))}
    plan, batch = contract["decoding"], encoded["last_hidden_state"].shape[0]
    first = (plan.get("language_ids") or [0])[0]
    step = {"input_ids": np.array([[first if t is None else t for t in plan["prompt"]]] * batch, np.int64),
            "encoder_attention_mask": feeds.get("attention_mask"), **cross_feeds(encoded)}
    step.update(empty_self_cache(contract, batch))
    speech = "input_features" in contract["encoder"]["inputs"]
    return InputSet("sample-audio" if speech else "sample-prompts",
                    {n: step[n] for n in contract["decoder"]["inputs"]}, kind="sample")


def cross_feeds(encoded: dict[str, Any]) -> dict[str, Any]:
    """The encoder's ``present.N.encoder.*`` outputs as the decoder's ``past_key_values.N.encoder.*`` inputs."""
    return {n.replace("present", "past_key_values", 1): v for n, v in encoded.items() if n.startswith("present.")}


def make_pair(model: Any, preprocess: Any, contract: dict[str, Any]) -> Pair:
    import torch

    encoder, decoder = wrap(model)
    feeds = encoder_feeds(contract, preprocess, samples=2)
    example = tuple(torch.from_numpy(feeds[n]) for n in contract["encoder"]["inputs"])
    cross_out = [n for n in contract["encoder"]["outputs"] if n.startswith("present.")]
    if "input_features" in contract["encoder"]["inputs"]:  # always 30 s of frames: only the batch varies
        enc_axes = {"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"},
                    **{n: {0: "batch"} for n in cross_out}}
    else:
        enc_axes = {n: {0: "batch", 1: "encoder_sequence"} for n in ("input_ids", "attention_mask", "last_hidden_state")}
        enc_axes.update({n: {0: "batch", 2: "encoder_sequence"} for n in cross_out})
    past = self_cache_inputs(contract)
    cross = [n for n in contract["decoder"]["inputs"] if is_cross(n)]
    dec_axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"},
                **{n: {0: "batch", 2: "past_sequence"} for n in past},
                **{n: {0: "batch", 2: "encoder_sequence"} for n in cross},
                **{n.replace("past_key_values", "present"): {0: "batch", 2: "total_sequence"} for n in past}}
    if "encoder_attention_mask" in contract["decoder"]["inputs"]:
        dec_axes["encoder_attention_mask"] = {0: "batch", 1: "encoder_sequence"}
    return Pair(model, preprocess, contract, encoder, decoder, example, enc_axes, dec_axes)


def export(model: Any, preprocess: Any, out_dir: Path, opset: int = 17) -> dict[str, Any]:
    """``encoder.onnx`` and ``decoder.onnx`` in ``out_dir`` (TorchScript exporter, dynamic batch and
    lengths), outside the pipeline; returns the I/O contract."""
    import contextlib
    import io
    import warnings

    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    generation = model.generation_config.to_dict() if getattr(model, "generation_config", None) else None
    contract = io_contract(model.config, generation)
    pair = make_pair(model, preprocess, contract)
    layers, heads, d_kv = cache_layout(model.config)
    with torch.no_grad():
        hidden, *cross = pair.encoder(*pair.encoder_example)
    batch = hidden.shape[0]
    past = []
    for i in range(layers):  # per layer: key, value (a random self cache of length 3), encoder.key, encoder.value
        past += [torch.randn(batch, heads, 3, d_kv), torch.randn(batch, heads, 3, d_kv), cross[2 * i], cross[2 * i + 1]]
    dec_ids = torch.full((batch, 2), int(model.config.decoder_start_token_id), dtype=torch.long)
    context = () if is_speech(model.config) else (pair.encoder_example[1],)
    from zoo.converters.edges.torchscript import lean_shape_inference

    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), lean_shape_inference():
        warnings.simplefilter("ignore")
        torch.onnx.export(pair.encoder, pair.encoder_example, str(out_dir / ENCODER),
                          input_names=contract["encoder"]["inputs"], output_names=contract["encoder"]["outputs"],
                          dynamic_axes=pair.encoder_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        torch.onnx.export(pair.decoder, (dec_ids, *context, *past), str(out_dir / DECODER),
                          input_names=contract["decoder"]["inputs"], output_names=contract["decoder"]["outputs"],
                          dynamic_axes=pair.decoder_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return contract


# --- the real samples (the generation check itself: seq2seq_check.py) ----------------------------------
def encoder_feeds(contract: dict[str, Any], preprocess: Any, prompts: list[str] | None = None,
                  samples: int | None = None) -> dict[str, Any]:
    """The real samples: prompts through the tokenizer (right-padded batch), or synthetic speech-like clips
    through the repo's feature extractor (log-mel, padded to 30 s)."""
    import numpy as np

    if "input_features" in contract["encoder"]["inputs"]:
        from zoo.converters.tasks.speech import synthetic_clip

        rate = int(getattr(preprocess, "sampling_rate", 16000))
        clips = [synthetic_clip(s, rate, seed) for seed, s in enumerate(CLIP_SECONDS[:samples])]
        feats = preprocess(clips, sampling_rate=rate, return_tensors="np")["input_features"]
        return {"input_features": np.asarray(feats, np.float32)}
    enc = preprocess((prompts or PROMPTS)[:samples], padding=True, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


def sample_encoding(model: Any, contract: dict[str, Any], preprocess: Any, prompts: list[str] | None = None
                    ) -> tuple[dict[str, Any], Any]:
    """(the real samples' encoder feeds, the model's own encoder output on them: ``model.get_encoder()`` as
    generate() calls it, a ``BaseModelOutput``)."""
    import torch

    feeds = encoder_feeds(contract, preprocess, prompts)
    with torch.no_grad():
        return feeds, model.get_encoder()(**{k: torch.from_numpy(v) for k, v in feeds.items()}, return_dict=True)

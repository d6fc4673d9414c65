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

Parity (``generation_results``, the ``text2text-generation`` task check): greedy generation of ``NEW_TOKENS``
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
from zoo.converters.tasks.text_generation import LOGIT_RTOL, range_share, token_verdict

NEW_TOKENS = 20
PROMPTS = [
    "translate English to German: The quick brown fox jumps over the lazy dog",
    "summarize: Once upon a time there was a little girl",
    "hello world",
    "What is the capital of the country where you were born",
]
CLIP_SECONDS = (2.0, 1.3, 3.1)  # synthetic clips of the speech check (each padded to 30 s by Whisper's extractor)
ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
# the formats whose artifact holds both graphs (the ONNX variants convert each; other runtimes take one file)
FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "onnx-opt")
CHECK = "text2text-generation"  # the task check's name (converters/parity/tasks.py) for both families
# below float32 (onnx-fp16, onnx-int8), as text-generation and with its bounds (text_generation.TOKEN_AGREEMENT,
# LOGIT_RTOL): a near-tie flips one token and the rest of the text with it, so the candidate is fed the
# reference's tokens and must choose the same next token at that share of the steps, its logits within that
# share of their range


def is_speech(config: Any) -> bool:
    return _get(config, "model_type") == "whisper" or _get(config, "num_mel_bins") is not None


def _layers(config: Any) -> tuple[int, int, int]:
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
    layers, heads, d_kv = _layers(config)
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


def wrap(model: Any) -> tuple[Any, Any]:
    """(encoder, decoder) modules over plain tensors, the forward signatures of the two ONNX graphs."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    layers = _layers(model.config)[0]
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
            cache = EncoderDecoderCache(DynamicCache(config=self.inner.config), DynamicCache(config=self.inner.config))
            start = torch.zeros_like(hidden[:, :1, 0], dtype=torch.long)  # any token: the cross cache ignores it
            mask = {} if speech else {"attention_mask": inputs[1]}
            out = self.inner(encoder_outputs=(hidden,), decoder_input_ids=start, use_cache=True, return_dict=True,
                             **mask, **{cache_arg: cache})
            cross = out[cache_arg].cross_attention_cache.layers[:layers]
            return (hidden, *[t for layer in cross for t in (layer.keys, layer.values)])

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
    language where it is detected): what the elementwise check compares at a real size."""
    import numpy as np
    import torch

    from zoo.converters.parity.report import InputSet

    contract = pair.contract
    feeds = encoder_feeds(contract, pair.preprocess)
    with torch.no_grad():
        outs = pair.encoder(*[torch.from_numpy(feeds[n]) for n in contract["encoder"]["inputs"]])
    encoded = {n: t.numpy() for n, t in zip(contract["encoder"]["outputs"], outs)}
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
    layers, heads, d_kv = _layers(model.config)
    with torch.no_grad():
        hidden, *cross = pair.encoder(*pair.encoder_example)
    batch = hidden.shape[0]
    past = []
    for i in range(layers):  # per layer: key, value (a random self cache of length 3), encoder.key, encoder.value
        past += [torch.randn(batch, heads, 3, d_kv), torch.randn(batch, heads, 3, d_kv), cross[2 * i], cross[2 * i + 1]]
    dec_ids = torch.full((batch, 2), int(model.config.decoder_start_token_id), dtype=torch.long)
    context = () if is_speech(model.config) else (pair.encoder_example[1],)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(pair.encoder, pair.encoder_example, str(out_dir / ENCODER),
                          input_names=contract["encoder"]["inputs"], output_names=contract["encoder"]["outputs"],
                          dynamic_axes=pair.encoder_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        torch.onnx.export(pair.decoder, (dec_ids, *context, *past), str(out_dir / DECODER),
                          input_names=contract["decoder"]["inputs"], output_names=contract["decoder"]["outputs"],
                          dynamic_axes=pair.decoder_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return contract


# --- the generation check ----------------------------------------------------------------------------
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


def onnx_runner(directory: Path, contract: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(encode, decode) callables over the two onnxruntime sessions of an exported directory."""
    import onnxruntime as ort

    files = (contract or {}).get("files") or {"encoder": ENCODER, "decoder": DECODER}
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch runs in turn, as in runners.py
    enc = ort.InferenceSession(str(directory / files["encoder"]), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(directory / files["decoder"]), opts, providers=["CPUExecutionProvider"])
    enc_ins, dec_ins = [i.name for i in enc.get_inputs()], [i.name for i in dec.get_inputs()]
    dec_outs = [o.name for o in dec.get_outputs()]

    enc_outs = [o.name for o in enc.get_outputs()]

    def encode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(enc_outs, enc.run(None, {n: feeds[n] for n in enc_ins})))

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(dec_outs, dec.run(None, {n: feeds[n] for n in dec_ins})))

    return encode, decode


def _choose(logits: Any, plan: dict[str, Any], ids: Any, prompt_length: int, max_length: int,
            encoder_ids: Any = None, no_eos: bool = False) -> Any:
    """The greedy token of one step under the generation config's rules (generation_rules.apply_rules, as
    generate()'s logits processors apply them): ``ids`` every decoder token so far, the prompt first;
    ``max_length`` the loop's length limit (where ``forced_eos_token_id`` applies); ``encoder_ids`` the text
    encoder's input ids; ``no_eos``: the end token suppressed, as ``min_new_tokens`` does: the check's window of
    tokens has no early stop."""
    from zoo.converters.tasks.generation_rules import apply_rules

    return apply_rules(logits, plan, ids, prompt_length, max_length=max_length, encoder_ids=encoder_ids,
                       no_eos=no_eos).argmax(-1).astype("int64")


def own_prompt(decode: Any, context: dict[str, Any], empty: dict[str, Any], plan: dict[str, Any], batch: int) -> Any:
    """The decoding prompt [batch, P] a model gives itself: the contract's, its language slot (a null entry) filled
    by the decoder's argmax over ``language_ids`` of the logits after the tokens before it (one decoder step)."""
    import numpy as np

    prompt = np.array([[t if t is not None else -1 for t in plan["prompt"]]] * batch, np.int64)
    if (prompt < 0).any():
        at = int(np.argmax(prompt[0] < 0))
        langs = np.asarray(plan["language_ids"], np.int64)
        first = decode({**context, "input_ids": prompt[:, :at], **empty})
        prompt[:, at] = langs[np.asarray(first["logits"])[:, -1, langs].argmax(-1)]
    return prompt


def greedy_loop(encode: Any, decode: Any, contract: dict[str, Any], enc_feeds: dict[str, Any], steps: int,
                forced: Any = None, prompt: Any = None, no_eos: bool = True) -> tuple[Any, list[Any], Any]:
    """Greedy decoding: encode once, the prompt, then ``steps`` decoder steps over the self-attention cache.
    Returns (tokens [batch, steps], each step's raw logits [batch, vocab], the model's own prompt [batch, P]);
    ``forced`` feeds those tokens instead of the chosen ones, ``prompt`` that prompt (teacher forcing)."""
    import numpy as np

    plan = contract["decoding"]
    encoded = encode(enc_feeds)
    batch = encoded["last_hidden_state"].shape[0]
    empty = empty_self_cache(contract, batch)
    context = cross_feeds(encoded)  # the cross-attention cache, computed once by the encoder
    if "encoder_attention_mask" in contract["decoder"]["inputs"]:
        context["encoder_attention_mask"] = enc_feeds["attention_mask"]
    own = own_prompt(decode, context, empty, plan, batch)
    fed = own if prompt is None else np.asarray(prompt, np.int64)
    feeds = {**context, "input_ids": fed, **empty}
    ids, limit = fed, fed.shape[1] + steps  # the decoder's tokens so far; the loop's length limit
    tokens, logits = [], []
    for _ in range(steps):
        out = decode(feeds)
        last = np.asarray(out["logits"])[:, -1, :]
        nxt = _choose(last, plan, ids, fed.shape[1], limit, enc_feeds.get("input_ids"), no_eos)
        tokens.append(nxt)
        logits.append(last)
        if forced is not None:
            nxt = np.asarray(forced)[:, len(tokens) - 1].astype(np.int64)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        feeds = {**feeds, "input_ids": nxt[:, None],
                 **{n: out[n.replace("past_key_values", "present")] for n in empty}}
    return np.stack(tokens, axis=1), logits, own


def _encoded_once(encode: Any, feeds: dict[str, Any]) -> Any:
    """``encode`` that runs the encoder once for ``feeds`` (the same dict object) and hands out that result
    again: the check's loops and its encoder comparison all encode the same samples."""
    done: list[Any] = []

    def run(given: dict[str, Any]) -> dict[str, Any]:
        if given is not feeds:
            return encode(given)
        if not done:
            done.append(encode(given))
        return done[0]

    return run


@dataclass
class Generated:
    """What the source's ``generate()`` gave on the samples: the reference of the generation check."""

    tokens: Any  # the ``steps`` new tokens [batch, steps]
    prompt: Any  # the decoding prompt it started from [batch, P] (Whisper: with the language it detected)
    logits: list[Any]  # the raw logits each new token was chosen from ([batch, vocab] per step, output_logits)
    encoded: dict[str, Any]  # the encoder's outputs by the encoder.onnx names (last_hidden_state, present.N.encoder.*)


def reference_generate(model: Any, enc_feeds: dict[str, Any], steps: int) -> Generated:
    """The source's own greedy ``generate()`` on the samples (its generation config's rules; beams and sampling off:
    generation_rules.greedy_kwargs): the ``steps`` new tokens, its prompt, the raw logits it chose them from
    (``output_logits``), and the encoder's outputs: ``last_hidden_state`` from the model's encoder, run once here and
    handed to generate() (Whisper's generate() runs it twice otherwise, for the language and for decoding), each
    layer's cross-attention keys and values from the cache generate() filled. ``min_new_tokens`` keeps the end token
    out of the window: no early stop. (``eos_token_id=None`` would not hold in Whisper's generate(), whose inner call
    restores it.)"""
    import numpy as np
    import torch

    from zoo.converters.tasks.generation_rules import greedy_kwargs

    kwargs = {k: torch.from_numpy(v) for k, v in enc_feeds.items()}
    speech = "input_features" in kwargs
    layers = _layers(model.config)[0]
    with torch.no_grad():
        encoded = model.get_encoder()(**kwargs, return_dict=True)
        # the text's ids and mask go along: the mask for the cross-attention, the ids for the encoder rules
        out = model.generate(**({} if speech else kwargs), encoder_outputs=encoded, return_dict_in_generate=True,
                             output_logits=True, **greedy_kwargs(steps))
    sequences = out.sequences.numpy()
    cross = out.past_key_values.cross_attention_cache.layers[:layers]
    enc = {"last_hidden_state": encoded.last_hidden_state.numpy(),
           **{f"present.{i}.encoder.{k}": getattr(layer, f"{k}s").numpy() for i, layer in enumerate(cross)
              for k in ("key", "value")}}
    return Generated(sequences[:, -steps:], sequences[:, :-steps].astype(np.int64),
                     [step.float().numpy() for step in out.logits], enc)


def rules_break(plan: dict[str, Any], ref: Generated, encoder_ids: Any = None) -> int | None:
    """The first step at which the contract's decoding rules (what a consumer's loop applies: _choose), applied to
    ``generate()``'s own logits on its own path, do not choose ``generate()``'s token; None when they choose it at
    every step. No model runs: this checks the contract and the rules' code against generate()."""
    import numpy as np

    steps, start = ref.tokens.shape[1], ref.prompt.shape[1]
    ids = np.concatenate([ref.prompt, ref.tokens], axis=1).astype(np.int64)
    for step in range(steps):
        chosen = _choose(ref.logits[step], plan, ids[:, :start + step], start, start + steps, encoder_ids, True)
        if not np.array_equal(chosen, ref.tokens[:, step]):
            return step
    return None


def generation_results(model: Any, preprocess: Any, directory: Path, contract: dict[str, Any],
                       prompts: list[str] | None = None, steps: int = NEW_TOKENS,
                       precision: str = "float32") -> dict[str, Any]:
    """The exported pair against the PyTorch model's ``generate()`` (the module docstring says how): a TaskResult-like
    dict (check, passed, reason, figures)."""
    import numpy as np

    speech = "input_features" in contract["encoder"]["inputs"]
    result: dict[str, Any] = {"check": CHECK, "input_set": "sample-audio" if speech else "sample-prompts",
                              "output": "logits"}
    feeds = encoder_feeds(contract, preprocess, prompts)
    ref = reference_generate(model, feeds, steps)
    try:
        o_enc, o_dec = onnx_runner(directory, contract)
        o_enc = _encoded_once(o_enc, feeds)  # each loop and the encoder comparison encode the same feeds
        # the candidate on generate()'s path: its choice and logits at every step, and the prompt it gives itself
        choices, cand_logits, cand_prompt = greedy_loop(o_enc, o_dec, contract, feeds, steps, forced=ref.tokens,
                                                        prompt=ref.prompt)
        cand_tokens = choices  # on generate()'s path its own loop would feed the very same inputs: these choices
        if not (np.array_equal(choices, ref.tokens) and np.array_equal(cand_prompt, ref.prompt)):
            cand_tokens = greedy_loop(o_enc, o_dec, contract, feeds, steps)[0]  # where its own text goes
        cand_encoded = o_enc(feeds)
    except Exception as exc:  # noqa: BLE001 - a loop that cannot run is the finding
        return {**result, "passed": False, "reason": f"the decode loop raised: {type(exc).__name__}: {str(exc)[:300]}"}
    reasons = []
    rtol = LOGIT_RTOL.get(precision, 0.1)
    # every encoder output against PyTorch's: the cross-attention cache drives the decoder, and
    # last_hidden_state, which no decode step reads, is checked here or nowhere
    encoder_diff = {name: range_share(r, cand_encoded[name]) if r.shape == np.shape(cand_encoded.get(name))
                    else float("inf") for name, r in ref.encoded.items()}
    name, diff = max(encoder_diff.items(), key=lambda kv: kv[1])
    if diff > rtol:
        reasons.append(f"encoder output {name} differs by {diff:.2e} of its range > {rtol:.0e}")
    broken = rules_break(contract["decoding"], ref, feeds.get("input_ids"))
    if broken is not None:
        reasons.append(f"the greedy choice under the contract's decoding rules, on generate()'s own logits, does not "
                       f"reproduce generate() at step {broken} (generate()'s tokens {ref.tokens[0][:6].tolist()}...)")
    if not np.array_equal(ref.prompt, cand_prompt):
        reasons.append(f"the prompts differ (detected language): {cand_prompt.tolist()} vs generate()'s "
                       f"{ref.prompt.tolist()}")
    verdict, figures = token_verdict(ref.tokens, cand_tokens, choices, ref.logits, cand_logits, precision, "sample")
    reasons += verdict
    figures = {"samples": int(cand_tokens.shape[0]), **figures, "precision": precision,
               "max_encoder_rel_diff": diff, "reference": "generate()",
               "rules_applied": list(contract["decoding"].get("apply") or []),
               "prompt": cand_prompt.tolist(), "generated": cand_tokens.tolist()}
    if not speech:
        figures["prompts"] = figures["samples"]
    return {**result, "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures}

"""text2text-generation: an encoder-decoder model (T5, BART) as two ONNX graphs a plain onnxruntime loop can run.

``encoder.onnx``: ``input_ids [batch, encoder_sequence]``, ``attention_mask [batch, encoder_sequence]`` ->
``last_hidden_state [batch, encoder_sequence, hidden]``.

``decoder.onnx``: ``input_ids [batch, sequence]`` (the new decoder token(s)), ``encoder_hidden_states``,
``encoder_attention_mask`` and, per layer, the self-attention cache ``past_key_values.N.key|value [batch, heads,
past, head_dim]`` -> ``logits [batch, sequence, vocab]`` and ``present.N.key|value``. Cross-attention keys and
values are recomputed from ``encoder_hidden_states`` at each step (one graph for the first step and every
later one; the cache holds only what grows). The first step feeds the model's ``decoder_start_token_id`` and
past of length 0.

Parity (``generation_results``): greedy generation of ``NEW_TOKENS`` tokens from real-tokenizer prompts
(right-padded batch): the ONNX loop's tokens identical to the source's ``generate()``, and the ONNX logits at
every step, fed the reference's tokens (teacher forcing), within ``1e-4`` of their range of the PyTorch
model's logits. This is a check of the pair: an encoder whose output is off fails it as a decoder would.

Not wired into ``zoo pull`` yet (the pipeline's artifacts and parity harness hold one graph): ``export`` and
``generation_results`` are the pieces that wiring will call.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

NEW_TOKENS = 20
PROMPTS = [
    "translate English to German: The quick brown fox jumps over the lazy dog",
    "summarize: Once upon a time there was a little girl",
    "hello world",
    "What is the capital of the country where you were born",
]
ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
_LOGIT_RTOL = 1e-4


def _layers(config: Any) -> tuple[int, int, int]:
    layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None) \
        or config.num_layers
    heads = getattr(config, "num_heads", None) or getattr(config, "decoder_attention_heads", None)
    d_kv = getattr(config, "d_kv", None) or (config.d_model // heads)
    return int(layers), int(heads), int(d_kv)


def io_contract(config: Any) -> dict[str, Any]:
    """The two graphs' names and axes and how to drive them: recorded in zoo.json (``record.extra["io"]``)."""
    layers, heads, d_kv = _layers(config)
    past = [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    return {
        "files": {"encoder": ENCODER, "decoder": DECODER},
        "encoder": {"inputs": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state"],
                    "axes": {"input_ids": ["batch", "encoder_sequence"], "attention_mask": ["batch", "encoder_sequence"],
                             "last_hidden_state": ["batch", "encoder_sequence", "hidden"]}},
        "decoder": {"inputs": ["input_ids", "encoder_hidden_states", "encoder_attention_mask", *past],
                    "outputs": ["logits", *[p.replace("past_key_values", "present") for p in past]],
                    "axes": {"input_ids": ["batch", "sequence"],
                             "encoder_hidden_states": ["batch", "encoder_sequence", "hidden"],
                             "encoder_attention_mask": ["batch", "encoder_sequence"],
                             "past_key_values.*": ["batch", "num_heads", "past_sequence", "head_dim"],
                             "logits": ["batch", "sequence", "vocab"],
                             "present.*": ["batch", "num_heads", "past_sequence + sequence", "head_dim"]}},
        "cache": {"num_layers": layers, "num_heads": heads, "head_dim": d_kv,
                  "first_step": "input_ids = decoder_start_token_id, every past_key_values.* of length 0",
                  "decode": "feed present.* of the previous step as past_key_values.*, the chosen token as input_ids; "
                            "encoder_hidden_states and encoder_attention_mask stay the same",
                  "cross_attention": "recomputed inside the decoder from encoder_hidden_states at each step"},
        "padding": "right", "decoder_start_token_id": config.decoder_start_token_id,
        "pad_token_id": config.pad_token_id, "eos_token_id": config.eos_token_id, "vocab_size": config.vocab_size,
    }


def wrap(model: Any) -> tuple[Any, Any]:
    """(encoder, decoder) modules over plain tensors, the forward signatures of the two ONNX graphs."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    layers = _layers(model.config)[0]
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                            return_dict=True).last_hidden_state

    class DecoderWithPast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, encoder_hidden_states: Any, encoder_attention_mask: Any, *past: Any) -> tuple:
            self_cache = DynamicCache(config=self.inner.config)
            for i in range(layers):
                self_cache.update(past[2 * i], past[2 * i + 1], i)
            cache = EncoderDecoderCache(self_cache, DynamicCache(config=self.inner.config))
            out = self.inner(encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask,
                             decoder_input_ids=input_ids, use_cache=True, return_dict=True, **{cache_arg: cache})
            present = []
            for layer in out[cache_arg].self_attention_cache.layers[:layers]:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return Encoder(model).eval(), DecoderWithPast(model).eval()


def export(model: Any, tokenizer: Any, out_dir: Path, opset: int = 17) -> dict[str, Any]:
    """``encoder.onnx`` and ``decoder.onnx`` in ``out_dir`` (TorchScript exporter, dynamic batch and
    lengths); returns the I/O contract."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    contract = io_contract(model.config)
    encoder, decoder = wrap(model)
    layers, heads, d_kv = _layers(model.config)
    enc = tokenizer(PROMPTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(enc["input_ids"], enc["attention_mask"])
    batch = hidden.shape[0]
    past = tuple(torch.randn(batch, heads, 3, d_kv) for _ in range(2 * layers))
    dec_ids = torch.full((batch, 1), int(model.config.decoder_start_token_id), dtype=torch.long)
    enc_axes = {"input_ids": {0: "batch", 1: "encoder_sequence"}, "attention_mask": {0: "batch", 1: "encoder_sequence"},
                "last_hidden_state": {0: "batch", 1: "encoder_sequence"}}
    names = contract["decoder"]["inputs"]
    outs = contract["decoder"]["outputs"]
    dec_axes = {"input_ids": {0: "batch", 1: "sequence"}, "encoder_hidden_states": {0: "batch", 1: "encoder_sequence"},
                "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"}, "logits": {0: "batch", 1: "sequence"},
                **{n: {0: "batch", 2: "past_sequence"} for n in names[3:]},
                **{n: {0: "batch", 2: "total_sequence"} for n in outs[1:]}}
    import contextlib
    import io
    import warnings

    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (enc["input_ids"], enc["attention_mask"]), str(out_dir / ENCODER),
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes=enc_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        torch.onnx.export(decoder, (dec_ids, hidden, enc["attention_mask"], *past), str(out_dir / DECODER),
                          input_names=names, output_names=outs, dynamic_axes=dec_axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    return contract


# --- the generation check ----------------------------------------------------------------------------
def onnx_runner(directory: Path) -> tuple[Any, Any]:
    """(encode, decode) callables over the two onnxruntime sessions of an exported directory."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    enc = ort.InferenceSession(str(directory / ENCODER), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(directory / DECODER), opts, providers=["CPUExecutionProvider"])
    dec_outs = [o.name for o in dec.get_outputs()]

    def encode(ids: Any, mask: Any) -> Any:
        return enc.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(dec_outs, dec.run(None, feeds)))

    return encode, decode


def torch_runner(model: Any) -> tuple[Any, Any]:
    """The same callables over the PyTorch wrappers (the reference loop)."""
    import numpy as np
    import torch

    encoder, decoder = wrap(model)
    layers = _layers(model.config)[0]
    outs = io_contract(model.config)["decoder"]["outputs"]

    def encode(ids: Any, mask: Any) -> Any:
        with torch.no_grad():
            return encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        past = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in io_contract(model.config)["decoder"]["inputs"][3:]]
        assert len(past) == 2 * layers
        with torch.no_grad():
            out = decoder(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["encoder_hidden_states"]),
                          torch.from_numpy(feeds["encoder_attention_mask"]), *past)
        return {n: t.numpy() for n, t in zip(outs, out)}

    return encode, decode


def greedy_loop(encode: Any, decode: Any, contract: dict[str, Any], ids: Any, mask: Any, steps: int,
                forced: Any = None) -> tuple[Any, list[Any]]:
    """Greedy decoding: encode once, then ``steps`` decoder steps over the self-attention cache. Returns
    (tokens [batch, steps], each step's logits [batch, vocab]); ``forced`` feeds those tokens instead."""
    import numpy as np

    cache = contract["cache"]
    hidden = encode(ids, mask)
    batch = ids.shape[0]
    past_names = contract["decoder"]["inputs"][3:]
    feeds = {"input_ids": np.full((batch, 1), contract["decoder_start_token_id"], np.int64),
             "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
             **{n: np.zeros((batch, cache["num_heads"], 0, cache["head_dim"]), np.float32) for n in past_names}}
    tokens, logits = [], []
    for step in range(steps):
        out = decode(feeds)
        last = np.asarray(out["logits"])[:, -1, :]
        nxt = last.argmax(-1).astype(np.int64)
        tokens.append(nxt)
        logits.append(last)
        if forced is not None:
            nxt = np.asarray(forced)[:, step].astype(np.int64)
        feeds = {**feeds, "input_ids": nxt[:, None],
                 **{n: out[n.replace("past_key_values", "present")] for n in past_names}}
    return np.stack(tokens, axis=1), logits


def reference_generate(model: Any, ids: Any, mask: Any, steps: int) -> Any:
    """The source's own greedy ``generate()`` (no early stop), without the leading decoder start token."""
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=1,
                             eos_token_id=None)
    return out[:, 1:].numpy()


def generation_results(model: Any, tokenizer: Any, directory: Path, contract: dict[str, Any],
                       prompts: list[str] | None = None, steps: int = NEW_TOKENS) -> dict[str, Any]:
    """The exported pair against the PyTorch model: TaskResult-like dict (check, passed, reason, figures)."""
    import numpy as np

    enc = tokenizer(prompts or PROMPTS, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    result: dict[str, Any] = {"check": "text2text-generation", "input_set": "sample-prompts", "output": "logits"}
    try:
        t_enc, t_dec = torch_runner(model)
        o_enc, o_dec = onnx_runner(directory)
        ref_tokens, ref_logits = greedy_loop(t_enc, t_dec, contract, ids, mask, steps)
        cand_tokens, _ = greedy_loop(o_enc, o_dec, contract, ids, mask, steps)
        _, cand_logits = greedy_loop(o_enc, o_dec, contract, ids, mask, steps, forced=ref_tokens)
    except Exception as exc:  # noqa: BLE001 - a loop that cannot run is the finding
        return {**result, "passed": False, "reason": f"the decode loop raised: {type(exc).__name__}: {str(exc)[:300]}"}
    gen_tokens = reference_generate(model, ids, mask, steps)
    worst, worst_step = 0.0, None
    for step in range(steps):
        r, c = ref_logits[step].astype(np.float64), cand_logits[step].astype(np.float64)
        rel = float(np.abs(r - c).max()) / max(float(r.max() - r.min()), 1e-12)
        if rel > worst:
            worst, worst_step = rel, step
    reasons = []
    if not np.array_equal(gen_tokens, ref_tokens):
        reasons.append("the reference's decode loop does not reproduce generate() "
                       f"(first tokens {gen_tokens[0][:6].tolist()} vs {ref_tokens[0][:6].tolist()})")
    matched = [int(np.argmin(row)) if not row.all() else steps for row in (cand_tokens == gen_tokens)]
    if min(matched) < steps:
        row = int(np.argmin(matched))
        reasons.append(f"greedy tokens diverge at step {matched[row]} of prompt {row} "
                       f"(expected {gen_tokens[row].tolist()}, got {cand_tokens[row].tolist()})")
    if worst > _LOGIT_RTOL:
        reasons.append(f"logits at decode step {worst_step} differ by {worst:.2e} of their range > {_LOGIT_RTOL:.0e}")
    figures = {"prompts": int(ids.shape[0]), "new_tokens": steps, "tokens_matched": matched,
               "identical": bool(np.array_equal(cand_tokens, gen_tokens)), "max_logit_rel_diff": worst,
               "reference": "generate()", "bounds": {"logit_rel_diff": _LOGIT_RTOL},
               "generated": cand_tokens.tolist()}
    return {**result, "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures}

"""The generation check of an encoder-decoder pair (``text2text-generation``, for T5/BART-style models and Whisper;
seq2seq.py describes the pair and its contract): the source's ``generate()`` is the reference (its tokens, prompt,
raw logits and encoder outputs: ``reference_generate``); the ONNX pair runs in a plain onnxruntime loop
(``greedy_loop``) fed generate()'s prompt and tokens, and on its own only where its choices part from them
(``generation_results``). The verdict is text_generation.token_verdict's, as for decoder-only models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.tasks.seq2seq import (
    CHECK,
    DECODER,
    ENCODER,
    NEW_TOKENS,
    cache_layout,
    cross_feeds,
    empty_self_cache,
    sample_encoding,
)
from zoo.converters.tasks.text_generation import LOGIT_RTOL, first_departure, range_share, token_verdict


def onnx_runner(directory: Path, contract: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(encode, decode) callables over the two onnxruntime sessions of an exported directory."""
    import onnxruntime as ort

    files = (contract or {}).get("files") or {"encoder": ENCODER, "decoder": DECODER}
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch runs in turn, as in runners.py
    enc = ort.InferenceSession(str(directory / files["encoder"]), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(directory / files["decoder"]), opts, providers=["CPUExecutionProvider"])
    enc_ins, dec_ins = [i.name for i in enc.get_inputs()], [i.name for i in dec.get_inputs()]
    dec_outs, enc_outs = [o.name for o in dec.get_outputs()], [o.name for o in enc.get_outputs()]

    def encode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(enc_outs, enc.run(None, {n: feeds[n] for n in enc_ins})))

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(dec_outs, dec.run(None, {n: feeds[n] for n in dec_ins})))

    return encode, decode


def pair_runner(primary: Path, contract: dict[str, Any]) -> tuple[Any, Any]:
    """(encode, decode) callables over the pair whose decoder is ``primary``, in its own runtime: the two
    onnxruntime sessions (``onnx_runner``); ``decoder.pt2`` / ``decoder.jax`` with ``encoder.pt2`` / ``encoder.jax``
    beside it (zoo's safe pt2 loader, ``jax.export.deserialize``); a SavedModel's ``serving_default`` (the decoder)
    and ``encoder`` signatures (tasks/seq2seq_export.py). Each takes and gives the contract's names."""
    import numpy as np

    from zoo.converters.parity import runners

    primary = Path(primary)
    if primary.suffix == ".onnx":
        return onnx_runner(primary.parent, contract)
    if primary.suffix == ".tflite":  # static files, driven under this contract (tasks/seq2seq_lite.py)
        from zoo.converters.tasks.seq2seq_lite import PairLite

        lite = PairLite(primary, contract, runners.tflite_interpreter)
        return lite.encode, lite.decode
    enc, dec = contract["encoder"], contract["decoder"]
    if runners.is_saved_model(primary):
        loaded = runners.load_saved_model(primary)
        if "encoder" not in loaded.signatures:
            raise errors.InvalidModelError(f"{primary.parent.name}: the SavedModel has no encoder signature")
        enc_run = runners.signature_runner(loaded.signatures["encoder"], enc["inputs"], enc["outputs"])
        dec_run = runners.signature_runner(loaded.signatures["serving_default"], dec["inputs"], dec["outputs"])
    else:
        encoder = primary.parent / primary.name.replace("decoder", "encoder", 1)
        if encoder == primary or not encoder.is_file():
            raise errors.InvalidModelError(f"{primary.name}: no encoder file beside it ({encoder.name})")
        enc_run = runners.artifact_runner(encoder, enc["inputs"], enc["outputs"])
        dec_run = runners.artifact_runner(primary, dec["inputs"], dec["outputs"])

    def encode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(enc["outputs"], (np.asarray(o) for o in enc_run(feeds))))

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(dec["outputs"], (np.asarray(o) for o in dec_run(feeds))))

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


def reference_generate(model: Any, enc_feeds: dict[str, Any], steps: int, encoded: Any = None) -> Generated:
    """The source's own greedy ``generate()`` on the samples (its generation config's rules; beams and sampling off:
    generation_rules.greedy_kwargs): the ``steps`` new tokens, its prompt, the raw logits it chose them from
    (``output_logits``), and the encoder's outputs: ``last_hidden_state`` from the model's encoder (``encoded``, run
    here where not given: sample_encoding's) handed to generate() (Whisper's generate() runs it twice otherwise, for
    the language and for decoding), each
    layer's cross-attention keys and values from the cache generate() filled. ``min_new_tokens`` keeps the end token
    out of the window: no early stop. (``eos_token_id=None`` would not hold in Whisper's generate(), whose inner call
    restores it.)"""
    import numpy as np
    import torch

    from zoo.converters.tasks.generation_rules import greedy_kwargs

    kwargs = {k: torch.from_numpy(v) for k, v in enc_feeds.items()}
    speech = "input_features" in kwargs
    layers = cache_layout(model.config)[0]
    with torch.no_grad():
        encoded = encoded if encoded is not None else model.get_encoder()(**kwargs, return_dict=True)
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
    steps, start = ref.tokens.shape[1], ref.prompt.shape[1]
    return first_departure(ref.tokens, ref.logits, ref.prompt,
                           lambda last, ids: _choose(last, plan, ids, start, start + steps, encoder_ids, True))


def generation_results(model: Any, preprocess: Any, directory: Path, contract: dict[str, Any],
                       prompts: list[str] | None = None, steps: int = NEW_TOKENS,
                       precision: str = "float32", samples: Any = None) -> dict[str, Any]:
    """The exported pair against the PyTorch model's ``generate()`` (the module docstring says how): a TaskResult-like
    dict (check, passed, reason, figures). ``directory``: the ONNX pair's directory, or the decoder's file of any
    format (``pair_runner``). ``samples``: sample_encoding's of the default samples, where already made
    (Pair.samples)."""
    import numpy as np

    speech = "input_features" in contract["encoder"]["inputs"]
    result: dict[str, Any] = {"check": CHECK, "input_set": "sample-audio" if speech else "sample-prompts",
                              "output": "logits"}
    feeds, encoded = samples if samples is not None and prompts is None else \
        sample_encoding(model, contract, preprocess, prompts)
    ref = reference_generate(model, feeds, steps, encoded)
    try:
        o_enc, o_dec = onnx_runner(directory, contract) if Path(directory).is_dir() else pair_runner(directory, contract)
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
        reasons.append(f"the prompts differ: the pair's own (decoding.prompt, the language it detects) "
                       f"{cand_prompt.tolist()} vs generate()'s {ref.prompt.tolist()}")
    verdict, figures = token_verdict(ref.tokens, cand_tokens, choices, ref.logits, cand_logits, precision, "sample")
    reasons += verdict
    figures = {"samples": int(cand_tokens.shape[0]), **figures, "precision": precision,
               "max_encoder_rel_diff": diff, "reference": "generate()",
               "rules_applied": list(contract["decoding"].get("apply") or []),
               "prompt": cand_prompt.tolist(), "generated": cand_tokens.tolist()}
    if not speech:
        figures["prompts"] = figures["samples"]
    return {**result, "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures}

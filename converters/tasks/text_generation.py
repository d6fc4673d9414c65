"""text-generation: a decoder-only model as one ONNX graph with its KV cache as inputs and outputs.

Inputs ``input_ids [batch, sequence]``, ``attention_mask [batch, past + sequence]`` and, per layer,
``past_key_values.N.key|value [batch, kv_heads, past, head_dim]``; outputs ``logits [batch, sequence,
vocab]`` and ``present.N.key|value [batch, kv_heads, past + sequence, head_dim]``. The prefill feeds a
past of length 0; each decode step feeds the previous step's ``present.*`` back. Position ids are made
inside the graph from the attention mask, so left-padded batches need nothing else (the layout optimum's
``text-generation-with-past`` and onnxruntime-genai consume).

Parity beyond the elementwise check (``generation_results``, registered as the ``text-generation``
task check): greedy generation of ``NEW_TOKENS`` tokens from real-tokenizer prompts, the candidate's
decode loop over its own cache against the source's ``generate()``: tokens identical at float32, and the logits
``generate()`` chose from (``output_logits``) against the candidate's fed the same tokens, at the prefill and at
every decode step (a file known only by its signature: the reference's own decode loop instead). The candidate's
loop applies the repo's generation rules (``decoding`` in the contract: repetition penalty, n-gram bans, ...,
generation_rules.py) and ``generate()`` runs under the same rules, greedily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from zoo.converters.parity.report import InputSet

NEW_TOKENS = 20
PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "Once upon a time there was a little",
    "hello world",
    "What is the capital of the country where you were born",
]
# logits agreement per precision (the encoder-decoders' check, tasks/seq2seq.py, uses the same bounds): the largest difference allowed, relative to the logits' spread
LOGIT_RTOL = {"float64": 1e-6, "float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2, "int8": 0.1, "int4": 0.2}
# float32/float64: the generated tokens must be identical. Below that, a near-tie flips one token and the
# rest of the text with it (random tiny models are full of near-ties), so the candidate is fed the reference's
# tokens (teacher forcing) and must pick the same next token at this share of the steps.
EXACT = ("float64", "float32")
# int4 (block-32 symmetric weights, docs/tasks.md): measured on GPT-2-style decoders at a trained model's weight
# scale, 98.8-100% agreement and logits 0.086-0.09 of their range apart; a Llama of the same size, 77.5% and 0.14.
TOKEN_AGREEMENT = {"float16": 0.95, "bfloat16": 0.9, "int8": 0.8, "int4": 0.7}


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    present = [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    return past, present


def decoding(config: Any, generation: dict[str, Any] | None) -> dict[str, Any]:
    """The contract's ``decoding``: the repo's greedy-compatible generation rules (generation_config.json, else
    config.json's generation keys, as transformers reads them) and how a consumer's loop applies them."""
    from zoo.converters.tasks import generation_rules

    rules = generation_rules.plan(generation if generation is not None else config)
    return {**rules, "greedy": generation_rules.GREEDY}


def wrap(model: Any, layers: int, decoding: dict[str, Any] | None = None) -> Any:
    """``model`` (a transformers ``*ForCausalLM``) as ``forward(input_ids, attention_mask, *past) ->
    (logits, *present)`` over plain tensors: what the ONNX graph's inputs and outputs are. ``decoding``: the
    record's generation rules (the contract's), which the generation check's decode loops apply."""
    import torch
    from transformers import DynamicCache

    # transformers 5.x renamed past_key_values to cache (the old name warns, then goes away)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    class CausalLMWithPast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.decoding = decoding

        def forward(self, input_ids: Any, attention_mask: Any, *past: Any) -> tuple:
            cache = DynamicCache(config=self.inner.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            position_ids = attention_mask.long().cumsum(-1) - 1
            # the last `sequence` positions, gathered rather than sliced: torch.export guards a slice's contiguity
            # (past_sequence != 0), and one program must serve the prefill (past 0) and the decode steps
            total, seq = attention_mask.shape[1], input_ids.shape[1]
            last = torch.arange(seq, device=input_ids.device) + (total - seq)
            position_ids = position_ids.masked_fill(attention_mask == 0, 1).index_select(1, last)
            kwargs = {cache_arg: cache}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=True, return_dict=True, **kwargs)
            # zeros at padding positions: what padded tokens computed is masked out everywhere and differs
            # between runtimes (a fully masked softmax row), so neither the check nor a consumer sees it
            real = (attention_mask != 0)[:, None, :, None]
            present = []
            for layer in out[cache_arg].layers[:layers]:
                present += [torch.where(real, layer.keys, 0.0), torch.where(real, layer.values, 0.0)]
            return (out.logits, *present)

    return CausalLMWithPast(model).eval()


def io_names(layers: int) -> tuple[list[str], list[str], dict[str, dict[int, str]]]:
    past, present = cache_names(layers)
    inputs, outputs = ["input_ids", "attention_mask", *past], ["logits", *present]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "logits": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch", 2: "past_sequence"} for n in past})
    axes.update({n: {0: "batch", 2: "total_sequence"} for n in present})
    return inputs, outputs, axes


def _cache_shape(record: Any) -> tuple[int, int, int]:
    cache = record.extra["io"]["cache"]
    return int(cache["num_layers"]), int(cache["num_key_value_heads"]), int(cache["head_dim"])


class _Contract:
    """A record's view of an ONNX file's ``zoo.io`` (``zoo convert`` of a text-generation artifact)."""

    def __init__(self, io: dict[str, Any]) -> None:
        self.extra = {"io": io, "vocab_size": io.get("vocab_size") or 2}


def contract_input_sets(metadata: dict[str, str]) -> list[InputSet] | None:
    """The input sets of a zoo text-generation ONNX file, from its ``zoo.io`` metadata (past and total lengths
    must agree, which no guess from the signature alone knows); None for any other file."""
    import json

    if (metadata.get("zoo.task") or "") != "text-generation" or "zoo.io" not in metadata:
        return None
    try:
        io = json.loads(metadata["zoo.io"])
        _cache_shape(_Contract(io))
    except (ValueError, KeyError, TypeError):
        return None
    return input_sets(_Contract(io), None)


def empty_past(record: Any, batch: int, np: Any) -> dict[str, Any]:
    layers, heads, dim = _cache_shape(record)
    return {n: np.zeros((batch, heads, 0, dim), np.float32) for n in cache_names(layers)[0]}


def input_sets(record: Any, tokenizer: Any) -> list[InputSet]:
    """A decode step on a random cache first (the export example: batch 2, 3 new tokens after 5 cached),
    a prefill (past 0) at batch 1 and a single-token step after a single cached token, then the real prompts
    (left-padded) as the sample set. Batch, sequence and past each meet 0 or 1 somewhere: an export that
    specialised a dimension it saw at 2 or more (torch.export's 0/1 rule) fails here, not in a user's loop."""
    import numpy as np

    layers, heads, dim = _cache_shape(record)
    vocab = int(record.extra.get("vocab_size") or 100)
    past_names = cache_names(layers)[0]
    sets = []
    for seed, (batch, seq, past) in enumerate(((2, 3, 5), (1, 7, 0), (3, 1, 1))):
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(0, vocab, (batch, seq), dtype=np.int64),
                 "attention_mask": np.ones((batch, past + seq), np.int64)}
        for n in past_names:
            feeds[n] = rng.standard_normal((batch, heads, past, dim)).astype(np.float32)
        sets.append(InputSet(f"random-b{batch}-s{seq}-past{past}", feeds))
    if tokenizer is not None:
        enc = tokenizer(PROMPTS, padding=True, return_tensors="np")
        feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
                 **empty_past(record, len(PROMPTS), np)}
        sets.append(InputSet("sample-prompts", feeds, kind="sample"))
    return sets


def sample_step_set(module: Any, tokenizer: Any, example: InputSet) -> InputSet:
    """The real prompts as one decode step of the export example's shape (``example``: ``seq`` new tokens after
    a cache of ``past``): the tokenizer pads (on the left) or truncates ``PROMPTS`` to past + seq tokens, the
    source (``module``, ``wrap``'s) computes the cache of the first ``past``, and the step feeds the last ``seq``
    with it. A static-shape export (litert-torch's tflite, a static jax export) takes only that shape, so its
    float16 and int8 variants are checked on real text and a real cache (check_parity's require_samples)."""
    import numpy as np
    import torch

    seq, total = int(example.feeds["input_ids"].shape[1]), int(example.feeds["attention_mask"].shape[1])
    past = total - seq
    enc = tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=total, return_tensors="np")
    ids, mask = np.asarray(enc["input_ids"], np.int64), np.asarray(enc["attention_mask"], np.int64)
    past_names = [n for n in example.feeds if n.startswith("past_key_values.")]
    empty = [torch.zeros((len(PROMPTS), example.feeds[n].shape[1], 0, example.feeds[n].shape[3])) for n in past_names]
    with torch.no_grad():
        out = module(torch.from_numpy(ids[:, :past]), torch.from_numpy(mask[:, :past]), *empty)
    cache = {n: t.numpy() for n, t in zip(past_names, out[1:])}
    return InputSet(f"sample-prompts-step-s{seq}-past{past}", {"input_ids": ids[:, past:], "attention_mask": mask, **cache},
                    kind="sample")


# --- the generation check ----------------------------------------------------------------------------
def greedy_loop(run: Callable[[dict[str, Any]], list[Any]], feeds: dict[str, Any], steps: int,
                forced: Any = None, rules: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    """Greedy decoding over a model's own cache: ``feeds`` is the prefill (past of length 0); ``rules`` the
    contract's generation rules (generation_rules.apply_rules: penalties, bans, ..., the end token kept out of the
    window), else a plain argmax; ``forced`` ([batch, steps]) feeds those tokens instead of the chosen ones (teacher
    forcing, to compare logits at every step even after the two models chose differently). Returns (the chosen
    tokens [batch, steps], the raw last-position logits of each step)."""
    import numpy as np

    past_names = [n for n in feeds if n.startswith("past_key_values.")]
    mask = np.asarray(feeds["attention_mask"], np.int64)
    prompt = np.asarray(feeds["input_ids"], np.int64)
    ids, pads = prompt, (mask != 0).argmax(axis=1)  # every token so far; each row's left padding
    current = dict(feeds)
    tokens, logits = [], []
    for step in range(steps):
        out = run(current)
        last = np.asarray(out[0])[:, -1, :]
        nxt = choose(last, rules, ids, prompt, pads, steps)
        tokens.append(nxt)
        if forced is not None:
            nxt = np.asarray(forced)[:, step].astype(np.int64)
        logits.append(last)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones((mask.shape[0], 1), np.int64)], axis=1)
        current = {"input_ids": nxt[:, None], "attention_mask": mask}
        current.update({n: np.asarray(p) for n, p in zip(past_names, out[1:])})
    return np.stack(tokens, axis=1), logits


def choose(last: Any, rules: dict[str, Any] | None, ids: Any, prompt: Any, pads: Any, steps: int) -> Any:
    """One step's greedy token from its raw logits ``last`` [batch, vocab]: under the contract's rules
    (generation_rules.apply_rules; ``ids`` every token so far, ``pads`` each row's left padding, the end token kept
    out of the ``steps`` window), else a plain argmax."""
    import numpy as np

    from zoo.converters.tasks.generation_rules import apply_rules

    scores = last if rules is None else apply_rules(
        last, rules, ids, prompt.shape[1], max_length=prompt.shape[1] + steps, pad_lengths=pads,
        encoder_ids=prompt, no_eos=True)
    return scores.argmax(-1).astype(np.int64)


def rules_break(rules: dict[str, Any] | None, feeds: dict[str, Any], tokens: Any, logits: list[Any]) -> int | None:
    """The first step at which the contract's rules (what a consumer's loop applies: ``choose``), applied to
    ``generate()``'s own raw logits on its own path, do not choose ``generate()``'s token; None when they choose
    it at every step. No model runs: this checks the contract and the rules' code against generate() (a
    reduced-precision candidate, held only to a share of generate()'s tokens, could hide a wrong rule)."""
    import numpy as np

    mask = np.asarray(feeds["attention_mask"], np.int64)
    prompt = np.asarray(feeds["input_ids"], np.int64)
    pads, steps = (mask != 0).argmax(axis=1), int(tokens.shape[1])
    return first_departure(tokens, logits, prompt, lambda last, ids: choose(last, rules, ids, prompt, pads, steps))


def first_departure(tokens: Any, logits: list[Any], prompt: Any, pick: Callable[[Any, Any], Any]) -> int | None:
    """The first step at which ``pick(logits of the step, every token so far)`` is not ``tokens``' token, walking
    ``tokens``' own path from ``prompt``; None when it never departs (both generation checks' rules check)."""
    import numpy as np

    ids = np.asarray(prompt, np.int64)
    for step in range(int(tokens.shape[1])):
        if not np.array_equal(pick(np.asarray(logits[step]), ids), tokens[:, step]):
            return step
        ids = np.concatenate([ids, tokens[:, step:step + 1].astype(np.int64)], axis=1)
    return None


def reference_generate(torch_model: Any, feeds: dict[str, Any], steps: int) -> tuple[Any, list[Any]]:
    """The source's own ``generate()`` on the prompts, greedy, under its generation config's rules (those greedy
    decoding can apply, generation_rules.greedy_kwargs), ``steps`` new tokens without an early stop: the tokens
    users get ([batch, steps]) and the logits it chose each of them from (``output_logits``: before any logits
    processor), in ``greedy_loop``'s form."""
    import torch

    from zoo.converters.parity.forked import feeds_key
    from zoo.converters.tasks.generation_rules import greedy_kwargs

    forked = getattr(torch_model, "forked", None)
    got = forked.get(feeds_key(feeds, steps)) if forked is not None else None
    if got is not None:  # computed by fork_references' child while the export ran
        return got[0], list(got[1:])
    inner = torch_model.module.inner
    ids, mask = torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])
    pad = inner.generation_config.pad_token_id
    pad = pad if pad is not None else (inner.config.eos_token_id or 0)
    if isinstance(pad, list):
        pad = pad[0]
    with torch.no_grad():
        out = inner.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad, return_dict_in_generate=True,
                             output_logits=True, **greedy_kwargs(steps))
    return out.sequences[:, ids.shape[1]:].numpy(), [step.float().numpy() for step in out.logits]


def check_rules(reference: Any, metadata: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The generation rules the check's loops apply: the record's contract (the PyTorch source carries it), else
    the ``zoo.io`` contract of a zoo ONNX file, else None (a plain argmax: a file that says nothing)."""
    import json

    module = getattr(getattr(reference, "torch_model", None), "module", None)
    if getattr(module, "decoding", None) is not None:
        return module.decoding
    try:
        return json.loads((metadata or {}).get("zoo.io") or "{}").get("decoding")
    except (ValueError, AttributeError):
        return None


def range_share(ref: Any, cand: Any) -> float:
    """The largest difference of ``cand`` from ``ref`` as a share of ``ref``'s range (max - min): how the
    generation checks compare logits, and seq2seq's encoder outputs."""
    import numpy as np

    r, c = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
    return float(np.abs(r - c).max()) / max(float(r.max() - r.min()), 1e-12)


def token_verdict(target: Any, cand_tokens: Any, choices: Any, ref_logits: list[Any], cand_logits: list[Any],
                  precision: str, unit: str, path: Any = None) -> tuple[list[str], dict[str, Any]]:
    """What both generation checks (this one and seq2seq's) decide from the decoded tokens: ``target`` the tokens
    ``generate()`` gave ([batch, steps]), ``cand_tokens`` the candidate's own, ``choices`` the candidate's choice at
    each step of the reference's path ``path`` (teacher forced; default ``target``), whose logits ``cand_logits``
    are compared with ``ref_logits`` step by step; ``unit`` names a row ("prompt", "sample"). Returns the reasons
    it fails (tokens first, then logits) and the figures."""
    import numpy as np

    steps = int(target.shape[1])
    rtol = LOGIT_RTOL.get(precision, 0.1)
    need = 1.0 if precision in EXACT else TOKEN_AGREEMENT.get(precision, 0.7)
    worst, worst_step = 0.0, None
    for step in range(steps):  # logits at the first step and every decode step, both fed the same tokens
        rel = range_share(ref_logits[step], cand_logits[step])
        if rel > worst:
            worst, worst_step = rel, step
    matched = [int(np.argmin(row)) if not row.all() else steps for row in (cand_tokens == target)]
    agreement = float((choices == (target if path is None else path)).mean())  # its choice on the reference's path
    reasons = []
    if precision in EXACT and min(matched) < steps:
        row = int(np.argmin(matched))
        reasons.append(f"greedy tokens diverge at step {matched[row]} of {unit} {row} "
                       f"(expected {target[row].tolist()}, got {cand_tokens[row].tolist()})")
    elif precision not in EXACT and agreement < need:
        reasons.append(f"the next token agrees at {agreement:.0%} of the steps on the reference's path < {need:.0%}")
    if worst > rtol:
        reasons.append(f"logits at decode step {worst_step} differ by {worst:.2e} of their range > {rtol:.0e}")
    figures = {"new_tokens": steps, "tokens_matched": matched, "next_token_agreement": agreement,
               "identical": bool(np.array_equal(cand_tokens, target)), "max_logit_rel_diff": worst,
               "bounds": {"logit_rel_diff": rtol, "token_agreement": need}}
    return reasons, figures


def prompt_sets(input_sets: list[InputSet]) -> list[InputSet]:
    """The sets the generation check decodes from: prefills (no past) with an attention mask, and only the real
    prompts where there are any (without them, a file known by its signature, random prompts are decoded)."""
    import numpy as np

    has_sample = any(s.kind == "sample" for s in input_sets)
    return [s for s in input_sets if not (has_sample and s.kind != "sample") and "attention_mask" in s.feeds
            and not any(np.asarray(v).shape[2] for k, v in s.feeds.items() if k.startswith("past_key_values."))]


def fork_references(reference: Any, input_sets: list[InputSet], folder: Any, steps: int = NEW_TOKENS) -> Any:
    """Start ``generate()`` on the prompts of ``input_sets`` in a forked child (parity/forked.py) that runs while
    the parent exports; ``reference_generate`` takes its tokens and logits from there. Returns the child's handle
    (to close), or None: not a decoder's PyTorch source, or forking off."""
    from zoo.converters.parity.forked import feeds_key, fork_jobs

    tm = getattr(reference, "torch_model", None)
    if tm is None or not hasattr(getattr(tm.module, "inner", None), "generate"):
        return None

    def job(feeds: dict[str, Any]) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            tokens, logits = reference_generate(tm, feeds, steps)
            return [tokens, *logits]
        return run

    weight_bytes = sum(p.numel() * p.element_size() for p in tm.module.parameters())
    tm.forked = fork_jobs({feeds_key(s.feeds, steps): job(s.feeds) for s in prompt_sets(input_sets)}, folder,
                          weight_bytes)
    return tm.forked


def _reference_process(torch_model: Any, feeds: dict[str, Any], steps: int) -> str | None:
    """Where generate() ran: in the forked child during the export, or in this process (parity/forked.py)."""
    from zoo.converters.parity.forked import feeds_key

    if torch_model is None:
        return None
    forked = getattr(torch_model, "forked", None)
    return "forked child" if forked is not None and feeds_key(feeds, steps) in forked.served else "in-process"


def generation_results(names: list[str], ran: list, precision: str, reference: Any, candidate: Any,
                       steps: int = NEW_TOKENS, metadata: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per sample set of prompts: the candidate's greedy tokens against ``generate()`` and the reference's
    decode loop, and the logits of every step. Dicts with TaskResult's fields."""
    import numpy as np

    results = []
    if reference is None or candidate is None:
        return results
    rtol = LOGIT_RTOL.get(precision, 0.1)
    need = 1.0 if precision in EXACT else TOKEN_AGREEMENT.get(precision, 0.7)
    rules = check_rules(reference, metadata)
    prompts = {id(s) for s in prompt_sets([s for s, _, _ in ran])}
    for input_set, _refs, _outs in ran:
        feeds = input_set.feeds
        if id(input_set) not in prompts:
            continue
        torch_model = getattr(reference, "torch_model", None)
        try:
            # the reference: generate() itself, its tokens and logits (the source's own decode loop over the
            # wrapped graph only without it: a file known by its signature)
            ref_tokens, ref_logits = reference_generate(torch_model, feeds, steps) if torch_model is not None \
                else greedy_loop(reference, feeds, steps, rules=rules)
            # the candidate fed the reference's tokens: its logits at every step, and its own choice at each
            choices, cand_logits = greedy_loop(candidate, feeds, steps, forced=ref_tokens, rules=rules)
            # while its choices are the reference's, its free run is this very run (the same feeds): decode it
            # on its own only when they part, to see where its own text goes
            cand_tokens = choices if np.array_equal(choices, ref_tokens) \
                else greedy_loop(candidate, feeds, steps, rules=rules)[0]
        except Exception as exc:  # noqa: BLE001 - a loop that cannot run is the finding
            results.append({"check": "text-generation", "input_set": input_set.name, "output": "logits",
                            "passed": False, "reason": f"the decode loop raised: {type(exc).__name__}: {str(exc)[:300]}"})
            continue
        reasons, figures = token_verdict(ref_tokens, cand_tokens, choices, ref_logits, cand_logits, precision, "prompt")
        broken = rules_break(rules, feeds, ref_tokens, ref_logits) if torch_model is not None else None
        if broken is not None:
            reasons.insert(0, f"the greedy choice under the contract's decoding rules, on generate()'s own logits, does "
                              f"not reproduce generate() at step {broken} (generate()'s tokens "
                              f"{ref_tokens[0][:6].tolist()}...): the contract's rules, not the model, are wrong")
        figures = {"prompts": int(ref_tokens.shape[0]), **figures,
                   "reference": "generate()" if torch_model is not None else "reference decode loop",
                   "reference_process": _reference_process(torch_model, feeds, steps),
                   "rules_applied": list((rules or {}).get("apply") or []), "generated": cand_tokens.tolist()}
        results.append({"check": "text-generation", "input_set": input_set.name, "output": "logits",
                        "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures})
    if not results and ran:
        results.append(step_result(ran, precision, rtol, need))
    return results


def step_result(ran: list, precision: str, rtol: float, need: float) -> dict[str, Any]:
    """For a candidate that takes no prefill (a static-shape file: one decode step of its exported shape), the
    next token at every real position of the real prompts' decode steps (``sample_step_set``: the prompts' own
    tokens and cache, so teacher-forced as the greedy check's agreement is), against the reference's, with the
    same bounds; without such a step, nothing to compare (a warning)."""
    import numpy as np

    agree, worst, where = [], 0.0, None
    for input_set, refs, outs in ran:
        feeds = input_set.feeds
        if input_set.kind != "sample" or not any(np.asarray(v).shape[2] for k, v in feeds.items()
                                                 if k.startswith("past_key_values.")):
            continue
        seq = np.asarray(feeds["input_ids"]).shape[1]
        real = np.asarray(feeds["attention_mask"])[:, -seq:].astype(bool)
        r, c = np.asarray(refs[0], np.float64)[real], np.asarray(outs[0], np.float64)[real]
        agree.extend((r.argmax(-1) == c.argmax(-1)).tolist())
        rel = range_share(r, c) if r.size else 0.0
        if rel >= worst:
            worst, where = rel, input_set.name
    if not agree:
        return {"check": "text-generation", "input_set": "every set", "output": "logits", "passed": None,
                "reason": "greedy generation not checked: the candidate takes none of the prefill sets (past of "
                          "length 0) and no real prompts' decode step"}
    share = float(np.mean(agree))
    reasons = [f"the next token agrees at {share:.0%} of the prompts' real positions < {need:.0%}"] if share < need else []
    if worst > rtol:
        reasons.append(f"logits on {where} differ by {worst:.2e} of their range > {rtol:.0e}")
    return {"check": "text-generation", "input_set": "sample-prompts-step", "output": "logits", "passed": not reasons,
            "reason": "; ".join(reasons) or None,
            "figures": {"mode": "one decode step of the real prompts (the candidate takes no prefill: static shapes); "
                                "no greedy loop", "positions": len(agree), "next_token_agreement": share,
                        "max_logit_rel_diff": worst, "bounds": {"logit_rel_diff": rtol, "token_agreement": need}}}

"""``genai_config.json`` beside a text-generation ONNX file: what onnxruntime-genai needs to run zoo's graph with its
own generation loop (``og.Model(dir)``, ``og.Tokenizer``, ``og.Generator``), derived from the artifact's I/O contract
(``zoo.io``: names, cache shape, token ids, ``decoding``), the graph's own inputs and outputs, and the repo's
config.json. Keys as onnxruntime-genai's model builder writes them (``onnxruntime_genai/models/builders/base.py``,
``make_genai_config``).

What zoo's graph is to genai (measured with onnxruntime-genai 0.18.0, docs/tasks.md):

- the split cache (``past_key_values.%d.key|value`` in, ``present.%d.key|value`` out, growing by concatenation), run
  by genai's plain decoder-only loop with ``past_present_share_buffer`` false (genai then feeds a past of length 0
  at the prefill and each step's present back, as zoo's own loop does);
- no ``position_ids`` input: genai feeds ``attention_mask`` (zeros at padding) and the graph makes the positions
  from it, so genai's right-padded batches (``Tokenizer.encode_batch``) decode as each prompt alone would;
- genai's ``type`` picks its runtime class, not the architecture: ``gpt2`` there is the combined ``past_%d`` cache
  of genai's old GPT-2 export, which zoo's graph is not, so every repo whose type genai does not run through that
  plain loop is written as ``llama`` (``TYPE_FALLBACK``), and zoo.json says so;
- search options: greedy (what zoo's check verified), with the repo's rules genai applies as transformers does
  (``repetition_penalty``, ``no_repeat_ngram_size``, ``min_length``); rules genai has no option for are listed in
  zoo.json (``conversion.genai.rules_not_in_genai``), and then no ``genai_config.json`` is written: genai's tokens
  would differ from ``generate()``'s, which zoo verified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo import errors

FILENAME = "genai_config.json"
# repo model types onnxruntime-genai runs through its plain decoder-only loop over a split cache (DecoderOnly_Model)
TYPES_KEPT = ("llama", "mistral", "qwen2", "qwen3", "phi", "gemma")
TYPE_FALLBACK = "llama"
# the contract's generation rules genai has a search option for, applied as transformers applies them
GENAI_RULES = ("repetition_penalty", "no_repeat_ngram_size", "min_length")
# config.json keys of the longest sequence the positions cover, in the order they are read
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len", "max_sequence_length")


def layer_pattern(names: list[str], stem: str, part: str, layers: int) -> str:
    """``stem.%d.part`` when ``names`` hold exactly ``stem.0.part`` ... ``stem.{layers-1}.part`` (genai's
    per-layer name pattern), else a ConversionError: genai would look for names the graph does not have."""
    want = [f"{stem}.{i}.{part}" for i in range(layers)]
    got = [n for n in names if n.startswith(f"{stem}.") and n.endswith(f".{part}")]
    if got != want:
        raise errors.ConversionError(f"the graph's {stem}.*.{part} names {got[:4]} are not {want[:4]}...: "
                                     "onnxruntime-genai could not find its cache by pattern",
                                     hint="report the model with this message")
    return f"{stem}.%d.{part}"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _token_ids(value: Any) -> int | list[int] | None:
    if isinstance(value, list):
        ids = [int(v) for v in value if v is not None]
        return ids[0] if len(ids) == 1 else (ids or None)
    return _int(value)


def _graph_io(path: Path) -> tuple[list[str], list[str], dict[str, list[Any]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = {i.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output], dims


def build(contract: dict[str, Any], config: dict[str, Any], generation: dict[str, Any] | None, path: Path
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(genai_config.json's content, zoo's notes on it) for the ONNX file ``path`` with I/O contract ``contract``
    (zoo.io), from the repo's ``config`` (config.json) and ``generation`` (generation_config.json, or None)."""
    cache = contract["cache"]
    layers, kv_heads, head_dim = int(cache["num_layers"]), int(cache["num_key_value_heads"]), int(cache["head_dim"])
    inputs, outputs, dims = _graph_io(path)
    for name in ("input_ids", "attention_mask"):
        if name not in inputs:
            raise errors.ConversionError(f"{path.name} has no {name} input: onnxruntime-genai cannot feed it",
                                         hint="report the model with this message")
    past_key = layer_pattern(inputs, "past_key_values", "key", layers)
    past_value = layer_pattern(inputs, "past_key_values", "value", layers)
    present_key = layer_pattern(outputs, "present", "key", layers)
    present_value = layer_pattern(outputs, "present", "value", layers)
    shape = dims["past_key_values.0.key"]
    if len(shape) != 4 or shape[1] not in (kv_heads, "num_key_value_heads") or shape[3] not in (head_dim, "head_dim"):
        raise errors.ConversionError(f"{path.name}'s cache is {shape}, its contract says [batch, {kv_heads}, past, "
                                     f"{head_dim}]", hint="report the model with this message")
    gen = generation or {}
    heads = _int(config.get("num_attention_heads") or config.get("n_head"))
    hidden = _int(config.get("hidden_size") or config.get("n_embd"))
    context = next((_int(config[k]) for k in CONTEXT_KEYS if _int(config.get(k))), None)
    if context is None:
        raise errors.ConversionError("config.json names no context length (" + ", ".join(CONTEXT_KEYS) + "): "
                                     "onnxruntime-genai needs one", hint="add max_position_embeddings to config.json",
                                     repo_lacks="context_length")
    rules = contract.get("decoding") or {}
    # the end token(s) generate() stops at: generation_config.json's (the contract's decoding), else config.json's
    eos = _token_ids(rules.get("eos_token_id"))
    if eos is None:
        eos = _token_ids(contract.get("eos_token_id"))
    if eos is None:
        raise errors.ConversionError("neither generation_config.json nor config.json names an eos_token_id: "
                                     "onnxruntime-genai cannot tell where generation ends",
                                     hint="add eos_token_id to the repo's generation_config.json",
                                     repo_lacks="eos_token_id")
    first_eos = eos[0] if isinstance(eos, list) else eos
    pad = _token_ids(gen.get("pad_token_id")) if gen.get("pad_token_id") is not None else _token_ids(contract.get("pad_token_id"))
    bos = _token_ids(gen.get("bos_token_id")) if gen.get("bos_token_id") is not None else _token_ids(config.get("bos_token_id"))
    model_type = str(config.get("model_type") or "")
    genai_type = model_type if model_type in TYPES_KEPT else TYPE_FALLBACK
    search = {
        "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
        "max_length": context, "min_length": _int(rules.get("min_length")) or 0,
        "no_repeat_ngram_size": _int(rules.get("no_repeat_ngram_size")) or 0, "num_beams": 1,
        "num_return_sequences": 1, "past_present_share_buffer": False,
        "repetition_penalty": float(rules.get("repetition_penalty") or 1.0), "temperature": 1.0, "top_k": 1, "top_p": 1.0,
    }
    config_out = {
        "model": {
            "bos_token_id": bos if bos is not None else first_eos,
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": path.name,
                "head_size": head_dim,
                "hidden_size": hidden if hidden is not None else heads * head_dim if heads else kv_heads * head_dim,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": past_key, "past_value_names": past_value},
                "outputs": {"logits": "logits", "present_key_names": present_key, "present_value_names": present_value},
                "num_attention_heads": heads or kv_heads,
                "num_hidden_layers": layers,
                "num_key_value_heads": kv_heads,
            },
            "eos_token_id": eos,
            "pad_token_id": pad if pad is not None else first_eos,
            "type": genai_type,
            "vocab_size": _int(contract.get("vocab_size") or config.get("vocab_size")),
        },
        "search": search,
    }
    not_in_genai = [r for r in rules.get("apply") or [] if r not in GENAI_RULES]
    notes = {"file": FILENAME, "type": genai_type, "repo_model_type": model_type,
             "type_note": None if genai_type == model_type else
             f"onnxruntime-genai's type picks its runtime loop; {model_type!r} is not one that runs zoo's split "
             f"past_key_values.%d.key|value cache, {TYPE_FALLBACK!r} is",
             "position_ids": "none: the graph computes positions from attention_mask, which genai feeds",
             "search": "greedy (do_sample false, top_k 1) with the repo's rules genai has options for",
             "rules_not_in_genai": not_in_genai, "not_applied": rules.get("not_applied") or {}}
    return config_out, notes


def write_config(directory: Path, onnx_path: Path, contract: dict[str, Any]) -> dict[str, Any]:
    """Write ``genai_config.json`` into ``directory`` (beside ``onnx_path``, the artifact's other files, all hashed
    with it at publish) from the contract and the config.json / generation_config.json there; returns the notes
    zoo.json records."""
    config_path = directory / "config.json"
    if not config_path.is_file():  # an ONNX file converted on its own (zoo convert): nothing to read the rest from
        return {"file": None, "reason": f"no config.json beside {onnx_path.name} to make {FILENAME} from"}
    config = json.loads(config_path.read_text())
    generation_path = directory / "generation_config.json"
    generation = json.loads(generation_path.read_text()) if generation_path.is_file() else None
    try:
        content, notes = build(contract, config, generation, onnx_path)
    except errors.ConversionError as exc:
        if not exc.details.get("repo_lacks"):
            raise  # the contract and the graph disagree: a zoo bug, not a missing genai sidecar
        # the model itself is fine (the plain loop needs neither): no genai_config.json, and zoo.json says why
        return {"file": None, "reason": f"{exc.message}; {exc.hint}"}
    if notes["rules_not_in_genai"]:  # genai would decode other tokens than the ones zoo verified: no file
        missing = ", ".join(notes["rules_not_in_genai"])
        return {**notes, "file": None,
                "reason": f"onnxruntime-genai has no search option for the repo's {missing}: its tokens would differ "
                          f"from generate()'s, which zoo verified; no {FILENAME} (a loop that applies the contract's "
                          "decoding rules, as docs/tasks.md shows, decodes this model)"}
    (directory / FILENAME).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    return notes

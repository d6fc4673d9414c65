"""Heads that need more than the transformers model's own outputs inside the graph.

``sentence_embedding``: a sentence-transformers repo (``modules.json``: Transformer -> Pooling ->
optionally Normalize) as one graph whose output is the sentence embedding ``[batch, hidden]``: the pooling
``1_Pooling/config.json`` names (mean over real tokens, CLS token, max over real tokens) and the L2
normalisation run inside the ONNX model, as ``SentenceTransformer.encode`` would compute them.
"""

from __future__ import annotations

from typing import Any

from zoo import errors

POOLING_MODES = ("mean", "cls", "max")


def pooling_mode(st: dict[str, Any]) -> tuple[str, bool]:
    """(pooling mode, normalize) from the repo's modules.json and 1_Pooling/config.json."""
    modules = st.get("modules") or []
    kinds = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    normalize = any(k.endswith(".Normalize") for k in kinds)
    pooling = st.get("pooling") or {}
    chosen = [m for m in POOLING_MODES if pooling.get(f"pooling_mode_{m}_token" if m == "cls" else
                                                      f"pooling_mode_{m}_tokens" if m != "mean" else
                                                      "pooling_mode_mean_tokens")]
    if not pooling:
        chosen = ["mean"]  # sentence-transformers' default
    other = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and
             k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
    if len(chosen) != 1 or other:
        raise errors.UnsupportedError(
            f"sentence-transformers pooling {sorted(k for k, v in pooling.items() if v is True)} is not supported",
            hint="zoo puts one of mean, cls or max pooling (optionally normalised) inside the graph")
    unknown = [k for k in kinds if not k.endswith((".Transformer", ".Pooling", ".Normalize"))]
    if unknown:
        raise errors.UnsupportedError(f"sentence-transformers modules {unknown} are not supported",
                                      hint="zoo converts Transformer -> Pooling -> Normalize pipelines")
    return chosen[0], normalize


def sentence_embedding(model: Any, input_names: list[str], st: dict[str, Any]) -> Any:
    import torch

    mode, normalize = pooling_mode(st)

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            feeds = dict(zip(input_names, args))
            hidden = self.inner(**feeds, return_dict=True).last_hidden_state
            mask = feeds["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if mode == "cls":
                pooled = hidden[:, 0]
            elif mode == "max":
                pooled = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return SentenceEmbedding(model).eval()


# --- parity inputs and checks of the encoder heads ----------------------------------------------------
MASKED_SET = "sample-masked"
SENTENCES = "sample-sentences"  # parity/inputs._text_sets


def masked_input_sets(sets: list[Any], tokenizer: Any) -> list[Any]:
    """fill-mask: each sample sentence set with every third real word-piece replaced by the mask token, named as
    its source (``sample-sentences-s16`` -> ``sample-masked-s16``): the tokenizer's padding and the export length
    both, so a static-shape export (litert-torch's tflite) is held to the masked-token check too."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        return []
    out = []
    for sample in sets:
        if sample.kind != "sample" or "input_ids" not in sample.feeds or not sample.name.startswith(SENTENCES):
            continue
        ids = np.array(sample.feeds["input_ids"], copy=True)
        special = np.isin(ids, np.asarray(tokenizer.all_special_ids))
        real = np.asarray(sample.feeds.get("attention_mask", np.ones_like(ids))).astype(bool) & ~special
        chosen = np.zeros_like(real)
        for row in range(ids.shape[0]):
            cols = np.flatnonzero(real[row])
            chosen[row, cols[1::3]] = True
        ids[chosen] = mask_id
        out.append(InputSet(MASKED_SET + sample.name.removeprefix(SENTENCES), {**sample.feeds, "input_ids": ids},
                            kind="sample"))
    return out


def unmasked_name(name: str) -> str | None:
    """The sentence set a masked set was made from (``sample-masked-s16[0:2]`` -> ``sample-sentences-s16[0:2]``, a
    static export's chunk of it), None for a set that is not masked."""
    return SENTENCES + name.removeprefix(MASKED_SET) if name.startswith(MASKED_SET) else None


def _real_tokens(np: Any, feeds: dict[str, Any], shape: tuple[int, ...]) -> Any:
    mask = feeds.get("attention_mask")
    return np.ones(shape[:2], bool) if mask is None else np.asarray(mask).astype(bool)


def head_results(task: str, names: list[str], ran: list, precision: str) -> list[dict[str, Any]]:
    """What each head's user reads, compared on the sample sets: fill-mask the top-1 token (and the top-5
    set) at every masked position; token-classification the label of every real token; question-answering
    the best start and end token. Float32 must agree everywhere; lower precisions on 95% (int8: 90%)."""
    import numpy as np

    need = 1.0 if precision in ("float32", "float64") else 0.9 if precision == "int8" else 0.95
    results = []
    unmasked = {s.name: s.feeds for s, _, _ in ran if s.kind == "sample"}
    for input_set, refs, outs in ran:
        if input_set.kind != "sample":
            continue
        got = dict(zip(names, zip(refs, outs)))
        figures: dict[str, Any] = {"required_agreement": need}
        if task == "fill-mask":
            if unmasked_name(input_set.name) is None or "logits" not in got:
                continue
            before = unmasked.get(unmasked_name(input_set.name))
            ids = np.asarray(input_set.feeds["input_ids"])
            where = ids != np.asarray(before["input_ids"]) if before is not None else None
            if where is None or not where.any():
                results.append({"check": task, "input_set": input_set.name, "output": "logits", "passed": None,
                                "reason": "no masked position to compare"})
                continue
            r, c = (np.asarray(a)[where] for a in got["logits"])
            top1 = float((r.argmax(-1) == c.argmax(-1)).mean())
            top5 = float(np.mean([set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5]) for a, b in zip(r, c)]))
            figures.update(masked_positions=int(where.sum()), top1_agreement=top1, top5_set_agreement=top5)
            reasons = [f"top-1 token at masked positions agrees on {top1:.0%} < {need:.0%}"] if top1 < need else []
            output = "logits"
        elif task == "token-classification" and "logits" in got:
            r, c = (np.asarray(a) for a in got["logits"])
            real = _real_tokens(np, input_set.feeds, r.shape)
            agree = float((r.argmax(-1) == c.argmax(-1))[real].mean())
            figures.update(real_tokens=int(real.sum()), label_agreement=agree)
            reasons = [f"per-token label agrees on {agree:.0%} of real tokens < {need:.0%}"] if agree < need else []
            output = "logits"
        elif task == "question-answering" and {"start_logits", "end_logits"} <= set(got):
            spans = []
            for side in ("start_logits", "end_logits"):
                r, c = (np.asarray(a, np.float64) for a in got[side])
                real = _real_tokens(np, input_set.feeds, r.shape)
                r, c = np.where(real, r, -np.inf), np.where(real, c, -np.inf)
                spans.append(r.argmax(-1) == c.argmax(-1))
            agree = float((spans[0] & spans[1]).mean())
            figures.update(examples=int(spans[0].size), span_agreement=agree)
            reasons = [f"answer span (start and end) agrees on {agree:.0%} of examples < {need:.0%}"] \
                if agree < need else []
            output = "start_logits,end_logits"
        else:
            continue
        results.append({"check": task, "input_set": input_set.name, "output": output, "passed": not reasons,
                        "reason": "; ".join(reasons) or None, "figures": figures})
    return results


# --- multiple choice ------------------------------------------------------------------------------------
CHOICE_QUESTIONS = [
    ("The dog ran to the river because", ["it was thirsty", "the book was red", "music is loud", "paper is white"]),
    ("She opened the window in the morning to", ["let the warm air in", "eat the table", "sing a car", "read water"]),
]


def multiple_choice_sets(record: Any, tokenizer: Any) -> list[Any]:
    """Random ``[batch, choices, sequence]`` ids at three shapes, and real questions paired with their choices."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    names = [s["name"] for s in record.input_spec]
    vocab = int(record.extra.get("vocab_size") or 100)
    sets = []
    for seed, (batch, choices, seq) in enumerate(((2, 4, 16), (1, 2, 7), (3, 3, 12))):
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(0, vocab, (batch, choices, seq), dtype=np.int64),
                 "attention_mask": np.ones((batch, choices, seq), np.int64),
                 "token_type_ids": np.zeros((batch, choices, seq), np.int64)}
        sets.append(InputSet(f"random-b{batch}-c{choices}-s{seq}", {n: feeds[n] for n in names}))
    if tokenizer is not None:
        firsts = [q for q, options in CHOICE_QUESTIONS for _ in options]
        seconds = [o for _, options in CHOICE_QUESTIONS for o in options]
        enc = tokenizer(firsts, seconds, padding=True, return_tensors="np")
        shape = (len(CHOICE_QUESTIONS), len(CHOICE_QUESTIONS[0][1]), -1)
        feeds = {n: np.asarray(enc[n], np.int64).reshape(shape) for n in names if n in enc}
        if len(feeds) == len(names):
            sets.append(InputSet("sample-questions", feeds, kind="sample"))
    return sets


def choice_results(names: list[str], ran: list, precision: str) -> list[dict[str, Any]]:
    """The chosen answer (argmax over the choices) of every question identical (95% below float32)."""
    from zoo.converters.tasks.agreement import label_agreement_needed, sample_pairs

    need = label_agreement_needed(precision)
    results = []
    for input_set, r, c in sample_pairs(names, ran, "logits", 2):
        agree = float((r.argmax(-1) == c.argmax(-1)).mean())
        reason = None if agree >= need else f"the chosen answer agrees on {agree:.0%} of the questions < {need:.0%}"
        results.append({"check": "multiple-choice", "input_set": input_set.name, "output": "logits",
                        "passed": reason is None, "reason": reason,
                        "figures": {"questions": int(r.shape[0]), "choices": int(r.shape[1]), "agreement": agree}})
    return results

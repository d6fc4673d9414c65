"""generation_config.json's logits rules, applied in a greedy ONNX decode loop as transformers' ``generate()``
applies them (``GenerationMixin._get_logits_processor`` and the processors of ``generation/logits_process.py``).

A repo's generation config says more than where decoding starts: ``repetition_penalty`` (chat models),
``no_repeat_ngram_size`` and ``min_length`` (facebook/bart-large-cnn: 3 and 56), ``bad_words_ids`` (Marian),
``suppress_tokens`` (Whisper), ... Each of these rewrites the next-token logits from the tokens so far, so a plain
argmax over the ONNX logits does not give the tokens ``generate()`` gives. ``plan`` reads them into the contract
(``decoding``: the values, ``apply``: the active ones in the order a consumer applies them); ``apply_rules`` is the
consumer's side, in numpy, used by both decode loops of the generation checks (text_generation.py, seq2seq.py),
whose tokens are compared with ``generate()`` run under the same rules (``greedy_kwargs``). What greedy decoding
cannot do (beam search and its length penalty, sampling and its warpers, contrastive search, guidance) is listed
under ``not_applied``: the check decodes greedily, the consumer is told the repo asks for more.
"""

from __future__ import annotations

from typing import Any

# the rules a greedy loop applies, in generate()'s order (the order matters: a penalty rescales what a ban
# leaves, a forced token overrides both, and the suppressions come last)
RULES = ("sequence_bias", "encoder_repetition_penalty", "repetition_penalty", "no_repeat_ngram_size",
         "encoder_no_repeat_ngram_size", "bad_words_ids", "min_length", "min_new_tokens", "forced_bos_token_id",
         "forced_eos_token_id", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens")
ENCODER_RULES = ("encoder_repetition_penalty", "encoder_no_repeat_ngram_size")  # read the encoder's input ids
EOS_RULES = ("min_length", "min_new_tokens", "exponential_decay_length_penalty")  # act on the end token(s)
# a value that changes nothing (generate() builds no processor for it)
NEUTRAL = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
           "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0}
# search settings greedy decoding cannot apply: beam search (and what only beams use), contrastive search, DoLa,
# classifier-free guidance, watermarking
SEARCH = {"num_beams": 1, "num_beam_groups": 1, "diversity_penalty": 0.0, "length_penalty": 1.0,
          "early_stopping": False, "constraints": None, "force_words_ids": None, "penalty_alpha": None,
          "dola_layers": None, "guidance_scale": 1.0, "watermarking_config": None}
# sampling and its warpers: recorded as not applied where the repo samples (do_sample true); generate() itself
# ignores them otherwise
SAMPLING = {"do_sample": False, "temperature": 1.0, "top_k": None, "top_p": 1.0, "min_p": None, "top_h": None,
            "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def config_value(source: Any, key: str, default: Any = None) -> Any:
    """``key`` of a config as a dict (config.json, generation_config.json) or an object (a transformers config),
    ``default`` where it is missing or null."""
    value = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
    return default if value is None else value



def _active(key: str, value: Any) -> bool:
    if value is None or value == [] or value == {}:
        return False
    return key not in NEUTRAL or value != NEUTRAL[key]


def eos_ids(eos: Any) -> list[int]:
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def bad_words(bad: Any, eos: Any) -> list[list[int]]:
    """``bad_words_ids`` as generate()'s NoBadWordsLogitsProcessor keeps them: a ban of the end token alone is
    dropped."""
    ends = [[e] for e in eos_ids(eos)]
    return [list(map(int, seq)) for seq in bad or [] if list(map(int, seq)) not in ends]


def sequence_bias(bias: Any) -> list[list[Any]]:
    """``sequence_bias`` as ``[[token ids], bias]`` pairs (generation_config.json's list form; a dict keyed by
    tuples, GenerationConfig's own, is accepted too)."""
    items = bias.items() if isinstance(bias, dict) else (bias or [])
    return [[list(map(int, seq)), float(value)] for seq, value in items]


def plan(source: Any, *, encoder_ids: bool = True) -> dict[str, Any]:
    """The greedy-compatible rules of a generation config (``source``: generation_config.json, else config.json's
    generation keys, as transformers reads them), every rule key present (``None`` where off), with ``apply``: the
    active ones in the order a consumer applies them, and ``not_applied``: the settings greedy decoding cannot
    apply. ``encoder_ids=False`` (Whisper: the encoder takes features, not ids) moves the encoder rules, which
    generate() then ignores, to ``not_applied``."""
    eos = config_value(source, "eos_token_id")
    rules: dict[str, Any] = {k: config_value(source, k) for k in RULES}
    rules["bad_words_ids"] = bad_words(rules["bad_words_ids"], eos)
    rules["suppress_tokens"] = list(rules["suppress_tokens"] or [])
    rules["begin_suppress_tokens"] = list(rules["begin_suppress_tokens"] or [])
    rules["sequence_bias"] = sequence_bias(rules["sequence_bias"]) or None
    not_applied = {k: config_value(source, k) for k in SEARCH if config_value(source, k) not in (None, SEARCH[k])}
    if config_value(source, "do_sample"):
        not_applied.update({k: config_value(source, k) for k in SAMPLING if config_value(source, k) not in (None, SAMPLING[k])})
    for key in ENCODER_RULES if not encoder_ids else ():
        if _active(key, rules[key]):
            not_applied[key] = rules[key]
        rules[key] = None
    active = [k for k in RULES if _active(k, rules[k]) and (k not in EOS_RULES or eos_ids(eos))]
    return {**rules, "eos_token_id": eos, "apply": active, "not_applied": not_applied}


GREEDY = ("the next token is the argmax of the last position's logits after each rule of decoding.apply, in that "
          "order, as transformers' generate() applies them: sequence_bias adds its bias to a sequence's last token "
          "where the others end the tokens so far; encoder_repetition_penalty multiplies by it the positive logits "
          "(divides the negative ones) of the encoder's input ids; repetition_penalty divides the positive logits "
          "(multiplies the negative ones) of every token so far (a decoder-only prompt's left padding excluded); "
          "no_repeat_ngram_size sets to -inf each token that would complete an n-gram already in the tokens so far "
          "(a decoder-only prompt, padding included, is part of them); encoder_no_repeat_ngram_size each token that "
          "would complete an n-gram of the encoder's input ids; bad_words_ids the last token of a listed sequence "
          "whose other tokens end the tokens so far; min_length the end token while fewer tokens than it (the "
          "prompt included), min_new_tokens while fewer generated than it; forced_bos_token_id is the token after a "
          "one-token start, forced_eos_token_id the token that reaches the loop's length limit; "
          "exponential_decay_length_penalty [start, factor] raises the end token's logit by |logit| * (factor ** k - "
          "1), k the tokens past the prompt plus start; suppress_tokens at every step and begin_suppress_tokens at "
          "the first generated token (the second after a forced_bos_token_id) to -inf")


def greedy_kwargs(steps: int) -> dict[str, Any]:
    """generate()'s keyword arguments for the check's reference: the repo's own rules (the model's generation
    config) decoded greedily, ``steps`` new tokens with the end token kept out of them (``min_new_tokens``: no
    early stop, every row decodes the whole window); the searches greedy decoding cannot do switched off."""
    off = {k: None for k in SEARCH if k not in ("num_beams", "early_stopping", "length_penalty")}
    return {"max_new_tokens": steps, "min_new_tokens": steps, "num_beams": 1, "do_sample": False, **off}


# --- the consumer's side: one step's logits through the rules ---------------------------------------
def apply_rules(scores: Any, rules: dict[str, Any], ids: Any, prompt_length: int, *, max_length: int | None = None,
                pad_lengths: Any = None, encoder_ids: Any = None, no_eos: bool = False) -> Any:
    """The next-token logits [batch, vocab] after the rules of ``rules`` (a ``plan``): ``ids`` [batch, length] every
    token so far as generate() sees them (a decoder-only model's left-padded prompt, an encoder-decoder's decoder
    prompt, then the generated tokens), ``prompt_length`` the prompt's part, ``max_length`` the loop's length limit
    (prompt + new tokens: where forced_eos_token_id applies), ``pad_lengths`` each row's left padding (the
    repetition penalty skips it), ``encoder_ids`` the encoder's input ids (a decoder-only model's prompt);
    ``no_eos``: the end token suppressed (the check's window, generate()'s ``min_new_tokens``)."""
    import numpy as np

    s = np.array(scores, np.float32, copy=True)
    ids = np.asarray(ids, np.int64)
    length, vocab = ids.shape[1], s.shape[1]
    eos = eos_ids(rules.get("eos_token_id"))
    if rules.get("sequence_bias"):
        s = _bias(s, ids, rules["sequence_bias"])
    if _active("encoder_repetition_penalty", rules.get("encoder_repetition_penalty")) and encoder_ids is not None:
        s = _penalize(s, np.asarray(encoder_ids, np.int64), 1 / float(rules["encoder_repetition_penalty"]))
    if _active("repetition_penalty", rules.get("repetition_penalty")):
        seen = ids.copy()
        if pad_lengths is not None:  # generate() skips a decoder-only prompt's left padding (attention mask 0)
            seen[np.arange(length)[None, :] < np.asarray(pad_lengths)[:, None]] = vocab
        s = _penalize(s, seen, float(rules["repetition_penalty"]))
    if _active("no_repeat_ngram_size", rules.get("no_repeat_ngram_size")):
        s = _ban_ngrams(s, ids, int(rules["no_repeat_ngram_size"]))
    if _active("encoder_no_repeat_ngram_size", rules.get("encoder_no_repeat_ngram_size")) and encoder_ids is not None:
        s = _ban_encoder_ngrams(s, ids, np.asarray(encoder_ids, np.int64), int(rules["encoder_no_repeat_ngram_size"]))
    if rules.get("bad_words_ids"):
        s = _bias(s, ids, [[seq, -np.inf] for seq in rules["bad_words_ids"]])
    if eos and _active("min_length", rules.get("min_length")) and length < int(rules["min_length"]):
        s[:, eos] = -np.inf
    if eos and _active("min_new_tokens", rules.get("min_new_tokens")) \
            and length - prompt_length < int(rules["min_new_tokens"]):
        s[:, eos] = -np.inf
    if eos and no_eos:
        s[:, eos] = -np.inf
    if rules.get("forced_bos_token_id") is not None and length == 1:
        s = np.full_like(s, -np.inf)
        s[:, int(rules["forced_bos_token_id"])] = 0
    if rules.get("forced_eos_token_id") is not None and max_length is not None and length == max_length - 1:
        s = np.full_like(s, -np.inf)
        s[:, eos_ids(rules["forced_eos_token_id"])] = 0
    decay = rules.get("exponential_decay_length_penalty")
    if eos and decay and length > int(decay[0]) + prompt_length:
        column = s[:, eos]
        raise_by = np.abs(column) * (pow(float(decay[1]), length - int(decay[0]) - prompt_length) - 1)
        s[:, eos] = column + np.where(np.isfinite(column), raise_by, 0.0).astype(np.float32)
    if rules.get("suppress_tokens"):
        s[:, rules["suppress_tokens"]] = -np.inf
    begin = prompt_length + (1 if prompt_length == 1 and rules.get("forced_bos_token_id") is not None else 0)
    if rules.get("begin_suppress_tokens") and length == begin:
        s[:, rules["begin_suppress_tokens"]] = -np.inf
    return s


def _penalize(s: Any, ids: Any, penalty: float) -> Any:
    """RepetitionPenaltyLogitsProcessor: each listed token's logit divided by ``penalty`` where positive, multiplied
    where negative (ids past the vocabulary ignored)."""
    import numpy as np

    for row in range(s.shape[0]):
        tokens = np.unique(ids[row % ids.shape[0]])
        tokens = tokens[(tokens >= 0) & (tokens < s.shape[1])]
        v = s[row, tokens]
        s[row, tokens] = np.where(v < 0, v * np.float32(penalty), v / np.float32(penalty))
    return s


def _ban_ngrams(s: Any, ids: Any, n: int) -> Any:
    """NoRepeatNGramLogitsProcessor: the last token of every n-gram of ``ids`` whose first n - 1 tokens are the last
    n - 1 tokens of ``ids``."""
    import numpy as np

    length = ids.shape[1]
    if length < n:
        return s
    for row in range(s.shape[0]):
        seq = ids[row]
        prefix = seq[length + 1 - n:]
        for start in range(length - n + 1):
            token = seq[start + n - 1]
            if token < s.shape[1] and np.array_equal(seq[start:start + n - 1], prefix):
                s[row, token] = -np.inf
    return s


def _ban_encoder_ngrams(s: Any, ids: Any, encoder_ids: Any, n: int) -> Any:
    """EncoderNoRepeatNGramLogitsProcessor: the last token of every n-gram of the encoder's input ids whose first
    n - 1 tokens end ``ids`` (the slice taken as transformers takes it, a negative start included)."""
    import numpy as np

    length = ids.shape[1]
    for row in range(s.shape[0]):
        enc = encoder_ids[row % encoder_ids.shape[0]].tolist()
        grams: dict[tuple, list[int]] = {}
        for gram in zip(*[enc[i:] for i in range(n)]):
            grams.setdefault(tuple(gram[:-1]), []).append(gram[-1])
        banned = grams.get(tuple(ids[row].tolist()[length + 1 - n:length]), [])
        if banned:
            s[row, banned] = -np.inf
    return s


def _bias(s: Any, ids: Any, pairs: list[list[Any]]) -> Any:
    """SequenceBiasLogitsProcessor (and NoBadWordsLogitsProcessor, a bias of -inf): a one-token sequence's bias
    always, a longer one's where its other tokens end ``ids``."""
    import numpy as np

    bias = np.zeros_like(s)
    single = {seq[0]: value for seq, value in pairs if len(seq) == 1}
    for token, value in single.items():
        bias[:, token] = value
    length = ids.shape[1]
    for seq, value in pairs:
        if len(seq) > 1 and len(seq) - 1 <= length:
            rows = (ids[:, length - len(seq) + 1:] == np.asarray(seq[:-1])).all(axis=1)
            bias[rows, seq[-1]] += np.float32(value)
    return s + bias

"""The generation config's logits rules as the ONNX decode loops apply them (converters/tasks/generation_rules.py),
against transformers' own processors: the list ``generate()`` builds (``_get_logits_processor``, in its order) for
a real tiny GPT-2 (decoder-only: the left-padded prompt is part of the tokens, its padding skipped by the
repetition penalty) and a real tiny BART (encoder-decoder: the decoder's tokens from the start token, the encoder's
ids for the encoder rules), on random logits and token histories chosen to repeat (so that n-grams recur), at
every length from the prompt's to past the rules' thresholds. The end-to-end checks (a tiny GPT-2 and a tiny
BART whose rules change the tokens, pulled and verified) are in tests/test_seq2seq_pull.py and tests/test_tasks.py."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from zoo.converters.tasks import generation_rules

VOCAB, EOS, PAD = 24, 2, 1
RULES = {
    "repetition_penalty": {"repetition_penalty": 1.7},
    "encoder_repetition_penalty": {"encoder_repetition_penalty": 1.4},
    "no_repeat_ngram_size 2": {"no_repeat_ngram_size": 2},
    "no_repeat_ngram_size 3": {"no_repeat_ngram_size": 3},
    "encoder_no_repeat_ngram_size": {"encoder_no_repeat_ngram_size": 2},
    "bad_words_ids": {"bad_words_ids": [[5], [3, 4], [EOS], [6, 7, 8]]},
    "min_length": {"min_length": 9},
    "min_new_tokens": {"min_new_tokens": 3},
    "forced_bos_eos": {"forced_bos_token_id": 9, "forced_eos_token_id": 11},
    "exponential_decay_length_penalty": {"exponential_decay_length_penalty": [1, 1.6]},
    "suppress_tokens": {"suppress_tokens": [0, 4], "begin_suppress_tokens": [7, EOS]},
    "begin_suppress after forced bos": {"forced_bos_token_id": 9, "begin_suppress_tokens": [7, 3]},
    "sequence_bias": {"sequence_bias": [[[4], 2.5], [[3, 6], -4.0], [[1, 3, 5], 3.0]]},
    "all": {"repetition_penalty": 1.3, "encoder_repetition_penalty": 0.8, "no_repeat_ngram_size": 2,
            "encoder_no_repeat_ngram_size": 3, "bad_words_ids": [[5], [3, 4]], "min_length": 8, "min_new_tokens": 2,
            "exponential_decay_length_penalty": [2, 1.3], "suppress_tokens": [0],
            "sequence_bias": [[[6], -1.0], [[3, 6], 2.0]]},
}


def _model(kind: str):
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=8, n_layer=1, n_head=2, bos_token_id=EOS,
                                          eos_token_id=EOS, pad_token_id=PAD)).eval()
    return BartForConditionalGeneration(BartConfig(vocab_size=VOCAB, d_model=8, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=8, decoder_ffn_dim=8, pad_token_id=PAD,
                                                   bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=EOS,
                                                   forced_bos_token_id=None, forced_eos_token_id=None)).eval()


def _processors(model, settings: dict, prompt_length: int, max_length: int, encoder_ids, mask):
    """The list generate() builds for these settings (its own code, in its order)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(**{**model.generation_config.to_dict(), **settings, "max_length": max_length})
    model._prepare_special_tokens(config, True, device="cpu")
    kwargs = {"attention_mask": torch.from_numpy(mask)} if mask is not None else {}
    return config, model._get_logits_processor(config, input_ids_seq_length=prompt_length,
                                               encoder_input_ids=torch.from_numpy(encoder_ids), device="cpu",
                                               model_kwargs=kwargs)


@pytest.mark.parametrize("kind", ["gpt2", "bart"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_match_transformers_processors(kind, name):
    import torch

    model = _model(kind)
    rng = np.random.default_rng(zlib.crc32(f"{kind} {name}".encode()))
    batch = 3
    if kind == "gpt2":  # a left-padded prompt of 5: rows with 0, 2 and 1 pad positions
        prompt = rng.integers(3, 9, (batch, 5))
        mask = np.ones_like(prompt)
        for row, pads in enumerate((0, 2, 1)):
            prompt[row, :pads], mask[row, :pads] = PAD, 0
        encoder_ids = prompt  # generate() hands a decoder-only model's prompt to the encoder rules
    else:  # the decoder starts from one token; the encoder's ids right-padded
        prompt, mask = np.full((batch, 1), EOS), None
        encoder_ids = rng.integers(3, 9, (batch, 7))
        encoder_ids[1, 5:] = PAD
    steps = 8
    max_length = prompt.shape[1] + steps
    config, processors = _processors(model, RULES[name], prompt.shape[1], max_length, encoder_ids, mask)
    rules = generation_rules.plan(config.to_dict())
    assert set(rules["apply"]) == {k for k in RULES[name] if k in generation_rules.RULES}
    ids = prompt
    for _ in range(steps):
        scores = rng.standard_normal((batch, VOCAB)).astype(np.float32) * 3
        want = processors(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        got = generation_rules.apply_rules(scores, rules, ids, prompt.shape[1], max_length=max_length,
                                           pad_lengths=None if mask is None else (mask != 0).argmax(1),
                                           encoder_ids=encoder_ids)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=f"{name} at length {ids.shape[1]}")
        # the next token: from a short list (n-grams recur), the argmax where it is allowed
        nxt = np.where(rng.random(batch) < 0.6, rng.integers(3, 9, batch), want.argmax(-1))
        ids = np.concatenate([ids, nxt[:, None]], axis=1)


def test_plan_records_what_a_greedy_loop_applies_and_what_it_cannot():
    """The contract's decoding: facebook/bart-large-cnn's generation config (beam search with its length penalty:
    not applied; the n-gram ban, min_length, forced tokens: applied), sampling settings listed where the repo samples,
    Whisper's encoder rules not applied (its encoder takes features)."""
    cnn = {"bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True, "eos_token_id": 2,
           "forced_bos_token_id": 0, "forced_eos_token_id": 2, "length_penalty": 2.0, "max_length": 142,
           "min_length": 56, "no_repeat_ngram_size": 3, "num_beams": 4, "pad_token_id": 1}
    plan = generation_rules.plan(cnn)
    assert plan["apply"] == ["no_repeat_ngram_size", "min_length", "forced_bos_token_id", "forced_eos_token_id"]
    assert plan["not_applied"] == {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True}
    chat = {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "repetition_penalty": 1.1, "eos_token_id": [5, 6]}
    plan = generation_rules.plan(chat)
    assert plan["apply"] == ["repetition_penalty"]
    assert plan["not_applied"] == {"do_sample": True, "temperature": 0.6, "top_p": 0.9}
    assert generation_rules.plan({**chat, "do_sample": False})["not_applied"] == {}
    neutral = generation_rules.plan({"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0})
    assert neutral["apply"] == [] and neutral["not_applied"] == {}
    assert generation_rules.plan({"min_length": 5})["apply"] == []  # no end token: generate() adds no processor
    speech = generation_rules.plan({"encoder_no_repeat_ngram_size": 3, "no_repeat_ngram_size": 2}, encoder_ids=False)
    assert speech["apply"] == ["no_repeat_ngram_size"] and speech["not_applied"] == {"encoder_no_repeat_ngram_size": 3}

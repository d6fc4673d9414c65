"""text2text-generation (issue 11): a tiny seeded T5 and BART with a real tokenizer, read from a Hugging Face cache
through huggingface_hub (offline), exported as encoder.onnx + decoder.onnx with a self-attention cache, and
checked by greedy generation against transformers' generate() (converters/tasks/seq2seq.py), then again
here by the test's own plain onnxruntime loop on other prompts. Broken exports (an encoder output scaled, a
cache output scaled) must fail the check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import write_hf_cache
from task_builders import bart_repo, scale_output, shift_output, t5_repo

from zoo.converters.tasks import seq2seq, seq2seq_check

REPOS = {"zoo-test/tiny-t5": (t5_repo, "T5ForConditionalGeneration"),
         "zoo-test/tiny-bart": (bart_repo, "BartForConditionalGeneration")}
OTHER_PROMPTS = ["the cat sat on the mat", "summarize: hello world and the quick dog", "What time is it"]


@pytest.fixture(scope="module", params=sorted(REPOS))
def t5(request, tmp_path_factory):
    """(model, tokenizer, export directory, contract) of a tiny T5 or BART pulled from a local hub cache."""
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    cache = tmp_path_factory.mktemp("hub")
    build, arch = REPOS[request.param]
    write_hf_cache(cache, request.param, build())
    root = Path(snapshot_download(request.param, cache_dir=str(cache), local_files_only=True))
    tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True, trust_remote_code=False)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(root), local_files_only=True, trust_remote_code=False).eval()
    assert type(model).__name__ == arch
    out = tmp_path_factory.mktemp("t5-onnx")
    contract = seq2seq.export(model, tokenizer, out)
    return model, tokenizer, out, contract


def _plain_loop(directory: Path, contract: dict, enc: dict, steps: int) -> np.ndarray:
    """What a consumer writes from the contract alone: two sessions, the cross-attention cache from the encoder
    once (present.N.encoder.* -> past_key_values.N.encoder.*), the self-attention cache fed back each step."""
    import onnxruntime as ort

    encoder = ort.InferenceSession(str(directory / contract["files"]["encoder"]), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(directory / contract["files"]["decoder"]), providers=["CPUExecutionProvider"])
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    encoded = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    cross = {o.name.replace("present", "past_key_values"): v for o, v in zip(encoder.get_outputs(), encoded)
             if o.name.startswith("present.")}
    past = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.") and i.name not in cross]
    outs = [o.name for o in decoder.get_outputs()]
    feeds = {"input_ids": np.full((len(ids), 1), contract["decoder_start_token_id"], np.int64),
             "encoder_attention_mask": mask, **cross,
             **{p.name: np.zeros((len(ids), contract["cache"]["num_heads"], 0, contract["cache"]["head_dim"]),
                                 np.float32) for p in past}}
    tokens = []
    for _ in range(steps):
        out = dict(zip(outs, decoder.run(None, feeds)))
        nxt = out["logits"][:, -1].argmax(-1)
        tokens.append(nxt)
        feeds.update({"input_ids": nxt[:, None].astype(np.int64),
                      **{p.name: out[p.name.replace("past_key_values", "present")] for p in past}})
    return np.stack(tokens, axis=1)


def test_encoder_decoder_greedy_generation_matches_generate(t5):
    import torch

    model, tokenizer, out, contract = t5
    result = seq2seq_check.generation_results(model, tokenizer, out, contract)
    assert result["passed"], result["reason"]
    figures = result["figures"]
    assert figures["identical"] and figures["tokens_matched"] == [20] * 4 and figures["max_logit_rel_diff"] < 1e-4
    assert len({tuple(row) for row in figures["generated"]}) > 1  # not one token for every prompt
    assert max(len(set(row)) for row in figures["generated"]) >= 5  # a varied continuation, not a repeat

    # the contract is JSON (zoo.json) and names exactly the graphs' inputs and outputs
    contract = json.loads(json.dumps(contract))
    import onnx

    for part in ("encoder", "decoder"):
        graph = onnx.load(str(out / contract["files"][part])).graph
        assert [i.name for i in graph.input] == contract[part]["inputs"]
        assert [o.name for o in graph.output] == contract[part]["outputs"]
    assert contract["cache"]["num_layers"] == 2 and len(contract["decoder"]["inputs"]) == 2 + 2 * 4
    assert contract["encoder"]["outputs"] == ["last_hidden_state"] + [
        f"present.{i}.encoder.{k}" for i in range(2) for k in ("key", "value")]
    assert "encoder_hidden_states" not in contract["decoder"]["inputs"]  # the decoder never recomputes cross K/V

    # independently: the test's own loop on other prompts (batch 3, right-padded) against generate()
    enc = tokenizer(OTHER_PROMPTS, padding=True, return_tensors="np")
    assert (enc["attention_mask"] == 0).any()  # the batch is padded
    got = _plain_loop(out, contract, enc, 20)
    with torch.no_grad():
        want = model.generate(input_ids=torch.from_numpy(enc["input_ids"]),
                              attention_mask=torch.from_numpy(enc["attention_mask"]), max_new_tokens=20,
                              min_new_tokens=20, do_sample=False, num_beams=1, eos_token_id=None)[:, 1:].numpy()
    np.testing.assert_array_equal(got, want)



@pytest.mark.parametrize("part, output, factor", [
    ("encoder", "last_hidden_state", 1.01),  # the encoder's output off by 1% (no decode step reads it)
    ("encoder", "present.1.encoder.value", 0.99),  # one layer's cross-attention cache off by 1%
    ("decoder", "present.1.value", 0.99),  # the self-attention cache the next step reads off by 1%
])
def test_a_broken_export_fails_the_generation_check(t5, tmp_path, part, output, factor):
    model, tokenizer, out, contract = t5
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    scale_output(broken / contract["files"][part], output, factor)
    result = seq2seq_check.generation_results(model, tokenizer, broken, contract)
    assert not result["passed"]
    if output == "last_hidden_state":
        assert "encoder output last_hidden_state differs" in result["reason"]
        return
    assert "logits at decode step" in result["reason"]
    if output == "present.1.encoder.value":
        assert "encoder output present.1.encoder.value differs" in result["reason"]
    if part == "decoder":  # the first step reads no cache: what goes wrong shows from the second on
        assert "decode step 0 " not in result["reason"]


def test_a_shifted_self_attention_cache_fails_and_its_own_text_is_reported(t5, tmp_path):
    """A decoder whose self-attention cache comes back one position off (the off-by-one a broken cache export
    makes) fails the check; the tokens reported are the broken pair's own greedy text, decoded on its own once its
    choices part from generate()'s, not the choices it made while fed generate()'s tokens."""
    model, tokenizer, out, contract = t5
    broken = tmp_path / "shifted"
    shutil.copytree(out, broken)
    shift_output(broken / contract["files"]["decoder"], "present.1.value")
    result = seq2seq_check.generation_results(model, tokenizer, broken, contract)
    assert not result["passed"] and not result["figures"]["identical"]
    assert "greedy tokens diverge" in result["reason"] and "logits at decode step" in result["reason"]
    assert "decode step 0 " not in result["reason"]  # the first step reads no cache
    feeds = seq2seq.encoder_feeds(contract, tokenizer)
    runner = seq2seq_check.onnx_runner(broken, contract)
    own, _, _ = seq2seq_check.greedy_loop(*runner, contract, feeds, 20)
    ref = seq2seq_check.reference_generate(model, feeds, 20)
    forced, _, _ = seq2seq_check.greedy_loop(*runner, contract, feeds, 20, forced=ref.tokens, prompt=ref.prompt)
    assert result["figures"]["generated"] == own.tolist() and not np.array_equal(own, forced)


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_the_candidates_logits_are_those_on_the_references_path(t5, tmp_path, factor):
    """The check compares the candidate's logits along generate()'s tokens, with generate()'s own (output_logits).
    On the same path (factor 1) the candidate's own loop's logits are those of the teacher-forced loop, bit for bit,
    so its own loop is not run again; off the path (a cache output halved: other tokens) the forced loop's figures
    are the ones reported."""
    model, tokenizer, out, contract = t5
    broken = tmp_path / "pair"
    shutil.copytree(out, broken)
    if factor != 1.0:
        scale_output(broken / contract["files"]["decoder"], "present.1.value", factor)
    feeds = seq2seq.encoder_feeds(contract, tokenizer)
    ref = seq2seq_check.reference_generate(model, feeds, 20)
    # generate()'s logits are the raw ones (min_new_tokens sets the end token's to -inf only after them)
    assert all(np.isfinite(step).all() for step in ref.logits)
    o_enc, o_dec = seq2seq_check.onnx_runner(broken, contract)
    own_tokens, own_logits, _ = seq2seq_check.greedy_loop(o_enc, o_dec, contract, feeds, 20)
    _, forced_logits, _ = seq2seq_check.greedy_loop(o_enc, o_dec, contract, feeds, 20, forced=ref.tokens, prompt=ref.prompt)
    assert np.array_equal(own_tokens, ref.tokens) == (factor == 1.0)
    if factor == 1.0:
        assert all(np.array_equal(a, b) for a, b in zip(own_logits, forced_logits))
    worst = max(float(np.abs(r.astype(np.float64) - c).max()) / float(r.max() - r.min())
                for r, c in zip(ref.logits, forced_logits))
    result = seq2seq_check.generation_results(model, tokenizer, broken, contract)
    assert result["figures"]["max_logit_rel_diff"] == pytest.approx(worst, rel=1e-5)  # torch runs apart: ~1e-7
    assert result["passed"] == (factor == 1.0)


def test_a_contract_that_starts_decoding_elsewhere_fails_the_check(t5):
    """The candidate is fed generate()'s prompt on its reference path; the prompt it gives itself comes from the
    contract (what a consumer starts from) and must be generate()'s: a wrong start token fails the check."""
    model, tokenizer, out, contract = t5
    start = contract["decoding"]["prompt"][0]
    wrong = {**contract, "decoding": {**contract["decoding"], "prompt": [start + 1]}}
    result = seq2seq_check.generation_results(model, tokenizer, out, wrong)
    assert not result["passed"] and "the prompts differ" in result["reason"], result["reason"]
    assert result["figures"]["prompt"] == [[start + 1]] * 4


def test_the_decoding_prompt_follows_the_generation_config():
    """Whisper's prompt as transformers builds it (_retrieve_init_tokens), from the repo's files alone."""
    from zoo import errors

    config = {"model_type": "whisper", "num_mel_bins": 80, "decoder_start_token_id": 50, "d_model": 32,
              "decoder_layers": 2, "decoder_attention_heads": 4, "is_encoder_decoder": True}
    base = {"decoder_start_token_id": 50, "lang_to_id": {"<|en|>": 51, "<|de|>": 52},
            "task_to_id": {"transcribe": 54, "translate": 53}, "no_timestamps_token_id": 58,
            "suppress_tokens": [1, 2], "begin_suppress_tokens": [0]}
    detect = seq2seq.decoding(config, {**base, "forced_decoder_ids": [[1, None], [2, 54]]})
    assert detect["prompt"] == [50, None, 54, 58] and detect["language_ids"] == [51, 52]
    assert detect["suppress_tokens"] == [1, 2] and detect["begin_suppress_tokens"] == [0]
    assert seq2seq.decoding(config, {**base, "language": "de"})["prompt"] == [50, 52, 54, 58]
    assert seq2seq.decoding(config, {**base, "language": "en", "task": "translate"})["prompt"] == [50, 51, 53, 58]
    assert seq2seq.decoding(config, {**base, "forced_decoder_ids": [[1, 51], [2, 54]],
                                     "return_timestamps": True})["prompt"] == [50, 51, 54]
    t5 = {"model_type": "t5", "decoder_start_token_id": 0, "d_model": 32, "num_layers": 2, "num_heads": 4, "d_kv": 8}
    assert seq2seq.decoding(t5, None)["prompt"] == [0] and seq2seq.io_contract(t5)["decoder"]["inputs"][:4] == \
        ["input_ids", "encoder_attention_mask", "past_key_values.0.key", "past_key_values.0.value"]
    assert seq2seq.io_contract(t5)["decoder"]["inputs"][4:6] == ["past_key_values.0.encoder.key",
                                                               "past_key_values.0.encoder.value"]
    # a repo with a generation_config.json is decoded by it alone (generate() ignores config.json's lists then)
    legacy = {**config, "suppress_tokens": [7], "begin_suppress_tokens": [8]}
    assert seq2seq.decoding(legacy, {"decoder_start_token_id": 50})["suppress_tokens"] == []
    assert seq2seq.decoding(legacy, None)["suppress_tokens"] == [7]
    assert seq2seq.decoding({**t5, "decoder_start_token_id": None}, {"bos_token_id": 3})["prompt"] == [3]
    # bad_words_ids as generate() keeps them: a ban of the end token alone is dropped (Marian bans its pad)
    marian = seq2seq.decoding(t5, {"decoder_start_token_id": 9, "eos_token_id": 1, "bad_words_ids": [[9], [1], [4, 5]],
                                   "forced_eos_token_id": 1, "num_beams": 4, "max_length": 512})
    assert marian["bad_words_ids"] == [[9], [4, 5]] and marian["not_applied"] == {"num_beams": 4}
    assert marian["forced_eos_token_id"] == 1 and marian["max_length"] == 512
    with pytest.raises(errors.InvalidModelError, match="generation_config.json names no decoder_start_token_id"):
        seq2seq.decoding(config, {"bos_token_id": 3})  # Whisper starts from decoder_start_token_id only
    with pytest.raises(errors.UnsupportedError):
        seq2seq.io_contract({"model_type": "speech_to_text", "input_feat_per_channel": 80, "d_model": 32,
                             "decoder_layers": 2, "decoder_attention_heads": 4})


def test_the_greedy_choice_applies_generate_token_rules():
    """One step's choice as generate()'s processors make it: banned single tokens, the last token of a banned
    sequence right after its other tokens, the end token kept out of the window, forced first and last tokens."""
    logits = np.tile(np.arange(10, dtype=np.float32), (2, 1))  # token 9 best, then 8, 7, ...
    plan = {"bad_words_ids": [[9], [3, 8]], "eos_token_id": 7, "suppress_tokens": [], "begin_suppress_tokens": [6],
            "forced_bos_token_id": None, "forced_eos_token_id": 2}
    ids = np.array([[0, 1, 3], [0, 1, 4]])  # the decoder's tokens so far: the start token 0, then two generated
    choose = seq2seq_check._choose
    assert choose(logits, plan, ids, 1, 20).tolist() == [7, 8]  # row 0 just generated 3: 8 banned
    assert choose(logits, plan, ids, 1, 20, no_eos=True).tolist() == [6, 8]  # the end token 7 kept out
    start = {**plan, "bad_words_ids": [[9], [8]]}  # 9, 8 banned, 7 the end token, 6 suppressed at the start
    assert choose(logits, start, ids[:, :1], 1, 20, no_eos=True).tolist() == [5, 5]
    assert choose(logits, plan, ids, 1, 4).tolist() == [2, 2]  # forced_eos at the length limit
    assert choose(logits, {**plan, "forced_bos_token_id": 4}, ids[:, :1], 1, 20).tolist() == [4, 4]

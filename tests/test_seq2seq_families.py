"""Marian and mT5 through `zoo pull` (issue 11): tiny seeded MarianMTModel and MT5ForConditionalGeneration repos
with the files the real Helsinki-NLP/opus-mt-* and google/mt5-* repos ship (tests/task_builders.py): Marian's
``source.spm`` / ``target.spm`` / ``vocab.json`` and its generation config (decoder start = pad,
``bad_words_ids`` [[pad]], ``forced_eos_token_id``, ``num_beams`` 4); mT5's ``spiece.model`` with no
``tokenizer.json``. Each is pulled from a local Hugging Face cache and must pass the generation check (greedy
generate() with the repo's token constraints, beams off); then a consumer's loop written from the contract alone
must give generate()'s tokens on other prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from task_builders import in_process_pull, marian_repo, mt5_repo, source_dir

REPOS = {"zoo-test/tiny-marian": marian_repo, "zoo-test/tiny-mt5": mt5_repo}
OTHER_PROMPTS = ["the cat sat on the mat", "hello world and the quick dog", "What time is it"]


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in REPOS.items()}


@pytest.fixture
def pull(indexed, repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, repos, capsys)


def consumer_loop(directory: Path, enc: dict, steps: int) -> np.ndarray:
    """Greedy decoding from decoder.onnx's zoo.io alone, with the contract's token rules (single-token bad words
    banned, forced eos at the loop's last token)."""
    import onnxruntime as ort

    options = {"providers": ["CPUExecutionProvider"]}
    decoder = ort.InferenceSession(str(directory / "decoder.onnx"), **options)
    io = json.loads(decoder.get_modelmeta().custom_metadata_map["zoo.io"])
    encoder = ort.InferenceSession(str(directory / io["files"]["encoder"]), **options)
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    encoded = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    cross = {o.name.replace("present", "past_key_values"): v for o, v in zip(encoder.get_outputs(), encoded)
             if o.name.startswith("present.")}
    plan, cache = io["decoding"], io["cache"]
    past = [i.name for i in decoder.get_inputs() if i.name.startswith("past_key_values.") and i.name not in cross]
    outs = [o.name for o in decoder.get_outputs()]
    feeds = {"input_ids": np.array([plan["prompt"]] * len(ids), np.int64), **cross, "encoder_attention_mask": mask,
             **{p: np.zeros((len(ids), cache["num_heads"], 0, cache["head_dim"]), np.float32) for p in past}}
    banned = [seq[0] for seq in plan["bad_words_ids"] if len(seq) == 1] + plan["suppress_tokens"]
    tokens = []
    for step in range(steps):
        out = dict(zip(outs, decoder.run(None, feeds)))
        last = out["logits"][:, -1].copy()
        last[:, banned] = -np.inf
        nxt = last.argmax(-1).astype(np.int64)
        if step == steps - 1 and plan["forced_eos_token_id"] is not None:
            nxt[:] = plan["forced_eos_token_id"]
        tokens.append(nxt)
        feeds.update({"input_ids": nxt[:, None], **{p: out[p.replace("past_key_values", "present")] for p in past}})
    return np.stack(tokens, axis=1)


@pytest.mark.parametrize("repo", sorted(REPOS))
def test_marian_and_mt5_pull_pass_the_generation_check(pull, repos, tmp_path, repo):
    import torch
    import transformers

    out_dir = tmp_path / "out"
    out = pull(repo, "-o", str(out_dir))
    manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
    assert out["verified"] and manifest["record"]["task"] == "text2text-generation"
    gen = [t for t in manifest["parity"]["tasks"] if t["check"] == "text2text-generation"][0]
    assert gen["passed"] and gen["figures"]["identical"] and gen["figures"]["new_tokens"] == 20, gen
    assert gen["figures"]["max_logit_rel_diff"] < 1e-4
    plan = manifest["record"]["extra"]["io"]["decoding"]
    source = {p.name for p in out_dir.iterdir()}
    if "marian" in repo:  # the repo's own constraints, recorded for consumers; beams listed as not applied
        pad = json.loads(repos[repo]["config.json"])["pad_token_id"]
        assert plan["prompt"] == [pad] and plan["bad_words_ids"] == [[pad]] and plan["forced_eos_token_id"] == 0
        assert plan["not_applied"] == {"num_beams": 4} and plan["max_length"] == 512
        assert {"source.spm", "target.spm", "vocab.json"} <= source
        generated = np.array(gen["figures"]["generated"])
        assert not (generated == pad).any() and (generated[:, -1] == 0).all()
    else:
        assert plan["prompt"] == [0] and plan["bad_words_ids"] == [] and plan["not_applied"] == {}
        assert "spiece.model" in source and "tokenizer.json" not in repos[repo]

    # independently: the artifact's tokenizer, other prompts, a consumer's loop against the real model's generate()
    tok = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    enc = tok(OTHER_PROMPTS, padding=True, return_tensors="np")
    assert (enc["attention_mask"] == 0).any()
    got = consumer_loop(out_dir, enc, 20)
    root = source_dir(tmp_path, repos[repo])
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(root)).eval()
    feeds = {"input_ids": torch.from_numpy(enc["input_ids"]), "attention_mask": torch.from_numpy(enc["attention_mask"])}
    with torch.no_grad():
        want = model.generate(**feeds, max_new_tokens=20, min_new_tokens=20, do_sample=False, num_beams=1,
                              eos_token_id=None)[:, -20:].numpy()
        if "marian" in repo:  # the constraint is exercised: without the ban, greedy decoding picks pad
            free = model.generate(**feeds, max_new_tokens=20, min_new_tokens=20, do_sample=False, num_beams=1,
                                  eos_token_id=None, bad_words_ids=None)[:, -20:].numpy()
            assert (free == model.config.pad_token_id).any()
    np.testing.assert_array_equal(got, want)

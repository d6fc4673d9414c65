"""Encoder-decoders to pt2, jax and tf (issue 14): `zoo pull` of a tiny seeded T5 (other families slow) from the local
hub cache gives a directory artifact with both files of the format (encoder.pt2 + decoder.pt2, encoder.jax +
decoder.jax, one SavedModel with a serving_default decoder signature and an encoder signature), checked by the same
generation check as the ONNX pair (tokens identical to generate()'s, logits and encoder outputs within 1e-4 of their
range, the prompt) in the format's own runtime; checked here again by a consumer's loop over the files alone; a
candidate with a scaled cross-attention cache or a dropped self-cache update fails with exit 6, nothing published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from task_builders import bart_repo, in_process_pull, manifest_of, marian_repo, mt5_repo, source_dir, t5_repo, whisper_repo

REPOS = {"zoo-test/tiny-t5": t5_repo, "zoo-test/tiny-bart": bart_repo, "zoo-test/tiny-marian": marian_repo,
         "zoo-test/tiny-mt5": mt5_repo, "zoo-test/tiny-whisper": whisper_repo}
FILES = {"pt2": ("encoder.pt2", "decoder.pt2"), "jax": ("encoder.jax", "decoder.jax"),
         "tf": ("saved_model.pb", "saved_model.pb")}


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    return {}


@pytest.fixture
def pull(indexed, repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = in_process_pull(indexed.hub_cache, repos, capsys)

    def pull_one(repo: str, *args: str, code: int = 0) -> dict:
        if repo not in repos:
            repos[repo] = REPOS[repo]()
        return run(repo, *args, code=code)

    return pull_one


def generation(out: dict) -> dict:
    return next(t for t in manifest_of(out)["parity"]["tasks"] if t["check"] == "text2text-generation")


def assert_verified_pair(out: dict, fmt: str) -> dict:
    manifest = manifest_of(out)
    encoder, decoder = FILES[fmt]
    assert out["verified"] and out["parity"]["passed"] and Path(out["path"]).name == decoder
    assert manifest["primary"] == decoder and {encoder, decoder} <= {f["path"] for f in manifest["files"]}
    io = manifest["record"]["extra"]["io"]
    assert io["files"] == {"encoder": encoder, "decoder": decoder}
    assert manifest["conversion"]["files"] == io["files"]
    gen = generation(out)
    assert gen["passed"] and gen["figures"]["identical"] and gen["figures"]["new_tokens"] == 20, gen
    assert gen["figures"]["reference"] == "generate()" and gen["figures"]["max_encoder_rel_diff"] <= 1e-4
    return manifest


@pytest.mark.parametrize("fmt", ["pt2", "jax"])
def test_t5_pair_verified_by_generation(pull, tmp_path, fmt):
    """The artifact holds both files; a consumer's loop over them alone (the contract from zoo.json, the past from 0)
    gives generate()'s tokens on other prompts."""
    out = pull("zoo-test/tiny-t5", "--format", fmt)
    manifest = assert_verified_pair(out, fmt)
    io = manifest["record"]["extra"]["io"]
    assert manifest["conversion"]["chain"] == f"torch -> {fmt}"
    from zoo.converters.tasks import seq2seq_check

    model = _source_model(tmp_path, "zoo-test/tiny-t5")
    got = _consumer_tokens(seq2seq_check.pair_runner(Path(out["path"]), io), io, model)
    np.testing.assert_array_equal(got, _generate(model, 12))


def _source_model(tmp_path: Path, repo: str):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    root = source_dir(tmp_path, REPOS[repo]())
    model = AutoModelForSeq2SeqLM.from_pretrained(str(root), local_files_only=True).eval()
    model.zoo_tokenizer = AutoTokenizer.from_pretrained(str(root))
    return model


OTHER_PROMPTS = ["the cat sat on the mat", "summarize: hello world and the quick dog", "What time is it"]


def _generate(model, steps: int) -> np.ndarray:
    import torch

    enc = model.zoo_tokenizer(OTHER_PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.generate(**enc, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=1,
                              eos_token_id=None)[:, -steps:].numpy()


def _consumer_tokens(runner, io: dict, model, steps: int = 12) -> np.ndarray:
    """A plain greedy loop over (encode, decode): the prompt, the past from 0, each step's present fed back."""
    encode, decode = runner
    enc = model.zoo_tokenizer(OTHER_PROMPTS, padding=True, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    encoded = encode(feeds)
    cache = io["cache"]
    past = [n for n in io["decoder"]["inputs"] if n.startswith("past_key_values.") and ".encoder." not in n]
    step = {"input_ids": np.array([io["decoding"]["prompt"]] * len(OTHER_PROMPTS), np.int64),
            "encoder_attention_mask": feeds["attention_mask"],
            **{n.replace("present", "past_key_values"): v for n, v in encoded.items() if n.startswith("present.")},
            **{n: np.zeros((len(OTHER_PROMPTS), cache["num_heads"], 0, cache["head_dim"]), np.float32) for n in past}}
    tokens = []
    for _ in range(steps):
        out = decode(step)
        nxt = np.asarray(out["logits"])[:, -1].argmax(-1).astype(np.int64)
        tokens.append(nxt)
        step.update({"input_ids": nxt[:, None], **{n: out[n.replace("past_key_values", "present")] for n in past}})
    return np.stack(tokens, axis=1)

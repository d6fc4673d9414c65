"""text2text-generation through `zoo pull` (issue 11): a tiny seeded T5 and BART from a local Hugging Face cache
(offline, in-process) and through the hub protocol (HF_ENDPOINT, a real `zoo pull` process), published as one
directory artifact (decoder.onnx primary, encoder.onnx beside it, the tokenizer files), checked by greedy
generation against generate(), and checked here again independently; a broken export exits 6 with nothing
published; formats that cannot hold two graphs exit 5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from task_builders import bart_repo, in_process_pull, manifest_of, scale_output, source_dir, t5_repo

REPOS = {"zoo-test/tiny-t5": t5_repo, "zoo-test/tiny-bart": bart_repo}
OTHER_PROMPTS = ["the cat sat on the mat", "summarize: hello world and the quick dog", "What time is it"]
# facebook/bart-large-cnn's generation rules (its n-gram ban, minimum length, beams and length penalty) with the
# repetition penalty chat models carry: each of the two greedy rules alone changes this tiny BART's tokens on
# every prompt (measured; without them it repeats one token)
CNN_RULES = {"no_repeat_ngram_size": 3, "repetition_penalty": 1.5, "min_length": 56, "num_beams": 4,
             "length_penalty": 2.0, "early_stopping": True}
RULES_REPO = "zoo-test/tiny-bart-cnn-rules"


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    return {**{repo: build() for repo, build in REPOS.items()}, RULES_REPO: bart_repo(generation=CNN_RULES)}


@pytest.fixture
def pull(indexed, repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, repos, capsys)


def consumer_loop(directory: Path, enc: dict, steps: int) -> np.ndarray:
    """What a consumer writes from the artifact alone: the contract from decoder.onnx's zoo.io, two sessions,
    the cache fed back each step."""
    import onnxruntime as ort

    decoder = ort.InferenceSession(str(directory / "decoder.onnx"), providers=["CPUExecutionProvider"])
    contract = json.loads(decoder.get_modelmeta().custom_metadata_map["zoo.io"])
    encoder = ort.InferenceSession(str(directory / contract["files"]["encoder"]), providers=["CPUExecutionProvider"])
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    encoded = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    cross = {o.name.replace("present", "past_key_values"): v for o, v in zip(encoder.get_outputs(), encoded)
             if o.name.startswith("present.")}
    past = [i.name for i in decoder.get_inputs() if i.name.startswith("past_key_values.") and i.name not in cross]
    outs = [o.name for o in decoder.get_outputs()]
    cache = contract["cache"]
    feeds = {"input_ids": np.array([contract["decoding"]["prompt"]] * len(ids), np.int64),
             "encoder_attention_mask": mask, **cross,
             **{p: np.zeros((len(ids), cache["num_heads"], 0, cache["head_dim"]), np.float32) for p in past}}
    tokens = []
    for _ in range(steps):
        out = dict(zip(outs, decoder.run(None, feeds)))
        nxt = out["logits"][:, -1].argmax(-1).astype(np.int64)
        tokens.append(nxt)
        feeds.update({"input_ids": nxt[:, None], **{p: out[p.replace("past_key_values", "present")] for p in past}})
    return np.stack(tokens, axis=1)


def source_model(tmp_path: Path, files: dict[str, bytes]):
    from transformers import AutoModelForSeq2SeqLM

    root = source_dir(tmp_path, files)
    return AutoModelForSeq2SeqLM.from_pretrained(str(root), local_files_only=True).eval()


@pytest.mark.parametrize("repo", sorted(REPOS))
def test_pull_encoder_decoder_is_one_verified_directory_artifact(pull, repos, tmp_path, repo):
    import onnxruntime as ort
    import torch
    import transformers

    out_dir = tmp_path / "out"
    out = pull(repo, "-o", str(out_dir))
    assert out["verified"] and out["parity"]["passed"] and Path(out["path"]).name == "decoder.onnx"
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "text2text-generation" and manifest["primary"] == "decoder.onnx"
    files = {f["path"]: f for f in manifest["files"]}
    assert {"encoder.onnx", "decoder.onnx", "tokenizer.json", "config.json"} <= set(files)
    assert all(len(files[n]["sha256"]) == 64 for n in ("encoder.onnx", "decoder.onnx"))
    io = manifest["record"]["extra"]["io"]
    assert io["files"] == {"encoder": "encoder.onnx", "decoder": "decoder.onnx"} and io["cache"]["num_layers"] == 2
    gen = [t for t in manifest["parity"]["tasks"] if t["check"] == "text2text-generation"]
    assert gen and gen[0]["passed"] and gen[0]["figures"]["identical"] and gen[0]["figures"]["new_tokens"] == 20
    assert gen[0]["figures"]["reference"] == "generate()" and gen[0]["figures"]["prompts"] == 4
    for name in ("encoder.onnx", "decoder.onnx"):  # both files carry the task and the contract
        meta = ort.InferenceSession(str(Path(out["artifact_dir"]) / name),
                                    providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        assert meta["zoo.task"] == "text2text-generation" and json.loads(meta["zoo.io"]) == io
    # -o DIR: the whole artifact, both graphs and the tokenizer
    assert {"encoder.onnx", "decoder.onnx", "tokenizer.json"} <= {p.name for p in out_dir.iterdir()}
    # independently: the artifact's own tokenizer, a consumer's loop on other prompts, the real model's generate()
    tok = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    enc = tok(OTHER_PROMPTS, padding=True, return_tensors="np")
    assert (enc["attention_mask"] == 0).any()
    got = consumer_loop(out_dir, enc, 20)
    model = source_model(tmp_path, repos[repo])
    with torch.no_grad():
        want = model.generate(input_ids=torch.from_numpy(enc["input_ids"]),
                              attention_mask=torch.from_numpy(enc["attention_mask"]), max_new_tokens=20,
                              min_new_tokens=20, do_sample=False, num_beams=1, eos_token_id=None)[:, -20:].numpy()
    np.testing.assert_array_equal(got, want)
    assert len({int(t) for t in want.reshape(-1)}) >= 3  # not one token repeated
    again = pull(repo)  # a repeated pull answers from the cache with the same artifact
    assert again["cached"] and again["digest"] == out["digest"]


def test_the_repo_generation_rules_are_applied_checked_and_recorded(pull, repos, tmp_path):
    """The check's decode loops apply the repo's greedy rules and generate() runs under them: the artifact verifies,
    its contract lists what a consumer applies (in order) and what greedy decoding cannot (beams, their length
    penalty); checked here again: generate() with the rules gives the check's tokens, and without them others."""
    import torch
    import transformers

    from zoo.converters.tasks import seq2seq

    out_dir = tmp_path / "out"
    out = pull(RULES_REPO, "-o", str(out_dir))
    assert out["verified"]
    plan = manifest_of(out)["record"]["extra"]["io"]["decoding"]
    assert plan["apply"] == ["repetition_penalty", "no_repeat_ngram_size", "min_length"]
    assert plan["repetition_penalty"] == 1.5 and plan["no_repeat_ngram_size"] == 3 and plan["min_length"] == 56
    assert plan["not_applied"] == {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True}
    gen = [t for t in manifest_of(out)["parity"]["tasks"] if t["check"] == "text2text-generation"][0]
    assert gen["passed"] and gen["figures"]["identical"] and gen["figures"]["rules_applied"] == plan["apply"]
    tok = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    enc = tok(seq2seq.PROMPTS, padding=True, return_tensors="pt")
    model = source_model(tmp_path, repos[RULES_REPO])
    greedy = {"max_new_tokens": 20, "min_new_tokens": 20, "num_beams": 1, "do_sample": False}
    with torch.no_grad():
        ruled = model.generate(**enc, **greedy)[:, -20:].numpy()
        free = model.generate(**enc, **greedy, repetition_penalty=1.0, no_repeat_ngram_size=0)[:, -20:].numpy()
    assert (ruled != free).any(axis=1).any()  # the rules change the tokens
    np.testing.assert_array_equal(np.array(gen["figures"]["generated"]), ruled)


def _one_behind(real):
    return lambda s, ids, n: real(s, ids[:, :-1], n)


def _every_token(real):
    return lambda s, ids, penalty: real(s, np.arange(s.shape[1])[None, :], penalty)


@pytest.mark.parametrize("name, mutate", [
    # slow: ~19 s; the same rules path is the default run's through the penalty case below
    pytest.param("_ban_ngrams", _one_behind, marks=pytest.mark.slow),
    ("_penalize", _every_token)])
def test_a_wrong_rule_in_the_decode_loop_fails_the_check(pull, monkeypatch, name, mutate):
    """A decode loop that applies a rule wrongly (the n-gram ban a token behind, the penalty on every token) no
    longer reproduces generate(): exit 6, nothing published."""
    from zoo.converters.tasks import generation_rules

    monkeypatch.setattr(generation_rules, name, mutate(getattr(generation_rules, name)))
    err = pull(RULES_REPO, code=6)
    assert err["error"] == "parity_failed"
    gen = [t for t in err["report"]["tasks"] if t["check"] == "text2text-generation"][0]
    assert not gen["passed"] and "does not reproduce generate()" in gen["reason"], gen["reason"]


def test_zoo_convert_of_one_file_of_the_pair_is_refused(pull, capsys):
    from zoo.cli import main as cli

    out = pull("zoo-test/tiny-t5")
    code = cli.main(["convert", out["path"], "--to", "onnx-opt", "--json"])
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 5 and err["error"] == "unsupported" and "encoder-decoder" in err["message"]
    assert "zoo pull zoo-test/tiny-t5 --format onnx" in err["hint"]



def test_a_scaled_cache_output_fails_with_exit_6_and_publishes_nothing(pull, indexed, monkeypatch):
    from zoo.converters.edges import torch_onnx

    real_export = torch_onnx.export_onnx

    def broken_export(tm, example, out_path, **kwargs):
        info = real_export(tm, example, out_path, **kwargs)
        if out_path.name == "decoder.onnx":
            scale_output(out_path, "present.1.value", 0.99)
        return info

    monkeypatch.setattr(torch_onnx, "export_onnx", broken_export)
    err = pull("zoo-test/tiny-t5", "--exporter", "torchscript", code=6)
    assert err["error"] == "parity_failed"
    gen = [t for t in err["report"]["tasks"] if t["check"] == "text2text-generation"]
    assert gen and gen[0]["passed"] is False and "logits at decode step" in gen[0]["reason"], gen
    assert not (indexed.home / "artifacts").exists() or not any((indexed.home / "artifacts").iterdir())


@pytest.mark.parametrize("fmt", ["onnx-int4"])
def test_formats_that_cannot_hold_two_graphs_are_refused(pull, fmt):
    """(pt2, jax, tf and tflite hold both files: tests/test_seq2seq_targets.py)"""
    err = pull("zoo-test/tiny-bart", "--format", fmt, code=5)
    assert err["error"] == "unsupported" and "encoder-decoder" in err["message"]
    assert "onnx, onnx-fp16, onnx-int8, onnx-opt, pt2, jax, tf, tflite" in err["hint"]


def test_an_fp16_pair_is_checked_by_next_token_agreement(pull):
    import onnx

    out = pull("zoo-test/tiny-bart", "--format", "onnx-fp16")
    assert out["verified"] and Path(out["path"]).name == "decoder.onnx"
    manifest = manifest_of(out)
    gen = [t for t in manifest["parity"]["tasks"] if t["check"] == "text2text-generation"][0]
    assert gen["passed"] and gen["figures"]["precision"] == "float16"
    assert gen["figures"]["bounds"] == {"logit_rel_diff": 2e-2, "token_agreement": 0.95}
    assert gen["figures"]["next_token_agreement"] >= 0.95
    assert "sample-prompts" in [s["name"] for s in manifest["parity"]["input_sets"]]  # a real-size elementwise set
    for name in ("encoder.onnx", "decoder.onnx"):  # both graphs converted, their interface still float32
        model = onnx.load(str(Path(out["artifact_dir"]) / name))
        assert onnx.TensorProto.FLOAT16 in {t.data_type for t in model.graph.initializer}, name
        assert all(i.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
                   for i in model.graph.input)


def test_an_optimised_pair_generates_the_same_tokens(pull):
    out = pull("zoo-test/tiny-t5", "--format", "onnx-opt")
    manifest = manifest_of(out)
    gen = [t for t in manifest["parity"]["tasks"] if t["check"] == "text2text-generation"][0]
    assert out["verified"] and gen["passed"] and gen["figures"]["identical"] and gen["figures"]["precision"] == "float32"
    assert {"encoder.onnx", "decoder.onnx"} <= {f["path"] for f in manifest["files"]}
    assert manifest["converter"].endswith("onnx-opt")


def test_an_int8_pair_is_judged_by_its_generation_figures(pull, indexed):
    """Both graphs quantised, the pair judged by the generation check at int8's bounds: verified exactly when the
    next token agrees often enough and the logits stay in bound, else kept in quarantine only. (This tiny BART,
    d_model 32, failed with full-range int8 weights on this AVX2 machine, logits 0.15-0.19 of their range off;
    with the edge's 7-bit weights it is within bounds: the verdict follows the figures, not a fixed outcome.)"""
    import onnx

    out = pull("zoo-test/tiny-bart", "--format", "onnx-int8", "--exporter", "torchscript", "--allow-mismatch")
    manifest = manifest_of(out)
    gen = [t for t in manifest["parity"]["tasks"] if t["check"] == "text2text-generation"][0]
    figures, bounds = gen["figures"], gen["figures"]["bounds"]
    assert bounds["token_agreement"] == 0.8
    within = figures["next_token_agreement"] >= 0.8 and figures["max_logit_rel_diff"] <= bounds["logit_rel_diff"]
    assert gen["passed"] == within and out["verified"] == manifest["parity"]["passed"]
    for name in ("encoder.onnx", "decoder.onnx"):  # each graph of the pair really is int8
        ops = {n.op_type for n in onnx.load(str(Path(out["artifact_dir"]) / name)).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"}, (name, sorted(ops))
    if not out["verified"]:
        assert "quarantine" in out["artifact_dir"]
        assert not (indexed.home / "artifacts").exists() or not any((indexed.home / "artifacts").iterdir())


@pytest.mark.slow  # ~40 s on 2 busy cores: a zoo process of its own; the offline pulls above prove the feature
def test_seq2seq_pulled_through_hf_endpoint(indexed, repos):
    """A real `zoo pull` process against the hub protocol: files downloaded and hashed, the artifact verified."""
    from conftest import pull_json
    from hubserver import HubServer, Repo

    repo = "zoo-test/tiny-t5"
    with HubServer([Repo(repo, repos[repo])]) as server:
        out = pull_json(repo, env={"HF_ENDPOINT": server.endpoint})
        downloaded = {path for _, path in server.requests}
    assert out["verified"] and out["cached"] is False
    assert any(p.endswith("/model.safetensors") for p in downloaded) and any(p.endswith("/tokenizer.json") for p in downloaded)
    gen = [t for t in manifest_of(out)["parity"]["tasks"] if t["check"] == "text2text-generation"]
    assert gen[0]["passed"] and gen[0]["figures"]["identical"]
    assert (Path(out["artifact_dir"]) / "encoder.onnx").is_file()

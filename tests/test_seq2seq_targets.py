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
         "tf": ("saved_model.pb", "saved_model.pb"), "tflite": ("encoder.tflite", "decoder.tflite")}


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


@pytest.mark.parametrize("fmt", ["pt2", pytest.param("jax", marks=pytest.mark.slow)])
def test_t5_pair_verified_by_generation(pull, tmp_path, capsys, fmt):
    """The artifact holds both files; a consumer's loop over them alone (the contract from zoo.json, the past from 0)
    gives generate()'s tokens on other prompts. (jax: about 100 s on 2 cores, a third of it XLA compiling the
    decoder once per past length the check meets: slow.)"""
    out = pull("zoo-test/tiny-t5", "--format", fmt)
    manifest = assert_verified_pair(out, fmt)
    io = manifest["record"]["extra"]["io"]
    assert manifest["conversion"]["chain"] == f"torch -> {fmt}"
    from zoo.converters.tasks import seq2seq_check

    model = _source_model(tmp_path, "zoo-test/tiny-t5")
    steps = 12 if fmt == "pt2" else 5
    got = _consumer_tokens(seq2seq_check.pair_runner(Path(out["path"]), io), io, model, steps)
    np.testing.assert_array_equal(got, _generate(model, steps))
    if fmt == "pt2":  # one file of the pair alone cannot be checked by generation: zoo convert refuses it (exit 5)
        _assert_one_file_refused(out["path"], capsys)


def _assert_one_file_refused(path: str, capsys) -> None:
    import json

    from zoo.cli import main as cli

    code = cli.main(["convert", path, "--to", "onnx", "--json"])
    err = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 5 and err["error"] == "unsupported" and "encoder-decoder" in err["message"], err


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


def test_t5_pair_to_tflite_is_static_and_says_so(pull, tmp_path):
    """tflite: litert-torch, static (batch 1, the text padded to 128 tokens, a decoder without cache re-run over its
    tokens padded to 64), the contract says so; the generation check ran the real prompts through the two files, and
    the elementwise check only the sets with an empty past (a random cache cannot be re-run)."""
    import json

    from ai_edge_litert.interpreter import Interpreter

    out = pull("zoo-test/tiny-t5", "--format", "tflite")
    manifest = assert_verified_pair(out, "tflite")
    contract = manifest["conversion"]["io_contract"]
    assert contract["self_cache"] == "recomputed" and contract["decoder_sequence"] == 64 and contract["batch"] == 1
    assert any("no self-attention cache" in d for d in contract["differs"])
    checked = [s["name"] for s in manifest["parity"]["input_sets"]]
    assert "sample-prompts" in checked and not any("past3" in n or "past9" in n for n in checked)
    decoder = Interpreter(model_path=str(Path(out["artifact_dir"]) / "decoder.tflite")).get_signature_list()
    assert len(decoder["serving_default"]["inputs"]) == 2 + 2 * 2  # ids, mask, 2 layers' cross key and value
    json.dumps(contract)
    from zoo.converters.tasks import seq2seq_check

    io = manifest["record"]["extra"]["io"]
    model = _source_model(tmp_path, "zoo-test/tiny-t5")
    got = _consumer_tokens(seq2seq_check.pair_runner(Path(out["path"]), io), io, model)
    np.testing.assert_array_equal(got, _generate(model, 12))


@pytest.mark.slow
def test_t5_pair_to_tf_is_one_saved_model_with_two_signatures(pull, tmp_path):
    """tf: jax2tf of the jax pair, one SavedModel: serving_default (the decoder) and encoder; a consumer's loop over
    the two signatures gives generate()'s tokens."""
    out = pull("zoo-test/tiny-t5", "--format", "tf")
    manifest = assert_verified_pair(out, "tf")
    io = manifest["record"]["extra"]["io"]
    assert io["signatures"] == {"encoder": "encoder", "decoder": "serving_default"}
    assert manifest["conversion"]["chain"] == "torch -> jax -> tf"
    routes = manifest["conversion"].get("routes") or []
    assert all("onnx" not in r["route"] for r in routes)  # onnx2tf converts one graph: not a route for a pair
    from zoo.converters.tasks import seq2seq_check

    model = _source_model(tmp_path, "zoo-test/tiny-t5")
    got = _consumer_tokens(seq2seq_check.pair_runner(Path(out["path"]), io), io, model, steps=6)
    np.testing.assert_array_equal(got, _generate(model, 6))


@pytest.mark.slow
@pytest.mark.parametrize("repo", ["zoo-test/tiny-bart", "zoo-test/tiny-marian", "zoo-test/tiny-mt5",
                                  "zoo-test/tiny-whisper"])
@pytest.mark.parametrize("fmt", ["pt2", "jax", "tflite"])
def test_other_families_verified_by_generation(pull, repo, fmt):
    out = pull(repo, "--format", fmt)
    assert_verified_pair(out, fmt)
    if "whisper" in repo:  # the prompt the pair gives itself (the language its decoder detects) is generate()'s
        assert generation(out)["figures"]["prompt"]


# --- deliberately broken candidates: each runtime's check must fail them ------------------------------------------
def _broken(inner, input_names: list[str], output_names: list[str], output: str, how: str):
    """A module around one of the pair's modules that breaks one output: ``scale`` it (a scaled cross-attention
    cache), or ``drop`` the self-cache update: the present keeps the past and its shape, the new tokens' keys zero."""
    import torch

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = list(self.inner(*args))
            at = output_names.index(output)
            if how == "scale":
                out[at] = out[at] * 0.99
            else:  # the new tokens' keys never written into the cache (its length grows as it should)
                past = args[input_names.index(output.replace("present", "past_key_values"))].shape[2]
                kept = torch.arange(out[at].shape[2]) < past
                out[at] = out[at] * kept[None, None, :, None].to(out[at].dtype)
            return tuple(out)

    return Broken().eval()


def _break(monkeypatch, part: str, output: str, how: str) -> None:
    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.tasks import seq2seq_export

    real = seq2seq_export.parts

    def parts(tm, ctx):
        got = []
        for name, model, example in real(tm, ctx):
            if name == part:
                model = TorchModel(_broken(model.module, model.input_names, model.output_names, output, how),
                                   model.input_names, model.output_names, model.dynamic_axes)
            got.append((name, model, example))
        return got

    monkeypatch.setattr(seq2seq_export, "parts", parts)


def _assert_failed_and_nothing_published(err: dict, indexed, words: str) -> None:
    assert err["error"] == "parity_failed"
    gen = [t for t in err["report"]["tasks"] if t["check"] == "text2text-generation"]
    assert gen and gen[0]["passed"] is False and words in gen[0]["reason"], gen
    assert not (indexed.home / "artifacts").exists() or not any((indexed.home / "artifacts").iterdir())


def test_pt2_with_a_scaled_cross_attention_cache_fails_with_exit_6(pull, indexed, monkeypatch):
    _break(monkeypatch, "encoder", "present.1.encoder.value", "scale")
    err = pull("zoo-test/tiny-t5", "--format", "pt2", code=6)
    _assert_failed_and_nothing_published(err, indexed, "encoder output present.1.encoder.value")


@pytest.mark.slow  # ~14 s; the default run fails a broken pair through pt2, and verifies the tflite pair's tokens
def test_tflite_with_a_scaled_cross_attention_cache_fails_with_exit_6(pull, indexed, monkeypatch):
    """The static pair's encoder file with one cross-attention cache output scaled by 0.99."""
    from zoo.converters.tasks import seq2seq_lite

    real = seq2seq_lite.modules

    def modules(pair):
        made = real(pair)
        enc = pair.contract["encoder"]
        made["encoder"] = _broken(made["encoder"], enc["inputs"], enc["outputs"], "present.1.encoder.value", "scale")
        return made

    monkeypatch.setattr(seq2seq_lite, "modules", modules)
    err = pull("zoo-test/tiny-t5", "--format", "tflite", code=6)
    _assert_failed_and_nothing_published(err, indexed, "encoder output present.1.encoder.value")


@pytest.mark.slow
def test_jax_with_a_dropped_self_cache_update_fails_with_exit_6(pull, indexed, monkeypatch):
    _break(monkeypatch, "decoder", "present.0.key", "drop")
    err = pull("zoo-test/tiny-t5", "--format", "jax", code=6)
    _assert_failed_and_nothing_published(err, indexed, "decode step")


@pytest.mark.slow
def test_tf_with_a_scaled_cross_attention_cache_fails_with_exit_6(pull, indexed, monkeypatch):
    _break(monkeypatch, "encoder", "present.0.encoder.key", "scale")
    err = pull("zoo-test/tiny-t5", "--format", "tf", code=6)
    _assert_failed_and_nothing_published(err, indexed, "encoder output present.0.encoder.key")

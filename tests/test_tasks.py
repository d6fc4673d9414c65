"""Hugging Face tasks (issue 11): the task from the repo or --task, text generation with a KV cache checked
by greedy generation against transformers' generate(), and the encoder heads, each through `zoo pull`
from a local Hugging Face cache with tiny seeded models (tests/task_builders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import write_hf_cache
from task_builders import bert_head_repo, decoder_repo

DECODERS = {"zoo-test/tiny-gpt2": lambda: decoder_repo("gpt2"), "zoo-test/tiny-llama": lambda: decoder_repo("llama")}
HEADS = {f"zoo-test/tiny-bert-{h}": (lambda h=h: bert_head_repo(h))
         for h in ("fill-mask", "token-classification", "question-answering", "sentence-similarity")}


@pytest.fixture(scope="session")
def task_repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in {**DECODERS, **HEADS}.items()}


@pytest.fixture
def pull(indexed, task_repos, monkeypatch, capsys):
    """``(repo, *args, code=0) -> JSON`` of an in-process offline `zoo pull REPO --json` from the HF cache."""
    from zoo.cli import main as cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(repo: str, *args: str, code: int = 0, files: dict[str, bytes] | None = None) -> dict:
        write_hf_cache(indexed.hub_cache, repo, files or task_repos[repo])
        got = cli.main(["pull", repo, "--json", *args])
        captured = capsys.readouterr()
        assert got == code, captured.err[-3000:] + captured.out[-3000:]
        return json.loads(captured.out.strip().splitlines()[-1])

    return run


def ort_session(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_gpt2_text_generation_with_kv_cache(pull, task_repos):
    out = pull("zoo-test/tiny-gpt2")
    assert out["verified"] and out["parity"]["passed"], out["parity"]
    manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
    print(out["parity"].keys())
    print(json.dumps(manifest["parity"]["tasks"], indent=1)[:3000])

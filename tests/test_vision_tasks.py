"""Vision tasks of issue 11 beyond image classification: zero-shot image classification (a tiny CLIP built
offline with a real tokenizer and CLIP's image processor, tests/task_builders.py), pulled through `zoo pull`
from a local Hugging Face cache, checked by zoo on the real photographs and here again independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import write_hf_cache
from task_builders import clip_repo

REPOS = {"zoo-test/tiny-clip": clip_repo}


@pytest.fixture(scope="module")
def vision_repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in REPOS.items()}


@pytest.fixture
def pull(indexed, vision_repos, monkeypatch, capsys):
    from zoo.cli import main as cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(repo: str, *args: str, code: int = 0, files: dict[str, bytes] | None = None) -> dict:
        write_hf_cache(indexed.hub_cache, repo, files or vision_repos[repo])
        got = cli.main(["pull", repo, "--json", *args])
        captured = capsys.readouterr()
        assert got == code, captured.err[-3000:] + captured.out[-3000:]
        out = json.loads(captured.out.strip().splitlines()[-1])
        out["stderr"] = captured.err
        return out

    return run


def _manifest(out: dict) -> dict:
    return json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())


def _task(manifest: dict, check: str) -> dict:
    found = [t for t in manifest["parity"]["tasks"] if t["check"] == check]
    assert found, [t["check"] for t in manifest["parity"]["tasks"]]
    return found[0]


def test_task_of_a_clip_repo_is_zero_shot_image_classification():
    from zoo.converters.tasks import detect_task, head_task

    assert head_task("CLIPModel") == "zero-shot-image-classification"
    assert head_task("SiglipModel") == "zero-shot-image-classification"
    assert head_task("BertModel") == "feature-extraction"
    assert detect_task("m", "CLIPModel")[0] == "zero-shot-image-classification"


def test_clip_zero_shot_labels_the_photographs_as_the_source_does(pull, vision_repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos
    from zoo.converters.tasks.vision import LABELS

    repo = "zoo-test/tiny-clip"
    out = pull(repo)
    assert out["verified"]
    manifest = _manifest(out)
    assert manifest["record"]["task"] == "zero-shot-image-classification"
    check = _task(manifest, "zero-shot")
    assert check["passed"] is True and check["input_set"] == "sample-photos"
    assert check["figures"]["images"] == 4 and check["figures"]["labels"] == len(LABELS)
    assert check["figures"]["label_agreement"] == 1.0 and check["figures"]["distinct_labels"] >= 2
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "pixel_values"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]
    # independently: tokenizer and image processor travel with the artifact; other prompts, batch sizes differ
    tokenizer = transformers.AutoTokenizer.from_pretrained(out["artifact_dir"])
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)][:3]
    prompts = ["a picture of a cat", "an astronaut in space", "coffee", "a rocket", "a red car"]
    enc = tokenizer(prompts, padding=True, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
             "pixel_values": processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)}
    got = dict(zip(names, session.run(None, feeds)))
    root = tmp_path / "source"
    for name, data in vision_repos[repo].items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    model = transformers.CLIPModel.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    assert got["logits_per_image"].shape == (3, 5) and got["logits_per_text"].shape == (5, 3)
    for name in names:
        np.testing.assert_allclose(got[name], getattr(ref, name).numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(got["logits_per_image"].argmax(-1), ref.logits_per_image.numpy().argmax(-1))


def test_the_zero_shot_check_fails_when_a_label_flips():
    """The check itself: the same logits pass; one image's best prompt swapped with another fails."""
    from zoo.converters.parity.report import InputSet
    from zoo.converters.tasks.vision import OUTPUTS, zero_shot_results

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 6)) * 5
    sample = InputSet("sample-photos", {}, kind="sample")
    ran = [(sample, [ref, ref.T], [ref.copy(), ref.T.copy()])]
    (ok,) = zero_shot_results(OUTPUTS[:2], ran, "float32")
    assert ok["passed"] is True and ok["figures"]["label_agreement"] == 1.0
    flipped = ref.copy()
    best, worst = flipped[1].argmax(), flipped[1].argmin()
    flipped[1, [best, worst]] = flipped[1, [worst, best]]
    (bad,) = zero_shot_results(OUTPUTS[:2], [(sample, [ref, ref.T], [flipped, flipped.T])], "float32")
    assert bad["passed"] is False and "label of each image agrees on 75%" in bad["reason"]

"""audio-classification through `zoo pull` (issue 11): a tiny seeded Wav2Vec2ForSequenceClassification with its
feature extractor from a local Hugging Face cache; parity compares the logits and the label of every synthetic
speech-like clip through the repo's feature extractor, and the test checks the artifact again on other clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from task_builders import AUDIO_LABELS, in_process_pull, source_dir, wav2vec2_audio_classifier_repo

REPO = "zoo-test/tiny-wav2vec2-audio-classifier"


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    return {REPO: wav2vec2_audio_classifier_repo()}


@pytest.fixture
def pull(indexed, repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, repos, capsys)


def test_audio_classifier_labels_every_clip_as_the_source_does(pull, repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.tasks.speech import synthetic_clip

    out = pull(REPO)
    assert out["verified"]
    manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
    assert manifest["record"]["task"] == "audio-classification" and manifest["record"]["labels"] == list(AUDIO_LABELS.values())
    check = [t for t in manifest["parity"]["tasks"] if t["check"] == "audio-classification"]
    assert check and check[0]["passed"] and check[0]["input_set"] == "sample-audio"
    assert check[0]["figures"]["label_agreement"] == 1.0 and set(check[0]["figures"]["reference"]) <= set(AUDIO_LABELS.values())
    assert len(set(check[0]["figures"]["reference"])) > 1  # the clips get different labels: the check can tell
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["zoo.task"] == "audio-classification" and json.loads(meta["zoo.labels"]) == list(AUDIO_LABELS.values())
    assert session.get_outputs()[0].shape == ["batch", 4]
    # independently: the artifact's feature extractor on other clips (batch 4), against the real model
    extractor = transformers.AutoFeatureExtractor.from_pretrained(out["artifact_dir"])
    clips = [synthetic_clip(s, 16000, seed) for seed, s in enumerate((0.9, 1.7, 0.4, 1.2), start=20)]
    x = extractor(clips, sampling_rate=16000, padding=True, return_tensors="np")["input_values"].astype(np.float32)
    (got,) = session.run(None, {"input_values": x})
    root = source_dir(tmp_path, repos[REPO])
    model = transformers.AutoModelForAudioClassification.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=5e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert len(set(ref.argmax(-1).tolist())) > 1

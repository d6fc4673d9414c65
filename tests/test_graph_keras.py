"""The conversion graph from Keras sources and local model files: every Keras edge on the real (seeded)
MobileNetV2 application and `zoo convert` of a SavedModel, a .keras and a .tflite file, each checked
independently of zoo against the source (the PyTorch side is tests/test_graph.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo
from graph_cases import (
    EDGE_CASES,
    FILE_CASES,
    FILE_NODES,
    KERAS,
    check_edge_on_a_real_model,
    independent_outputs,
    is_keras,
)

from zoo.converters import graph


@pytest.mark.parametrize("fmt, model", [c for c in EDGE_CASES if is_keras(c)])
def test_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model):
    check_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model)


@pytest.fixture(scope="module")
def keras_sources(tmp_path_factory) -> dict:
    """The tiny Keras CNN as a SavedModel written by keras' own ``Model.export`` and as a ``.keras`` file."""
    import contextlib
    import io

    from builders import tiny_keras_model

    root = tmp_path_factory.mktemp("keras-sources")
    model = tiny_keras_model(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(root / "saved-model"), verbose=False)
    model.save(root / "tiny.keras")
    import tensorflow as tf

    (root / "tiny.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(root / "saved-model")).convert())
    return {
        "saved-model": root / "saved-model",
        "keras-file": root / "tiny.keras",
        "tflite-file": root / "tiny.tflite",
        "model": model,
    }


@pytest.mark.parametrize("fmt, kind", FILE_CASES)
def test_edge_from_a_local_source(keras_sources, fmt, kind):
    proc = run_zoo("convert", str(keras_sources[kind]), "--to", fmt, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # the whole of stdout is the one JSON object: no converter chatter
    chain = graph.plan(FILE_NODES[kind], fmt)
    assert out["conversion"]["chain"] == graph.chain_name(chain) and out["parity"]["passed"] and out["verified"]
    x = np.random.default_rng(5).standard_normal((3, 32, 32, 3)).astype(np.float32)
    ref = keras_sources["model"](x, training=False).numpy()
    got = independent_outputs(out["path"], x)
    assert ref.std() > 0 and got.shape == ref.shape == (3, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def test_keras_without_cached_weights_offline_is_a_network_error(indexed):
    proc = run_zoo("pull", KERAS, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 4 and "KERAS_HOME" in proc.stderr, proc.stderr[-1500:]


def test_keras_catalog_lists_and_resolves(indexed):
    listed = json.loads(run_zoo("list", "--source", "keras", "--json").stdout)
    assert {"keras/MobileNetV2", "keras/ResNet50", "keras/EfficientNetB0"} <= {m["id"] for m in listed["models"]}
    proc = run_zoo("pull", "keras:MobileNetV9")
    assert proc.returncode == 3 and "MobileNetV2" in proc.stderr
    assert [e.target for e in graph.plan("keras-model", "pt2")] == ["onnx", "pt2"]  # through ONNX
    proc = run_zoo("pull", "test_resnet", "--format", "keras")  # `--format torch` means pt2 now (issue 13)
    assert proc.returncode == 5 and "tflite" in proc.stderr and "pt2" in proc.stderr  # names what torch reaches


def test_other_keras_weights_under_the_same_name_are_converted_again(indexed, keras_cache, monkeypatch):
    """The fetch stage hashes the weights file keras loads (KERAS_HOME/models/<file>) into the cache key:
    other bytes under the same name are a new conversion, checked against a model built from them."""
    import hashlib

    import h5py

    from zoo.options import Options
    from zoo.pipeline import pull

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = Options(format="keras")  # keras-model -> keras: the cheapest chain out of a Keras application
    first = pull(KERAS, options)
    assert not first.cached and first.verified
    with h5py.File(keras_cache, "r+") as f:  # still a valid weights file: one kernel scaled in place
        kernels: list = []
        f.visititems(lambda _, obj: kernels.append(obj) if isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None)
        kernels[0][...] = kernels[0][...] * 1.5
    second = pull(KERAS, options)
    assert not second.cached and second.verified and second.digest != first.digest
    manifest = json.loads((Path(second.artifact_dir) / "zoo.json").read_text())
    assert [f["sha256"] for f in manifest["source_files"]] == [hashlib.sha256(keras_cache.read_bytes()).hexdigest()]
    again = pull(KERAS, options)
    assert again.cached and again.digest == second.digest

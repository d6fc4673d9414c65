"""Cases and helpers shared by tests/test_graph.py (PyTorch sources) and tests/test_graph_keras.py
(Keras sources and local files): two files so that pytest-xdist's --dist loadfile runs them on two workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json, run_zoo, source_outputs

from zoo.converters import graph
from zoo.converters.parity.check import default_tolerance

KERAS = "keras:MobileNetV2@96"
HF_KERAS = "hf:zoo-test/tiny-keras"

# (format, model) -> every edge of every plan must be covered by at least one case
EDGE_CASES = [
    ("onnx", KERAS),
    # the Keras application's tflite/tf/onnx-int8/pt2 edges are slow; the default run takes Keras models along the
    # same edges elsewhere: keras-model -> tflite / tf in test_tf.py's Hugging Face Keras repo tests, keras-model ->
    # onnx -> pt2 in FILE_CASES' jax row, onnx-int8 on test_resnet and tiny-bert-sst
    pytest.param("tflite", KERAS, marks=pytest.mark.slow),
    ("keras", KERAS),
    pytest.param("onnx-int8", KERAS, marks=pytest.mark.slow),
    pytest.param("tf", KERAS, marks=pytest.mark.slow),
    pytest.param("tf", "test_resnet", marks=pytest.mark.slow),  # default run: test_tf.py's SavedModel test
    ("tflite", "test_resnet"),
    pytest.param("tf", "test_efficientnet", marks=pytest.mark.slow),
    pytest.param("tflite", "test_efficientnet", marks=pytest.mark.slow),
    ("onnx", "test_resnet"),
    ("onnx-fp16", "test_resnet"),
    ("onnx-int8", "test_resnet"),
    ("onnx-opt", "test_resnet"),
    ("pt2", "test_resnet"),
    ("onnx-fp16", "zoo-test/tiny-bert-sst"),
    ("onnx-int8", "zoo-test/tiny-bert-sst"),
    pytest.param("onnx-opt", "zoo-test/tiny-bert-sst", marks=pytest.mark.slow),  # default: onnx-opt of test_resnet
    # default: test_onnx_torch's family tests take tiny-bert-sst's ONNX to pt2 with both exporters
    pytest.param("pt2", "zoo-test/tiny-bert-sst", marks=pytest.mark.slow),
    pytest.param("pt2", KERAS, marks=pytest.mark.slow),  # keras-model -> onnx -> pt2 (default: FILE_CASES' jax row)
    # zoo convert of a .pt2 zoo wrote (default: test_onnx_torch's CLI round trip, pt2 -> onnx included)
    pytest.param("onnx", "pt2:test_resnet", marks=pytest.mark.slow),
    # issue 14's edges; their default tests are in tests/test_targets.py (litert-torch's route there too)
    pytest.param("jax", "test_resnet", marks=pytest.mark.slow),
    pytest.param("tflite-fp16", KERAS, marks=pytest.mark.slow),
    pytest.param("tflite-int8", KERAS, marks=pytest.mark.slow),
    # keras-model -> onnx -> pt2 -> jax: a Keras application to JAX through zoo's onnx_torch (~80 s; the default
    # run has the tiny Keras CNN's FILE_CASES row)
    pytest.param("jax", KERAS, marks=pytest.mark.slow),
]


# (format, local source) for `zoo convert`: the tiny Keras CNN as a SavedModel (keras' own
# Model.export signature) and as a .keras file; SavedModel sources are what reach the tf -> * edges
FILE_CASES = [
    ("tflite", "saved-model"),
    ("onnx", "saved-model"),
    ("tf", "keras-file"),
    ("onnx", "tflite-file"),  # tf2onnx's TFLite reader
    ("jax", "keras-file"),  # .keras -> onnx -> pt2 -> jax
]
FILE_NODES = {"saved-model": "tf", "keras-file": "keras-model", "tflite-file": "tflite"}
# (format, source node) whose tests live elsewhere: a JAX function or Flax import (tests/test_flax.py)
SOURCE_CASES = [("onnx", "jax-fn")]
# edges for some tasks only, whose real-model cases live beside their task's fixtures
TESTED_ELSEWHERE = {("onnx", "onnx-int4"): "tests/test_onnx_int4.py: a GPT-2 decoder; refused for test_resnet"}
REPOS = {"test_resnet": TIMM_REPO, "test_efficientnet": "timm/test_efficientnet.r160_in1k"}


def node(model: str) -> str:
    return "keras-model" if model.startswith("keras:") else "pt2" if model.startswith("pt2:") else "torch"


def values(case) -> tuple:
    return tuple(case.values) if hasattr(case, "values") else case


def independent_outputs(path: str, x: np.ndarray) -> np.ndarray:
    if path.endswith(".onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if path.endswith(".jax"):
        import jax

        (out,) = jax.export.deserialize(bytearray(Path(path).read_bytes())).call(x)
        return np.asarray(out)
    if path.endswith("saved_model.pb"):
        import tensorflow as tf

        fn = tf.saved_model.load(str(Path(path).parent)).signatures["serving_default"]
        (key,) = fn.structured_input_signature[1]
        (out,) = fn(**{key: tf.constant(x)}).values()
        return out.numpy()
    if path.endswith(".tflite"):
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=path)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if path.endswith(".keras"):
        import keras

        return keras.saving.load_model(path, safe_mode=True, compile=False)(x, training=False).numpy()
    import torch

    module = torch.export.load(path).module()
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return (out[0] if isinstance(out, tuple) else out).numpy()  # programs converted from ONNX return tuples


def is_keras(case) -> bool:
    return values(case)[1].startswith("keras:")


def check_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model):
    name = model.removeprefix("pt2:")
    if not model.startswith("keras:"):
        cached_repo(REPOS.get(name, name))
    if model.startswith("pt2:"):  # a .pt2 zoo published, converted as a file
        source = pull_json(name, "--format", "pt2", env={"HF_HUB_OFFLINE": "1"})["path"]
        proc = run_zoo("convert", source, "--to", fmt, "--json", env={"HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
    else:
        out = pull_json(model, "--format", fmt, env={"HF_HUB_OFFLINE": "1"})
    chain = graph.plan(node(model), fmt)
    assert out["format"] == fmt and out["conversion"]["chain"] == graph.chain_name(chain)
    assert out["parity"]["passed"] and out["verified"]
    tol = out["parity"]["tolerance"]
    assert tol["atol"] == default_tolerance(graph.chain_dtype(chain)).atol  # checked at the chain's dtype
    if name in REPOS:  # independently of zoo: the artifact (NCHW inputs, as the source) against the real model, batch 3
        x = np.random.default_rng(11).standard_normal((3, 3, 160, 160)).astype(np.float32)
        ref = source_outputs(tiny_repos[REPOS[name]], name, x)
        got = independent_outputs(out["path"], x)
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, atol=tol["atol"] * scale, rtol=tol["rtol"])
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 2 / 3
    if model == KERAS:  # against keras' own model built from the same cached weights file
        import keras

        x = np.random.default_rng(11).standard_normal((3, 96, 96, 3)).astype(np.float32)
        source = keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), weights=str(keras_cache), classifier_activation=None
        )
        ref = source(x, training=False).numpy()
        got = independent_outputs(out["path"], x)
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, atol=tol["atol"] * scale, rtol=tol["rtol"])
        assert ref.std() > 0  # the seeded weights give input-dependent logits: the check can fail

"""The conversion graph: planning, every registered edge on real tiny models,
chains checked end to end against the source, and --allow-mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json, run_zoo, source_outputs

from zoo import errors
from zoo.converters import graph
from zoo.converters.parity.check import default_tolerance

KERAS = "keras:MobileNetV2@96"
HF_KERAS = "hf:zoo-test/tiny-keras"

# (format, model) -> every edge of every plan must be covered by at least one case
EDGE_CASES = [
    ("onnx", KERAS),
    ("tflite", KERAS),
    ("keras", KERAS),
    ("onnx-int8", KERAS),
    ("tf", KERAS),
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
    ("onnx-opt", "zoo-test/tiny-bert-sst"),
    ("pt2", "zoo-test/tiny-bert-sst"),
    ("pt2", KERAS),  # keras-model -> onnx -> pt2: TensorFlow to PyTorch through ONNX
    ("onnx", "pt2:test_resnet"),  # zoo convert of a .pt2 zoo wrote
    # issue 14's edges; their default tests are in tests/test_targets.py (litert-torch's route there too)
    pytest.param("jax", "test_resnet", marks=pytest.mark.slow),
    pytest.param("tflite-fp16", KERAS, marks=pytest.mark.slow),
    pytest.param("tflite-int8", KERAS, marks=pytest.mark.slow),
]


# (format, local source) for `zoo convert`: the tiny Keras CNN as a SavedModel (keras' own
# Model.export signature) and as a .keras file; SavedModel sources are what reach the tf -> * edges
FILE_CASES = [
    ("tflite", "saved-model"),
    ("onnx", "saved-model"),
    ("tf", "keras-file"),
    ("onnx", "tflite-file"),  # tf2onnx's TFLite reader
]
# edges for some tasks only, whose real-model cases live beside their task's fixtures
TESTED_ELSEWHERE = {("onnx", "onnx-int4"): "tests/test_onnx_int4.py: a GPT-2 decoder; refused for test_resnet"}
FILE_NODES = {"saved-model": "tf", "keras-file": "keras-model", "tflite-file": "tflite"}
REPOS = {"test_resnet": TIMM_REPO, "test_efficientnet": "timm/test_efficientnet.r160_in1k"}


def _node(model: str) -> str:
    return "keras-model" if model.startswith("keras:") else "pt2" if model.startswith("pt2:") else "torch"


def _values(case) -> tuple:
    return tuple(case.values) if hasattr(case, "values") else case


def test_every_registered_edge_has_a_case():
    covered = {(e.source, e.target) for fmt, model in map(_values, EDGE_CASES) for e in graph.plan(_node(model), fmt)}
    covered |= {(e.source, e.target) for fmt, kind in FILE_CASES for e in graph.plan(FILE_NODES[kind], fmt)}
    covered |= set(TESTED_ELSEWHERE)
    assert covered == set(graph.EDGES), f"edges without a test case: {set(graph.EDGES) - covered}"


@pytest.mark.parametrize(
    "target, chain",
    [
        ("onnx", ["torch", "onnx"]),
        ("onnx-int8", ["torch", "onnx", "onnx-int8"]),
        ("onnx-fp16", ["torch", "onnx", "onnx-fp16"]),
        ("onnx-int4", ["torch", "onnx", "onnx-int4"]),
        ("pt2", ["torch", "pt2"]),
        ("keras-model:pt2", ["keras-model", "onnx", "pt2"]),
        ("pt2:onnx-int8", ["pt2", "onnx", "onnx-int8"]),
        ("onnx:pt2", ["onnx", "pt2"]),
        ("tf", ["torch", "onnx", "tf"]),
        ("tflite", ["torch", "onnx", "tflite"]),  # onnx2tf's own .tflite, not via a SavedModel hop
        ("keras-model:tf", ["keras-model", "tf"]),
        ("keras-model:tflite", ["keras-model", "tflite"]),
        ("keras-model:onnx", ["keras-model", "onnx"]),  # tf2onnx from the model, not through a SavedModel
        ("tf:onnx-fp16", ["tf", "onnx", "onnx-fp16"]),
        ("onnx:tflite", ["onnx", "tflite"]),
    ],
)
def test_plan_is_the_shortest_chain(target, chain):
    source, _, target = target.rpartition(":")
    edges = graph.plan(source or "torch", target)
    assert [edges[0].source] + [e.target for e in edges] == chain
    assert graph.chain_dtype(edges) == {"onnx-int8": "int8", "onnx-fp16": "float16", "onnx-int4": "int4"}.get(target,
                                                                                                          "float32")


def test_unreachable_format_names_the_reachable_ones():
    with pytest.raises(errors.UnsupportedFormatError) as info:
        graph.plan("torch", "caffe")
    assert "onnx-int8" in info.value.hint and "pt2" in info.value.hint


def _independent_outputs(path: str, x: np.ndarray) -> np.ndarray:
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


@pytest.mark.parametrize("fmt, model", EDGE_CASES)
def test_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model):
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
    chain = graph.plan(_node(model), fmt)
    assert out["format"] == fmt and out["conversion"]["chain"] == graph.chain_name(chain)
    assert out["parity"]["passed"] and out["verified"]
    tol = out["parity"]["tolerance"]
    assert tol["atol"] == default_tolerance(graph.chain_dtype(chain)).atol  # checked at the chain's dtype
    if name in REPOS:  # independently of zoo: the artifact (NCHW inputs, as the source) against the real model, batch 3
        x = np.random.default_rng(11).standard_normal((3, 3, 160, 160)).astype(np.float32)
        ref = source_outputs(tiny_repos[REPOS[name]], name, x)
        got = _independent_outputs(out["path"], x)
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, atol=tol["atol"] * scale, rtol=tol["rtol"])
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 2 / 3
    if model == KERAS:  # against keras' own model built from the same cached weights file
        import keras

        x = np.random.default_rng(11).standard_normal((3, 96, 96, 3)).astype(np.float32)
        source = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=str(keras_cache), classifier_activation=None)
        ref = source(x, training=False).numpy()
        got = _independent_outputs(out["path"], x)
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, atol=tol["atol"] * scale, rtol=tol["rtol"])
        assert ref.std() > 0  # the seeded weights give input-dependent logits: the check can fail


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
    return {"saved-model": root / "saved-model", "keras-file": root / "tiny.keras", "tflite-file": root / "tiny.tflite",
            "model": model}


@pytest.mark.parametrize("fmt, kind", FILE_CASES)
def test_edge_from_a_local_source(keras_sources, fmt, kind):
    proc = run_zoo("convert", str(keras_sources[kind]), "--to", fmt, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # the whole of stdout is the one JSON object: no converter chatter
    chain = graph.plan(FILE_NODES[kind], fmt)
    assert out["conversion"]["chain"] == graph.chain_name(chain) and out["parity"]["passed"] and out["verified"]
    x = np.random.default_rng(5).standard_normal((3, 32, 32, 3)).astype(np.float32)
    ref = keras_sources["model"](x, training=False).numpy()
    got = _independent_outputs(out["path"], x)
    assert ref.std() > 0 and got.shape == ref.shape == (3, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def test_formats_are_distinct_artifacts_and_each_cached(indexed, cached_repo):
    cached_repo(TIMM_REPO)
    plain = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    int8 = pull_json("test_resnet", "--format", "onnx-int8", env={"HF_HUB_OFFLINE": "1"})
    assert int8["sha256"] != plain["sha256"] and int8["size"] < plain["size"]
    again = pull_json("test_resnet", "--format", "onnx-int8", env={"HF_HUB_OFFLINE": "1"})
    assert again["cached"] and again["sha256"] == int8["sha256"]


def test_allow_mismatch_hands_back_an_unverified_artifact(indexed, cached_repo, monkeypatch, capsys):
    import onnx
    from onnx import numpy_helper

    import zoo.converters.edges.torch_onnx as torch_onnx
    from zoo.cli import main as cli

    real_export = torch_onnx.export_onnx

    def sabotaged_export(tm, example, out_path, **kwargs):
        info = real_export(tm, example, out_path, **kwargs)
        model = onnx.load(str(out_path))
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.05, init.name))
        onnx.save(model, str(out_path))
        return info

    monkeypatch.setattr(torch_onnx, "export_onnx", sabotaged_export)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(TIMM_REPO)
    code = cli.main(["pull", "test_resnet", "--allow-mismatch", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["verified"] is False and out["parity"]["passed"] is False
    assert Path(out["path"]).parent.parent.name == "quarantine" and "--allow-mismatch" in captured.err
    # without the flag the same request fails, and an unverified artifact is never served as cached
    assert cli.main(["pull", "test_resnet", "--json"]) == 6


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


def test_a_converter_crash_is_a_conversion_error_and_a_full_disk_stays_a_storage_error(tmp_path):
    """An exporter's own crash (torch.export.save overflowing on a large program) is exit 8 naming the edge."""
    import errno

    from zoo.progress import quiet

    def overflowing(src, out_dir, ctx):
        raise OverflowError("Python int too large to convert to C long")

    def disk_full(src, out_dir, ctx):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "a").mkdir()
    crash = graph.Edge("onnx", "pt2", "torch.export", "float32", "model.pt2", overflowing)
    with pytest.raises(errors.ConversionError) as caught:
        graph.run_chain([crash], tmp_path / "m.onnx", tmp_path / "a", graph.EdgeContext(opset=18), quiet())
    assert errors.exit_code_for(caught.value) == 8 and caught.value.details["edge"] == "onnx->pt2"
    assert "OverflowError" in caught.value.message and "torch.export" in caught.value.message
    (tmp_path / "b").mkdir()
    full = graph.Edge("onnx", "pt2", "torch.export", "float32", "model.pt2", disk_full)
    with pytest.raises(OSError) as caught_full:
        graph.run_chain([full], tmp_path / "m.onnx", tmp_path / "b", graph.EdgeContext(opset=18), quiet())
    assert errors.exit_code_for(errors.as_storage_error(caught_full.value)) == 9

"""Every family to every target (issue 14): torch -> tflite through litert-torch beside onnx2tf, the routes
tried in order and recorded in zoo.json, the remediation ladder's static-shapes rung, quantised LiteRT
(tflite-int8 / tflite-fp16) and JAX (torchax + jax.export), each checked against the source and, here,
independently of zoo against the real model."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json, run_zoo, source_outputs

OFFLINE = {"HF_HUB_OFFLINE": "1"}
NEEDS = {"litert": ("litert_torch", "ai_edge_litert.interpreter", "ai_edge_quantizer"), "jax": ("jax", "torchax")}


def require(extra: str) -> None:
    """Skip without the extra on a developer's machine; on CI (CI=true) a missing extra is a failure."""
    for module in NEEDS[extra]:  # found, not imported: torchax imports only through zoo's import_torchax
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            message = f"{module} is not installed: pip install -e '.[{extra}]' (scripts/setup.sh installs it)"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI=true: {message}")
            pytest.skip(message)


def _litert(path: str, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """A .tflite file run with the LiteRT interpreter, by its litert-torch signature (args_N -> output_N)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    kinds = {k: d["dtype"] for k, d in runner.get_input_details().items()}
    out = runner(**{f"args_{i}": x.astype(kinds[f"args_{i}"]) for i, x in enumerate(feeds)})
    return [out[k] for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[1]))]


# --- the graph: routes and the ladder, in their documented order -----------------------------------------
def test_routes_to_tflite_try_litert_first_then_onnx2tf_then_static_shapes():
    from zoo.converters import graph

    names = [[e.name for e in c] for c in graph.routes("torch", "tflite")]
    assert names == [["litert-torch"], ["torch.onnx", "onnx2tf + tf.lite.TFLiteConverter"]]
    assert [e.target for e in graph.plan("torch", "tflite")] == ["onnx", "tflite"]  # the plan itself is unchanged
    rungs = [(graph.chain_name(c), r) for c, r in graph.ladder(graph.routes("torch", "tflite"))]
    assert rungs == [("torch -> tflite", "route"), ("torch -> onnx -> tflite", "route"),
                     ("torch -> tflite", "static shapes")]
    int8 = [[e.target for e in c] for c in graph.routes("torch", "tflite-int8")]
    assert int8 == [["tflite", "tflite-int8"], ["onnx", "tflite", "tflite-int8"]]
    assert [[e.name for e in c] for c in graph.routes("onnx", "tflite")] == [["onnx2tf + tf.lite.TFLiteConverter"]]
    assert {"jax", "tflite-int8", "tflite-fp16"} <= set(graph.target_formats())
    # a cache key names every route, so adding a route is a new key, and one route keeps its old name
    assert graph.routes_name([graph.plan("torch", "onnx")]) == "torch -> onnx"


# --- a model that needs a rung: BERT-like text reaches tflite only with static shapes -----------------------
def test_bert_reaches_tflite_through_the_ladder(zoo_env, cached_repo, tiny_repos):
    require("litert")
    cached_repo("zoo-test/tiny-bert")
    out = pull_json("zoo-test/tiny-bert", "--format", "tflite", env=OFFLINE)
    assert out["verified"] and out["parity"]["passed"]
    routes = out["conversion"]["routes"]
    tried = [(r["route"], r["rung"], r["result"]) for r in routes]
    # litert-torch cannot export the dynamic batch/sequence axes; onnx2tf stops at the attention mask's ops;
    # litert-torch with static shapes passes
    assert tried[0][:2] == ("torch -> tflite", "route") and tried[0][2] == "conversion failed"
    assert tried[1][:2] == ("torch -> onnx -> tflite", "route") and tried[1][2] != "passed"
    assert tried[-1] == ("torch -> tflite", "static shapes", "passed") and routes[-1]["won"]
    assert [r["won"] for r in routes].count(True) == 1 and all(r["reason"] for r in routes)
    contract = out["conversion"]["details"]["torch->tflite"]["io_contract"]
    assert contract["shapes"] == "static" and any("static shapes" in d for d in contract["differs"])
    assert [i["dtype"] for i in contract["inputs"]] == ["int32"] * len(contract["inputs"])  # said, not hidden
    manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
    assert manifest["conversion"]["routes"] == routes
    # independently of zoo: the file against transformers' own model, at the exported shape
    import torch
    from safetensors.torch import load as load_safetensors
    from transformers import BertConfig, BertModel

    files = tiny_repos["zoo-test/tiny-bert"]
    model = BertModel(BertConfig(**json.loads(files["config.json"]))).eval()
    model.load_state_dict(load_safetensors(files["model.safetensors"]), strict=False)
    shapes = {i["name"]: i["shape"] for i in contract["inputs"]}
    rng = np.random.default_rng(3)
    feeds = {}
    for name, shape in shapes.items():
        feeds[name] = rng.integers(1, 100, shape) if name == "input_ids" else np.ones(shape, np.int64)
    if "attention_mask" in feeds:
        feeds["attention_mask"][0, shape[1] // 2:] = 0  # padding: the mask must matter
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()
    got = _litert(out["path"], [feeds[i["name"]] for i in contract["inputs"]])[0]
    assert ref.std() > 0
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


# --- quantised LiteRT -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, dtype", [("tflite-fp16", "float16"), pytest.param("tflite-int8", "int8", marks=pytest.mark.slow)])
def test_quantised_tflite_of_a_cnn(indexed, cached_repo, tiny_repos, fmt, dtype):
    require("litert")
    cached_repo(TIMM_REPO)
    out = pull_json("test_resnet", "--format", fmt, env=OFFLINE)
    from zoo.converters.parity.tolerance import default_tolerance

    assert out["verified"] and out["parity"]["passed"]
    assert out["parity"]["tolerance"]["atol"] == default_tolerance(dtype).atol  # checked at the variant's tolerance
    assert out["conversion"]["chain"].endswith(f"tflite -> {fmt}")
    assert out["conversion"]["details"][f"tflite->{fmt}"]["ratio"] < 0.75  # the weights really are smaller
    from zoo.converters.loaders.tflite_file import tflite_precision

    assert tflite_precision(Path(out["path"])) == dtype


# --- JAX ------------------------------------------------------------------------------------------------
def test_cnn_to_jax_with_a_dynamic_batch(indexed, cached_repo, tiny_repos):
    require("jax")
    cached_repo(TIMM_REPO)
    out = pull_json("test_resnet", "--format", "jax", env=OFFLINE)
    assert out["verified"] and out["parity"]["passed"] and out["conversion"]["chain"] == "torch -> jax"
    info = out["conversion"]["details"]["torch->jax"]
    assert info["io_contract"]["shapes"] == "dynamic" and info["io_contract"]["inputs"][0]["shape"][0] == "batch"
    import jax

    exported = jax.export.deserialize(bytearray(Path(out["path"]).read_bytes()))
    x = np.random.default_rng(11).standard_normal((3, 3, 160, 160)).astype(np.float32)  # batch 3: not the export's
    (got,) = exported.call(x)
    ref = source_outputs(tiny_repos[TIMM_REPO], "test_resnet.r160_in1k", x)
    assert ref.std() > 0
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def test_jax_artifact_that_differs_is_never_verified(indexed, cached_repo, tmp_path):
    """The jax runner really runs the artifact: a corrupt one is refused, not passed."""
    require("jax")
    from zoo import errors
    from zoo.converters.parity.runners import artifact_runner

    bad = tmp_path / "model.jax"
    bad.write_bytes(b"\x00not a jax export")
    with pytest.raises(errors.InvalidModelError):
        artifact_runner(bad, ["x"], ["y"])


def test_cli_lists_the_new_targets():
    proc = run_zoo("pull", "test_resnet", "--format", "caffe")
    assert proc.returncode != 0
    assert "jax" in proc.stderr and "tflite-int8" in proc.stderr and "tflite-fp16" in proc.stderr

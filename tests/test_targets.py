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
NEEDS = {"litert": ("litert_torch", "ai_edge_litert.interpreter", "ai_edge_quantizer"), "jax": ("jax", "torchax"),
         "tf": ("tensorflow",)}


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
def test_routes_to_tflite_try_onnx2tf_first_then_litert_then_static_shapes():
    from zoo.converters import graph

    names = [[e.name for e in c] for c in graph.routes("torch", "tflite")]
    jax2tf = ["torchax + jax.export", "jax2tf", "tf.lite.TFLiteConverter"]  # the last route: tests/test_jax2tf.py
    assert names == [["torch.onnx", "onnx2tf + tf.lite.TFLiteConverter"], ["litert-torch"], jax2tf]
    assert [e.target for e in graph.plan("torch", "tflite")] == ["onnx", "tflite"]  # the plan itself is unchanged
    rungs = [(graph.chain_name(c), r) for c, r in graph.ladder(graph.routes("torch", "tflite"))]
    assert rungs == [("torch -> onnx -> tflite", "route"), ("torch -> tflite", "route"),
                     ("torch -> jax -> tf -> tflite", "route"), ("torch -> tflite", "static shapes"),
                     ("torch -> jax -> tf -> tflite", "static shapes")]
    int8 = [[e.target for e in c] for c in graph.routes("torch", "tflite-int8")]
    assert int8 == [["onnx", "tflite", "tflite-int8"], ["tflite", "tflite-int8"], ["jax", "tf", "tflite", "tflite-int8"]]
    # no detour: an ONNX (or its variants, or pt2) from torch is never made through litert-torch and tf2onnx
    for target in ("onnx", "onnx-fp16", "onnx-int8", "pt2"):
        assert graph.routes("torch", target) == [graph.plan("torch", target)], target
    # tf: onnx2tf, then jax2tf (tests/test_jax2tf.py)
    assert [[e.name for e in c] for c in graph.routes("onnx", "tflite")] == [["onnx2tf + tf.lite.TFLiteConverter"]]
    assert {"jax", "tflite-int8", "tflite-fp16"} <= set(graph.target_formats())
    # a cache key names every route, so adding a route is a new key, and one route keeps its old name
    assert graph.routes_name([graph.plan("torch", "onnx")]) == "torch -> onnx"


def _Antialiased():  # noqa: N802 - a module class made on demand: torch is imported only by the tests that need it
    import torch

    class Antialiased(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=1.5, mode="bicubic", antialias=True)

    return Antialiased().eval()


# --- litert-torch and ai-edge-quantizer edges on a real CNN, in the LiteRT interpreter ----------------------
def test_litert_edges_on_a_cnn(tmp_path):
    """torch -> tflite with litert-torch (the static-shapes rung: its dynamic export of a CNN fails) and the fp16 /
    int8 variants, each run in the LiteRT interpreter through zoo's runner and against the PyTorch model."""
    require("litert")
    import torch

    from zoo import errors
    from zoo.converters.edges.litert import tflite_to_fp16, tflite_to_int8, torch_to_tflite
    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.tflite_file import tflite_precision
    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.parity.runners import artifact_runner

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    tm = TorchModel(module, ["pixel_values"], ["logits"], {"pixel_values": {0: "batch"}})
    x = np.random.default_rng(2).standard_normal((2, 3, 24, 24)).astype(np.float32)
    ctx = EdgeContext(opset=18, example=(torch.from_numpy(x),), static_shapes=True)
    (tmp_path / "f").mkdir()
    path = torch_to_tflite(tm, tmp_path / "f", ctx)
    contract = ctx.info["torch->tflite"]["io_contract"]
    assert contract["shapes"] == "static" and contract["inputs"][0]["shape"] == [2, 3, 24, 24]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    (got,) = artifact_runner(path, ["pixel_values"], ["logits"])({"pixel_values": x})
    assert ref.std() > 0
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)
    for kind, fn, dtype, tol in (("fp16", tflite_to_fp16, "float16", 1e-2), ("int8", tflite_to_int8, "int8", 1e-1)):
        (tmp_path / kind).mkdir()
        variant = fn(path, tmp_path / kind, ctx)
        assert tflite_precision(variant) == dtype and variant.stat().st_size < path.stat().st_size
        (q,) = artifact_runner(variant, ["pixel_values"], ["logits"])({"pixel_values": x})
        assert 0 < np.abs(q - ref).max() <= tol * max(1.0, float(np.abs(ref).max()))  # changed, within its tolerance
        # where it changed: LiteRT tensors matched by name, in graph order; the first diverging node at fp32 tolerance
        from zoo.cli.diff import diff
        from zoo.converters.parity.nodediff import locate_between

        report = diff(path, variant)
        assert report["matched"] >= 3 and "CONV_2D" in [r["op_type"] for r in report["nodes"]]
        assert report["nodes"][0]["max_abs_diff"] == 0 and report["worst"]["max_rel_diff"] > 0  # the input transpose: exact
        found = locate_between(path, variant, {"pixel_values": x}, ["pixel_values"], atol=1e-6, rtol=1e-6, edge=kind)
        assert found["node"] and found["elements_out"] > 0
    # a module litert-torch cannot lower is a ConversionError naming the edge (the pipeline tries the next rung)
    bad = TorchModel(_Antialiased(), ["x"], ["y"], {})  # timm ViT's position-embedding resample, alone
    (tmp_path / "bad").mkdir()
    with pytest.raises(errors.ConversionError, match="litert-torch could not convert"):
        torch_to_tflite(bad, tmp_path / "bad", EdgeContext(opset=18, example=(torch.from_numpy(x),)))


# --- a model that needs a rung: BERT-like text reaches tflite only with static shapes -----------------------
@pytest.mark.slow  # ~2 min on 2 busy cores: litert-torch twice and onnx2tf
def test_bert_reaches_tflite_through_the_ladder(zoo_env, cached_repo, tiny_repos):
    require("litert")
    cached_repo("zoo-test/tiny-bert")
    out = pull_json("zoo-test/tiny-bert", "--format", "tflite", env=OFFLINE)
    assert out["verified"] and out["parity"]["passed"]
    routes = out["conversion"]["routes"]
    tried = [(r["route"], r["rung"], r["result"]) for r in routes]
    # litert-torch cannot export the dynamic batch/sequence axes; onnx2tf stops at the attention mask's ops;
    # litert-torch with static shapes passes
    assert tried[0][:2] == ("torch -> onnx -> tflite", "route") and tried[0][2] != "passed"
    assert tried[1][:2] == ("torch -> tflite", "route") and tried[1][2] == "conversion failed"
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
@pytest.mark.slow  # ~2 min each on 2 busy cores (onnx2tf); tests/test_targets.py::test_litert_edges_on_a_cnn is the fast one
@pytest.mark.parametrize("fmt, dtype", [("tflite-fp16", "float16"), ("tflite-int8", "int8")])
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


@pytest.mark.slow  # 12.6 min for both at load average ~11 on 2 cores (onnx2tf, litert-torch, jax2tf fail first); fast:
# tests/test_samples.py::test_sentences_at_the_export_length_fit_a_static_text_model and the CNN test above
@pytest.mark.parametrize("fmt, dtype", [("tflite-fp16", "float16"), ("tflite-int8", "int8")])
def test_quantised_tflite_of_a_static_bert_is_checked_on_real_sentences(zoo_env, cached_repo, fmt, dtype):
    """BERT's only tflite is litert-torch's static (batch 2, length 16) file: its quantised variants are checked
    on the sample sentences padded or truncated to 16 tokens by the tokenizer (before: refused, no samples)."""
    require("litert")
    cached_repo("zoo-test/tiny-bert")
    out = pull_json("zoo-test/tiny-bert", "--format", fmt, env=OFFLINE)
    from zoo.converters.parity.tolerance import default_tolerance

    assert out["verified"] and out["parity"]["passed"] and out["conversion"]["chain"] == f"torch -> tflite -> {fmt}"
    assert out["parity"]["tolerance"]["atol"] == default_tolerance(dtype).atol
    checked = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["parity"]
    samples = [s for s in checked["input_sets"] if s["kind"] == "sample"]
    assert len(samples) == 4 and all(s["name"].startswith("sample-sentences-s16[") for s in samples)
    assert all(s["shapes"]["input_ids"] == [2, 16] for s in samples)
    assert checked["tasks"] and all(t["passed"] for t in checked["tasks"])  # the embedding check, on those sentences


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


# --- where a variant diverges: zoo diff and the first diverging node --------------------------------------
@pytest.fixture(scope="module")
def onnx_variants(tmp_path_factory) -> dict[str, Path]:
    """A small real CNN exported by torch.onnx, and its fp16 and int8 variants made by zoo's own edges."""
    import torch

    from zoo.converters.edges.onnx_variants import onnx_to_fp16, onnx_to_int8
    from zoo.converters.graph import EdgeContext

    root = tmp_path_factory.mktemp("variants")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 12 * 12, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10)).eval()
    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(model, (x,), str(root / "model.onnx"), input_names=["x"], output_names=["y"], dynamo=False,
                      dynamic_axes={"x": {0: "batch"}})
    out = {"onnx": root / "model.onnx"}
    for name, fn in (("onnx-fp16", onnx_to_fp16), ("onnx-int8", onnx_to_int8)):
        (root / name).mkdir()
        out[name] = fn(out["onnx"], root / name, EdgeContext(opset=18))
    return out


def test_zoo_diff_names_where_int8_loses_accuracy(onnx_variants):
    proc = run_zoo("diff", str(onnx_variants["onnx"]), str(onnx_variants["onnx-int8"]), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    rows = result["nodes"]
    ops = [r["op_type"] for r in rows]
    assert ops == ["Conv", "Relu", "Conv", "Relu", "Flatten", "Gemm", "Relu", "Gemm"]  # every node, in A's graph order
    assert [r["tensor"] for r in rows][-1] == "y" and all(r["max_abs_diff"] > 0 for r in rows)  # int8 from the first Conv
    # the error grows through the quantised layers: the worst is deep in the network, well past fp16's
    assert rows[2]["max_rel_diff"] > rows[0]["max_rel_diff"] and result["worst"]["node"] not in ("/0/Conv", "/1/Relu")
    # how much each node adds over its inputs: the quantised Conv/Gemm make the error, Flatten passes it on
    for before, row in zip(rows, rows[1:]):
        assert row["input_rel_diff"] == before["max_rel_diff"] and row["growth"] == row["max_rel_diff"] - before["max_rel_diff"]
    assert rows[0]["input_rel_diff"] == 0.0 and rows[4]["growth"] == 0.0  # the image is exact; Flatten adds nothing
    assert result["grows_most"]["op_type"] in ("Conv", "Gemm") and result["grows_most"]["growth"] > 0
    fp16 = json.loads(run_zoo("diff", str(onnx_variants["onnx"]), str(onnx_variants["onnx-fp16"]), "--json").stdout)
    assert 0 < fp16["worst"]["max_rel_diff"] < result["worst"]["max_rel_diff"]  # fp16 loses less than int8
    same = json.loads(run_zoo("diff", str(onnx_variants["onnx"]), str(onnx_variants["onnx"]), "--json").stdout)
    assert same["worst"]["max_abs_diff"] == 0.0
    text = run_zoo("diff", str(onnx_variants["onnx"]), str(onnx_variants["onnx-int8"]), "--top", "3")
    assert text.returncode == 0 and "matched nodes" in text.stdout and len(text.stdout.strip().splitlines()) == 5
    assert "grows most" in text.stdout.splitlines()[-1]


def test_first_diverging_node_of_a_quantised_edge(onnx_variants):
    from zoo.converters.parity.nodediff import locate_between
    from zoo.converters.parity.tolerance import default_tolerance

    x = {"x": np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    fp32 = default_tolerance("float32")
    found = locate_between(onnx_variants["onnx"], onnx_variants["onnx-int8"], x, ["x"], atol=fp32.atol, rtol=fp32.rtol,
                           edge="onnx->onnx-int8")
    # at float32 tolerance, the first quantised layer (the first Conv) is where it leaves
    assert found["node"] == "/0/Conv" and found["op_type"] == "Conv" and found["index"] == 0 and found["compared"] == 8 and found["elements_out"] > 0
    assert found["max_abs_diff"] > fp32.atol
    loose = default_tolerance("int8")
    ok = locate_between(onnx_variants["onnx"], onnx_variants["onnx-int8"], x, ["x"], atol=loose.atol, rtol=loose.rtol,
                        edge="onnx->onnx-int8")
    assert ok["node"] is None and "within the elementwise tolerance" in ok["note"] and ok["compared"] == 8


def test_zoo_diff_refuses_what_it_cannot_compare(onnx_variants, tmp_path):
    other = tmp_path / "other.onnx"
    from builders import tiny_onnx

    tiny_onnx(other)
    proc = run_zoo("diff", str(onnx_variants["onnx"]), str(other))
    assert proc.returncode == 2 and "take different inputs" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_zoo("diff", str(onnx_variants["onnx"]), str(tmp_path / "missing.onnx"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr


@pytest.mark.slow  # ~70 s on 2 busy cores: a failing parity re-exports with dynamo before giving up
def test_a_failing_int8_pull_names_its_first_diverging_node(indexed, cached_repo):
    """Through the pipeline: an int8 variant held to a float32-sized tolerance fails, and the parity report
    names the first node of the onnx -> onnx-int8 edge that left it (not the torch -> onnx export's layers)."""
    cached_repo(TIMM_REPO)
    proc = run_zoo("pull", "test_resnet", "--format", "onnx-int8", "--atol", "1e-6", "--allow-mismatch", "--json",
                   env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["verified"] and not out["parity"]["passed"]
    found = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["parity"]["divergence"]  # the full report
    assert found["edge"] == "onnx->onnx-int8" and found["node"] and found["elements_out"] > 0
    assert found["max_abs_diff"] > 1e-6 and found["tensor"]

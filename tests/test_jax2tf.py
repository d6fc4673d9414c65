"""The jax2tf route to ``tf`` (issue 14): torch -> jax (torchax + jax.export) -> tf (jax2tf, one XlaCallModule op),
tried after onnx2tf; the transformers ViT and BERT families that onnx2tf stops at reach ``tf`` with parity, the
route named in zoo.json, and the SavedModel checked here against transformers' own model, independently of zoo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pull_json
from test_targets import require

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def test_routes_to_tf_try_onnx2tf_then_jax2tf_then_static_shapes():
    from zoo.converters import graph

    rungs = [(graph.chain_name(c), [e.name for e in c], r) for c, r in graph.ladder(graph.routes("torch", "tf"))]
    assert rungs == [("torch -> onnx -> tf", ["torch.onnx", "onnx2tf"], "route"),
                     ("torch -> jax -> tf", ["torchax + jax.export", "jax2tf"], "route"),
                     ("torch -> jax -> tf", ["torchax + jax.export", "jax2tf"], "static shapes")]
    assert graph.plan("torch", "tf") == graph.routes("torch", "tf")[0]  # the plan itself is unchanged


def test_tflite_through_jax2tf_is_the_last_route_from_torch_only():
    """The detour torch -> jax -> tf -> tflite (graph.DETOURS) comes after onnx2tf and litert-torch, in each rung;
    a quantised tflite can take it too; no other format or source detours through jax2tf."""
    from zoo.converters import graph

    jax2tf = ["torchax + jax.export", "jax2tf", "tf.lite.TFLiteConverter"]
    rungs = [(graph.chain_name(c), [e.name for e in c], r) for c, r in graph.ladder(graph.routes("torch", "tflite"))]
    assert rungs == [("torch -> onnx -> tflite", ["torch.onnx", "onnx2tf + tf.lite.TFLiteConverter"], "route"),
                     ("torch -> tflite", ["litert-torch"], "route"),
                     ("torch -> jax -> tf -> tflite", jax2tf, "route"),
                     ("torch -> tflite", ["litert-torch"], "static shapes"),
                     ("torch -> jax -> tf -> tflite", jax2tf, "static shapes")]
    int8 = graph.routes("torch", "tflite-int8")
    assert graph.chain_name(int8[-1]) == "torch -> jax -> tf -> tflite -> tflite-int8" and len(int8) == 3
    for source, target in (("torch", "onnx"), ("torch", "tf"), ("torch", "pt2"), ("keras-model", "tflite"),
                           ("keras-model", "tflite-int8"), ("onnx", "tflite")):
        assert all(len(c) <= len(graph.plan(source, target)) for c in graph.routes(source, target)), (source, target)


def _saved_model_ops(directory: Path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((directory / "saved_model.pb").read_bytes())
    return {n.op for m in model.meta_graphs for f in m.graph_def.library.function for n in f.node_def}


def _check_route(out: dict, axes: dict) -> dict:
    """onnx2tf failed, jax2tf with the source's dynamic axes won (the torch.export graph under torchax: the module's
    own Python reads a symbolic shape into torch.Size); the contract names exactly those axes and keeps the source's
    dtypes, and parity fed every input set as it is, none re-batched."""
    assert out["verified"] and out["parity"]["passed"] and out["conversion"]["chain"] == "torch -> jax -> tf"
    routes = out["conversion"]["routes"]
    tried = [(r["route"], r["rung"], r["result"]) for r in routes]
    assert tried[0][:2] == ("torch -> onnx -> tf", "route") and tried[0][2] == "conversion failed"
    assert "onnx2tf cannot convert" in routes[0]["reason"]
    assert tried[-1] == ("torch -> jax -> tf", "route", "passed") and routes[-1]["won"] and len(tried) == 2
    assert [r["won"] for r in routes].count(True) == 1 and all(r["reason"] for r in routes)
    manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
    assert manifest["conversion"]["routes"] == routes
    exported = out["conversion"]["details"]["torch->jax"]
    assert exported["traced"].startswith("torch.export (dynamic shapes), then torchax") and "torch.Size" in exported["traced"]
    info = out["conversion"]["details"]["jax->tf"]
    assert info["exporter"] == "jax2tf" and "XlaCallModule" in info["serialization"]
    contract = info["io_contract"]
    assert contract["shapes"] == "dynamic" and contract["dynamic_axes"] == axes
    assert exported["io_contract"]["dynamic_axes"] == axes and not contract["differs"]
    assert not any("static shapes" in w for w in manifest["parity"]["warnings"])
    assert not any("[" in s["name"] for s in manifest["parity"]["input_sets"])  # no set cut into chunks
    assert "XlaCallModule" in _saved_model_ops(Path(out["artifact_dir"]))
    # the weights once: the SavedModel is within a few percent of the jax export it wraps (it was twice its size)
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    assert sizes["saved_model.pb"] < 1.1 * info["jax_export_bytes"], (sizes, info["jax_export_bytes"])
    from zoo.converters.loaders.saved_model_check import check_saved_model

    check_saved_model(Path(out["artifact_dir"]))  # zoo's own allow-list takes it back (zoo diff, zoo convert)
    return contract


def _serving(artifact_dir: str):
    import tensorflow as tf

    return tf.saved_model.load(artifact_dir).signatures["serving_default"]


def _from_files(cls, files: dict, root: Path):
    """transformers' own model from the repo's files (from_pretrained maps renamed weights)."""
    for name, data in files.items():
        (root / name).write_bytes(data)
    return cls.from_pretrained(str(root)).eval()


def test_transformers_vit_reaches_tf_through_jax2tf(zoo_env, cached_repo, tiny_repos, tmp_path):
    """~60 s of CPU: onnx2tf fails fast on the ViT's attention, jax2tf keeps the dynamic batch (torchax on the
    torch.export graph). The one default test of the route; the BERT one is slow (onnx2tf takes a minute to fail)."""
    require("jax")
    cached_repo("zoo-test/tiny-vit-classifier")
    out = pull_json("zoo-test/tiny-vit-classifier", "--format", "tf", env=OFFLINE)
    contract = _check_route(out, {"pixel_values": {"0": "batch"}})
    assert [(i["name"], i["dtype"]) for i in contract["inputs"]] == [("pixel_values", "float32")]
    checked = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["parity"]["input_sets"]
    assert {s["shapes"]["pixel_values"][0] for s in checked} >= {1, 2, 3}  # every batch, fed as it is
    assert sum(s["kind"] == "sample" for s in checked) >= 2
    import torch
    from transformers import ViTForImageClassification

    model = _from_files(ViTForImageClassification, tiny_repos["zoo-test/tiny-vit-classifier"], tmp_path)
    shape = [5] + contract["inputs"][0]["shape"][1:]  # batch 5: no input set's
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(x)).logits.numpy()
    got = _serving(out["artifact_dir"])(pixel_values=x)
    assert list(got) == contract["outputs"] and ref.std() > 0
    np.testing.assert_allclose(got[contract["outputs"][0]].numpy(), ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())),
                               rtol=1e-4)


@pytest.mark.slow  # ~3 min on 2 busy cores: onnx2tf fails only after converting most of the graph
def test_bert_reaches_tf_through_jax2tf(zoo_env, cached_repo, tiny_repos, tmp_path):
    require("jax")
    cached_repo("zoo-test/tiny-bert")
    out = pull_json("zoo-test/tiny-bert", "--format", "tf", env=OFFLINE)
    axes = {"0": "batch", "1": "sequence"}
    contract = _check_route(out, {n: axes for n in ("input_ids", "attention_mask", "token_type_ids")
                                  if n in [i["name"] for i in out["conversion"]["details"]["jax->tf"]["io_contract"]["inputs"]]})
    # the longest sequence the model takes (its tokenizer's), declared to jax.export
    assert len(contract["constraints"]) == 1 and contract["constraints"][0].startswith("sequence <= ")
    # the source's int64 ids and masks, not the int32 the jax export takes (cast inside the graph)
    assert {i["dtype"] for i in contract["inputs"]} == {"int64"}
    import torch
    from transformers import BertModel

    model = _from_files(BertModel, tiny_repos["zoo-test/tiny-bert"], tmp_path)
    rng = np.random.default_rng(3)
    feeds = {}
    shape = (3, 21)  # neither a batch nor a length of the input sets
    for item in contract["inputs"]:
        name = item["name"]
        feeds[name] = rng.integers(1, 100, shape) if name == "input_ids" else np.ones(shape, np.int64)
    feeds["attention_mask"][0, shape[1] // 2:] = 0  # padding: the mask must matter
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()
    got = _serving(out["artifact_dir"])(**feeds)[contract["outputs"][0]].numpy()
    assert ref.std() > 0
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def _jax_saved_model(fn, root: Path, **convert) -> Path:
    """A SavedModel of a jax function through jax2tf, as any user would save one."""
    import jax
    import tensorflow as tf
    from jax.experimental import jax2tf

    saved = jax.config.jax_export_calling_convention_version
    jax.config.update("jax_export_calling_convention_version", 9)  # what TF 2.19 takes
    try:
        holder = tf.Module()
        holder.f = tf.function(jax2tf.convert(fn, with_gradient=False, **convert), autograph=False,
                               input_signature=[tf.TensorSpec([2, 2], tf.float32, name="x")])
        tf.saved_model.save(holder, str(root), signatures={"serving_default": holder.f.get_concrete_function()})
    finally:
        jax.config.update("jax_export_calling_convention_version", saved)
    return root


HOSTILE_STABLEHLO = """
func.func public @main(%arg0: tensor<2x2xf32>) -> tensor<2x2xf32> {
  %0 = stablehlo.custom_call @some_native_function(%arg0) : (tensor<2x2xf32>) -> tensor<2x2xf32>
  return %0 : tensor<2x2xf32>
}
"""


def _hostile_saved_model(root: Path) -> Path:
    """An XlaCallModule whose StableHLO calls a native function by name, as a hostile file would hold."""
    import tensorflow as tf
    from jax.extend.mlir.dialects import stablehlo
    from tensorflow.compiler.tf2xla.python import xla as tfxla

    module = stablehlo.serialize_portable_artifact_str(HOSTILE_STABLEHLO, "1.0.0")
    holder = tf.Module()
    holder.f = tf.function(lambda x: tfxla.call_module([x], version=9, module=module, Tout=[tf.float32],
                                                       Sout=[(2, 2)], platforms=["CPU"])[0],
                           autograph=False, input_signature=[tf.TensorSpec([2, 2], tf.float32, name="x")])
    tf.saved_model.save(holder, str(root), signatures={"serving_default": holder.f.get_concrete_function()})
    return root


def test_a_static_candidate_takes_every_set_of_its_other_dims_a_batch_at_a_time():
    """static_sets: sets differing only in batch are re-batched (the last chunk filled from the first rows),
    sets of another sequence length are named as not taken."""
    from types import SimpleNamespace

    from zoo.converters.parity.report import InputSet
    from zoo.converters.parity.static_sets import static_sets

    ctx = SimpleNamespace(info={"jax->tf": {"io_contract": {"shapes": "static",
                                                            "inputs": [{"name": "x", "shape": [2, 3, 8]}]}}})
    x3 = np.arange(3 * 3 * 8, dtype=np.float32).reshape(3, 3, 8)
    sets = [InputSet("b2", {"x": x3[:2]}), InputSet("b3", {"x": x3}), InputSet("photos", {"x": x3[:1]}, kind="sample"),
            InputSet("long", {"x": np.zeros((2, 3, 9), np.float32)})]
    kept, skipped, rebatched = static_sets(ctx, sets, ["x"])
    assert [s.name for s in kept] == ["b2", "b3[0:2]", "b3[2:3]", "photos[0:1]"] and skipped == ["long"]
    assert rebatched == ["b3", "photos"] and kept[-1].kind == "sample"
    assert all(s.feeds["x"].shape == (2, 3, 8) for s in kept)
    np.testing.assert_array_equal(kept[2].feeds["x"], x3[[2, 0]])  # the last row, then the first again


def test_xla_call_module_is_loaded_only_when_its_stablehlo_computes(tmp_path):
    """jax2tf's XlaCallModule passes the SavedModel allow-list when its StableHLO only computes; a custom_call
    (a call into a native function the process registered) is refused before TensorFlow loads the file."""
    require("jax")
    import jax.numpy as jnp

    from zoo import errors
    from zoo.converters.loaders.saved_model_check import check_saved_model

    check_saved_model(_jax_saved_model(lambda x: jnp.tanh(x) @ x.T, tmp_path / "ok"))
    with pytest.raises(errors.UnsafeModelError, match=r"XlaCallModule \(its StableHLO module holds "
                                                      r"stablehlo.custom_call @some_native_function"):
        check_saved_model(_hostile_saved_model(tmp_path / "hostile"))


CONVNEXT = "timm/test_convnext.r160_in1k"


@pytest.mark.slow  # ~3 min on 2 busy cores: onnx2tf and litert-torch fail first
def test_convnext_reaches_tflite_through_jax2tf_with_a_dynamic_batch(indexed, tmp_path):
    """timm ConvNeXt: onnx2tf stops at its GELU, litert-torch exports no dynamic batch; the last route, jax2tf's
    SavedModel through TFLiteConverter, passes with the batch dynamic (before litert-torch's static rung), is named
    in zoo.json, and the .tflite file agrees with timm's own model at a batch no input set has."""
    require("jax")
    require("litert")
    from builders import timm_repo, write_hf_cache
    from conftest import source_outputs

    files = timm_repo(CONVNEXT.split("/", 1)[1])
    write_hf_cache(indexed.hub_cache, CONVNEXT, files)
    out = pull_json("test_convnext", "--format", "tflite", env=OFFLINE)
    assert out["verified"] and out["conversion"]["chain"] == "torch -> jax -> tf -> tflite"
    tried = [(r["route"], r["rung"], r["result"]) for r in out["conversion"]["routes"]]
    assert [t[:2] for t in tried] == [("torch -> onnx -> tflite", "route"), ("torch -> tflite", "route"),
                                      ("torch -> jax -> tf -> tflite", "route")]
    assert tried[-1][2] == "passed" and all(t[2] != "passed" for t in tried[:-1])
    details = out["conversion"]["details"]
    contract = details["jax->tf"]["io_contract"]
    assert contract["dynamic_axes"] == {"input": {"0": "batch"}} and contract["shapes"] == "dynamic"
    assert "jax2tf" in details["tf->tflite"]["from"]
    from zoo.converters.parity.runners import artifact_runner

    x = np.random.default_rng(9).standard_normal((5, 3, 160, 160)).astype(np.float32)
    (got,) = artifact_runner(Path(out["path"]), ["input"], contract["outputs"])({"input": x})
    ref = source_outputs(files, CONVNEXT.split("/", 1)[1], x)
    assert ref.std() > 0
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def test_dotted_input_names_stay_the_saved_models_contract(tmp_path):
    """A cache input named ``past_key_values.0.key`` (GPT-2's contract): the jax2tf SavedModel's SignatureDef
    keeps the dotted name (what TF Serving reads), Python's loaded signature sanitises only its keyword, recorded
    in the io_contract; zoo's runner and its SavedModel loader bind by the SignatureDef's names, so the check
    and a SavedModel opened as a source keep the contract (before, the runner refused the sanitised keys)."""
    require("jax")
    import jax
    import jax.numpy as jnp
    from tensorflow.python.tools import saved_model_utils

    from zoo.converters.edges.jax_tf import convert_saved_model
    from zoo.converters.loaders.files import open_saved_model
    from zoo.converters.parity.runners import saved_model_runner

    def step(ids, past):
        return ids.astype(jnp.float32).sum(-1)[:, None, None, None] + past, past * 2.0

    args = (jax.ShapeDtypeStruct((2, 3), jnp.int32), jax.ShapeDtypeStruct((2, 4, 5, 8), jnp.float32))
    names = ["input_ids", "past_key_values.0.key"]
    contract = {"inputs": [{"name": names[0], "dtype": "int64"}, {"name": names[1], "dtype": "float32"}],
                "outputs": ["logits", "present.0.key"]}
    info = convert_saved_model(jax.export.export(jax.jit(step))(*args), contract, tmp_path)
    assert info["io_contract"]["python_keywords"] == {"past_key_values.0.key": "past_key_values_0_key"}
    signature = saved_model_utils.get_meta_graph_def(str(tmp_path), "serve").signature_def["serving_default"]
    assert sorted(signature.inputs) == sorted(names) and sorted(signature.outputs) == ["logits", "present.0.key"]
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 9, (2, 3)), "past_key_values.0.key": rng.standard_normal((2, 4, 5, 8)).astype(np.float32)}
    logits, present = saved_model_runner(tmp_path, names[::-1], ["logits", "present.0.key"])(feeds)
    np.testing.assert_allclose(logits, feeds["input_ids"].sum(-1)[:, None, None, None] + feeds[names[1]], rtol=1e-6)
    np.testing.assert_allclose(present, feeds[names[1]] * 2.0, rtol=1e-6)
    assert sorted(s["name"] for s in open_saved_model(tmp_path).spec) == names  # as a source: the contract's names

"""onnx-int4: 4-bit weight-only quantisation of decoders (onnxruntime's MatMulNBits), checked by greedy
generation with the int4 criteria (docs/tasks.md), refused for models that are not decoders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from task_builders import decoder_repo, in_process_pull, manifest_of

# GPT-2 layout at hidden 256 and a trained model's weight scale: its MatMuls (Conv1D, exported as Gemm) are
# most of its bytes, so 4-bit weights show in the file size
INT4_REPO = "zoo-test/gpt2-256"
REPOS = {INT4_REPO: lambda: decoder_repo("gpt2", hidden=256, init=0.02)}


@pytest.fixture(scope="module")
def int4_repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in REPOS.items()}


@pytest.fixture
def pull(indexed, int4_repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, int4_repos, capsys)


def _generation(manifest: dict) -> dict:
    return next(t for t in manifest["parity"]["tasks"] if t["check"] == "text-generation")


def test_int4_decoder_is_4_bit_and_passes_the_generation_check(pull, int4_repos):
    import onnx
    import onnxruntime as ort

    out = pull(INT4_REPO, "--format", "onnx-int4")
    assert out["verified"] and out["format"] == "onnx-int4"
    manifest = manifest_of(out)
    gen = _generation(manifest)
    assert gen["passed"] and gen["figures"]["bounds"] == {"logit_rel_diff": 0.2, "token_agreement": 0.7}
    assert gen["figures"]["next_token_agreement"] >= 0.9 and gen["figures"]["new_tokens"] == 20
    assert manifest["parity"]["precision"] == "int4"
    info = manifest["conversion"]["details"]["onnx->onnx-int4"]
    assert info["bits"] == 4 and info["block_size"] == 32 and info["matmuls"] >= 8
    model = onnx.load(out["path"])
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == info["matmuls"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nbits[0].attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32
    # every weight of 256 x N or larger is packed two per byte: no float MatMul/Gemm weight of that size is left
    inits = {t.name: t for t in model.graph.initializer}
    float_weights = [n.input[1] for n in model.graph.node if n.op_type in ("MatMul", "Gemm")
                     and n.input[1] in inits and int(np.prod(inits[n.input[1]].dims)) >= 256 * 256]
    assert not float_weights
    packed = inits[nbits[0].input[1]]
    assert packed.data_type == onnx.TensorProto.UINT8 and attrs["K"] * attrs["N"] == 2 * int(np.prod(packed.dims))
    fp32_bytes = len(int4_repos[INT4_REPO]["model.safetensors"])
    assert Path(out["path"]).stat().st_size < 0.35 * fp32_bytes  # fp32 weights 6.9 MB -> 1.8 MB
    # the cache stays float32 at the interface: a plain decode loop feeds it back
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[2].type == "tensor(float)" and session.get_outputs()[1].type == "tensor(float)"


def _scale_one_matmul(path: Path, factor: float) -> None:
    """The scales of the first MatMulNBits times ``factor``: an int4 file whose dequantised weights are wrong
    (a scale computed for the wrong range, /7 against /14)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    scales = next(t for t in model.graph.initializer if t.name == node.input[2])
    scales.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scales) * factor, scales.name))
    onnx.save(model, str(path))


def test_an_int4_file_with_a_corrupted_scale_fails_the_check(pull, monkeypatch):
    from zoo.converters import graph
    from zoo.converters.edges import onnx_variants

    real = onnx_variants.onnx_to_int4

    def corrupted(src, out_dir, ctx):
        path = real(src, out_dir, ctx)
        _scale_one_matmul(path, 2.0)
        return path

    key = ("onnx", "onnx-int4")
    monkeypatch.setitem(graph.EDGES, key, dataclasses.replace(graph.EDGES[key], run=corrupted))
    err = pull(INT4_REPO, "--format", "onnx-int4", "--exporter", "torchscript", code=6)  # no dynamo re-export
    assert err["error"] == "parity_failed"
    gen = next(t for t in err["report"]["tasks"] if t["check"] == "text-generation")
    assert gen["passed"] is False and ("agrees" in gen["reason"] or "logits" in gen["reason"]), gen


def test_int4_is_reachable_for_decoders_only():
    from zoo.converters import graph

    assert [e.target for e in graph.plan("torch", "onnx-int4")] == ["onnx", "onnx-int4"]
    assert "onnx-int4" in graph.reachable("torch") and "onnx-int4" in graph.reachable("torch", "text-generation")
    for task in ("image-classification", "fill-mask", None):  # the matrix and the catalog leave it out
        assert "onnx-int4" not in graph.reachable("torch", task) and "onnx-int8" in graph.reachable("torch", task)
    assert "onnx-int4" in graph.target_formats()


def test_int4_is_refused_for_a_model_that_is_not_a_decoder(indexed, cached_repo, tmp_path):
    """int4 is checked by greedy generation only: an image classifier exits 5 before anything is converted."""
    from conftest import TIMM_REPO, run_zoo

    cached_repo(TIMM_REPO)
    proc = run_zoo("pull", "test_resnet", "--format", "onnx-int4", "--json", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert "onnx-int4 is for text-generation" in proc.stderr and "onnx-int8" in proc.stderr
    assert not any((indexed.home / "artifacts").glob("*/zoo.json"))  # nothing converted, nothing published

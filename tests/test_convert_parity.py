"""`zoo convert PATH --to F` and `zoo parity`, through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json, run_zoo

OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="session")
def resnet_onnx_bytes(tmp_path_factory, timm_index_db, tiny_repos) -> bytes:
    """test_resnet pulled to ONNX once per session (its own ZOO_HOME and HF cache): the file these tests take as
    their input. Each test still gets the source in its own HF cache and a fresh ZOO_HOME (``resnet_onnx``)."""
    from builders import write_hf_cache

    home = tmp_path_factory.mktemp("resnet-onnx")
    (home / "zoo").mkdir()
    shutil.copyfile(timm_index_db, home / "zoo" / "registry.db")
    write_hf_cache(home / "hf" / "hub", TIMM_REPO, tiny_repos[TIMM_REPO])
    out = pull_json("test_resnet", env={**OFFLINE, "ZOO_HOME": str(home / "zoo"), "HF_HOME": str(home / "hf")})
    return Path(out["path"]).read_bytes()


@pytest.fixture
def resnet_onnx(indexed, cached_repo, tmp_path, resnet_onnx_bytes) -> Path:
    cached_repo(TIMM_REPO)
    path = tmp_path / "resnet.onnx"
    path.write_bytes(resnet_onnx_bytes)
    return path


@pytest.mark.parametrize("fmt", ["onnx-fp16", "onnx-int8", "onnx-opt"])
def test_convert_onnx_file_checks_against_the_file(resnet_onnx, fmt):
    import onnx
    import onnxruntime as ort

    proc = run_zoo("convert", str(resnet_onnx), "--to", fmt, "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["format"] == fmt and out["parity"]["passed"] and out["model"].startswith("file/")
    props = {p.key: p.value for p in onnx.load(out["path"]).metadata_props}
    assert props["zoo.source"] == TIMM_REPO and "zoo.converted_from" in props  # provenance carried over
    x = np.random.default_rng(3).standard_normal((2, 3, 160, 160)).astype(np.float32)
    ref = ort.InferenceSession(str(resnet_onnx)).run(None, {"input": x})[0]
    got = ort.InferenceSession(out["path"]).run(None, {"input": x})[0]
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).all()
    again = json.loads(run_zoo("convert", str(resnet_onnx), "--to", fmt, "--json", env=OFFLINE).stdout)
    assert again["cached"] and again["sha256"] == out["sha256"]


def test_convert_model_directory_imports_and_pulls(indexed, tiny_repos, tmp_path):
    src = tmp_path / "my model"
    src.mkdir()
    for name, data in tiny_repos["zoo-test/tiny-vit-classifier"].items():
        (src / name).write_bytes(data)
    out = json.loads(run_zoo("convert", str(src), "--to", "onnx", "--json", env=OFFLINE).stdout)
    assert out["model"] == "local/my-model" and out["parity"]["passed"]


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["/nonexistent/model.onnx", "--to", "onnx-int8"], 3, "does not exist"),
        (["{tmp}/weights.bin", "--to", "onnx"], 7, "not a readable pickle"),  # a checkpoint's header, then junk
        (["{tmp}/notes.xyz", "--to", "onnx"], 5, "cannot convert"),
        (["{onnx}", "--to", "keras"], 5, "reachable from onnx"),
    ],
)
def test_convert_bad_input(resnet_onnx, tmp_path, args, code, needle):
    (tmp_path / "weights.bin").write_bytes(b"\x80\x04not really")
    (tmp_path / "notes.xyz").write_text("no model in here\n")
    args = [a.format(tmp=tmp_path, onnx=resnet_onnx) for a in args]
    proc = run_zoo("convert", *args, env=OFFLINE)
    assert proc.returncode == code and needle in proc.stderr, proc.stderr


def test_convert_refuses_external_data_outside_the_directory(resnet_onnx, tmp_path):
    import onnx

    model = onnx.load(str(resnet_onnx))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    (tmp_path / "escape.bin").write_bytes(tensor.raw_data)  # the data really is there, one level up
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../escape.bin"), ("offset", "0"), ("length", str((tmp_path / "escape.bin").stat().st_size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.onnx").write_bytes(model.SerializeToString())  # onnx.save itself refuses '..' now
    proc = run_zoo("convert", str(evil / "model.onnx"), "--to", "onnx-opt", env=OFFLINE)
    assert proc.returncode == 7 and "outside the model's directory" in proc.stderr


def test_int8_of_an_fp16_graph_is_refused_with_the_reason(resnet_onnx):
    out = json.loads(run_zoo("convert", str(resnet_onnx), "--to", "onnx-fp16", "--json", env=OFFLINE).stdout)
    proc = run_zoo("convert", out["path"], "--to", "onnx-int8", env=OFFLINE)
    assert proc.returncode == 5 and "fp16" in proc.stderr


def test_parity_model_against_artifact_and_dtype_classes(resnet_onnx):
    ok = run_zoo("parity", "test_resnet", str(resnet_onnx), "--json", env=OFFLINE)
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads(ok.stdout)
    assert report["parity"]["passed"] and report["reference"].startswith(TIMM_REPO)
    fp16 = json.loads(run_zoo("convert", str(resnet_onnx), "--to", "onnx-fp16", "--json", env=OFFLINE).stdout)["path"]
    strict = run_zoo("parity", "test_resnet", fp16, "--dtype", "float32", "--json", env=OFFLINE)  # fp16 at fp32: fails
    assert strict.returncode == 6 and json.loads(strict.stdout)["exit_code"] == 6
    inferred = run_zoo("parity", "test_resnet", fp16, env=OFFLINE)  # the candidate's graph says fp16, as convert knows
    assert inferred.returncode == 0 and "parity passed" in inferred.stdout and "float16 tolerance" in inferred.stdout


def test_parity_file_against_file_names_the_worst_outputs(resnet_onnx, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(resnet_onnx))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.02, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    proc = run_zoo("parity", str(resnet_onnx), str(broken), env=OFFLINE)
    assert proc.returncode == 6 and "worst outputs" in proc.stderr and "logits" in proc.stderr


# What a PyTorch model converts to, and through which chain: written out here (README's formats table),
# not derived from the graph the matrix itself walks.
TORCH_CHAINS = {
    "onnx": "torch -> onnx",
    "onnx-fp16": "torch -> onnx -> onnx-fp16",
    "onnx-int8": "torch -> onnx -> onnx-int8",
    "onnx-opt": "torch -> onnx -> onnx-opt",
    "pt2": "torch -> pt2",
    "tf": "torch -> onnx -> tf",
    "tflite": "torch -> onnx -> tflite",  # litert-torch is tried first: it cannot export the dynamic batch of a CNN
    "tflite-int8": "torch -> onnx -> tflite -> tflite-int8",
    "tflite-fp16": "torch -> onnx -> tflite -> tflite-fp16",
    "jax": "torch -> jax",
}


def test_a_pytorch_image_model_reaches_every_written_out_format_by_its_chain():
    """The formats ``zoo parity --matrix`` walks for a timm model, and the chain planned for each, against the
    written-out table (the slow test below runs the matrix itself)."""
    from zoo.converters import graph

    assert graph.reachable("torch", "image-classification") == sorted(TORCH_CHAINS)
    assert {fmt: graph.chain_name(graph.plan("torch", fmt)) for fmt in TORCH_CHAINS} == TORCH_CHAINS


@pytest.mark.slow  # ~1 min: every format converted and checked (each edge has its own default test in test_graph)
def test_parity_matrix_covers_every_reachable_format(indexed, cached_repo):
    cached_repo(TIMM_REPO)
    proc = run_zoo("parity", "--matrix", "test_resnet", "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["rows"]
    assert {r["format"]: r.get("chain") for r in rows} == TORCH_CHAINS, rows
    assert [r["format"] for r in rows] == sorted(TORCH_CHAINS)
    assert all(r["passed"] for r in rows)
    assert len({r["inputs_sha256"] for r in rows}) == 1  # every format checked on the same inputs
    table = run_zoo("parity", "--matrix", "test_resnet", env=OFFLINE).stdout
    assert table.startswith("| test_resnet |") and "onnx-int8" in table


def test_parity_usage_errors(indexed):
    assert run_zoo("parity", "only-one").returncode == 2
    proc = run_zoo("parity", "test_resnet", "/no/such.onnx", env=OFFLINE)
    assert proc.returncode == 3 and "REFERENCE CANDIDATE" in proc.stderr

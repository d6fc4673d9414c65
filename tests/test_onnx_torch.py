"""ONNX -> PyTorch (zoo.onnx_torch) on the ONNX files zoo writes for every tiny
family, both torch.onnx exporters and tf2onnx; the .pt2 safety checks; and
``zoo convert`` from .onnx to .pt2 and back through the CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo
from onnx_families import (
    EXPORTERS,
    FAMILIES,
    KERAS_FAMILY,
    TEXT_FAMILIES,
    build_family,
    export_family,
)

OFFLINE = {"HF_HUB_OFFLINE": "1"}
DEFAULT_RUN = {("test_resnet", "torchscript"), ("test_vit", "torchscript"), ("tiny-bert-sst", "dynamo"),
               ("tiny-bert-sst", "torchscript"), ("test_convnext", "dynamo")}


def _cases() -> list:
    cases = []
    for name in FAMILIES:
        for exporter in (("tf2onnx",) if name == KERAS_FAMILY else EXPORTERS):
            marks = () if (name, exporter) in DEFAULT_RUN else (pytest.mark.slow,)
            cases.append(pytest.param(name, exporter, marks=marks, id=f"{name}-{exporter}"))
    return cases


@pytest.fixture(scope="session")
def family_onnx(tmp_path_factory):
    """(family, exporter) -> (Family, ONNX path), exported once per session."""
    root = tmp_path_factory.mktemp("families")
    families: dict = {}
    done: dict = {}

    def get(name: str, exporter: str):
        if (name, exporter) not in done:
            family = families.setdefault(name, build_family(name))
            done[(name, exporter)] = (family, export_family(family, exporter, root / name / exporter))
        return done[(name, exporter)]

    return get


def _tolerance(ref: np.ndarray) -> dict:
    return {"atol": 1e-4 * max(1.0, float(np.abs(ref).max())), "rtol": 1e-4}  # zoo's fp32 parity tolerance


@pytest.mark.parametrize("name, exporter", _cases())
def test_family_onnx_to_pt2_matches_onnxruntime_and_source(family_onnx, tmp_path, name, exporter):
    import onnxruntime as ort
    import torch

    from zoo.converters.loaders.pt2_archive import load_program
    from zoo.converters.onnx_torch.module import export_pt2

    family, onnx_path = family_onnx(name, exporter)
    info = export_pt2(onnx_path, tmp_path / "model.pt2")
    assert info["converter"] == "zoo.onnx_torch" and info["parameters"] > 0
    module = load_program(tmp_path / "model.pt2")[0].module()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shapes = [(1, 16), (3, 16)] + ([(2, 7), (3, 33)] if name in TEXT_FAMILIES else [])
    for seed, (batch, seq) in enumerate(shapes):
        feeds = family.feeds(batch, seq, seed=seed)
        with torch.no_grad():
            got = [t.numpy() for t in module(*[torch.from_numpy(feeds[n]) for n in family.model.input_names])]
        for g, via_ort, source in zip(got, session.run(None, feeds), family.reference(feeds)):
            assert g.shape == via_ort.shape == tuple(source.shape)
            np.testing.assert_allclose(g, via_ort, **_tolerance(via_ort))
            np.testing.assert_allclose(g, source, **_tolerance(source))
        assert np.std(got[0]) > 0  # outputs depend on the input: the comparison can fail


@pytest.fixture(scope="session")
def small_pt2(tmp_path_factory) -> Path:
    """A .pt2 zoo's converter wrote, with a weight and a lifted constant, to tamper with."""
    import onnx
    from onnx import helper, numpy_helper

    from zoo.converters.onnx_torch.module import export_pt2

    root = tmp_path_factory.mktemp("pt2")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Gather", ["h", "idx"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(np.ones((4, 5), np.float32), "w"), numpy_helper.from_array(np.array([0, 2], np.int64), "idx")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", 1, ["batch", 4])],
                              [helper.make_tensor_value_info("y", 1, ["batch", 2])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(root / "small.onnx"))
    export_pt2(root / "small.onnx", root / "small.pt2")
    with zipfile.ZipFile(root / "small.pt2") as archive:
        configs = {n.rsplit("/", 1)[1]: json.loads(archive.read(n)) for n in archive.namelist() if n.endswith("_config.json")}
    assert all(c["config"] for c in configs.values()) and len(configs) == 2  # something to tamper with in each
    return root / "small.pt2"


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the archive, letting ``edit(relative name, bytes) -> bytes | None`` change or drop entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for name in zin.namelist():
            data = edit(name.split("/", 1)[1], zin.read(name))
            if data is not None:
                zout.writestr(name, data)
        extra = edit(None, b"")
        if extra:
            zout.writestr(f"{root}/{extra[0]}", extra[1])
    return dst


def _json_edit(target: str, change):
    def edit(rel, data):
        if rel is None:
            return None
        if rel.endswith(target):
            obj = json.loads(data)
            change(obj)
            return json.dumps(obj).encode()
        return data
    return edit


class _Evil:
    def __reduce__(self):
        return (print, ("pickle ran",))


def _evil_sample_inputs(rel, data):
    if rel is None:
        return None
    if rel.startswith("data/sample_inputs/"):
        import pickle

        return pickle.dumps(((_Evil(),), {}))
    return data


def _pickled_weights(obj):
    for meta in obj["config"].values():
        meta["use_pickle"] = True


def _guard(obj):
    obj["guards_code"] = ["__import__('os').system('true') or L['inputs'][0].size()[0] <= 4"]


def _target(obj):
    obj["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"


@pytest.mark.parametrize(
    "edit, needle",
    [
        (_json_edit("_weights_config.json", _pickled_weights), "pickled object"),
        (_json_edit("_constants_config.json", _pickled_weights), "pickled object"),
        (_json_edit("models/model.json", _guard), "guard code"),
        (_json_edit("models/model.json", _target), "torch.os.system"),
        (_evil_sample_inputs, "full unpickle"),
        (lambda rel, data: ("data/aotinductor/model/model.so", b"\x7fELF") if rel is None else data, "aotinductor"),
        (lambda rel, data: ("data/constants/opaque_obj_0", b"x") if rel is None else data, "opaque_obj_0"),
    ],
    ids=["pickled-weights", "pickled-constants", "guard-code", "graph-target", "sample-inputs", "aoti-library",
         "opaque-object"],
)
def test_archive_check_refuses_what_would_run_code(small_pt2, tmp_path, capsys, edit, needle):
    from zoo import errors
    from zoo.converters.loaders.pt2_archive import check_archive, load_program

    check_archive(small_pt2)  # the untouched file passes
    bad = _rewrite(small_pt2, tmp_path / "bad.pt2", edit)
    with pytest.raises(errors.UnsafeModelError) as info:
        load_program(bad)
    assert needle in info.value.message and "torch.export.load" in info.value.message
    assert "pickle ran" not in capsys.readouterr().out


def test_archive_check_refuses_non_archives(tmp_path):
    from zoo import errors
    from zoo.converters.loaders.pt2_archive import check_archive

    (tmp_path / "x.pt2").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(errors.InvalidModelError):
        check_archive(tmp_path / "x.pt2")
    with zipfile.ZipFile(tmp_path / "legacy.pt2", "w") as z:  # torch < 2.7 layout: no archive_format
        z.writestr("legacy/serialized_exported_program.json", "{}")
    with pytest.raises(errors.InvalidModelError, match="archive_format"):
        check_archive(tmp_path / "legacy.pt2")


def test_convert_onnx_to_pt2_and_back_through_the_cli(family_onnx, indexed, tmp_path):
    import onnx
    import onnxruntime as ort
    import torch

    family, onnx_path = family_onnx("tiny-bert-sst", "torchscript")
    proc = run_zoo("convert", str(onnx_path), "--to", "pt2", "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["format"] == "pt2" and out["verified"] and out["parity"]["passed"]
    assert out["conversion"]["chain"] == "onnx -> pt2" and out["conversion"]["edges"][0]["tool"] == "zoo.onnx_torch"
    feeds = family.feeds(3, 33, seed=9)  # a batch and sequence length parity did not use
    program = torch.export.load(out["path"]).module()
    with torch.no_grad():
        got = program(*[torch.from_numpy(feeds[n]) for n in family.model.input_names])[0].numpy()
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, **_tolerance(ref))

    back = run_zoo("convert", out["path"], "--to", "onnx", "--json", env=OFFLINE)
    assert back.returncode == 0, back.stderr[-3000:]
    result = json.loads(back.stdout)
    assert result["parity"]["passed"] and result["conversion"]["chain"] == "pt2 -> onnx"
    model = onnx.load(result["path"])
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert [i.name for i in model.graph.input] == family.model.input_names and dims[0] == ["batch", "sequence"]
    again = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(again, ref, **_tolerance(ref))
    cached = json.loads(run_zoo("convert", out["path"], "--to", "onnx", "--json", env=OFFLINE).stdout)
    assert cached["cached"] and cached["sha256"] == result["sha256"]


def test_unknown_op_fails_with_exit_8_and_nothing_stored(indexed, tmp_path):
    """An op onnxruntime runs but zoo.onnx_torch does not implement is a conversion failure naming the op
    and its node; an op nothing can run (a custom domain) fails earlier, as a source that cannot run."""
    from onnx import helper
    from test_onnx_torch_ops import X, model_for

    model = model_for("Relu", [("x", X)])
    model.graph.node.append(helper.make_node("Shrink", ["y0"], ["z"], name="mystery_node", lambd=0.5))
    model.graph.output.append(helper.make_tensor_value_info("z", 1, None))
    path = tmp_path / "shrink.onnx"
    path.write_bytes(model.SerializeToString())
    proc = run_zoo("convert", str(path), "--to", "pt2", "--json", env=OFFLINE)
    assert proc.returncode == 8, proc.stderr[-2000:]
    error = json.loads(proc.stdout)
    assert error["error"] == "conversion_failed" and "zoo.onnx_torch" in error["message"]
    assert "Shrink" in error["message"] and "mystery_node" in error["message"]

    custom = model_for("Relu", [("x", X)])
    custom.graph.node.append(helper.make_node("Frobnicate", ["y0"], ["z"], name="odd_node", domain="com.example"))
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    path = tmp_path / "custom.onnx"
    path.write_bytes(custom.SerializeToString())
    proc = run_zoo("convert", str(path), "--to", "pt2", "--json", env=OFFLINE)
    assert proc.returncode == 10, proc.stderr[-2000:]
    error = json.loads(proc.stdout)
    assert error["error"] == "source_model_failed" and "Frobnicate" in error["message"]
    home = indexed.home
    for sub in ("artifacts", "quarantine", "tmp"):
        assert not any((home / sub).glob("*")) if (home / sub).exists() else True, sub


def test_convert_refuses_a_pt2_zoo_did_not_write(indexed, small_pt2, tmp_path):
    import shutil

    foreign = tmp_path / "foreign.pt2"
    shutil.copyfile(small_pt2, foreign)  # a valid archive, but not in this ZOO_HOME's registry
    proc = run_zoo("convert", str(foreign), "--to", "onnx", env=OFFLINE)
    assert proc.returncode == 7 and "zoo did not write" in proc.stderr, proc.stderr[-2000:]
    proc = run_zoo("parity", str(foreign), str(foreign), env=OFFLINE)
    assert proc.returncode == 7 and "zoo did not write" in proc.stderr


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_fp16_and_int8_onnx_files_are_checked_at_their_own_precision(family_onnx, indexed, tmp_path, precision):
    """An fp16 or int8 file re-expressed as fp32 torch ops differs from onnxruntime's own fp16/int8 kernels
    by their rounding: zoo checks onnx -> pt2 at the source's precision class, not at fp32."""
    import onnx

    from zoo.converters.parity.check import default_tolerance

    _, onnx_path = family_onnx("test_resnet", "torchscript")
    path = tmp_path / f"resnet-{precision}.onnx"
    if precision == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True), str(path))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    proc = run_zoo("convert", str(path), "--to", "pt2", "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["parity"]["passed"] and out["verified"]
    assert out["parity"]["tolerance"]["atol"] == default_tolerance(precision).atol != default_tolerance("float32").atol

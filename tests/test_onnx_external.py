"""``onnx_external.consolidate``: an exported graph brought to zoo's layout (``model.onnx`` + one
``model.onnx.data``) a tensor at a time, whatever layout the exporter wrote: one file per tensor (TorchScript
above 2 GiB), one file of another name, or the weights inline. The same real graph run by onnxruntime before
and after; a location outside the folder or a span past its file's end is refused before anything is moved."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zoo import errors

DATA = "model.onnx.data"
BIG = (512, 512)  # 1 MiB of float32: starts on a page boundary in the data file


def _model():
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    # b1 (2 KiB) is written first, so w1 (1 MiB) needs padding to start on a page boundary
    weights = {"b1": rng.standard_normal(512).astype(np.float32), "w1": rng.standard_normal(BIG).astype(np.float32),
               "w2": rng.standard_normal((512, 8)).astype(np.float32), "s": np.array(0.5, np.float32),
               "b2": rng.standard_normal(8).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "w2"], ["h2"]), helper.make_node("Mul", ["h2", "s"], ["h3"]),
             helper.make_node("Add", ["h3", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 512])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(path: Path) -> np.ndarray:
    import onnxruntime as ort

    x = np.linspace(-1, 1, 512, dtype=np.float32)[None]
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _entries(path: Path) -> dict[str, dict[str, str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer}


def _write(folder: Path, layout: str) -> Path:
    """The model in ``layout``: 'per-tensor' files, the same named only by location (as TorchScript writes
    them above 2 GiB: no offset, no length), one file of 'another-name', or 'inline'."""
    import onnx

    path = folder / "model.onnx"
    model = _model()
    if layout == "inline":
        onnx.save_model(model, str(path))
        return path
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=layout == "another-name",
                    location="weights.bin", size_threshold=0)
    if layout == "torchscript":
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            kept = [(e.key, e.value) for e in tensor.external_data if e.key == "location"]
            del tensor.external_data[:]
            for key, value in kept:
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
        onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("copy", ["kernel", "chunks"])
@pytest.mark.parametrize("layout", ["per-tensor", "torchscript", "another-name", "inline"])
def test_consolidate_streams_every_layout_into_one_data_file(tmp_path, layout, copy, monkeypatch):
    """``copy``: copy_file_range, or the chunked copy of a filesystem that refuses it (EXDEV)."""
    import errno

    from zoo.converters.edges.onnx_external import INLINE_BELOW, consolidate

    if copy == "chunks":
        def refuse(*args):
            raise OSError(errno.EXDEV, "cross-device copy refused")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    path = _write(tmp_path, layout)
    before = _run(path)
    assert consolidate(path, 1_000_000) is True  # 1.03 MB of weights, told by their shapes when no length is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", DATA]  # the old files are gone
    np.testing.assert_array_equal(_run(path), before)  # every tensor's bytes where its entry says
    entries = _entries(path)
    assert {e.get("location") for name, e in entries.items() if name != "s" and name != "b2"} == {DATA}
    assert entries["s"] == {} and entries["b2"] == {}  # under INLINE_BELOW bytes: back in the graph
    assert 8 * 4 < INLINE_BELOW <= 512 * 4
    assert int(entries["w1"]["offset"]) % 4096 == 0 and int(entries["w1"]["length"]) == 4 * 512 * 512
    size = (tmp_path / DATA).stat().st_size
    assert size == max(int(e["offset"]) + int(e["length"]) for e in entries.values() if e)
    mtime = (tmp_path / DATA).stat().st_mtime_ns
    assert consolidate(path, 1_000_000) is True and (tmp_path / DATA).stat().st_mtime_ns == mtime  # in the layout: untouched


def test_consolidate_brings_small_weights_back_into_one_file(tmp_path):
    from zoo.converters.edges.onnx_external import consolidate

    path = _write(tmp_path, "per-tensor")
    before = _run(path)
    assert consolidate(path, 10**9) is False
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"] and not any(_entries(path).values())
    np.testing.assert_array_equal(_run(path), before)


@pytest.mark.parametrize("bad", ["outside", "past-the-end"])
def test_consolidate_refuses_a_location_outside_or_a_span_past_the_end(tmp_path, bad):
    import onnx

    from zoo.converters.edges.onnx_external import consolidate

    folder = tmp_path / "export"
    folder.mkdir()
    path = _write(folder, "another-name")
    model = onnx.load(str(path), load_external_data=False)
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    for entry in w1.external_data:
        if bad == "outside" and entry.key == "location":
            (tmp_path / "secret.bin").write_bytes((folder / "weights.bin").read_bytes())
            entry.value = "../secret.bin"
        if bad == "past-the-end" and entry.key == "offset":
            entry.value = str((folder / "weights.bin").stat().st_size - 16)
    onnx.save_model(model, str(path))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(errors.UnsafeModelError, match="w1"):
        consolidate(path, 0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # nothing written, moved or removed

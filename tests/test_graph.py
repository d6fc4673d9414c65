"""The conversion graph: planning, every registered edge on real tiny models,
chains checked end to end against the source, and --allow-mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json
from graph_cases import (
    EDGE_CASES,
    FILE_CASES,
    FILE_NODES,
    SOURCE_CASES,
    TESTED_ELSEWHERE,
    check_edge_on_a_real_model,
    is_keras,
    node,
    values,
)

from zoo import errors
from zoo.converters import graph


def test_every_registered_edge_has_a_case():
    covered = {(e.source, e.target) for fmt, model in map(values, EDGE_CASES) for e in graph.plan(node(model), fmt)}
    covered |= {(e.source, e.target) for fmt, kind in FILE_CASES for e in graph.plan(FILE_NODES[kind], fmt)}
    covered |= {(e.source, e.target) for fmt, node in SOURCE_CASES for e in graph.plan(node, fmt)}
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


def test_a_tools_failure_is_quoted_by_its_first_line():
    """What an edge's error quotes of a converter's pages-long failure: its first non-empty line, cut; torch.onnx's
    ``#`` comment lines passed over; the exception's type in front where asked (alone for an empty message)."""
    from zoo.converters.edges.torch_onnx import _first_line

    exc = RuntimeError("\n  # the exporter's comment\n  Unsupported: aten::foo  \n" + "IR " * 500)
    assert errors.first_line(exc) == "# the exporter's comment"
    assert errors.first_line(exc, skip="  #") == "Unsupported: aten::foo"
    assert errors.first_line(RuntimeError("x" * 500), 40) == "x" * 40
    assert errors.first_line(exc, 11, skip="  #", typed=True) == "RuntimeError: Unsupported"
    assert errors.first_line(ValueError(""), typed=True) == "ValueError" and errors.first_line(ValueError("")) == ""
    assert _first_line(RuntimeError("# comment\nreal line")) == "real line"
    assert _first_line(RuntimeError("# only a comment")) == "# only a comment"


def test_unreachable_format_names_the_reachable_ones():
    with pytest.raises(errors.UnsupportedFormatError) as info:
        graph.plan("torch", "caffe")
    assert "onnx-int8" in info.value.hint and "pt2" in info.value.hint


@pytest.mark.parametrize("fmt, model", [c for c in EDGE_CASES if not is_keras(c)])
def test_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model):
    check_edge_on_a_real_model(indexed, cached_repo, tiny_repos, keras_cache, fmt, model)


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

    from zoo.cli import main as cli
    from zoo.converters.edges import torch_onnx

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

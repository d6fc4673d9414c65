"""Where onnx2tf's edges (onnx -> tf, onnx -> tflite) and jax2tf's go wrong (issue 14), and where every route of a
pull that none passes diverges: onnx2tf's conversion of a graph with every node output exposed, read back by ONNX
name, on converters broken on purpose and on four mistakes onnx2tf 1.28.8 really makes (tests/onnx2tf_cases.py).
Apart from tests/test_locate.py (whose helpers and fixtures it shares) so the two files run on separate workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_locate import _break_lowering, _feeds, _jax_file, _ort, _sets, _tiny, make_onnx_pair

from zoo.converters.parity.report import InputSet


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    return make_onnx_pair(tmp_path_factory.mktemp("onnx"))


# --- onnx -> tf / tflite (onnx2tf) ------------------------------------------------------------------------------
BROKEN_CONV = "/inner/inner.2/Conv"  # the second Conv: onnx2tf runs it channels-last (NHWC)


class Sabotage(NamedTuple):
    outputs: list[int]  # the output count of each graph handed to onnx2tf
    convs: list[str]  # the name of the Conv broken in each


def _sabotage(monkeypatch, only_one_output: bool = False) -> Sabotage:
    """Make onnx2tf convert the graph's second Conv wrong (``BROKEN_CONV`` in the tiny model; the first of a timm
    ResNet, its stem, is not the one to break): the private copy the onnx2tf edge hands it gets that Conv's weights
    5% off (what a wrong transposition or constant inside the converter does), in every conversion (the artifact's
    and the locator's marked one) or, ``only_one_output``, only in a graph with one output (the artifact's: the
    locator's marked graph exposes more)."""
    import zoo.converters.edges.tf as tf_edges

    seen = Sabotage([], [])

    def broken_copy(src: Path, dst: Path) -> None:
        model = onnx.load(str(src))
        conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
        seen.outputs.append(len(model.graph.output))
        seen.convs.append(conv.name)
        for init in model.graph.initializer:
            if init.name == conv.input[1] and (len(model.graph.output) == 1 or not only_one_output):
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
        onnx.save(model, str(dst))

    monkeypatch.setattr(tf_edges, "_copy_onnx", broken_copy)
    return seen


def _onnx2tf_file(path: Path, target: str, into: Path) -> Path:
    from zoo.converters.edges.tf import onnx_to_saved_model, onnx_to_tflite
    from zoo.converters.graph import EdgeContext

    into.mkdir()
    return (onnx_to_saved_model if target == "tf" else onnx_to_tflite)(path, into, EdgeContext(opset=17))


@pytest.mark.slow  # ~20 s each; through the pipeline: test_when_every_route_fails_each_is_located (tf), the convert (tflite)
@pytest.mark.parametrize("target", ["tf", "tflite"])
def test_a_wrong_onnx2tf_conversion_is_located_at_the_onnx_node(onnx_pair, tmp_path, monkeypatch, target):
    """onnx2tf's files carry Keras names; zoo exposes every node output, converts again and compares by ONNX name:
    the broken Conv is named (its NHWC tensor compared in the ONNX layout), after a torch -> onnx edge whose
    layers all match too."""
    from test_targets import require

    require("tf")
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate
    from zoo.converters.parity.runners import artifact_runner

    path, _ = onnx_pair
    seen = _sabotage(monkeypatch).outputs
    artifact = _onnx2tf_file(path, target, tmp_path / "out")
    sets = _sets()
    report = check_parity(_ort(path), artifact_runner(artifact, ["x"], ["y"]), sets, output_names=["y"])
    assert not report.passed
    found = locate(report, [("onnx", target)], [artifact], sets, ["x"], None, report.tolerance, source_file=path)
    assert found["edge"] == f"onnx->{target}" and found["node"] == BROKEN_CONV and found["op_type"] == "Conv"
    assert found["index"] == 2 and found["reproduced"] is True and found["marked_vs_artifact_max_abs_diff"] == 0.0
    assert found["input_set"] == "random-b1-s0" and found["shape"] == [1, 8, 4, 4] and found["compared"] >= 9
    assert found["grows_most"]["node"] == BROKEN_CONV and found["grows_most"]["input_rel_diff"] == 0.0
    assert abs(found["max_rel_diff"] - 0.05) < 0.01 and seen[0] == 1 and seen[1] > 8  # the marked graph: every node
    assert describe(found)[0].startswith(f"first diverging node of onnx->{target}: {BROKEN_CONV} (Conv): max rel diff")
    # the pipeline's chain torch -> onnx -> tf: the PyTorch layers match the ONNX file, so onnx2tf's edge is looked at
    chained = locate(report, [("torch", "onnx"), ("onnx", target)], [path, artifact], sets, ["x"], _tiny(),
                     report.tolerance)
    assert chained["edge"] == f"onnx->{target}" and chained["node"] == BROKEN_CONV
    assert chained["before"] == "every layer of the torch->onnx conversion matches"
    json.dumps(found)


@pytest.mark.parametrize("kind, target, node", [pytest.param("channel-std", "tflite", "/Gather", marks=pytest.mark.slow),
                                                ("reflect-pad", "tf", "/Pad"),
                                                pytest.param("reflect-pad", "tflite", "/Pad", marks=pytest.mark.slow),
                                                pytest.param("cumsum-h", "tf", "/CumSum", marks=pytest.mark.slow)])
def test_onnx2tfs_own_mistakes_fail_the_convert_naming_the_node(tmp_path, capsys, zoo_env, kind, target, node):
    """Through the pipeline, on mistakes onnx2tf really makes (no sabotage): ``zoo convert model.onnx --to tflite``
    (onnx2tf, the one route from ONNX) exits 6, nothing published, and the report and the error name the node
    onnx2tf got wrong, by its ONNX name: values off, an op that raises, a shape no layout explains. (The default run
    has the raise; ``test_when_every_route_fails_each_is_located`` locates a marked onnx2tf conversion through a pull,
    and ``test_layouts_are_matched_as_onnx2tf_keeps_them`` the shape-vector reading ``channel-std`` needs.)"""
    from test_targets import require

    require("tf")
    from zoo.cli import main as cli

    from onnx2tf_cases import build_op_model

    path = build_op_model(kind, tmp_path / f"{kind}.onnx")
    code = cli.main(["convert", str(path), "--to", target, "--json"])
    captured = capsys.readouterr()
    assert code == 6, captured.err[-2000:]
    found = json.loads(captured.out.strip().splitlines()[-1])["divergence"]
    assert found["edge"] == f"onnx->{target}" and found["node"] == node
    assert f"first diverging node of onnx->{target}: {node} ({node[1:]})" in captured.err
    if kind != "reflect-pad":  # values off
        assert found["reproduced"] is True and found["what"] == "values differ"
        assert found["grows_most"]["node"] == node and found["grows_most"]["input_rel_diff"] == 0.0
    elif target == "tf":  # the SavedModel raises: TensorFlow's error names onnx2tf's op, which carries the ONNX name
        assert found["what"].startswith("raised at run time: InvalidArgumentError: paddings must be less than")
    else:  # the .tflite file pads the wrong axes: a shape no layout explains, before any value differs
        assert found["shape"] == [1, 8, 35, 35] and found["what"].startswith("shape (4, 35, 32, 8) in the converted")
    assert not any((zoo_env.home / "artifacts").glob("*/zoo.json"))  # nothing published


@pytest.mark.slow  # ~11 s: two onnx2tf conversions; the note it checks is rare
def test_an_onnx2tf_failure_that_vanishes_when_tensors_are_exposed_is_said_so(onnx_pair, tmp_path, monkeypatch):
    """Exposing intermediate tensors can change what a converter does; a failure the marked conversion does not show
    is not pinned on a node: the report says it did not reproduce and how far the two conversions are apart."""
    from test_targets import require

    require("tf")
    from zoo.converters.parity.onnx2tf_layers import locate_onnx2tf

    path, _ = onnx_pair
    _sabotage(monkeypatch, only_one_output=True)
    artifact = _onnx2tf_file(path, "tflite", tmp_path / "out")
    found = locate_onnx2tf(path, artifact, _feeds(), ["x"], ["y"], target="tflite", atol=1e-4, rtol=1e-4)
    assert found["node"] is None and found["reproduced"] is False and found["marked_vs_artifact_max_abs_diff"] > 1e-3
    assert found["note"].startswith("the failure did not reproduce with the intermediate tensors exposed")


def test_layouts_are_matched_as_onnx2tf_keeps_them():
    from zoo.converters.parity.onnx2tf_layers import as_laid

    ref = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert np.array_equal(as_laid(np.transpose(ref, (0, 2, 3, 1)), ref), ref)  # NHWC back to NCHW
    square = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)  # C == H == W: the best fit, not the first
    assert np.array_equal(as_laid(np.transpose(square, (0, 2, 3, 1)), square), square)
    assert as_laid(np.zeros((3, 7), np.float32), ref).shape == (3, 7)  # no transposition fits: as it is
    shape = np.array([1, 8, 32, 16])  # Shape of an NCHW tensor; onnx2tf's, of its NHWC one, lists C last
    assert as_laid(np.array([1, 32, 16, 8]), shape).tolist() == [1, 8, 32, 16]
    assert as_laid(np.array([1, 32, 8, 16]), shape).tolist() == [1, 32, 8, 16]  # not a layout of it: a real difference


def test_when_every_route_fails_each_is_located(indexed, cached_repo, monkeypatch, capsys):
    """A pull whose every rung fails parity says where each one diverges, in ``conversion.routes``, not only the
    first: onnx2tf's at the Conv it converted wrong (by ONNX name, after the torch -> onnx layers matched), torchax's
    at the first ReLU it lowers wrong (~35 s: test_resnet through both routes to tf, each located)."""
    import jax.numpy as jnp
    import torch
    from conftest import TIMM_REPO
    from test_targets import require

    require("tf")
    require("jax")
    from zoo.cli import main as cli

    broken = _sabotage(monkeypatch).convs
    _break_lowering(monkeypatch, torch.ops.aten.relu, lambda x: jnp.maximum(x, 0) * 1.05)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(TIMM_REPO)
    code = cli.main(["pull", "test_resnet", "--format", "tf", "--json"])
    captured = capsys.readouterr()
    assert code == 6, captured.err[-2000:]
    err = json.loads(captured.out.strip().splitlines()[-1])
    routes = json.loads((Path(err["quarantined"]) / "zoo.json").read_text())["conversion"]["routes"]
    assert len(routes) >= 2 and all(r["result"] == "failed parity" for r in routes), routes
    by_tool = {r["tools"][-1]: r["divergence"] for r in routes if r["rung"] == "route"}
    broken_conv = by_tool["onnx2tf"]["node"]  # the exporter's name for it (the dynamo re-export's, TorchScript's failed too)
    assert by_tool["onnx2tf"]["edge"] == "onnx->tf" and broken_conv in broken and by_tool["onnx2tf"]["op_type"] == "Conv"
    assert by_tool["onnx2tf"]["before"] == "every layer of the torch->onnx conversion matches"
    assert by_tool["jax2tf"]["edge"] == "torch->jax" and by_tool["jax2tf"]["module_type"] == "ReLU"
    assert err["divergence"] == routes[0]["divergence"]  # the report's: the first route's
    assert f"first diverging node of onnx->tf: {broken_conv} (Conv)" in captured.err
    assert "route torch -> jax -> tf (torchax + jax.export, jax2tf): first diverging layer:" in captured.err



def test_a_wrong_jax2tf_file_is_pinned_on_its_edge(tmp_path):
    """jax2tf's SavedModel is one XlaCallModule op and keeps no intermediate values: when every torchax layer and the
    .jax file match the source on the failing set and the SavedModel does not, each file of the chain is run on that
    set and the note names jax->tf as the edge whose output leaves tolerance first."""
    from test_targets import require

    require("jax")
    require("tf")
    import jax.numpy as jnp
    import torch

    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.edges.jax_tf import jax_to_tf
    from zoo.converters.graph import EdgeContext
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate
    from zoo.converters.parity.runners import saved_model_runner, torch_runner

    tm = _tiny()
    good = _jax_file(tm, tmp_path / "good")
    with pytest.MonkeyPatch.context() as broken:  # a .jax file made while Tanh lowers 5% high, converted by jax2tf
        _break_lowering(broken, torch.ops.aten.tanh, lambda x: jnp.tanh(x) * 1.05)
        ctx = EdgeContext(opset=18, example=(torch.from_numpy(_feeds()["x"]),))
        (tmp_path / "bad").mkdir()
        bad_jax = torch_to_jax(tm, tmp_path / "bad", ctx)
    (tmp_path / "tf").mkdir()
    bad_tf = jax_to_tf(bad_jax, tmp_path / "tf", ctx)
    sets = [InputSet("random-b1-s0", _feeds(), kind="random")]
    report = check_parity(torch_runner(tm), saved_model_runner(bad_tf, ["x"], ["y"]), sets, output_names=["y"])
    assert not report.passed
    found = locate(report, [("torch", "jax"), ("jax", "tf")], [good, bad_tf], sets, ["x"], tm, report.tolerance,
                   output_names=["y"])
    assert found["located"] is False and found["module"] is None and found["edge_out"] == "jax->tf"
    assert [(h["edge"], h["within"]) for h in found["hops"]] == [("torch->jax", True), ("jax->tf", False)]
    assert found["hops"][1]["max_abs_diff"] > 1e-3 > found["hops"][0]["max_abs_diff"]
    assert "the error is in jax->tf" in found["note"] and "the error is in jax->tf" in describe(found)[0]
    # the .jax file itself off: its edge is the first out, and the note stays the torchax locator's own
    both_bad = locate(report, [("torch", "jax"), ("jax", "tf")], [bad_jax, bad_tf], sets, ["x"], tm, report.tolerance,
                      output_names=["y"])
    assert [h["within"] for h in both_bad["hops"]] == [False, False] and "edge_out" not in both_bad
    assert "did not reproduce eagerly" in both_bad["note"]
    json.dumps(found)

"""Where it diverges (issue 14): the first diverging layer or node of every edge zoo can look inside, found on the
input set that failed, with where the error grows most; a deliberately broken candidate of each edge is located
at the layer that was broken, and an edge zoo cannot look inside says so plainly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from zoo.converters.parity.report import InputSet


def _tiny(seed: int = 0):
    """A wrapped model as zoo loads one (``tm.module.inner``), with layers a locator can tell apart."""
    import torch

    from zoo.converters.loaders.torch_models import TorchModel

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                                             torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 32),
                                             torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.Tanh(),
                                             torch.nn.Linear(16, 4))

        def forward(self, x):
            return (self.inner(x),)

    torch.manual_seed(seed)
    return TorchModel(module=Wrapper().eval(), input_names=["x"], output_names=["y"], dynamic_axes={"x": {}})


def _feeds(seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}


def _broken(tm, layer: str, factor: float = 1.05):
    """A copy of ``tm``'s module with one layer's weights scaled: what a wrong scale or eps does to a file."""
    import torch

    module = copy.deepcopy(tm.module)
    with torch.no_grad():
        module.get_submodule(layer).weight.mul_(factor)
    return module


# --- torch -> pt2 ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pt2_files(tmp_path_factory):
    """The model exported by zoo's own torch -> pt2 edge, and a copy with layer 7's weights scaled in the file."""
    import torch

    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.pt2_archive import load_program, save_program
    from zoo.converters.edges.from_torch import torch_to_pt2

    tm = _tiny()
    root = tmp_path_factory.mktemp("pt2")
    good = torch_to_pt2(tm, root, EdgeContext(opset=18, example=(torch.from_numpy(_feeds()["x"]),)))
    program, signature = load_program(good)
    with torch.no_grad():
        program.state_dict["inner.7.weight"].mul_(1.05)  # the loaded program owns its tensors
    bad = root / "broken.pt2"
    save_program(program, bad, signature)
    return tm, good, bad


def test_a_broken_pt2_is_located_at_the_broken_layer(pt2_files):
    from zoo.converters.parity.layers import locate_pt2

    tm, good, bad = pt2_files
    found = locate_pt2(tm, bad, _feeds(), ["x"], atol=1e-5, rtol=1e-5)
    assert found is not None and found["edge"] == "torch->pt2"
    assert (found["module"], found["module_type"]) == ("7", "Linear") and found["op_type"].startswith("aten.linear")
    assert found["max_abs_diff"] > 1e-5 and found["what"] == "values differ"
    assert locate_pt2(tm, good, _feeds(), ["x"], atol=1e-5, rtol=1e-5) is None  # the faithful file: no layer


# --- torch -> tflite (litert-torch) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def litert_files(tmp_path_factory):
    """litert-torch's files of the model and of a copy whose layer 7 is scaled (the reference stays the model)."""
    import importlib.util
    import os

    if importlib.util.find_spec("litert_torch") is None:  # as test_targets.require: on CI a missing extra fails
        message = "litert-torch is not installed: pip install -e '.[litert]'"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    import torch

    from zoo.converters.edges.litert import convert_litert

    tm = _tiny()
    root = tmp_path_factory.mktemp("litert")
    example = (torch.from_numpy(_feeds()["x"]),)
    convert_litert(tm, example, root / "good.tflite", seq_max=None, static=True)
    broken = copy.copy(tm)
    broken.module = _broken(tm, "inner.7")
    convert_litert(broken, example, root / "bad.tflite", seq_max=None, static=True)
    return tm, root / "good.tflite", root / "bad.tflite"


def test_litert_tensor_names_give_the_module_path():
    from zoo.converters.parity.layers import litert_modules, module_index

    known = module_index(["inner.vit.encoder.layer.1.attention.attention.query", "inner.vit.encoder.layer.0.output",
                          "inner.class_labels_classifier.layers.0", "inner.norm_out"])
    yolos = "pkg.Wrap/t.YolosForObjectDetection_inner/t.YolosModel_vit/t.YolosEncoder_encoder/t.YolosLayer_1/" \
            "t.YolosAttention_attention/t.YolosSelfAttention_attention/torch.nn.Linear_query;2"
    # a ModuleList leaves no segment ("encoder/YolosLayer_1" is encoder.layer.1); fused names list each module
    assert litert_modules(yolos, known) == ["inner.vit.encoder.layer.1.attention.attention.query"]
    fused = "pkg.Wrap/t.M_inner/t.Norm_norm_out;;pkg.Wrap/t.M_inner/t.YolosMLP_class_labels_classifier/t.L_layers.0;"
    assert litert_modules(fused, known) == ["inner.norm_out", "inner.class_labels_classifier.layers.0"]
    assert litert_modules("serving_default_output_0", known) == [] and litert_modules("a/b_nope", known) == []
    from zoo.converters.parity.nodediff import label

    assert label(yolos) == ("YolosForObjectDetection_inner/YolosModel_vit/YolosEncoder_encoder/YolosLayer_1/"
                            "YolosAttention_attention/YolosSelfAttention_attention/Linear_query;2")
    assert label(fused) == "M_inner/Norm_norm_out" and label("/inner/inner.0/Conv_output_0", "/inner/inner.0/Conv") == \
        "/inner/inner.0/Conv"


def test_a_broken_litert_file_is_located_at_the_broken_layer(litert_files):
    from zoo.converters.parity.layers import locate_litert

    tm, good, bad = litert_files
    found = locate_litert(tm, bad, _feeds(), ["x"], atol=1e-5, rtol=1e-5)
    assert found is not None and found["edge"] == "torch->tflite"
    assert (found["module"], found["module_type"]) == ("7", "Linear") and found["op_type"] == "FULLY_CONNECTED"
    assert "Linear_7" in found["node"] and found["max_abs_diff"] > 1e-5
    assert locate_litert(tm, good, _feeds(), ["x"], atol=1e-5, rtol=1e-5) is None
    # the convolutions run channels-last inside the file: their fused Conv+ReLU tensors were compared, not skipped
    broken_conv = copy.copy(tm)
    broken_conv.module = _broken(tm, "inner.2")
    conv = locate_litert(broken_conv, good, _feeds(), ["x"], atol=1e-5, rtol=1e-5)  # the reference is now off at 2
    assert conv is not None and conv["module"] == "3" and conv["fused"] == ["3", "2"]  # Conv+ReLU: one CONV_2D
    first = copy.copy(tm)
    first.module = _broken(tm, "inner.0")  # its CONV_2D's output stays channels-last (1, 6, 6, 8) for the next conv
    found = locate_litert(first, good, _feeds(), ["x"], atol=1e-5, rtol=1e-5)
    assert found["module"] == "1" and found["fused"] == ["1", "0"] and found["op_type"] == "CONV_2D"
    # what the pipeline calls on a failed torch -> tflite report: the same finding, on the set that failed
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate
    from zoo.converters.parity.runners import tflite_runner, torch_runner

    sets = [InputSet("random-b1-s0", _feeds(), kind="random")]
    report = check_parity(torch_runner(tm), tflite_runner(bad, ["x"], ["y"]), sets, output_names=["y"])
    assert not report.passed
    located = locate(report, [("torch", "tflite")], [bad], sets, ["x"], tm, report.tolerance)
    assert located["edge"] == "torch->tflite" and located["module"] == "7" and located["input_set"] == "random-b1-s0"
    assert describe(located)[0].startswith("first diverging layer: 7 (Linear) -> torch->tflite node ")


def test_rounding_noise_in_tiny_tensors_is_no_error():
    """A LayerNorm's mean is near zero: float rounding there is a huge relative error of nothing. The node where
    the error really grows is named, not that one."""
    from zoo.converters.parity.nodediff import Value, compare, grows_most

    a = [Value("mean", "ReduceMean", "m", np.array([4.5e-8, -3e-8], np.float32), ("x",)),
         Value("sub", "Sub", "s", np.array([1.0, 2.0], np.float32), ("x", "m")),
         Value("mm", "MatMul", "y", np.array([10.0, -4.0], np.float32), ("s", "w"))]
    b = [Value("mean", "ReduceMean", "m", np.array([1.2e-7, -3e-8], np.float32), ("x",)),
         Value("sub", "Sub", "s", np.array([1.0, 2.0], np.float32), ("x", "m")),
         Value("mm", "MatMul", "y", np.array([10.5, -4.0], np.float32), ("s", "w"))]
    rows = compare(a, b)
    assert rows[0]["max_rel_diff"] > 1 and rows[0]["growth"] == 0.0  # 7.5e-8 off: rounding, counted as none
    assert rows[1]["input_rel_diff"] == 0.0 and grows_most(rows)["node"] == "mm" and grows_most(rows)["index"] == 2
    assert abs(rows[2]["growth"] - 0.05) < 1e-6


# --- a lossy variant, on the set that failed ------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    return make_onnx_pair(tmp_path_factory.mktemp("onnx"))


def make_onnx_pair(root: Path) -> tuple[Path, Path]:
    """The model's ONNX file and a copy with the first Conv's weights scaled by 5%: a weight error shows only on
    inputs that reach it (an all-zero image gives the Conv's bias either way)."""
    import torch

    tm = _tiny()
    path = root / "model.onnx"
    torch.onnx.export(tm.module, (torch.from_numpy(_feeds()["x"]),), str(path), input_names=["x"], output_names=["y"],
                      dynamo=False)
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "inner.0.weight":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
    broken = root / "broken.onnx"
    onnx.save(model, str(broken))
    return path, broken


def _ort(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, dict(feeds))


def _sets() -> list[InputSet]:
    return [InputSet("sample-zeros", {"x": np.zeros((1, 3, 8, 8), np.float32)}, kind="sample"),
            InputSet("random-b1-s0", _feeds(), kind="random")]


def test_a_variant_is_located_on_the_set_that_failed(onnx_pair):
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate

    path, broken = onnx_pair
    report = check_parity(_ort(path), _ort(broken), _sets(), output_names=["y"])
    assert not report.passed
    found = locate(report, [("onnx", "onnx-int8")], [path, broken], _sets(), ["x"], None, report.tolerance)
    assert found["input_set"] == "random-b1-s0" and "y left tolerance on random-b1-s0" in found["why"]
    assert found["edge"] == "onnx->onnx-int8" and found["node"] == "/inner/inner.0/Conv" and found["index"] == 0
    grows = found["grows_most"]  # the error is born at the broken Conv: its inputs (the image) carry none
    assert grows["node"] == "/inner/inner.0/Conv" and grows["input_rel_diff"] == 0.0 and grows["growth"] > 0.01
    assert found["worst"]["max_rel_diff"] >= grows["max_rel_diff"] and found["compared"] == 10
    # an ONNX source's own variant: one hop, the source file is the float side
    alone = locate(report, [("onnx", "onnx-int8")], [broken], _sets(), ["x"], None, report.tolerance, source_file=path)
    assert {k: alone[k] for k in ("input_set", "node", "index")} == {k: found[k] for k in ("input_set", "node", "index")}
    lines = describe(found)
    assert "first diverging node of onnx->onnx-int8: /inner/inner.0/Conv (Conv)" in lines[0]
    assert "on random-b1-s0" in lines[0] and "grows most at node #0" in lines[1]
    # on the all-zero sample alone the weight error never shows: that set must not be the one looked at
    from zoo.converters.parity.nodediff import locate_between

    quiet = locate_between(path, broken, _sets()[0].feeds, ["x"], atol=1e-5, rtol=1e-5, edge="onnx->onnx-int8")
    assert quiet["node"] is None and quiet["grows_most"]["max_rel_diff"] == 0.0


def test_a_failed_task_check_picks_its_own_set(onnx_pair):
    """A task check (detections, masks, CTC ids) can fail where every element is within tolerance: its set wins."""
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import failing_set
    from zoo.converters.parity.tasks import TaskResult

    path, broken = onnx_pair
    sets = _sets()
    report = check_parity(_ort(path), _ort(broken), sets, output_names=["y"])
    assert failing_set(report, sets)[0].name == "random-b1-s0"
    report.tasks = [TaskResult("detection", "sample-zeros", "y", True).to_dict(),
                    TaskResult("detection", "random-b1-s0[0:1]", "y", False, "IoU 0.5").to_dict()]  # not a set here
    assert failing_set(report, sets)[0].name == "random-b1-s0"  # a name it was not given: the elementwise worst
    report.tasks.append(TaskResult("segmentation", "sample-zeros", "y", False, "mean IoU 0.66 < 0.9").to_dict())
    chosen, why = failing_set(report, sets)
    assert chosen.name == "sample-zeros" and why == "the segmentation check failed on sample-zeros"


def test_an_edge_without_a_locator_says_so_plainly(onnx_pair):
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate

    path, broken = onnx_pair
    report = check_parity(_ort(path), _ort(broken), _sets(), output_names=["y"])
    for edges in ([("onnx", "tf")], [("jax", "tf")], [("onnx", "pt2")]):
        found = locate(report, edges, [broken] * len(edges), _sets(), ["x"], _tiny(), report.tolerance)
        assert found["located"] is False and "error" not in found and "only the final outputs" in found["note"]
        assert "cannot compare intermediate tensors across" in describe(found)[0]
    # a locator that cannot run (a file it cannot read) is said plainly too, never raised
    found = locate(report, [("torch", "pt2")], [path], _sets(), ["x"], _tiny(), report.tolerance)
    assert found["located"] is False and found["note"].startswith("zoo could not look inside the torch->pt2 conversion")
    assert locate(check_parity(_ort(path), _ort(path), _sets()), [("onnx", "tf")], [path], _sets(), ["x"], None,
                  report.tolerance) is None  # a passing report has nothing to locate


# --- the red int8 cells: a task failure located on its photograph, through the pipeline ------------------------
@pytest.mark.slow  # ~100 s: litert-torch's YOLOS file, its int8 variant, and the locator on one photograph
def test_a_failed_int8_detection_check_is_located_on_its_photograph(indexed, monkeypatch, capsys):
    from task_builders import in_process_pull, yolos_repo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pull = in_process_pull(indexed.hub_cache, {"zoo-test/tiny-yolos": yolos_repo()}, capsys)
    out = pull("zoo-test/tiny-yolos", "--format", "tflite-int8", code=6)
    found = out["divergence"]
    failed = [t["input_set"] for t in out["report"]["tasks"] if t["passed"] is False]
    assert found["input_set"] == failed[0] and found["input_set"].startswith("sample-photos")
    assert found["why"].startswith("the object-detection check failed on sample-photos")
    assert found["edge"] == "tflite->tflite-int8" and found["compared"] > 50
    grows = found["grows_most"]
    assert grows["growth"] > 0 and grows["max_rel_diff"] > grows["input_rel_diff"] and grows["op_type"]
    assert "where it diverges" not in out["stderr"] and "grows most at node" in out["stderr"]
    json.dumps(found)  # JSON-safe, as zoo.json stores it


def test_a_broken_pt2_pull_names_the_broken_layer(indexed, cached_repo, monkeypatch, capsys):
    """Through the pipeline: a torch -> pt2 export with one conv's weights 2% off fails parity, and the report
    names that conv, found on the set that failed."""
    import torch
    from conftest import TIMM_REPO

    import zoo.converters.loaders.pt2_archive as pt2_archive
    from zoo.cli import main as cli

    real_save = pt2_archive.save_program
    broken: list[str] = []

    def sabotaged_save(program, path, signature):
        name = next(k for k in program.state_dict if "layer2" in k and "conv" in k and k.endswith("weight"))
        with torch.no_grad():  # a copy: the program shares its tensors with the source model parity runs
            program.state_dict[name] = torch.nn.Parameter(program.state_dict[name].detach() * 1.02)
        broken.append(name.removeprefix("inner.").removesuffix(".weight"))
        real_save(program, path, signature)

    monkeypatch.setattr(pt2_archive, "save_program", sabotaged_save)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(TIMM_REPO)
    code = cli.main(["pull", "test_resnet", "--format", "pt2", "--json"])
    captured = capsys.readouterr()
    assert code == 6, captured.err[-2000:]
    err = json.loads(captured.out.strip().splitlines()[-1])
    found = err["divergence"]
    assert found["edge"] == "torch->pt2" and found["module"] == broken[0] and found["module_type"] == "Conv2d"
    assert found["op_type"].startswith("aten.conv2d") and found["input_set"] in {c["input_set"] for c in err["worst"]}
    assert f"first diverging layer: {broken[0]} (Conv2d) -> torch->pt2 node" in captured.err


# --- onnx -> pt2 (zoo's own compiler) -------------------------------------------------------------------------
def test_a_broken_onnx_to_pt2_program_is_located_at_the_broken_node(onnx_pair, tmp_path):
    """The compiler records the ONNX output each traced op computes; a program with one Gemm's weights 5% off is
    located at that Gemm, by name, against onnxruntime's node outputs."""
    import torch

    from zoo.converters.edges.pt2 import onnx_to_pt2
    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.pt2_archive import load_program, save_program
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate
    from zoo.converters.parity.runners import pt2_runner

    path, _ = onnx_pair
    good = onnx_to_pt2(path, tmp_path, EdgeContext(opset=18))
    program, signature = load_program(good)
    weight = next(k for k in program.state_dict if "7" in k and "weight" in k)
    with torch.no_grad():
        program.state_dict[weight].mul_(1.05)
    bad = tmp_path / "broken.pt2"
    save_program(program, bad, signature)
    report = check_parity(_ort(path), pt2_runner(bad, ["x"]), _sets(), output_names=["y"])
    assert not report.passed
    found = locate(report, [("onnx", "pt2")], [bad], _sets(), ["x"], None, report.tolerance, source_file=path)
    assert found["edge"] == "onnx->pt2" and found["input_set"] == "random-b1-s0"
    assert (found["node"], found["op_type"]) == ("/inner/inner.7/Gemm", "Gemm") and found["compared"] == 10
    assert found["grows_most"]["node"] == "/inner/inner.7/Gemm" and found["grows_most"]["input_rel_diff"] == 0.0
    assert "first diverging node of onnx->pt2: /inner/inner.7/Gemm (Gemm)" in describe(found)[0]
    faithful = check_parity(_ort(path), pt2_runner(good, ["x"]), _sets(), output_names=["y"])
    assert faithful.passed
    tight = locate(report, [("onnx", "pt2")], [good], _sets(), ["x"], None, report.tolerance, source_file=path)
    assert tight["node"] is None and "within tolerance in the .pt2 program" in tight["note"] and tight["compared"] == 10
    # zoo diff matches the two by ONNX name: exact up to the broken Gemm, where the error is born
    from conftest import run_zoo

    proc = run_zoo("diff", str(path), str(bad), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    rows = result["nodes"]
    assert [r["node"] for r in rows][:8] == [f"/inner/inner.{i}/{op}" for i, op in enumerate(
        ["Conv", "Relu", "Conv", "Relu", "Flatten", "Gemm", "Tanh", "Gemm"])]
    assert all(r["max_abs_diff"] < 1e-5 for r in rows[:7]) and rows[7]["max_abs_diff"] > 1e-3
    assert result["grows_most"]["node"] == "/inner/inner.7/Gemm"
    refused = run_zoo("diff", str(bad), str(bad))
    assert refused.returncode == 2 and "cannot match node by node" in refused.stderr


# --- torch -> jax (torchax + jax.export) ----------------------------------------------------------------------
def _break_lowering(monkeypatch, op, wrong) -> None:
    """torchax's lowering of ``op`` replaced by ``wrong`` (a jax function) in its environment: what a wrong
    lowering does to every jax file exported while it is in place."""
    import dataclasses

    from zoo.converters.edges.jax_export import import_torchax

    env = import_torchax().default_env()
    monkeypatch.setitem(env._ops, op, dataclasses.replace(env._ops[op], func=wrong))


def _tanh_inputs(tm, feeds) -> dict[str, float]:
    """The largest input each Tanh (layers 6 and 8) takes on ``feeds``, in PyTorch."""
    import torch

    seen: dict[str, float] = {}
    handles = [tm.module.inner[i].register_forward_hook(
        lambda m, args, out, i=i: seen.__setitem__(str(i), float(args[0].max()))) for i in (6, 8)]
    with torch.no_grad():
        tm.module(torch.from_numpy(feeds["x"]))
    for h in handles:
        h.remove()
    return seen


def _jax_file(tm, root):
    import torch

    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.graph import EdgeContext

    root.mkdir(parents=True, exist_ok=True)
    return torch_to_jax(tm, root, EdgeContext(opset=18, example=(torch.from_numpy(_feeds()["x"]),)))


def test_a_wrong_torchax_lowering_is_located_on_the_set_that_shows_it(tmp_path):
    """Tanh lowered 5% high above a threshold only the bright set's first Tanh reaches (an approximation valid near
    zero): parity fails on that set alone, and the locator, run on it, names the first Tanh PyTorch ran (layer 6,
    not 8) in torchax's eager run, its input still exact (the error is born there). On the all-zero set the same
    run matches: looking there would find nothing."""
    from test_targets import require

    require("jax")
    import jax.numpy as jnp
    import torch

    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.locate import describe, locate
    from zoo.converters.parity.runners import jax_runner, torch_runner
    from zoo.converters.parity.torchax_layers import locate_jax

    tm = _tiny()
    zeros, bright = _sets()[0], InputSet("random-bright", {"x": _feeds()["x"] * 30}, kind="random")
    quiet, loud = _tanh_inputs(tm, zeros.feeds), _tanh_inputs(tm, bright.feeds)
    threshold = max(quiet["6"], quiet["8"], loud["8"]) + 0.5
    assert loud["6"] > threshold + 0.5, (quiet, loud)
    with pytest.MonkeyPatch.context() as broken:
        _break_lowering(broken, torch.ops.aten.tanh, lambda x: jnp.where(x > threshold, jnp.tanh(x) * 1.05, jnp.tanh(x)))
        bad = _jax_file(tm, tmp_path)
        found = locate_jax(tm, bad, bright.feeds, ["x"], atol=1e-5, rtol=1e-5)
        assert found["edge"] == "torch->jax" and (found["module"], found["module_type"]) == ("6", "Tanh")
        assert found["what"] == "values differ" and found["max_abs_diff"] > 1e-3 and found["input_rel_diff"] == 0.0
        assert found["grows_most"]["label"] == "6" and found["grows_most"]["input_rel_diff"] == 0.0
        assert "not the serialised StableHLO program" in found["compares"]
        sets = [zeros, bright]
        report = check_parity(torch_runner(tm), jax_runner(bad, ["x"]), sets, output_names=["y"])
        assert not report.passed and {c.input_set for c in report.checks if not c.passed} == {"random-bright"}
        located = locate(report, [("torch", "jax")], [bad], sets, ["x"], tm, report.tolerance)
        assert located["module"] == "6" and located["input_set"] == "random-bright"
        assert describe(located)[0].startswith("first diverging layer: 6 (Tanh) -> torchax's eager run")
        assert "grows most at node #" in describe(located)[1] and json.dumps(located)
        on_zeros = locate_jax(tm, bad, zeros.feeds, ["x"], atol=1e-5, rtol=1e-5)
        assert on_zeros["located"] is False and "did not reproduce eagerly" in on_zeros["note"]
    # the lowering mended, the file still broken: the eager run matches at every module, which is said plainly,
    # with how far the serialised program is from that run; never a guessed layer
    eager_ok = locate(report, [("torch", "jax")], [bad], sets, ["x"], tm, report.tolerance)
    assert eager_ok["located"] is False and eager_ok["module"] is None and eager_ok["compared"] == 11
    assert "did not reproduce eagerly" in eager_ok["note"] and "differ from the eager run's by up to" in eager_ok["note"]
    chained = locate(report, [("torch", "jax"), ("jax", "tf")], [bad, bad], sets, ["x"], tm, report.tolerance)
    assert chained["located"] is False and chained["note"].endswith("or it comes from jax->tf, which zoo cannot look inside")
    good = _jax_file(tm, tmp_path / "good")
    assert check_parity(torch_runner(tm), jax_runner(good, ["x"]), sets, output_names=["y"]).passed


def test_a_wrong_op_inside_a_module_with_children_names_that_module(monkeypatch):
    """A softmax 5% high inside BERT's eager self-attention (functional code, no submodule of its own): the locator
    names the attention module, recorded when its forward returns, after its query/key/value Linears matched."""
    from test_targets import require

    require("jax")
    import torch
    from transformers import BertConfig, BertModel

    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.parity.torchax_layers import locate_jax

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=37, attn_implementation="eager")).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = bert

        def forward(self, input_ids, attention_mask):
            return (self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)

    tm = TorchModel(Encoder().eval(), ["input_ids", "attention_mask"], ["last_hidden_state"], {})
    feeds = {"input_ids": np.arange(1, 17, dtype=np.int64).reshape(1, 16), "attention_mask": np.ones((1, 16), np.int64)}
    faithful = locate_jax(tm, Path("absent.jax"), feeds, tm.input_names, atol=1e-5, rtol=1e-5)
    assert faithful["located"] is False and "the serialised program could not be run: InvalidModelError" in faithful["note"]
    softmax = torch.ops.aten._softmax
    from zoo.converters.edges.jax_export import import_torchax

    real = import_torchax().default_env()._ops[softmax].func
    _break_lowering(monkeypatch, softmax, lambda *args, **kwargs: real(*args, **kwargs) * 1.05)
    found = locate_jax(tm, Path("absent.jax"), feeds, tm.input_names, atol=1e-5, rtol=1e-5)
    assert (found["module"], found["module_type"]) == ("encoder.layer.0.attention.self", "BertSelfAttention")
    assert found["input_rel_diff"] == 0.0 and found["what"] == "values differ"


def test_a_wrong_gelu_lowering_fails_a_jax_pull_naming_the_first_gelu(indexed, cached_repo, monkeypatch, capsys):
    """Through the pipeline: ``zoo pull test_vit --format jax`` with torchax's GELU lowered 5% high exports a wrong
    file (through the torch.export graph, as a ViT's symbolic batch needs); parity fails (exit 6) and the report
    names the ViT's first GELU, the MLP activation of block 0, found on the set that failed."""
    from test_targets import require

    require("jax")
    import jax
    import torch

    from zoo.cli import main as cli

    _break_lowering(monkeypatch, torch.ops.aten.gelu, lambda x, approximate="none": jax.nn.gelu(x, approximate=False) * 1.05)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo("timm/test_vit.r160_in1k")
    code = cli.main(["pull", "test_vit", "--format", "jax", "--json"])
    captured = capsys.readouterr()
    assert code == 6, captured.err[-2000:]
    err = json.loads(captured.out.strip().splitlines()[-1])
    found = err["divergence"]
    assert found["edge"] == "torch->jax" and (found["module"], found["module_type"]) == ("blocks.0.mlp.act", "GELU")
    assert found["input_rel_diff"] == 0.0 and found["input_set"] in {c["input_set"] for c in err["worst"]}
    assert found["grows_most"]["label"] == "blocks.0.mlp.act"
    assert "first diverging layer: blocks.0.mlp.act (GELU) -> torchax's eager run" in captured.err

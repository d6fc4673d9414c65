"""zoo in a user's CI: a throwaway project made here (its own pyproject.toml with [tool.zoo], a test file
using zoo's pytest plugin, the model files it "ships", a labelled image set), run as a user would run it:
`pytest` and `zoo check` in subprocesses, offline from one cached ZOO_HOME/HF_HOME, then against a real
`zoo serve` (remote mode). Nothing is mocked: the plugin loads through its pytest11 entry point.

The shipped files: good.onnx (zoo's own conversion), broken.onnx (one weight 1% off: parity must fail and
name the layer) and swapped.onnx (two classes' rows of the classifier swapped, a label-order bug: accuracy
drops by exactly the share of images whose class is one of the two)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from builders import timm_repo, write_hf_cache
from serverproc import ZooServer

MODEL = "timm/test_resnet.r160_in1k"
IMAGES = 8


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_", "PYTEST_"))}
    env.update(ZOO_HOME=str(root / "zoo"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false", **extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _images(n: int):
    from PIL import Image

    rng = np.random.default_rng(11)
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(150, 240, 2))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        img = rng.uniform(0, 255, 3) * (1 - yy[..., None]) + rng.uniform(0, 255, 3) * xx[..., None]
        img[((yy - rng.uniform(0.2, 0.8)) ** 2 + (xx - rng.uniform(0.2, 0.8)) ** 2) < rng.uniform(0.01, 0.09)] = rng.uniform(0, 255, 3)
        out.append(Image.fromarray(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)))
    return out


def _ship(good: Path, dist: Path, data: Path) -> dict:
    """good.onnx, broken.onnx and swapped.onnx in ``dist``; the image set labelled with good.onnx's
    predictions in ``data``. Returns what the failures must show."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from zoo.converters.parity.samples import preprocess_images

    dist.mkdir(parents=True)
    shutil.copyfile(good, dist / "good.onnx")
    model = onnx.load(str(good))
    props = {p.key: p.value for p in model.metadata_props}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(props["zoo.preprocessing"]).items()}
    labels = json.loads(props["zoo.labels"])
    # the images whose top-1 is clearest, labelled with it: the source scores 100% on them
    pool = _images(3 * IMAGES)
    session = ort.InferenceSession(str(good), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": preprocess_images(pool, **cfg)})[0]
    top2 = np.sort(logits, axis=1)[:, -2:]
    keep = np.argsort(top2[:, 0] - top2[:, 1])[:IMAGES]  # largest margins first
    preds = logits[keep].argmax(1)
    for i, (index, pred) in enumerate(zip(keep, preds)):
        (data / labels[pred]).mkdir(parents=True, exist_ok=True)
        pool[index].save(data / labels[pred] / f"{i}.png")
    # broken: the largest weight 1% off
    broken = onnx.load(str(good))
    init = max(broken.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
    consumers = [n.name for n in broken.graph.node if init.name in n.input]
    onnx.save(broken, str(dist / "broken.onnx"))
    # swapped: the classifier's rows of class a (some images' class) and b (none's) trade places
    a, b = int(preds[0]), int(next(c for c in range(len(labels)) if c not in set(preds.tolist())))
    swapped = onnx.load(str(good))
    for tensor in swapped.graph.initializer:
        arr = numpy_helper.to_array(tensor).copy()
        if len(labels) in arr.shape and arr.ndim <= 2:
            axis = arr.shape.index(len(labels))
            index = [slice(None)] * arr.ndim
            index[axis] = [a, b]
            pick = list(index)
            pick[axis] = [b, a]
            arr[tuple(index)] = arr[tuple(pick)]
            tensor.CopyFrom(numpy_helper.from_array(arr, tensor.name))
    onnx.save(swapped, str(dist / "swapped.onnx"))
    return {"consumers": consumers, "drop": 100.0 * int((preds == a).sum()) / IMAGES}


PYPROJECT = """
[project]
name = "demo-models"
version = "0.0.0"

[tool.pytest.ini_options]
zoo_model = "{model}"

[tool.zoo]
formats = ["onnx", "onnx-fp16"]
max_drop = 0.5
top1 = 0.5
jobs = 2
memory_budget = "8GiB"

[tool.zoo.data]
images = "data/images"

[[tool.zoo.models]]
name = "{model}"
data = "images"
files = ["dist/swapped.onnx"]
"""

TESTS = '''
import pytest
from zoo.testing import assert_accuracy, assert_parity

MODEL = "{model}"


@pytest.mark.zoo_formats("onnx", "onnx-fp16")
def test_formats_are_verified(zoo_artifact, zoo_format):
    assert zoo_artifact.verified and zoo_artifact.format == zoo_format and zoo_artifact.path.is_file()


def test_good_file():
    report = assert_parity(MODEL, "dist/good.onnx")
    names = [s["name"] for s in report.input_sets]  # real photographs for an image model, and random batches
    assert report.passed and "sample-photos" in names and any(n.startswith("random-") for n in names), names


def test_in_memory_torch_module_against_the_file():
    import timm
    from safetensors.torch import load_file
    from zoo.testing import pull
    from huggingface_hub import snapshot_download

    module = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    module.load_state_dict(load_file(snapshot_download(MODEL) + "/model.safetensors"))
    assert_parity(module, "dist/good.onnx", top1=1.0)
    assert pull(MODEL, "onnx").read_bytes() == open("dist/good.onnx", "rb").read()


def test_broken_file():
    assert_parity(MODEL, "dist/broken.onnx")


def test_swapped_file_keeps_accuracy():
    assert_accuracy(MODEL, "dist/swapped.onnx", "data/images", max_drop=0.5)


def test_fp16_keeps_accuracy():
    row = assert_accuracy(MODEL, "onnx-fp16", "data/images", max_drop=0.5)
    assert row["kind"] == "artifact" and row["metrics"]["top1"] == 1.0 and row["source"]["top1"] == 1.0
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The user's project and a warm cache: the model in HF_HOME, its ONNX conversion in ZOO_HOME."""
    from zoo.options import Options
    from zoo.pipeline import pull
    from zoo.settings import Settings

    root = tmp_path_factory.mktemp("ci")
    write_hf_cache(root / "hf" / "hub", MODEL, timm_repo("test_resnet.r160_in1k"))
    env = _env(root)
    good = pull(MODEL, Options(format="onnx"), settings=Settings.from_env(env))
    proj = root / "project"
    (proj / "tests").mkdir(parents=True)
    expected = _ship(Path(good.path), proj / "dist", proj / "data" / "images")
    (proj / "pyproject.toml").write_text(PYPROJECT.format(model=MODEL))
    (proj / "tests" / "test_models.py").write_text(TESTS.format(model=MODEL))
    return proj, root, env, expected


def _cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}


def _props(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def test_the_plugin_in_a_users_project(project):
    proj, _root, env, expected = project
    proc = _run(["-m", "pytest", "-p", "no:cacheprovider", "-q", "--junitxml", "out/junit.xml", "tests"], proj, env)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = _cases(proj / "out" / "junit.xml")
    assert set(cases) == {"test_formats_are_verified[onnx]", "test_formats_are_verified[onnx-fp16]", "test_good_file",
                          "test_in_memory_torch_module_against_the_file", "test_broken_file",
                          "test_swapped_file_keeps_accuracy", "test_fp16_keeps_accuracy"}, proc.stdout[-3000:]
    failed = {name for name, case in cases.items() if case.find("failure") is not None or case.find("error") is not None}
    assert failed == {"test_broken_file", "test_swapped_file_keeps_accuracy"}, proc.stdout[-4000:]
    # the parity report travels in the JUnit XML as properties
    fp16 = _props(cases["test_formats_are_verified[onnx-fp16]"])
    key = f"zoo[{MODEL} -> onnx-fp16]"
    assert fp16[f"{key}.passed"] == "true" and 0 < float(fp16[f"{key}.max_abs_diff"]) <= float(fp16[f"{key}.atol"]) * 1000
    assert float(fp16[f"{key}.atol"]) == pytest.approx(1e-2) and len(fp16[f"{key}.inputs_sha256"]) == 64
    broken = _props(cases["test_broken_file"])
    assert any(k.endswith("broken.onnx].passed") and v == "false" for k, v in broken.items()), broken
    # a readable failure: worst outputs, tolerances, the first diverging layer (the node using the weight)
    message = cases["test_broken_file"].find("failure").get("message") + cases["test_broken_file"].find("failure").text
    assert "parity FAILED" in message and "worst outputs:" in message and "tolerance: atol 0.0001" in message
    assert "first diverging layer:" in message and any(node in message for node in expected["consumers"]), message
    accuracy = cases["test_swapped_file_keeps_accuracy"].find("failure").text
    assert f"top1 dropped {expected['drop']:.2f} points (100.00% -> {100 - expected['drop']:.2f}%" in accuracy, accuracy
    assert "more than the 0.5 allowed" in accuracy
    # the report is shown with the failure in the terminal output
    assert "- zoo -" in proc.stdout and "parity FAILED" in proc.stdout
    fp16_accuracy = _props(cases["test_fp16_keeps_accuracy"])
    assert fp16_accuracy[f"zoo[{MODEL} -> onnx-fp16 on images].accuracy.top1.delta_points"] == "0.0", fp16_accuracy


def test_zoo_check_in_a_users_project(project):
    proj, _root, env, expected = project
    out = proj / "out"
    proc = _run(["-m", "zoo", "check", "--junit", str(out / "check.xml"), "--markdown", str(out / "summary.md"),
                 "--report", str(out / "report.json"), "--json"], proj, env)
    assert proc.returncode == 6, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {r["target"]: r for r in report["rows"]}
    assert set(rows) == {"onnx", "onnx-fp16", "dist/swapped.onnx"} and report["passed"] is False
    for fmt in ("onnx", "onnx-fp16"):
        row = rows[fmt]
        assert row["passed"], row
        assert row["accuracy"]["metrics"]["top1"] == 1.0 and row["accuracy"]["delta"]["top1"] == 0.0
        assert row["verified"] and 0 <= row["max_abs_diff"] <= row["atol"] * 1000 and row["top1_agreement"] >= 0.5
    swapped = rows["dist/swapped.onnx"]
    assert not swapped["passed"] and swapped["accuracy"]["delta"]["top1"] == pytest.approx(-expected["drop"])
    assert any("parity FAILED" in f for f in swapped["failures"])
    assert any(f"top1 dropped {expected['drop']:.2f} points" in f for f in swapped["failures"])
    # in parallel, within the budget, each check's peak measured
    assert report["jobs"] == 2 and report["budget_mb"] == 8192
    assert 0 < report["peak_rss_mb"] <= report["budget_mb"] and all(r["peak_rss_mb"] > 100 for r in report["rows"])
    cases = _cases(out / "check.xml")
    assert set(cases) == {"onnx", "onnx-fp16", "dist/swapped.onnx"}
    assert cases["dist/swapped.onnx"].find("failure") is not None and cases["onnx"].find("failure") is None
    props = _props(cases["onnx"])
    assert float(props["zoo.max_abs_diff"]) == rows["onnx"]["max_abs_diff"] and props["zoo.accuracy.top1.delta_points"] == "0.0"
    summary = (out / "summary.md").read_text()
    assert "### zoo check: 1 of 3 failed" in summary and f"| `{MODEL} -> onnx` | ✅ |" in summary
    assert f"`{MODEL} -> dist/swapped.onnx`: parity FAILED" in summary


def test_zoo_check_baseline_fails_a_regression_within_tolerance(project):
    """An earlier run whose ONNX was 100x closer to the source: the same artifact now regresses although
    it is still within tolerance. Against its own figures it passes."""
    proj, _root, env, _expected = project
    manifest = proj / "ci" / "zoo.toml"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(f'[[models]]\nname = "{MODEL}"\nformats = ["onnx"]\n')
    first = _run(["-m", "zoo", "check", "--manifest", str(manifest), "--report", str(proj / "out" / "base.json")], proj, env)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-2000:]
    assert "1 passed, 0 failed" in first.stdout
    same = _run(["-m", "zoo", "check", "--manifest", str(manifest), "--baseline", str(proj / "out" / "base.json")], proj, env)
    assert same.returncode == 0, same.stdout[-3000:]
    base = json.loads((proj / "out" / "base.json").read_text())
    base["rows"][0]["max_abs_diff"] /= 100
    (proj / "out" / "older.json").write_text(json.dumps(base))
    proc = _run(["-m", "zoo", "check", "--manifest", str(manifest), "--baseline", str(proj / "out" / "older.json"),
                 "--json"], proj, env)
    assert proc.returncode == 6, proc.stderr[-3000:]
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])["rows"]
    assert row["parity_passed"] and not row["passed"]
    assert any(f.startswith("regressed: max abs diff") for f in row["failures"]), row["failures"]


def test_the_plugin_against_a_zoo_server(project, tmp_path):
    """Remote mode: ZOO_SERVER set, the server answers from its store, the plugin downloads and verifies."""
    proj, root, env, _expected = project
    server_home = tmp_path / "server"
    shutil.copytree(root / "zoo", server_home)
    with ZooServer(server_home, env=_env(root), workers=1) as server:
        token = server.token("write")
        client = tmp_path / "client"
        proc = _run(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "formats and onnx and not fp16",
                     "--junitxml", str(tmp_path / "remote.xml"), "tests"], proj,
                    {**_env(root), "ZOO_SERVER": server.url, "ZOO_TOKEN": token, "ZOO_HOME": str(client)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (case,) = _cases(tmp_path / "remote.xml").values()
    assert _props(case)[f"zoo[{MODEL} -> onnx].passed"] == "true"
    downloaded = list((client / "downloads").rglob("*.onnx"))
    assert len(downloaded) == 1 and downloaded[0].read_bytes() == (proj / "dist" / "good.onnx").read_bytes()


def test_manifest_errors_name_the_file_and_key(tmp_path):
    from zoo import errors
    from zoo.check.manifest import find_manifest, load_manifest, parse_memory

    bad = {
        'formats = ["onnx"]\n': "lists no models",
        '[[models]]\nname = "m"\nformats = ["onnx-fp64"]\n': "onnx-fp64",
        '[[models]]\nname = "m"\ndata = "images"\n': "names data set 'images'",
        '[data]\nimages = "nowhere"\n[[models]]\nname = "m"\n': "does not exist",
        '[[models]]\nname = "m"\ncolour = "blue"\n': "unknown key(s): colour",
        '[[models]]\nname = "m"\noptions = { opset = 3 }\n': "outside the supported range",
        'top1 = 2\n[[models]]\nname = "m"\n': "top1 2 is outside",
        '[[models]]\nname = "m"\n[[models]]\nname = "m"\n': "twice",
        "[[models]\n": "not valid TOML",
    }
    for text, needle in bad.items():
        (tmp_path / "zoo.toml").write_text(text)
        with pytest.raises(errors.UsageError) as info:
            load_manifest(tmp_path / "zoo.toml")
        assert needle in info.value.message and "zoo.toml" in info.value.message, (text, info.value.message)
    (tmp_path / "zoo.toml").unlink()
    (tmp_path / "sub").mkdir()
    with pytest.raises(errors.UsageError, match=r"no zoo.toml and no \[tool.zoo\]"):
        find_manifest(tmp_path / "sub")
    (tmp_path / "pyproject.toml").write_text('[tool.zoo]\nformats = ["onnx", "onnx-int8"]\n[[tool.zoo.models]]\nname = "m"\n')
    manifest = load_manifest(find_manifest(tmp_path / "sub"))
    assert [c.id for c in manifest.checks] == ["m -> onnx", "m -> onnx-int8"]
    assert parse_memory("8GiB", "x") == 8192 and parse_memory(512, "x") == 512 and parse_memory("1.5G", "x") == 1536


@pytest.mark.parametrize("budget, jobs, parallel", [(1, 3, False), (64 * 1024, 3, True), (64 * 1024, 1, False)])
def test_zoo_check_runs_checks_in_parallel_only_within_the_budget(tmp_path, monkeypatch, budget, jobs, parallel):
    """Three quick checks (files that do not exist: each process fails at once) under a budget that holds
    one estimate, then one that holds all three, then one job at a time."""
    from zoo.check.manifest import Check
    from zoo.check.run import run_checks
    from zoo.settings import Settings

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    checks = [Check("m", f"f{i}.onnx", {}, file=tmp_path / f"f{i}.onnx") for i in range(3)]
    out = run_checks(checks, Settings.from_env(), budget_mb=budget, jobs=jobs)
    rows = out["rows"]
    assert [r["target"] for r in rows] == ["f0.onnx", "f1.onnx", "f2.onnx"]
    assert all(not r["passed"] and "does not exist" in r["error"] for r in rows)
    spans = sorted((r["started_s"], r["ended_s"]) for r in rows)
    overlapped = any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert overlapped is parallel, spans


def _tiny_onnx():
    """y = x @ W + b, a (batch, 4) -> (batch, 3) classifier as an ONNX ModelProto, and W, b."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), w, b


def test_assert_parity_in_memory_sides_pass_and_fail_readably():
    """An ONNX ModelProto against plain callables: the same function passes (on the ModelProto's own
    signature inputs), one that is 1% off fails with the figures; given inputs and a top-1 floor apply."""
    from zoo.testing import assert_parity

    model, w, b = _tiny_onnx()
    report = assert_parity(model, lambda feeds: [feeds["x"] @ w + b])
    assert report.passed and [s["name"] for s in report.input_sets] == ["random-b2-s0", "random-b1-s1", "random-b3-s2"]
    with pytest.raises(AssertionError) as info:
        assert_parity(model, lambda feeds: [feeds["x"] @ (w * 1.01) + b])
    message = str(info.value)
    assert "parity FAILED" in message and "tolerance: atol 0.0001 (scaled" in message
    assert "worst outputs:" in message and "logits on random-" in message
    x = np.eye(4, dtype=np.float32)
    assert_parity(model, lambda feeds: [feeds["x"] @ w + b], inputs=x, top1=1.0)
    with pytest.raises(AssertionError, match="top-1 agreement 0% < required 100%"):  # argmax moved, values close
        assert_parity(model, lambda feeds: [np.roll(feeds["x"] @ w + b, 1, axis=1)], inputs=x, top1=1.0, atol=100)
    with pytest.raises(ValueError, match="top1 is a fraction"):
        assert_parity(model, model, top1=50)

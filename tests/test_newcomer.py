"""The first hour (issue 13): what a newcomer meets first, each with a test that can fail.

Jobs run the installed zoo whatever the server's working directory, and a crash reaches the API as
the crash it was; the quantiser takes graphs whose initializers the exporter merged; the command
line's small edges (a closed pipe, bad formats, aliases, hints, progress when piped, repairing an
artifact made from a file); ``/docs`` works offline; a finished request answers 200.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- jobs: the crash a job process had reaches the API, never as a kill ----------------------------------
FAKE_RUNNER = """
import argparse, atexit, os, sys, time
p = argparse.ArgumentParser(); p.add_argument("--events-fd", type=int); a, _ = p.parse_known_args()
os.close(a.events_fd)                 # the pipe closes first (Python's teardown does so for the real runner)...
atexit.register(time.sleep, 1.5)      # ...and the process takes a while to exit
raise RuntimeError("boom from inside the job")
"""


def _claimed_job(settings):
    from zoo import db
    from zoo.service.jobs import JobRequest, JobService

    jobs = JobService(db.get_engine(settings.database_url), max_attempts=3, lease_s=30)
    job, _ = jobs.submit(JobRequest(model="test_resnet", format="onnx"))
    return jobs, jobs.claim("test-owner", job_id=job.id)


def test_a_crashing_job_process_is_reported_as_its_crash_not_a_kill(zoo_env, tmp_path, monkeypatch):
    """A child that closes its event pipe, then takes time to exit with a traceback: the job fails at once
    with the child's exception and the end of its log; it is not SIGKILLed and retried as 'killed'."""
    from zoo import db
    from zoo.service.execution import execute
    from zoo.settings import Settings
    from zoo.storage import make_storage

    fake = tmp_path / "fake"
    (fake / "zoo").mkdir(parents=True)
    (fake / "zoo" / "__init__.py").write_text("")
    (fake / "zoo" / "runner.py").write_text(textwrap.dedent(FAKE_RUNNER) + "\ndef main(argv):\n    pass\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))  # the job process imports this zoo.runner (this process does not)
    settings = Settings.from_env()
    jobs, job = _claimed_job(settings)
    outcome = execute(job, jobs, make_storage(settings, db.get_engine(settings.database_url)), settings, "test-owner")
    done = jobs.get(job.id)
    assert outcome.state == "failed" and done.state == "failed" and done.attempts == 1, (outcome, done)
    assert done.error["error"] == "job_crashed" and "SIGKILL" not in done.error["message"], done.error
    assert "exited with code 1" in done.error["message"], done.error
    assert "RuntimeError: boom from inside the job" in done.error["message"], done.error
    assert any("boom from inside the job" in line for line in done.error["log_tail"]), done.error


# --- the quantiser: initializers the exporter merged through Identity nodes ------------------------------
def merged_initializer_onnx(path: Path) -> Path:
    """Convolutions whose identical weights and biases torch.onnx's TorchScript exporter stores once, feeding
    the later ones through Identity nodes: in an untrained timm ResNet, each block's last conv folds a
    zero-initialised norm, so those weights are all equal (and the quantiser then finds no initializer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype("float32"), "w0"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.1).astype("float32"), "w"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype("float32"), "b")]
    nodes = [helper.make_node("Conv", ["input", "w0", "b"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w", "b"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Identity", ["w"], ["w_copy"]),
             helper.make_node("Identity", ["b"], ["b_copy"]),
             helper.make_node("Conv", ["r1", "w_copy", "b_copy"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"])]
    graph = helper.make_graph(nodes, "merged", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_int8_quantises_a_graph_with_merged_initializers_and_stages_show_when_piped(tmp_path):
    """`zoo convert X.onnx --to onnx-int8` on a graph whose conv bias is an Identity of an initializer: exit 0,
    parity passed at int8 tolerance; stderr is a pipe here and still shows each stage (issue 13)."""
    import onnx

    src = merged_initializer_onnx(tmp_path / "merged.onnx")
    proc = run_zoo("convert", str(src), "--to", "onnx-int8", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["verified"] and out["parity"]["passed"] and out["format"] == "onnx-int8"
    quantised = onnx.load(out["path"])
    assert "ConvInteger" in {n.op_type for n in quantised.graph.node}
    assert not (Path(out["path"]).parent / ".unmerged").exists()  # no scratch file published
    for stage in ("zoo: convert onnx -> onnx-int8", "zoo: parity", "zoo: publish done"):
        assert stage in proc.stderr, proc.stderr


def _corrupt_only_artifact() -> Path:
    listed = json.loads(run_zoo("cache", "ls", "--json").stdout)["artifacts"]
    assert len(listed) == 1, listed
    path = Path(listed[0]["path"])
    path.parent.chmod(0o755)
    path.chmod(0o644)
    with open(path, "ab") as f:
        f.write(b"x")
    return path


def test_cache_repair_remakes_an_artifact_of_zoo_convert_and_says_when_it_cannot(tmp_path):
    """`zoo cache verify --repair` on an artifact made by `zoo convert FILE`: converted again from the file
    (exit 0, intact afterwards); with the file gone: removed, the line says how to make it again, exit 7,
    and the hint does not send the user to --repair again."""
    src = merged_initializer_onnx(tmp_path / "model.onnx")
    assert run_zoo("convert", str(src), "--to", "onnx-opt").returncode == 0
    _corrupt_only_artifact()
    repaired = run_zoo("cache", "verify", "--repair")
    assert repaired.returncode == 0 and "REPAIRED" in repaired.stdout and "converted again" in repaired.stdout, \
        repaired.stdout + repaired.stderr
    assert run_zoo("cache", "verify").returncode == 0  # the artifact made again is intact

    _corrupt_only_artifact()
    src.rename(tmp_path / "moved.onnx")
    lost = run_zoo("cache", "verify", "--repair")
    assert lost.returncode == 7, lost.stdout + lost.stderr
    assert f"no longer exists; make it again with: zoo convert {src} --to onnx-opt" in lost.stdout, lost.stdout
    assert "removed and could not be made again" in lost.stderr and "--repair" not in lost.stderr, lost.stderr
    assert json.loads(run_zoo("cache", "ls", "--json").stdout)["artifacts"] == []


# --- the command line's small edges ----------------------------------------------------------------------
def test_a_reader_that_stops_reading_ends_zoo_quietly():
    """`zoo list | head`: the pipe closes before zoo writes; zoo exits 141 (as `yes | head` does), no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "list", "--source", "keras", "--limit", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "error" not in err.lower() and "Traceback" not in err and "Exception ignored" not in err, err


def test_a_bad_format_lists_formats_not_graph_nodes():
    proc = run_zoo("pull", "resnet50", "--format", "bogus")
    assert proc.returncode == 5, proc.stderr
    hint = next(line for line in proc.stderr.splitlines() if line.startswith("zoo: hint: formats: "))
    listed = set(hint.removeprefix("zoo: hint: formats: ").split(" (")[0].split(", "))
    assert {"onnx", "onnx-int8", "pt2", "tflite"} <= listed and not listed & {"torch", "keras-model"}, hint


@pytest.mark.parametrize("typed", ["torch", "pytorch", "PyTorch", "pt2"])
def test_torch_and_pytorch_mean_pt2_on_the_command_line_and_in_jobs(typed):
    from zoo.cli.main import _parser
    from zoo.options import from_arguments
    from zoo.service.jobs import JobRequest

    assert from_arguments(_parser().parse_args(["convert", "m.onnx", "--to", typed])).format == "pt2"
    assert from_arguments(_parser().parse_args(["pull", "resnet50", "--format", typed])).format == "pt2"
    request = JobRequest(model="resnet50", format=typed)
    assert request.pull_options().format == "pt2"
    assert request.key() == JobRequest(model="resnet50", format="pt2").key()  # one job for both spellings


def test_importing_an_empty_folder_says_how_to_save_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_zoo("import", str(tmp_path / "empty"), "--name", "mine")
    assert proc.returncode == 7, proc.stderr
    assert "is empty" in proc.stderr and "save_pretrained" in proc.stderr and "save_for_hf" in proc.stderr
    assert "import a directory with" not in proc.stderr, proc.stderr


# --- the service, started as a user starts it: `zoo serve` from a folder that holds a `zoo/` directory -------
def _render(url: str) -> str:
    """The DOM a real headless Chromium builds for ``url`` (scripts run; this machine has no internet)."""
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def served_from_a_zoo_folder(tmp_path_factory, timm_index_db):
    """`zoo serve` (the installed console script) whose working directory holds a `zoo/` package that
    would break any process importing it."""
    import shutil
    import time

    import httpx
    from serverproc import free_port, stop_process

    from zoo import db
    from zoo.service import tokens
    from zoo.settings import Settings

    root = tmp_path_factory.mktemp("served")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_")) and k != "PYTHONPATH"}
    env.update({"ZOO_HOME": str(root / "home"), "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"})
    (root / "home").mkdir()
    shutil.copyfile(timm_index_db, root / "home" / "registry.db")
    settings = Settings.from_env(env)
    secret, _ = tokens.create_token(db.get_engine(settings.database_url), "write", "test")
    cwd = root / "workdir"
    (cwd / "zoo").mkdir(parents=True)
    (cwd / "zoo" / "__init__.py").write_text("raise ImportError('the zoo/ folder in the working directory was imported')\n")
    port = free_port()
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "zoo"), "serve", "--port", str(port), "--workers", "1",
                             "--log-level", "warning"], cwd=cwd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url, secret, settings
    finally:
        stop_process(proc)
        log.close()
        db.dispose_engine(settings.database_url)


def test_jobs_run_the_installed_zoo_from_any_folder(served_from_a_zoo_folder):
    """The job process imports the installed zoo although the server's working directory holds a `zoo/` folder:
    a hub model that is not cached (the server is offline) fails with zoo's own offline error, answered by the
    job, not a crash on import. (No framework is imported: the cheap half; the conversion is the slow test.)"""
    import httpx
    from serverproc import finished, wait_job

    url, secret, _ = served_from_a_zoo_folder
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        submitted = client.post("/v1/jobs", json={"model": "timm/test_resnet.r160_in1k", "format": "onnx"})
        assert submitted.status_code == 202, submitted.text
        job = wait_job(client, submitted.json()["id"], finished, timeout=300)
    assert job["state"] == "failed" and job["error"]["error"] == "offline_not_cached", job["error"]
    assert job["error"]["exit_code"] == 4 and job["attempts"] == 1, job


@pytest.mark.slow
def test_jobs_convert_from_any_folder_and_a_finished_request_answers_200(served_from_a_zoo_folder):
    """A real conversion job from that folder succeeds; the same request again answers 200 with a finished job,
    for a local import too (README). (A torch export in the job process: slow on a busy machine.)"""
    import httpx
    from builders import timm_repo
    from serverproc import finished, wait_job

    from zoo.registry.local_source import import_path

    url, secret, settings = served_from_a_zoo_folder
    files = settings.home.parent / "tiny-files"
    files.mkdir()
    for name, data in timm_repo("test_resnet.r160_in1k").items():
        (files / name).write_bytes(data)
    import_path(files, "tiny", settings)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        first = client.post("/v1/jobs", json={"model": "local:tiny", "format": "onnx"})
        assert first.status_code == 202, first.text
        job = wait_job(client, first.json()["id"], finished, timeout=300)
        assert job["state"] == "succeeded", job["error"]
        again = client.post("/v1/jobs", json={"model": "local:tiny", "format": "onnx"})
        assert again.status_code == 200, again.text
        body = again.json()
        assert body["state"] == "succeeded" and body["result"]["cached"] is True
        assert body["result"]["sha256"] == job["result"]["sha256"]


def test_docs_render_without_internet(served_from_a_zoo_folder):
    """/docs is Swagger UI from files the server serves itself: a real Chromium, with no way out to a CDN,
    renders the operations."""
    import httpx

    url, _, _ = served_from_a_zoo_folder
    page = httpx.get(f"{url}/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower(), page
    assert httpx.get(f"{url}/docs/assets/swagger-ui-bundle.js").status_code == 200
    dom = _render(f"{url}/docs")
    assert "opblock" in dom and "/v1/jobs" in dom, dom[-3000:]


def _state_dict_folder(tmp_path: Path):
    """README 'Bring your own model': torch.save(model.state_dict()) next to a config.json that gives only the
    timm architecture and its classes (nothing of timm's preprocessing)."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=7).eval()
    folder = tmp_path / "mine"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pth")
    (folder / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 7}))
    return folder, model


def test_a_config_naming_only_its_architecture_gets_inputs_that_fit(tmp_path):
    """Imported, such a record has what parity's inputs need (was KeyError: 'input_size'): timm's defaults."""
    from safetensors.numpy import save_file

    from zoo.converters.parity.inputs import parity_input_sets
    from zoo.registry.local_source import import_path
    from zoo.settings import Settings

    folder = tmp_path / "mine"
    folder.mkdir()
    save_file({"fc.weight": np.zeros((7, 8), "float32")}, str(folder / "model.safetensors"))  # read as a header only
    (folder / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 7}))
    record = import_path(folder, "mine", Settings.from_env())
    sample = next(s for s in parity_input_sets(record) if s.kind == "sample").feeds["input"]
    assert sample.shape[1:] == (3, 224, 224) and record.preprocessing["mean"] == [0.485, 0.456, 0.406]
    assert -3 < sample.min() < 0 < sample.max() < 3  # normalised pixels, as timm's eval transform gives


@pytest.mark.slow
def test_a_state_dict_with_a_config_naming_only_its_architecture_imports_and_pulls(tmp_path):
    """The same recipe end to end: converted, parity passed, and the ONNX file computes what the model does."""
    import onnxruntime as ort
    import torch

    from zoo.options import Options
    from zoo.pipeline import pull
    from zoo.registry.local_source import import_path
    from zoo.settings import Settings

    folder, model = _state_dict_folder(tmp_path)
    settings = Settings.from_env()
    import_path(folder, "mine", settings)
    result = pull("local:mine", Options(format="onnx"), settings=settings)
    assert result.verified and result.parity["passed"]
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype("float32")
    got = ort.InferenceSession(result.path).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_every_readme_section_the_scripts_and_hints_name_exists():
    """setup.sh, zoo.sh, zoo demo and zoo import's hint send newcomers to README sections: each must exist."""
    import re

    headings = {re.sub(r"^#+\s*", "", line).strip() for line in (REPO_ROOT / "README.md").read_text().splitlines()
                if line.startswith("#")}
    named = set()
    for path in [*(REPO_ROOT / "scripts").glob("*.sh"), *(REPO_ROOT / "zoo").rglob("*.py"),
                 *(REPO_ROOT / "registry").glob("*.py")]:
        text = path.read_text()
        named |= {(path.name, m) for m in re.findall(r"README(?:\.md)?[,:]? (?:section )?['\"]([^'\"]+)['\"]", text)}
    assert {n for _, n in named} >= {"Installing", "No hub access", "Bring your own model"}, named
    missing = {(f, n) for f, n in named if not any(h == n or h.startswith(n + ":") for h in headings)}
    assert not missing, missing


@pytest.mark.slow
def test_the_quick_start_command_without_hub_goes_on_with_the_demo(tmp_path):
    """README's first command on a machine whose hub cannot be reached: exit 4 from the pull, then `zoo demo`
    builds, imports, converts (4 verified artifacts), serves, runs a job through the API and says what next.
    (About two minutes on 2 cores: slow.)"""
    import signal
    import time

    from serverproc import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_"))}
    env.update({"ZOO_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"), "ZOO_PORT": str(free_port()),
                "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})  # nothing listens there: the hub is unreachable
    proc = subprocess.Popen([str(REPO_ROOT / "scripts" / "zoo.sh"), "pull", "resnet50", "--format", "onnx"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines, deadline = [], time.monotonic() + 900
    try:
        for line in proc.stdout:
            lines.append(line)
            if "serving until Ctrl-C" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    out = "".join(lines)
    assert "zoo: error: cannot reach the hub" in out and "zoo.sh: the hub cannot be reached" in out, out
    assert "RANDOM weights" in out and out.count(": verified, parity") == 4, out
    assert "job succeeded" in out and "What to try next" in out and "serving until Ctrl-C" in out, out

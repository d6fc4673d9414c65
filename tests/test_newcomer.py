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

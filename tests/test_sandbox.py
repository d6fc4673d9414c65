"""The confined child that SavedModels are loaded, run and converted in (zoo.sandbox): real Landlock,
a real network namespace, and a SavedModel whose signature writes a file once it is past the op check."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from zoo import errors
from zoo.sandbox import landlock_abi, run_confined

pytestmark = pytest.mark.skipif(landlock_abi() < 1 and __import__("os").environ.get("CI") != "true",
                                reason="this kernel has no Landlock (in CI this fails instead)")


def _attempts(outside: str, scratch: str, port: int) -> dict[str, str]:
    import os

    results = {}
    for name, path in (("outside", outside), ("inside", f"{scratch}/made-here")):
        try:
            with open(path, "w") as f:
                f.write("x")
            results[name] = "written"
        except OSError as exc:
            results[name] = type(exc).__name__
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        results["tcp"] = "connected"
    except OSError as exc:
        results["tcp"] = type(exc).__name__
    results["token"] = os.environ.get("HF_TOKEN", "gone")
    return results


def test_the_child_writes_only_in_its_scratch_reaches_no_socket_and_holds_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with socket.socket() as server:  # a live listener in the parent: the child must not reach it
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        out = run_confined(lambda walls: {**_attempts(str(tmp_path / "outside"), str(scratch), port), "walls": walls},
                           scratch, what="a test function")
        assert _attempts(str(tmp_path / "outside-parent"), str(scratch), port)["tcp"] == "connected"  # it is live
    assert out["outside"] == "PermissionError" and not (tmp_path / "outside").exists()
    assert out["inside"] == "written" and (scratch / "made-here").read_text() == "x"
    assert out["tcp"] != "connected" and out["token"] == "gone"
    assert any(w.startswith("landlock-abi") for w in out["walls"])


def test_errors_come_back_as_their_own_class_and_crashes_as_conversion_errors(tmp_path):
    def refuse(walls):
        raise errors.SourceModelError("the source failed", hint="feed it better", input_set="random-b2-s0")

    with pytest.raises(errors.SourceModelError) as info:
        run_confined(refuse, tmp_path, what="x")
    assert info.value.hint == "feed it better" and info.value.details["input_set"] == "random-b2-s0"
    with pytest.raises(errors.ConversionError, match="ZeroDivisionError"):
        run_confined(lambda walls: 1 / 0, tmp_path, what="x")


# A SavedModel past zoo's op check (patched away here): only the sandbox stands between its signature and
# the disk. With ZOO_SANDBOX=off the same run writes the canary: the test can fail.
_DRIVER = """
import sys
import zoo.converters.loaders.saved_model_check as check
check.check_saved_model = lambda path: None
from zoo.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _onnx_times_two(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("command", ["convert", "parity-candidate"])  # (a SavedModel reference gives no inputs)
@pytest.mark.parametrize("sandbox", ["landlock", "off"])
def test_a_saved_model_past_the_op_check_cannot_write_outside_staging(zoo_env, tmp_path, sandbox, command):
    """``zoo convert DIR`` and ``zoo parity`` with a SavedModel on either side."""
    import os

    import hostile_tf

    canary = tmp_path / "canary"
    saved = hostile_tf.signature(canary, tmp_path / "sm", "WriteFile")
    onnx_file = str(_onnx_times_two(tmp_path / "two.onnx"))
    args = {"convert": ["convert", str(saved), "--to", "onnx", "--json"],
            "parity-candidate": ["parity", onnx_file, str(saved), "--json"]}[command]
    env = {**os.environ, "ZOO_SANDBOX": sandbox, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *args],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    if sandbox == "off":
        assert canary.exists(), "the payload is live: without the sandbox it writes"
        return
    assert not canary.exists(), "the SavedModel wrote outside its staging directory"
    assert proc.returncode != 0, proc.stdout[-2000:]
    said = proc.stdout + proc.stderr
    assert "Permission denied" in said or "PermissionDenied" in said, said[-3000:]
    assert not any((zoo_env.home / "artifacts").glob("*")) if (zoo_env.home / "artifacts").exists() else True


def test_a_genuine_saved_model_converts_inside_the_sandbox(zoo_env, tmp_path):
    import os

    import hostile_tf

    saved = hostile_tf.genuine(tmp_path / "c", tmp_path / "sm")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "zoo", "convert", str(saved), "--to", "onnx", "--json"],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["verified"] and any(w.startswith("landlock-abi") for w in result["conversion"]["sandbox"])

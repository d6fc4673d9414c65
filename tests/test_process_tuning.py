"""The ``zoo`` process's own settings (zoo/cli/main.py ``tune_process``): PyTorch's OpenMP threads sleep
instead of spinning, and a one-shot command's garbage collector neither re-walks the frameworks' objects
nor walks them all again at exit. Observed in a real ``python -m zoo`` process, at its exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# ``python -m zoo ARGS`` as runpy runs it, plus an exit hook that reports what the process ran with.
PROBE = """
import atexit, gc, json, os, runpy, sys
atexit.register(lambda: print("PROBE " + json.dumps({"omp": os.environ.get("OMP_WAIT_POLICY"),
    "threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}), file=sys.stderr))
sys.argv = ["zoo", *json.loads(sys.argv[1])]
runpy.run_module("zoo", run_name="__main__", alter_sys=True)
"""

IN_PROCESS = """
import gc, json, os, sys
from zoo.cli.main import main
code = main(["cache", "ls", "--json"])
print("PROBE " + json.dumps({"omp": os.environ.get("OMP_WAIT_POLICY"), "threshold": gc.get_threshold()[0],
                             "frozen": gc.get_freeze_count(), "code": code}), file=sys.stderr)
"""


def probe(code: str, args: list[str], env: dict[str, str]) -> dict:
    merged = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the test's own runner may set it
    merged.update({"PYTHONPATH": str(REPO_ROOT), **env})
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=merged, capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE ")]
    assert lines, proc.stderr[-2000:]
    return {**json.loads(lines[-1][6:]), "rc": proc.returncode}


@pytest.mark.parametrize("env, omp", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")])
def test_a_zoo_process_sleeps_openmp_threads_and_spares_the_collector(env, omp):
    got = probe(PROBE, ["cache", "ls", "--json"], env)
    assert got["rc"] == 0
    assert got["omp"] == omp  # set before any framework loads libgomp; a user's own value is kept
    assert got["threshold"] == 50_000
    assert got["frozen"] > 0  # the interpreter's last collections skip what is left


def test_an_in_process_call_leaves_the_callers_process_alone():
    import gc

    got = probe(IN_PROCESS, [], {})
    assert got["code"] == 0 and got["omp"] is None
    assert got["threshold"] == gc.get_threshold()[0] and got["frozen"] == 0


def test_a_long_lived_command_keeps_the_collector():
    code = ("import gc, json, sys; from zoo.cli.main import LONG_LIVED, tune_process; tune_process(False); "
            "print('PROBE ' + json.dumps({'threshold': gc.get_threshold()[0], 'long': list(LONG_LIVED)}), file=sys.stderr)")
    got = probe(code, [], {})
    assert got["threshold"] < 50_000 and set(got["long"]) == {"serve", "worker"}

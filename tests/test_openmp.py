"""The CLI makes OpenMP threads sleep when idle (``zoo.settings.quiet_openmp``) before anything imports torch:
parity alternates PyTorch and onnxruntime in one process, and libgomp's default spin-wait starves the other
runtime (bench/README.md, ``bench_llm.py``). A value the user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys
from zoo.cli.main import main
try:
    main(["--help"])  # the first thing main does; argparse exits after printing the help
except SystemExit:
    pass
print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))
"""


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_cli_sets_a_passive_openmp_wait_policy_unless_given(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == f"False {expected}"  # set, and torch not imported yet

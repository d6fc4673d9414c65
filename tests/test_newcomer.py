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

"""Hostile repos through the HTTP API: every `zoo pull`-route case of the hostile corpus
(tests/hostile.py) submitted as a job to a real `zoo serve`, whose job processes fetch from the
test hub. Each job must fail with the refusal the CLI gives (same exit code, same words), run
nothing (no canary), publish nothing, and leave the server serving."""

from __future__ import annotations

import hostile
import pytest
from conftest import TIMM_REPO
from hubserver import Repo
from serverproc import ZooServer, finished, wait_job
from test_api import FRAMEWORKS, make_home, server_env

# Cases that set the environment of the zoo process itself (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) belong to the
# CLI tests: here one server's environment serves every job.
PULL_CASES = [c for c in hostile.corpus() if c.route == "pull" and not c.env]


@pytest.fixture(scope="module")
def hostile_api(tmp_path_factory, tiny_repos, timm_index_db, hub):
    root = tmp_path_factory.mktemp("api-hostile")
    home = make_home(root, timm_index_db, tiny_repos, repos=())
    env = server_env(root, HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.endpoint, ZOO_JOB_LEASE="3")
    server = ZooServer(home, env, workers=1).start()
    try:
        yield server, server.token("write")
    finally:
        server.stop()


def test_the_corpus_has_pull_cases():
    assert len(PULL_CASES) >= 10 and {c.family for c in PULL_CASES} >= {"hub-names", "remote-code", "pickle"}


@pytest.mark.parametrize("case", PULL_CASES, ids=[c.id for c in PULL_CASES])
def test_hostile_repo_submitted_as_a_job_is_refused(hostile_api, hub, tiny_repos, tmp_path, case):
    server, token = hostile_api
    canary = tmp_path / "canary"
    work = tmp_path / "work"
    work.mkdir()
    target = case.build(work, canary, tiny_repos[TIMM_REPO])
    info = {"siblings": [{"rfilename": n} for n in target.siblings]} if target.siblings else {}
    repo_id = f"zoo-hostile-api/{case.id}"
    hub.add(Repo(repo_id, target.repo_files, info=info))
    with server.client(token) as client:
        response = client.post("/v1/jobs", json={"model": repo_id, "format": "onnx"})
        assert response.status_code == 202, response.text
        job = wait_job(client, response.json()["id"], finished)
        executed = canary.exists()
        hostile.OUTCOMES.append({"case": case.id, "family": case.family, "route": "api", "refused": job["state"] == "failed",
                                 "executed": executed, "exit_code": (job["error"] or {}).get("exit_code")})
        assert not executed, f"{case.id}: the payload ran inside the job process"
        assert job["state"] == "failed" and job["attempts"] == 1, job  # a refusal is final, not retried
        assert job["error"]["exit_code"] == case.code and case.needle in job["error"]["message"], job["error"]
        assert 400 <= job["error"]["status"] < 500  # the client's model is at fault, not the server
        assert not any((server.home / "artifacts").glob("*")) and not any((server.home / "quarantine").glob("*"))
        assert client.get("/healthz").status_code == 200


def test_refusing_hostile_repos_imported_no_framework_into_the_api(hostile_api):
    """Last in this module: the API process stops and reports what it imported."""
    server, _ = hostile_api
    server.stop()
    assert not (server.modules() & FRAMEWORKS), server.modules() & FRAMEWORKS

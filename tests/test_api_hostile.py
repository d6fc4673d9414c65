"""Hostile repos through the HTTP API: every `zoo pull`-route case of the hostile corpus
(tests/hostile.py) submitted as a job to a real `zoo serve`, whose job processes fetch from the
test hub. Each job must fail with the refusal the CLI gives (same exit code, same words), run
nothing (no canary), publish nothing, and leave the server serving."""

from __future__ import annotations

from pathlib import Path

import hostile
import pytest
from conftest import TIMM_REPO
from hubserver import Repo
from serverproc import ZooServer, finished, job_processes, wait_job
from test_api import FRAMEWORKS, make_home, server_env

# Cases that set the environment of the zoo process itself (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) belong to the
# CLI tests: here one server's environment serves every job.
PULL_CASES = [c for c in hostile.corpus() if c.route == "pull" and not c.env]


@pytest.fixture(scope="module")
def hostile_api(tmp_path_factory, tiny_repos, timm_index_db, hub):
    root = tmp_path_factory.mktemp("api-hostile")
    home = make_home(root, timm_index_db, tiny_repos, repos=())
    # The server holds a hub token (HF_TOKEN): it can fetch gated repos, which its mirror must not hand out.
    env = server_env(root, HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.endpoint, ZOO_JOB_LEASE="3", HF_TOKEN=hub.token)
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


def test_mirror_serves_a_gated_repo_only_to_token_holders(hostile_api, hub, tiny_repos):
    """A write-token holder makes the server fetch a gated repo with the server's HF_TOKEN: the mirror
    then answers "not held" to anonymous callers (and to tokens that are not zoo's) and serves it to
    zoo read tokens; a public repo fetched the same way stays open to anyone."""
    server, write = hostile_api
    read = server.token("read")
    # Weights that fail zoo's check after the fetch: the jobs end fast, the snapshots are held all the same.
    files = {**tiny_repos[TIMM_REPO], "model.safetensors": hostile.LYING_SAFETENSORS["overlapping"]}
    hub.add(Repo("zoo-mirror/gated", files, gated=True))
    hub.add(Repo("zoo-mirror/public", files))
    with server.client(write) as client:
        for repo in ("zoo-mirror/gated", "zoo-mirror/public"):
            response = client.post("/v1/jobs", json={"model": repo, "format": "onnx"})
            job = wait_job(client, response.json()["id"], finished)
            assert job["state"] == "failed" and "overlap" in job["error"]["message"], job
    paths = ["/api/models/{r}", "/api/models/{r}/revision/main", "/api/models/{r}/tree/main", "/{r}/resolve/main/config.json"]
    for token, gated_status in ((None, 404), ("hf_not_a_zoo_token", 404), (read, 200), (write, 200)):
        with server.client(token) as client:
            for path in paths:
                got = client.get(path.format(r="zoo-mirror/gated"))
                assert got.status_code == gated_status, (token, path, got.text)
                if gated_status == 404:
                    assert got.headers["X-Error-Code"] == "RepoNotFound" and files["config.json"] not in got.content
                assert client.get(path.format(r="zoo-mirror/public")).status_code == 200, (token, path)


def test_job_errors_carry_no_server_paths_and_jobs_have_a_memory_limit(hostile_api, hub, tiny_repos):
    """A job whose parity fails (fp16 at zero tolerance) keeps its artifact in quarantine: the error says so
    without the quarantine path (nor any other server path); the job process ran under the default
    address-space limit derived from the machine's memory (ZOO_JOB_MEMORY_MB unset)."""
    import json as json_

    from zoo.settings import default_job_memory_mb

    server, write = hostile_api
    hub.add(Repo("zoo-paths/model", tiny_repos[TIMM_REPO]))
    limits: set[str] = set()

    def watch(job: dict) -> bool:
        for pid in job_processes(job["id"]):
            try:
                limits.update(line.split()[3] for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                              if line.startswith("Max address space"))
            except OSError:
                pass
        return finished(job)

    with server.client(write) as client:
        response = client.post("/v1/jobs", json={"model": "zoo-paths/model", "format": "onnx-fp16",
                                                    "options": {"atol": 0, "rtol": 0}})
        job = wait_job(client, response.json()["id"], watch)
    assert job["state"] == "failed" and job["error"]["error"] == "parity_failed", job["error"]
    text = json_.dumps(job)
    assert any((server.home / "quarantine").iterdir())  # the artifact is kept, on the server only
    assert str(server.home) not in text and "/quarantine/" not in text and "quarantined" not in job["error"], text
    assert "<server path>" in job["error"]["hint"]
    assert str(default_job_memory_mb() << 20) in limits, limits  # (seen "unlimited" only before the runner set it)


def test_refusing_hostile_repos_imported_no_framework_into_the_api(hostile_api):
    """Last in this module: the API process stops and reports what it imported."""
    server, _ = hostile_api
    server.stop()
    assert not (server.modules() & FRAMEWORKS), server.modules() & FRAMEWORKS

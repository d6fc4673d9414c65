"""The HTTP API end to end: a real ``zoo serve`` (uvicorn on 127.0.0.1) with its local worker
pool, offline against a Hugging Face cache holding a tiny timm model.

One server serves the whole module (reads need a token here: ZOO_READ_AUTH=1); the jobs run
real conversions in real child processes. The last test stops the server and checks that its
process never imported a framework.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from builders import write_hf_cache
from conftest import _DELETED_ENV, TIMM_REPO
from serverproc import ZooServer, finished, job_processes, pid_gone, wait_job

FRAMEWORKS = {"torch", "tensorflow", "keras", "timm", "transformers", "onnxruntime", "onnx", "tf2onnx"}
FAST = {"exporter": "torchscript"}  # the quicker exporter, where the exporter does not matter


@dataclass
class Api:
    server: ZooServer
    tokens: dict[str, str]
    hub_cache: Path

    def client(self, scope: str | None = "write", **kwargs) -> httpx.Client:
        return self.server.client(self.tokens[scope] if scope else None, **kwargs)


def server_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DELETED_ENV}
    return {**env, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "ZOO_DEBUG": "1", **extra}


def make_home(root: Path, timm_index_db: Path, tiny_repos: dict, repos=(TIMM_REPO,)) -> Path:
    home = root / "zoo"
    home.mkdir(parents=True)
    shutil.copyfile(timm_index_db, home / "registry.db")
    for repo in repos:
        write_hf_cache(root / "hf" / "hub", repo, tiny_repos[repo])
    return home


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_repos, timm_index_db):
    root = tmp_path_factory.mktemp("api")
    home = make_home(root, timm_index_db, tiny_repos)
    server = ZooServer(home, server_env(root, ZOO_READ_AUTH="1", ZOO_JOB_LEASE="3"), workers=1).start()
    try:
        yield Api(server, {s: server.token(s) for s in ("read", "write", "admin")}, root / "hf" / "hub")
    finally:
        server.stop()


def read_sse(client: httpx.Client, path: str, headers: dict | None = None) -> list[tuple[int | None, str, dict]]:
    """Every event of a stream until its ``end`` event: (id, event, data)."""
    events, current = [], {}
    with client.stream("GET", path, headers=headers, timeout=300) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                field, _, value = line.partition(":")
                current[field] = value.strip()
            elif not line and "event" in current:
                events.append((int(current["id"]) if "id" in current else None, current["event"],
                               json.loads(current["data"])))
                if current["event"] == "end":
                    return events
                current = {}
    return events


def submit(client: httpx.Client, model: str = "test_resnet", **body) -> httpx.Response:
    return client.post("/v1/jobs", json={"model": model, **body})


# --- the main path ------------------------------------------------------------------------------
def test_submit_stream_poll_and_download(api):
    client = api.client()
    response = submit(client)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running") and response.headers["location"] == f"/v1/jobs/{job['id']}"
    events = read_sse(client, f"/v1/jobs/{job['id']}/events")
    states = [d["state"] for _, kind, d in events if kind == "state"]
    stages = [d["stage"] for _, kind, d in events if kind == "stage"]
    assert states == ["queued", "running", "succeeded"], events
    assert stages[:2] == ["resolve", "fetch"] and "parity" in stages and stages[-1] == "publish"
    ids = [i for i, _, _ in events if i is not None]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    end = events[-1][2]
    assert end["state"] == "succeeded" and end["progress"] == 1.0
    # resuming after an event id replays only what came later
    later = read_sse(client, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(ids[-2])})
    assert [i for i, _, _ in later if i is not None] == [ids[-1]]

    done = client.get(f"/v1/jobs/{job['id']}").json()
    result = done["result"]
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["finished_at"] and done["started_at"]
    assert result["model"] == TIMM_REPO and result["verified"] and result["parity"]["passed"]
    assert result["artifact"]["url"] == f"/v1/artifacts/{result['sha256']}" and "path" not in result
    body = client.get(result["artifact"]["url"])
    assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == result["sha256"]
    assert int(body.headers["content-length"]) == result["size"] == len(body.content)
    assert body.headers["etag"] == f'"{result["sha256"]}"' and "immutable" in body.headers["cache-control"]
    assert body.headers["repr-digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(result['sha256'])).decode()}:"
    import onnx

    assert {p.key for p in onnx.load_from_string(body.content).metadata_props} >= {"zoo.parity", "zoo.source"}

    # the same request again: answered from the store, 200, without a conversion
    again = submit(client)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "succeeded" and again.json()["result"]["cached"] is True
    assert again.json()["result"]["sha256"] == result["sha256"] and again.json()["id"] != job["id"]

    model = client.get(f"/v1/models/{TIMM_REPO}").json()
    assert model["formats"] == ["onnx"] and model["artifacts"][0]["sha256"] == result["sha256"]
    assert model["artifacts"][0]["parity"]["passed"] and model["revisions"][0]["files"]
    listed = client.get("/v1/models", params={"q": "test_res", "source": "timm", "limit": 5}).json()
    assert TIMM_REPO in [m["id"] for m in listed["data"]] and listed["count"] >= 1
    jobs = client.get("/v1/jobs", params={"state": "succeeded"}).json()
    assert {job["id"], again.json()["id"]} <= {j["id"] for j in jobs["data"]}


def test_artifact_ranges_and_conditional_requests(api):
    client = api.client("read")
    sha = client.get("/v1/jobs", params={"state": "succeeded"}).json()["data"][0]["result"]["sha256"]
    whole = client.get(f"/v1/artifacts/{sha}").content
    part = client.get(f"/v1/artifacts/{sha}", headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == whole[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole)}" and part.headers["content-length"] == "100"
    tail = client.get(f"/v1/artifacts/{sha}", headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == whole[-7:]
    beyond = client.get(f"/v1/artifacts/{sha}", headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(whole)}"
    assert beyond.json()["error"] == "range_not_satisfiable"
    stale = client.get(f"/v1/artifacts/{sha}", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == whole  # If-Range mismatch: the whole file
    cached = client.get(f"/v1/artifacts/{sha}", headers={"If-None-Match": f'W/"x", "{sha}"'})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == f'"{sha}"'
    head = client.head(f"/v1/artifacts/{sha}")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(whole))
    assert client.get(f"/v1/artifacts/{'0' * 64}").status_code == 404


def test_directory_artifacts_download_as_one_deterministic_tar(api, tmp_path):
    """A multi-file artifact published into the server's store (as a conversion would) comes back
    as a tar whose sha256 is its name, with ranges that cut through it."""
    from builders import directory_artifact

    from zoo import db
    from zoo.settings import Settings
    from zoo.storage.blobs import LocalStorage

    settings = Settings.from_env({**api.server.env})
    files = {"model.onnx": os.urandom(3000), "tokenizer.json": b'{"v": 1}', "sub/vocab.txt": b"a\nb\n"}
    art = directory_artifact(settings, files)
    sha, size = LocalStorage(settings, db.get_engine(settings.database_url)).index_archive(art.digest)
    client = api.client("read")
    tar = client.get(f"/v1/artifacts/{sha}")
    assert tar.status_code == 200 and hashlib.sha256(tar.content).hexdigest() == sha and len(tar.content) == size
    assert tar.headers["content-type"] == "application/x-tar" and tar.headers["etag"] == f'"{sha}"'
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        members = {m.name.split("/", 1)[1]: archive.extractfile(m).read() for m in archive.getmembers()}
    assert {k: v for k, v in members.items() if k != "zoo.json"} == files
    assert json.loads(members["zoo.json"])["digest"] == art.digest
    middle = client.get(f"/v1/artifacts/{sha}", headers={"Range": "bytes=500-3999"})
    assert middle.status_code == 206 and middle.content == tar.content[500:4000]
    # the primary file alone, by its own sha256
    primary = hashlib.sha256(files["model.onnx"]).hexdigest()
    assert client.get(f"/v1/artifacts/{primary}").content == files["model.onnx"]


def test_identical_submissions_in_flight_run_one_conversion(api):
    client = api.client()

    def metric(name: str) -> float:
        text = client.get("/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    conversions, attempts = metric("zoo_conversions_total"), metric("zoo_job_attempts_total")
    barrier = threading.Barrier(50)
    responses: list[httpx.Response] = []

    def post() -> None:
        with api.client() as own:
            barrier.wait()
            responses.append(submit(own, options=FAST, format="onnx"))

    threads = [threading.Thread(target=post) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(responses) == 50 and {r.status_code for r in responses} == {202}, {r.text for r in responses}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    job = wait_job(client, ids.pop(), finished)
    assert job["state"] == "succeeded" and job["attempts"] == 1 and job["result"]["cached"] is False
    assert metric("zoo_conversions_total") - conversions == 1
    assert metric("zoo_job_attempts_total") - attempts == 1
    same = client.get("/v1/jobs", params={"model": "test_resnet", "limit": 500}).json()["data"]
    assert sum(1 for j in same if j["options"].get("exporter") == "torchscript") == 1


def test_idempotency_key(api):
    client = api.client()
    body = {"model": "test_resnet", "options": {"exporter": "torchscript", "opset": 17}}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    second = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == 202 and second.json()["id"] == first.json()["id"]
    other = client.post("/v1/jobs", json={**body, "format": "onnx-fp16"}, headers={"Idempotency-Key": "abc-1"})
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    canceled = client.post(f"/v1/jobs/{first.json()['id']}/cancel")
    assert canceled.status_code in (200, 202)
    wait_job(client, first.json()["id"], finished)


def test_a_strict_request_never_joins_a_lax_job(api):
    """--allow-mismatch may publish an unverified artifact and call the job succeeded: a request without
    it must get a job of its own (which fails when parity fails), never the lax one in flight."""
    client = api.client()
    options = {**FAST, "opset": 13}
    lax = submit(client, options={**options, "allow_mismatch": True})
    strict = submit(client, options=options)
    assert lax.status_code == strict.status_code == 202, (lax.text, strict.text)
    lax_id, strict_id = lax.json()["id"], strict.json()["id"]
    assert strict_id != lax_id
    assert not strict.json()["options"].get("allow_mismatch") and lax.json()["options"]["allow_mismatch"] is True
    # identical requests still share their own job
    assert submit(client, options=options).json()["id"] == strict_id
    assert submit(client, options={**options, "allow_mismatch": True}).json()["id"] == lax_id
    for job_id in (strict_id, lax_id):
        client.post(f"/v1/jobs/{job_id}/cancel")
        assert wait_job(client, job_id, finished, timeout=60)["state"] == "canceled"


def _a_succeeded_job(client: httpx.Client) -> dict:
    """One finished, succeeded job of this server (the module's earlier tests leave some; alone, make one)."""
    done = client.get("/v1/jobs", params={"state": "succeeded"}).json()["data"]
    if done:
        return done[0]
    job = submit(client, options=FAST).json()
    return wait_job(client, job["id"], finished)


def test_cancel_kills_the_conversion_and_publishes_nothing(api):
    client = api.client()
    done = _a_succeeded_job(client)  # before the snapshot: it may publish
    artifacts_before = sorted(p.name for p in (api.server.home / "artifacts").iterdir())
    job = submit(client, options={**FAST, "opset": 16}).json()
    running = wait_job(client, job["id"], lambda j: j["stage"] in ("load", "export") or finished(j))
    assert running["state"] == "running", running
    pids = job_processes(job["id"])
    assert len(pids) == 1
    refused = api.client("read").post(f"/v1/jobs/{job['id']}/cancel")  # cancelling takes the write scope
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden", refused.text
    still = client.get(f"/v1/jobs/{job['id']}").json()
    assert still["state"] == "running" and still["cancel_requested"] is False and job_processes(job["id"]) == pids
    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
    canceled = wait_job(client, job["id"], finished, timeout=60)
    assert canceled["state"] == "canceled" and canceled["result"] is None
    assert pid_gone(pids[0]) and job_processes(job["id"]) == []
    assert sorted(p.name for p in (api.server.home / "artifacts").iterdir()) == artifacts_before
    assert not [p for p in (api.server.home / "tmp").iterdir() if p.name.startswith(f"{pids[0]}-")]
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "canceled"
    refused = client.post(f"/v1/jobs/{done['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"] == "job_state"


def test_a_killed_job_process_is_retried_and_publishes_only_a_whole_artifact(api):
    client = api.client()
    job = submit(client, options={**FAST, "opset": 15}).json()
    wait_job(client, job["id"], lambda j: j["stage"] in ("load", "export") or finished(j))
    (pid,) = job_processes(job["id"])
    os.kill(pid, signal.SIGKILL)
    done = wait_job(client, job["id"], finished)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    events = read_sse(client, f"/v1/jobs/{job['id']}/events")
    requeued = [d for _, kind, d in events if kind == "state" and d["state"] == "queued"]
    assert len(requeued) == 2 and "SIGKILL" in requeued[1]["reason"]
    # what was published is complete: every file hashes to its manifest entry
    from zoo.storage.artifacts import ArtifactStore

    store = ArtifactStore(api.server.home)
    art = store.get(done["result"]["digest"])
    assert art is not None and store.verify(art) == []
    assert not [p for p in (api.server.home / "tmp").iterdir() if p.name.startswith(f"{pid}-")]


# --- the hub mirror, with the real huggingface_hub client and timm --------------------------------
def _hold(api: Api, repo_id: str, tiny_repos: dict) -> str:
    """Register ``repo_id`` in the server's registry, as a pull that fetched it does."""
    from zoo.registry.hf_source import file_infos
    from zoo.registry.index import Registry
    from zoo.settings import Settings

    root = write_hf_cache(api.hub_cache, repo_id, tiny_repos[repo_id])
    registry = Registry(Settings.from_env({**api.server.env}))
    registry.add_revision(repo_id, root.name, file_infos(root, sorted(tiny_repos[repo_id])))
    return root.name


def test_hub_mirror_serves_the_real_client(api, tiny_repos, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub import errors as hf_errors

    repo = "zoo-test/tiny-bert"
    commit = _hold(api, repo, tiny_repos)
    token = api.tokens["read"]
    kwargs = {"endpoint": api.server.url, "token": token, "cache_dir": tmp_path / "client"}
    path = hf_hub_download(repo, "model.safetensors", **kwargs)
    assert Path(path).read_bytes() == tiny_repos[repo]["model.safetensors"] and f"/{commit}/" in path
    folder = snapshot_download(repo, **kwargs)
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
    assert got == tiny_repos[repo]
    info = HfApi(endpoint=api.server.url, token=token).model_info(repo, files_metadata=True)
    assert info.sha == commit and {s.rfilename for s in info.siblings} == set(tiny_repos[repo])
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        hf_hub_download("zoo-test/not-held", "config.json", **kwargs)
    with pytest.raises(hf_errors.EntryNotFoundError):
        hf_hub_download(repo, "missing.bin", **kwargs)
    with pytest.raises(hf_errors.RevisionNotFoundError):
        hf_hub_download(repo, "config.json", revision="f" * 40, **kwargs)
    # the resolve endpoint's own headers, as the hub sends them
    head = httpx.head(f"{api.server.url}/{repo}/resolve/main/model.safetensors",
                      headers={"Authorization": f"Bearer {token}"})
    sha = hashlib.sha256(tiny_repos[repo]["model.safetensors"]).hexdigest()
    assert head.headers["x-repo-commit"] == commit and head.headers["x-linked-etag"] == f'"{sha}"'
    assert head.headers["x-linked-size"] == str(len(tiny_repos[repo]["model.safetensors"]))


def test_timm_loads_a_model_through_the_mirror(api, tiny_repos, tmp_path):
    import subprocess
    import sys

    _hold(api, TIMM_REPO, tiny_repos)
    code = ("import timm, torch; m = timm.create_model('hf-hub:timm/test_resnet.r160_in1k', pretrained=True);"
            "print(m(torch.zeros(1, 3, 160, 160)).shape[-1])")
    env = {**server_env(tmp_path), "HF_ENDPOINT": api.server.url, "HF_TOKEN": api.tokens["read"]}
    env.pop("HF_HUB_OFFLINE")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "1000", proc.stderr[-2000:]
    assert list((tmp_path / "hf" / "hub").glob("models--timm--test_resnet.r160_in1k/blobs/*"))


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("content, headers, status, code", [
    (b'{"model": ', {"Content-Type": "application/json"}, 400, "malformed_json"),
    (b'{"model": "test_resnet", "colour": "red"}', {"Content-Type": "application/json"}, 422, "invalid_request"),
    (b'{"model": "test_resnet", "options": {"opset": "x"}}', {"Content-Type": "application/json"}, 422,
     "invalid_request"),
    (b'{"format": "onnx"}', {"Content-Type": "application/json"}, 422, "invalid_request"),
    (b'["test_resnet"]', {"Content-Type": "application/json"}, 422, "invalid_request"),
    (b"model=test_resnet", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    (b'{"model": "../../etc/passwd"}', {"Content-Type": "application/json"}, 422, "invalid_name"),
    (b'{"model": "no_such_model_xyz"}', {"Content-Type": "application/json"}, 404, "model_not_found"),
    (b'{"model": "test_resnet", "format": "exe"}', {"Content-Type": "application/json"}, 422,
     "unsupported_format"),
    # the schema holds the command line's bounds (zoo.options): 8 and 24 are refused by both
    (b'{"model": "test_resnet", "options": {"opset": 8}}', {"Content-Type": "application/json"}, 422, "invalid_request"),
    (b'{"model": "test_resnet", "options": {"opset": 24}}', {"Content-Type": "application/json"}, 422,
     "invalid_request"),
    (b'{"model": "' + b"x" * 70_000 + b'"}', {"Content-Type": "application/json"}, 413, "payload_too_large"),
])
def test_bad_job_requests_get_the_right_4xx(api, content, headers, status, code):
    response = api.client().post("/v1/jobs", content=content, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["status"] == status and body["message"]


def test_an_oversized_streamed_body_is_refused(api):
    def chunks():
        for _ in range(40):
            yield b" " * 4096

    response = api.client().post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def _raw_get(server: ZooServer, path: str, token: str) -> tuple[int, bytes]:
    """GET ``path`` byte for byte (httpx would normalise '..' away)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


TRAVERSALS = [
    "/v1/artifacts/../../../../etc/passwd",
    "/v1/artifacts/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/artifacts/%2Fetc%2Fpasswd",
    "/v1/artifacts//etc/passwd",
    "/v1/artifacts/%2e%2e%2f%2e%2e%2fregistry.db",
    "/timm/test_resnet.r160_in1k/resolve/main/../../../../../etc/passwd",
    "/timm/test_resnet.r160_in1k/resolve/main/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/timm/test_resnet.r160_in1k/resolve/main/%2Fetc%2Fpasswd",
    "/timm/test_resnet.r160_in1k/resolve/main//etc/passwd",
    "/timm/test_resnet.r160_in1k/resolve/..%2F..%2F..%2F..%2F/config.json",
    "/timm/test_resnet.r160_in1k/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/timm/test_resnet.r160_in1k/resolve/main/escape.txt",
    "/..%2F..%2Fetc/passwd/resolve/main/config.json",
    "/api/models/timm/test_resnet.r160_in1k/revision/..%2F..%2F..%2F..",
    "/api/models/timm/test_resnet.r160_in1k/tree/main/..%2F..%2F..",
]


def test_traversal_attempts_never_leave_the_store(api, tiny_repos):
    commit = _hold(api, TIMM_REPO, tiny_repos)
    secret = api.server.home.parent / "secret.txt"
    secret.write_bytes(b"TOP SECRET")
    link = api.hub_cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / commit / "escape.txt"
    link.symlink_to(secret)  # a link in a snapshot that leads out of the cache is never followed
    try:
        for path in TRAVERSALS:
            status, body = _raw_get(api.server, path, api.tokens["read"])
            assert 400 <= status < 500, (path, status)
            assert b"root:" not in body and b"TOP SECRET" not in body and b"SQLite" not in body, path
            assert json.loads(body)["status"] == status, path
    finally:
        link.unlink()
    ok_status, ok_body = _raw_get(api.server, f"/{TIMM_REPO}/resolve/main/config.json", api.tokens["read"])
    assert ok_status == 200 and ok_body == tiny_repos[TIMM_REPO]["config.json"]


def test_tokens_and_scopes(api):
    s = api.server
    no_token = httpx.post(f"{s.url}/v1/jobs", json={"model": "test_resnet"})
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized"
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    forged = api.tokens["write"][:-4] + "AAAA"
    for bad in ("nonsense", forged, "zoo_000000000000_" + "A" * 43):
        response = httpx.get(f"{s.url}/v1/models", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
    assert httpx.get(f"{s.url}/v1/models").status_code == 401  # ZOO_READ_AUTH=1 here
    assert httpx.get(f"{s.url}/v1/models", auth=("user", "pass")).status_code == 401  # not a bearer token
    read = api.client("read")
    assert read.get("/v1/models").status_code == 200
    refused = read.post("/v1/jobs", json={"model": "test_resnet"})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert api.client("write").get("/v1/tokens").status_code == 403
    admin = api.client("admin")
    made = admin.post("/v1/tokens", json={"scope": "read", "name": "temp"})
    assert made.status_code == 201 and made.json()["token"].startswith("zoo_")
    listed = admin.get("/v1/tokens").json()
    assert made.json()["id"] in {t["id"] for t in listed["data"]} and "token" not in listed["data"][0]
    temp = s.client(made.json()["token"])
    assert temp.get("/v1/models").status_code == 200
    assert admin.delete(f"/v1/tokens/{made.json()['id']}").json()["revoked_at"]
    assert temp.get("/v1/models").status_code == 401
    assert admin.delete("/v1/tokens/nope").status_code == 404
    # the database holds hashes only
    import sqlalchemy as sa

    from zoo import db

    engine = db.get_engine(f"sqlite:///{s.home / 'registry.db'}")
    with engine.connect() as conn:
        stored = [r.secret_sha256 for r in conn.execute(sa.select(db.tokens))]
    for token in api.tokens.values():
        secret = token.split("_", 2)[2]
        assert secret not in stored and hashlib.sha256(secret.encode()).hexdigest() in stored


def test_errors_share_one_shape(api):
    client = api.client()
    for path, status, code in [("/v1/jobs/" + "0" * 32, 404, "job_not_found"),
                               ("/v1/jobs/not-a-job", 404, "job_not_found"),
                               ("/v1/models/zoo-test/not-there", 404, "model_not_found"),
                               ("/v1/nothing", 404, "not_found"),
                               ("/v1/jobs?limit=0", 422, "invalid_request"),
                               ("/v1/jobs?state=exploded", 422, "invalid_request"),
                               # a name no header can carry (found by schemathesis: it was a 500)
                               ("/api/models/%F0%9F%98%80/%0B%C2%93", 404, "model_not_found")]:
        response = client.get(path)
        body = response.json()
        assert response.status_code == status and body["error"] == code and body["status"] == status, path
        assert body["message"] and set(body) >= {"error", "message", "status"}
    wrong = client.put("/v1/jobs")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_health_readiness_and_metrics(api):
    assert httpx.get(f"{api.server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api.server.url}/readyz").json()
    assert ready["ready"] and ready["checks"]["database"] == "ok" and ready["checks"]["dispatcher"]["workers"] == 1
    text = httpx.get(f"{api.server.url}/metrics").text
    for name in ('zoo_jobs{state="succeeded"}', "zoo_job_duration_seconds_bucket", "zoo_conversions_total",
                 "zoo_cache_hits_total", 'zoo_bytes_served_total{kind="artifact"}'):
        assert name in text, name
    served = [line for line in text.splitlines() if line.startswith('zoo_bytes_served_total{kind="artifact"}')]
    assert float(served[0].split()[-1]) > 0


def test_openapi_is_served(api):
    spec = httpx.get(f"{api.server.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/artifacts/{sha256}", "/v1/models/{model_id}"} <= set(
        spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


# --- last: the API process itself -------------------------------------------------------------
def test_the_api_process_never_imported_a_framework(api):
    """Every endpoint above was served; conversions ran in child processes only."""
    assert api.server.stop() == 0
    modules = api.server.modules()
    assert "fastapi" in modules and "zoo.service.core" in modules
    assert not {m.split(".")[0] for m in modules} & FRAMEWORKS

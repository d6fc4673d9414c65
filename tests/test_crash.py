"""Crash safety and concurrency, with real processes: eight concurrent pulls of one
model, SIGKILL at named points of a pull (download, conversion, publish) followed
by a pull that must complete with a clean cache, and a disk that fills up
mid-write (RLIMIT_FSIZE in the child: writes past the limit fail with EFBIG)."""

from __future__ import annotations

import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import tiny_onnx, write_hf_cache
from conftest import REPO_ROOT, TIMM_REPO, pull_json, run_zoo
from hubserver import Repo

from zoo.storage.artifacts import ArtifactStore

WEIGHTS = "model.safetensors"
_IDS = itertools.count()


def _zoo_popen(*args: str, env: dict[str, str] | None = None, preexec_fn=None) -> subprocess.Popen:
    merged = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "zoo", *args], env=merged, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _wait_until(predicate, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _new_repo(hub, tiny_repos, stem: str) -> str:
    repo_id = f"zoo-crash/{stem}-{next(_IDS)}"
    hub.add(Repo(repo_id, tiny_repos[TIMM_REPO]))
    return repo_id


def _store_is_clean(home: Path, sources: bool = True) -> None:
    """``zoo cache verify`` finds every artifact (and, for hub sources, every source file) intact."""
    proc = run_zoo("cache", "verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["corrupt"] == 0 and report["checked"] >= 1 and (report["sources_checked"] >= 1 or not sources)


def test_eight_concurrent_pulls_download_once_convert_once(zoo_env, hub, hub_endpoint, tiny_repos):
    repo_id = _new_repo(hub, tiny_repos, "concurrent")
    procs = [_zoo_popen("pull", repo_id, "--json") for _ in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["sha256"] for r in results}) == 1 and len({r["path"] for r in results}) == 1
    assert sorted(r["cached"] for r in results) == [False] + [True] * 7  # one conversion
    bodies = [r for r in hub.records if r.method == "GET" and r.path.endswith(f"{repo_id}/resolve/{results[0]['revision']}/{WEIGHTS}")]
    assert len(bodies) == 1  # one download
    assert len(list((zoo_env.home / "artifacts").iterdir())) == 1
    _store_is_clean(zoo_env.home)


# Where a pull is SIGKILLed. Inside the download the source must be a hub repo; from the conversion on, the
# source does not matter to what is checked (locks, staging, the store), so those kill points convert a
# tiny ONNX file (`zoo convert`, no torch: ~0.5 s of CPU a run instead of ~5).
KILL_POINTS = [
    "download",
    pytest.param("fetch.downloaded", marks=pytest.mark.slow),
    "convert.exported",
    "publish.staged",
    "publish.renamed",
]
HUB_KILL_POINTS = ("download", "fetch.downloaded")


def _convert_json(source: Path) -> dict:
    proc = run_zoo("convert", str(source), "--to", "onnx-opt", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", KILL_POINTS)
def test_sigkill_mid_pull_then_pull_recovers(stage, zoo_env, hub, hub_endpoint, tiny_repos, tmp_path):
    hooks = tmp_path / "hooks"
    if stage == "download":  # the hub stalls mid-body: the kill lands inside huggingface_hub's write
        repo_id = _new_repo(hub, tiny_repos, "kill")
        hub.fault(repo_id, WEIGHTS, "stall", after=600_000, seconds=30)
        proc = _zoo_popen("pull", repo_id, "--json")
        _wait_until(lambda: any(r.method == "GET" and f"{repo_id}/resolve/" in r.path and r.path.endswith("/" + WEIGHTS)
                                for r in hub.records) or proc.poll() is not None, what="the download")
        time.sleep(0.5)
    else:
        env = {"ZOO_TEST_PAUSE_AT": stage, "ZOO_TEST_PAUSE_S": "300", "ZOO_TEST_HOOK_DIR": str(hooks)}
        if stage in HUB_KILL_POINTS:
            repo_id = _new_repo(hub, tiny_repos, "kill")
            proc = _zoo_popen("pull", repo_id, "--json", env=env)
        else:
            source = tiny_onnx(tmp_path / "dense.onnx")
            proc = _zoo_popen("convert", str(source), "--to", "onnx-opt", "--json", env=env)
        _wait_until(lambda: (hooks / f"{stage}.{proc.pid}").exists() or proc.poll() is not None, what=stage)
    assert proc.poll() is None, "the pull ended before the kill: " + proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    hub.clear_faults()
    store = ArtifactStore(zoo_env.home)
    visible = store.list()
    if stage == "publish.renamed":  # renamed into place: complete, though never indexed
        assert len(visible) == 1 and store.verify(visible[0]) == []
    else:  # killed before the rename: nothing is visible
        assert visible == []
    # a stale lock or half-written file would hang or fail here
    out = pull_json(repo_id) if stage in HUB_KILL_POINTS else _convert_json(source)
    assert out["verified"] and out["parity"]["passed"]
    _store_is_clean(zoo_env.home, sources=stage in HUB_KILL_POINTS)
    leftovers = [p for p in (zoo_env.home / "tmp").iterdir() if p.name.startswith(f"{proc.pid}-")] if (zoo_env.home / "tmp").exists() else []
    assert not leftovers or stage in ("download", "fetch.downloaded"), leftovers  # swept by the next conversion


def _fsize_limit(limit: int):
    def apply() -> None:  # in the child, before exec: writes past ``limit`` fail with EFBIG, not SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("where", ["download", "export"])
def test_disk_full_is_a_clear_error_and_leaves_nothing_half_written(where, zoo_env, hub, hub_endpoint, tiny_repos):
    size = len(tiny_repos[TIMM_REPO][WEIGHTS])
    if where == "download":
        repo_id = _new_repo(hub, tiny_repos, "full")
        env = {}
    else:  # weights already cached: the first big write is the exported model
        repo_id = f"zoo-crash/full-cached-{next(_IDS)}"
        write_hf_cache(zoo_env.hub_cache, repo_id, tiny_repos[TIMM_REPO])
        env = {"HF_HUB_OFFLINE": "1"}
    proc = _zoo_popen("pull", repo_id, "--json", env=env, preexec_fn=_fsize_limit(size * 3 // 4))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 9, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["error"] == "storage_full" and "File too large" in report["message"] and "nothing was published" in report["message"]
    home = zoo_env.home
    assert not (home / "artifacts").exists() or not any((home / "artifacts").iterdir())
    assert not (home / "tmp").exists() or not any((home / "tmp").iterdir())
    partial = [p for p in zoo_env.hub_cache.rglob("*") if p.is_file() and 0 < p.stat().st_size < size and p.stat().st_size > 100_000]
    assert partial == []  # no half weights file left in the Hugging Face cache either
    assert run_zoo("cache", "verify").returncode == 0
    again = pull_json(repo_id, env=env)  # with room again, the same pull completes
    assert again["verified"]
    _store_is_clean(home)


def test_concurrent_first_runs_create_the_registry_schema_once(tmp_path):
    """Eight processes opening a fresh SQLite registry at once: each used to race to CREATE TABLE."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    script = f"from zoo import db; db.get_engine({url!r})"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, "\n".join(e[-500:] for e in errors if e)

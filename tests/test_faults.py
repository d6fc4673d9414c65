"""Downloads through a misbehaving hub (truncation, resets, bit flips, ignored Range,
416), and bit flips in the caches: zoo retries, verifies every byte before use,
never keeps or publishes a half or corrupt file, and repairs what it can."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from conftest import TIMM_REPO, pull_json, run_zoo
from hubserver import Repo

WEIGHTS = "model.safetensors"
_IDS = itertools.count()
FAST_RETRIES = {"ZOO_DOWNLOAD_BACKOFF_S": "0.05"}


@pytest.fixture
def faulty_repo(hub, hub_endpoint, tiny_repos, request, monkeypatch) -> str:
    """A fresh copy of the tiny timm repo under a name unique to this test (faults are per repo and file)."""
    repo_id = f"zoo-faults/r{next(_IDS)}"
    hub.add(Repo(repo_id, tiny_repos[TIMM_REPO]))
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)
    yield repo_id
    hub.clear_faults()


def _fetch(repo_id: str):
    from zoo.registry.hf_source import fetch_snapshot
    from zoo.settings import get_settings

    return fetch_snapshot(repo_id, None, get_settings())


FAULTS = {
    # kind: queued faults (kind, after, times); the download must come out whole
    "truncate": [("truncate", 1000, 1)],
    "truncate-twice": [("truncate", 1000, 2)],
    "reset": [("reset", 5000, 1)],
    "flip": [("flip", 12345, 1)],
    "ignore-range-on-resume": [("truncate", 7000, 1), ("ignore_range", 0, 1)],
    "416-on-resume": [("truncate", 7000, 1), ("416", 0, 1)],
    "reset-then-flip": [("reset", 100, 1), ("flip", 99, 1)],
}


@pytest.mark.parametrize("name", FAULTS)
def test_download_survives_fault_and_is_verified(name, faulty_repo, hub, tiny_repos):
    for kind, after, times in FAULTS[name]:
        hub.fault(faulty_repo, WEIGHTS, kind, after=after, times=times)
    snap = _fetch(faulty_repo)
    expected = hashlib.sha256(tiny_repos[TIMM_REPO][WEIGHTS]).hexdigest()
    local = snap.root / WEIGHTS
    assert hashlib.sha256(local.read_bytes()).hexdigest() == expected == snap.digests[WEIGHTS]
    gets = [r for r in hub.records if r.method == "GET" and r.path.endswith("/" + WEIGHTS) and faulty_repo in r.path]
    assert len(gets) >= 2  # the fault really hit, and was recovered from
    assert not list(local.resolve().parent.glob("*.incomplete"))


@pytest.mark.parametrize("kind, error, needle", [
    ("flip", "DownloadIntegrityError", "sha256"),
    ("reset", "NetworkError", "attempts"),
])
def test_exhausted_retries_are_a_clear_error_and_keep_nothing(kind, error, needle, faulty_repo, hub, monkeypatch):
    from zoo import errors

    monkeypatch.setenv("ZOO_DOWNLOAD_RETRIES", "2")
    hub.fault(faulty_repo, WEIGHTS, kind, after=50, times=-1)
    with pytest.raises(errors.NetworkError) as info:
        _fetch(faulty_repo)
    assert type(info.value).__name__ == error and needle in info.value.message
    from zoo.settings import get_settings

    storage = get_settings().hf_hub_cache / f"models--{faulty_repo.replace('/', '--')}"
    assert not [p for p in storage.rglob("*") if p.is_file() and p.stat().st_size > 100_000]  # no weights blob kept


def test_pull_through_a_flipping_hub_publishes_the_true_model(indexed, faulty_repo, hub, tiny_repos):
    """The whole pull (in this process: the tiny repos' builders imported torch and timm already), with the
    first two downloads of the weights bit-flipped: the third, true copy is the one converted and published."""
    from zoo.integrity import verify_cache
    from zoo.pipeline import pull
    from zoo.settings import get_settings

    hub.fault(faulty_repo, WEIGHTS, "flip", after=4242, times=2)
    out = pull(faulty_repo)
    assert out.verified and out.parity["passed"] and not out.cached
    gets = [r for r in hub.records if r.method == "GET" and r.path.endswith("/" + WEIGHTS)]
    assert len(gets) == 3
    manifest = json.loads((Path(out.artifact_dir) / "zoo.json").read_text())
    true_sha = hashlib.sha256(tiny_repos[TIMM_REPO][WEIGHTS]).hexdigest()
    assert {f["path"]: f["sha256"] for f in manifest["source_files"]}[WEIGHTS] == true_sha
    report = verify_cache(get_settings())
    assert report["corrupt"] == 0 and report["checked"] == 1 and report["sources_checked"] >= 1


def test_pull_gives_up_with_exit_4_and_publishes_nothing(indexed, faulty_repo, hub):
    hub.fault(faulty_repo, WEIGHTS, "flip", after=10, times=-1)
    proc = run_zoo("pull", faulty_repo, "--json", env={"ZOO_DOWNLOAD_RETRIES": "1"})
    assert proc.returncode == 4, proc.stderr[-2000:]
    err = json.loads(proc.stdout.splitlines()[-1])
    assert err["error"] == "download_integrity" and "2 times" in err["message"]
    assert not (indexed.home / "artifacts").exists()


def _flip_byte(path: Path, at: int = 1000) -> None:
    target = path.resolve()
    data = bytearray(target.read_bytes())
    data[at] ^= 0x01
    target.write_bytes(bytes(data))


def test_bit_flip_in_hf_cache_is_caught_before_use_and_refetched(indexed, faulty_repo, hub):
    first = pull_json(faulty_repo)
    snapshot = indexed.hub_cache / f"models--{faulty_repo.replace('/', '--')}" / "snapshots" / first["revision"]
    _flip_byte(snapshot / WEIGHTS)
    offline = run_zoo("pull", faulty_repo, "--format", "onnx-opt", env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 7 and "corrupt in the local cache" in offline.stderr, offline.stderr[-2000:]
    hub.clear()
    online = run_zoo("pull", faulty_repo, "--format", "onnx-opt", "--json")
    assert online.returncode == 0, online.stderr[-2000:]
    assert "fetching it again" in online.stderr
    assert [r for r in hub.records if r.method == "GET" and r.path.endswith("/" + WEIGHTS)]
    assert json.loads(run_zoo("cache", "verify", "--json").stdout)["corrupt"] == 0


def test_cache_verify_finds_flips_in_sources_and_artifacts_and_repairs_them(indexed, faulty_repo, hub):
    first = pull_json(faulty_repo)
    snapshot = indexed.hub_cache / f"models--{faulty_repo.replace('/', '--')}" / "snapshots" / first["revision"]
    _flip_byte(snapshot / WEIGHTS)
    _flip_byte(Path(first["path"]))
    bad = run_zoo("cache", "verify", "--json")
    assert bad.returncode == 7
    report = json.loads(bad.stdout.splitlines()[0])
    kinds = sorted(r["kind"] for r in report["results"] if not r["ok"])
    assert kinds == ["artifact", "source"] and report["unrepaired"] == 2
    fixed = run_zoo("cache", "verify", "--repair", "--json")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout.splitlines()[-1])["unrepaired"] == 0
    clean = run_zoo("cache", "verify", "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["corrupt"] == 0
    again = pull_json(faulty_repo, env={"HF_HUB_OFFLINE": "1"})
    assert again["cached"] is True and Path(again["path"]).is_file()


def test_modified_artifact_is_not_served_from_cache(indexed, cached_repo):
    cached_repo(TIMM_REPO)
    first = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    _flip_byte(Path(first["path"]), at=5000)  # same size: only the mtime and the hash tell
    again = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    assert again["cached"] is False and again["sha256"] == first["sha256"]
    assert hashlib.sha256(Path(again["path"]).read_bytes()).hexdigest() == first["sha256"]

"""The offline hub and cache writer are realistic: the real huggingface_hub client, timm and
transformers work against them exactly as against huggingface.co and its cache."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from builders import (
    commit_for,
    file_etag,
    git_blob_sha1,
    sha256_hex,
    timm_repo,
    write_hf_cache,
)
from conftest import GATED_REPO_ID, TINY_REPO_BUILDERS
from hubserver import HubServer, Repo, is_lfs, parse_range
from huggingface_hub import (
    HfApi,
    hf_hub_download,
    model_info,
    scan_cache_dir,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

RESNET = "timm/test_resnet.r160_in1k"
BERT = "zoo-test/tiny-bert"


def _raw_request(endpoint: str, method: str, path: str, headers: dict | None = None):
    """Send ``path`` byte-for-byte (no client-side normalisation); return (status, headers, body)."""
    conn = http.client.HTTPConnection(urlsplit(endpoint).netloc, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _layout(root: Path) -> dict[str, tuple[str, object]]:
    """Every entry under ``root``: symlinks by target, files by content (lock files left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".locks") or path.is_dir() and not path.is_symlink():
            continue
        out[rel] = ("link", os.readlink(path)) if path.is_symlink() else ("file", path.read_bytes())
    return out


# --- downloads -------------------------------------------------------------------------------


def test_hf_hub_download_fills_cache_then_works_offline(hub, hub_endpoint, zoo_env, tiny_repos):
    files = tiny_repos[RESNET]
    path = Path(hf_hub_download(RESNET, "model.safetensors", endpoint=hub_endpoint))
    storage = zoo_env.hub_cache / "models--timm--test_resnet.r160_in1k"
    commit = commit_for(files)
    assert path == storage / "snapshots" / commit / "model.safetensors"
    assert os.readlink(path) == f"../../blobs/{sha256_hex(files['model.safetensors'])}"
    assert path.read_bytes() == files["model.safetensors"]
    assert (storage / "refs" / "main").read_text() == commit
    assert ("HEAD", "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors") in hub.requests

    hub.clear()
    again = hf_hub_download(RESNET, "model.safetensors", endpoint=hub_endpoint, local_files_only=True)
    assert Path(again) == path and hub.requests == []


def test_snapshot_download_gets_every_file(hub, hub_endpoint, tiny_repos):
    folder = Path(snapshot_download(BERT, endpoint=hub_endpoint))
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == tiny_repos[BERT]
    assert ("GET", "/api/models/zoo-test/tiny-bert/revision/main") in hub.requests
    assert ("GET", "/api/models/zoo-test/tiny-bert/tree/" + commit_for(tiny_repos[BERT])) in hub.requests


def test_dropped_connection_resumes_with_range(hub, hub_endpoint, tiny_repos, monkeypatch):
    from huggingface_hub import constants

    # The client keeps only whole chunks of a broken stream: make chunks small so some survive.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    data = tiny_repos[RESNET]["model.safetensors"]
    hub.interrupt(RESNET, "model.safetensors", after=len(data) // 2)
    path = hf_hub_download(RESNET, "model.safetensors", endpoint=hub_endpoint)
    assert Path(path).read_bytes() == data
    ranges = [r.headers.get("range") for r in hub.records if r.method == "GET"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert [r.status for r in hub.records if r.method == "GET"] == [200, 206]


def test_http_get_resumes_a_partial_file(hub, hub_endpoint, tiny_repos, tmp_path):
    from huggingface_hub.file_download import hf_hub_url, http_get

    data = tiny_repos[RESNET]["model.safetensors"]
    half = len(data) // 2
    partial = tmp_path / "blob.incomplete"
    partial.write_bytes(data[:half])
    with partial.open("ab") as f:
        url = hf_hub_url(RESNET, "model.safetensors", endpoint=hub_endpoint)
        http_get(url, f, resume_size=half, expected_size=len(data))
    assert partial.read_bytes() == data
    assert hub.records[-1].headers["range"] == f"bytes={half}-" and hub.records[-1].status == 206


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 10, None),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=4-", 10, (4, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=10-", 10, False),
        ("bytes=5-2", 10, False),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "range_header, status, body_slice, content_range",
    [
        ("bytes=0-9", 206, slice(0, 10), "bytes 0-9/{n}"),
        ("bytes=100-", 206, slice(100, None), "bytes 100-{last}/{n}"),
        ("bytes=999999999-", 416, None, "bytes */{n}"),
    ],
)
def test_get_honours_range(hub, range_header, status, body_slice, content_range, tiny_repos):
    data = tiny_repos[RESNET]["config.json"]
    got_status, headers, body = _raw_request(
        hub.endpoint, "GET", f"/{RESNET}/resolve/main/config.json", {"Range": range_header}
    )
    assert got_status == status
    assert headers["Content-Range"] == content_range.format(n=len(data), last=len(data) - 1)
    if body_slice is not None:
        assert body == data[body_slice]


# --- headers and API documents ---------------------------------------------------------------


@pytest.mark.parametrize("filename", ["config.json", "model.safetensors"])
def test_head_headers_match_the_hub(hub, tiny_repos, filename):
    data = tiny_repos[RESNET][filename]
    status, headers, body = _raw_request(hub.endpoint, "HEAD", f"/{RESNET}/resolve/main/{filename}")
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == commit_for(tiny_repos[RESNET])
    assert headers["Content-Length"] == str(len(data)) and headers["Accept-Ranges"] == "bytes"
    assert not any(name.lower().startswith("x-xet") for name in headers)
    if is_lfs(filename, len(data)):
        assert headers["X-Linked-Etag"] == f'"{sha256_hex(data)}"'
        assert headers["X-Linked-Size"] == str(len(data))
    else:
        assert headers["ETag"] == f'"{git_blob_sha1(data)}"' and "X-Linked-Etag" not in headers


def test_git_blob_sha1_matches_git(tiny_repos):
    data = tiny_repos[RESNET]["config.json"]
    git = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True)
    assert git.stdout.decode().strip() == git_blob_sha1(data)


def test_model_info_and_listing(hub, hub_endpoint, tiny_repos):
    files = tiny_repos[RESNET]
    info = model_info(RESNET, files_metadata=True)  # default endpoint: patched by hub_endpoint
    assert info.id == RESNET and info.sha == commit_for(files) and info.library_name == "timm"
    assert info.gated is False and info.private is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(files)
    weights = siblings["model.safetensors"]
    assert weights.size == len(files["model.safetensors"])
    assert weights.lfs.sha256 == sha256_hex(files["model.safetensors"])
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == git_blob_sha1(files["config.json"])
    assert info.safetensors.total == sum(t.numel() for t in timm_state(files).values())
    assert HfApi(endpoint=hub_endpoint).list_repo_files(RESNET) == sorted(files)
    tree = {e.path: e for e in HfApi().list_repo_tree(RESNET, recursive=True)}
    assert tree["model.safetensors"].lfs.sha256 == sha256_hex(files["model.safetensors"])


def test_tree_lists_directories(hub_endpoint):
    server = HubServer([Repo("org/nested", {"a/b/c.txt": b"c", "a/d.txt": b"d", "e.txt": b"e"})])
    with server:
        api = HfApi(endpoint=server.endpoint)
        top = [(type(e).__name__, e.path) for e in api.list_repo_tree("org/nested")]
        assert top == [("RepoFolder", "a"), ("RepoFile", "e.txt")]
        assert [e.path for e in api.list_repo_tree("org/nested", path_in_repo="a/b")] == ["a/b/c.txt"]
        assert sorted(api.list_repo_files("org/nested")) == ["a/b/c.txt", "a/d.txt", "e.txt"]
        with pytest.raises(EntryNotFoundError):
            list(api.list_repo_tree("org/nested", path_in_repo="missing"))


def timm_state(files: dict[str, bytes]) -> dict:
    from safetensors.torch import load

    return load(files["model.safetensors"])


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo_id, filename, revision, error",
    [
        ("zoo-test/does-not-exist", "config.json", None, RepositoryNotFoundError),
        (RESNET, "missing.bin", None, EntryNotFoundError),
        (RESNET, "config.json", "no-such-branch", RevisionNotFoundError),
        (RESNET, "config.json", "0" * 40, RevisionNotFoundError),
    ],
)
def test_download_errors_are_the_clients_typed_errors(hub_endpoint, repo_id, filename, revision, error):
    with pytest.raises(error):
        hf_hub_download(repo_id, filename, revision=revision, endpoint=hub_endpoint)


@pytest.mark.parametrize("token", [None, "token-set-with-token", "hf_test_token"])
def test_model_info_errors(hub_endpoint, token):
    with pytest.raises(RepositoryNotFoundError) as err:
        model_info("zoo-test/does-not-exist", token=token)
    assert err.value.response.status_code == (401 if token is None else 404)
    with pytest.raises(RevisionNotFoundError):
        model_info(RESNET, revision="no-such-branch")


def test_unknown_file_is_remembered_as_missing(hub, hub_endpoint, zoo_env, tiny_repos):
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(RESNET, "missing.bin", endpoint=hub_endpoint)
    no_exist = zoo_env.hub_cache / "models--timm--test_resnet.r160_in1k" / ".no_exist"
    assert (no_exist / commit_for(tiny_repos[RESNET]) / "missing.bin").exists()


def test_gated_repo_needs_the_token(hub, hub_endpoint, tiny_repos):
    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download(GATED_REPO_ID, "config.json", endpoint=hub_endpoint)
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong:
        hf_hub_download(GATED_REPO_ID, "config.json", endpoint=hub_endpoint, token="hf_wrong")
    assert wrong.value.response.status_code == 403
    assert model_info(GATED_REPO_ID).gated == "manual"  # metadata stays public, as on the hub
    path = hf_hub_download(GATED_REPO_ID, "config.json", endpoint=hub_endpoint, token=hub.token)
    assert Path(path).read_bytes() == tiny_repos[BERT]["config.json"]


@pytest.mark.parametrize(
    "path",
    [
        f"/{RESNET}/resolve/main/../../../../etc/passwd",
        f"/{RESNET}/resolve/main/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/{RESNET}/resolve/main/..%2F..%2F..%2Fconftest.py",
        f"/{RESNET}/resolve/main//etc/passwd",
        f"/{RESNET}/resolve/main/%2Fetc%2Fpasswd",
        f"/{RESNET}/resolve/main/config.json%00.txt",
        "/timm/..%2F..%2Fzoo-test/resolve/main/config.json",
        "/../../etc/passwd",
        f"/api/models/{RESNET}/tree/main/..%2F..",
        "/etc/passwd",
        "/conftest.py",
        "/tests/conftest.py",
    ],
)
def test_traversal_is_refused(hub, path):
    for method in ("HEAD", "GET"):
        status, _, body = _raw_request(hub.endpoint, method, path)
        assert status in (400, 401, 404), (method, path, status)
        assert b"root:" not in body and b"import" not in body


def test_add_replaces_head_and_keeps_old_commits(hub_endpoint):
    old, new = {"config.json": b'{"v": 1}'}, {"config.json": b'{"v": 2}'}
    with HubServer([Repo("org/moving", old)]) as server:
        server.add(Repo("org/moving", new))
        latest = hf_hub_download("org/moving", "config.json", endpoint=server.endpoint)
        pinned = hf_hub_download("org/moving", "config.json", revision=commit_for(old), endpoint=server.endpoint)
        assert Path(latest).read_bytes() == new["config.json"]
        assert Path(pinned).read_bytes() == old["config.json"]


# --- the cache writer ------------------------------------------------------------------------


def test_write_hf_cache_matches_a_real_download(hub_endpoint, tiny_repos, tmp_path):
    downloaded = tmp_path / "downloaded"
    written = tmp_path / "written"
    snapshot_download(BERT, endpoint=hub_endpoint, cache_dir=downloaded)
    snapshot = write_hf_cache(written, BERT, tiny_repos[BERT])
    assert _layout(written) == _layout(downloaded)
    assert snapshot == written / "models--zoo-test--tiny-bert" / "snapshots" / commit_for(tiny_repos[BERT])
    blobs = {p.name for p in (written / "models--zoo-test--tiny-bert" / "blobs").iterdir()}
    assert blobs == {file_etag(p, d) for p, d in tiny_repos[BERT].items()}


def test_write_hf_cache_is_served_offline(tiny_repos, tmp_path):
    cache = tmp_path / "cache"
    snapshot = write_hf_cache(cache, RESNET, tiny_repos[RESNET])
    path = hf_hub_download(RESNET, "model.safetensors", cache_dir=cache, local_files_only=True)
    assert Path(path) == snapshot / "model.safetensors"
    assert snapshot_download(RESNET, cache_dir=cache, local_files_only=True) == str(snapshot)
    report = scan_cache_dir(cache)
    assert report.warnings == [] and {r.repo_id for r in report.repos} == {RESNET}


def test_cached_repo_fixture(cached_repo, zoo_env, tiny_repos):
    snapshot = cached_repo(BERT)
    assert snapshot.is_relative_to(zoo_env.hub_cache)
    assert (snapshot / "tokenizer.json").read_bytes() == tiny_repos[BERT]["tokenizer.json"]


def test_builders_are_deterministic(tiny_repos):
    assert set(tiny_repos) == set(TINY_REPO_BUILDERS)
    again = timm_repo("test_resnet.r160_in1k")
    assert again == tiny_repos[RESNET]
    assert commit_for(timm_repo("test_resnet.r160_in1k", seed=1)) != commit_for(again)


def test_timm_config_carries_registry_preprocessing(tiny_repos):
    import timm

    for repo_id in ("timm/test_vit.r160_in1k", "timm/test_efficientnet.r160_in1k"):
        cfg = json.loads(tiny_repos[repo_id]["config.json"])["pretrained_cfg"]
        registry = timm.models.get_pretrained_cfg(repo_id.split("/")[1])
        assert tuple(cfg["input_size"]) == registry.input_size and tuple(cfg["mean"]) == registry.mean
        assert (cfg["crop_pct"], cfg["interpolation"]) == (registry.crop_pct, registry.interpolation)


# --- real libraries through the server and the cache -----------------------------------------


def test_timm_and_transformers_load_through_the_server(hub, hub_endpoint, tiny_repos):
    import timm
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = timm.create_model("test_resnet.r160_in1k", pretrained=True)
    for name, tensor in timm_state(tiny_repos[RESNET]).items():
        assert torch.equal(model.state_dict()[name], tensor), name
    bert = AutoModelForSequenceClassification.from_pretrained("zoo-test/tiny-bert-sst")
    assert bert.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    tokens = AutoTokenizer.from_pretrained("zoo-test/tiny-bert-sst").tokenize("this movie was wonderful")
    assert tokens == ["this", "movie", "was", "wonderful"]
    assert all(r.status < 500 for r in hub.records)


_OFFLINE_TIMM = """
import sys, timm, safetensors.torch
model = timm.create_model("test_resnet.r160_in1k", pretrained=True)
safetensors.torch.save_file(model.state_dict(), sys.argv[1])
"""
_OFFLINE_BERT = """
import sys, safetensors.torch
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained("zoo-test/tiny-bert")
assert AutoTokenizer.from_pretrained("zoo-test/tiny-bert").tokenize("hello world") == ["hello", "world"]
safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
"""


@pytest.mark.parametrize("repo_id, script", [(RESNET, _OFFLINE_TIMM), (BERT, _OFFLINE_BERT)])
def test_libraries_load_offline_from_written_cache(hub, hub_endpoint, cached_repo, tiny_repos, tmp_path, repo_id, script):
    import torch
    from safetensors.torch import load, load_file

    cached_repo(repo_id)
    out = tmp_path / "loaded.safetensors"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # HF_ENDPOINT still points at the hub: it must stay unused
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, built = load_file(out), load(tiny_repos[repo_id]["model.safetensors"])
    assert set(built) <= set(loaded)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in built.items())
    assert hub.requests == []

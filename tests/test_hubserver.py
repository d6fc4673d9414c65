"""The test fixtures themselves, not zoo: the offline hub (tests/hubserver.py) speaks the protocol the real
huggingface_hub client expects, the cache writer (``write_hf_cache``) lays files out exactly as a real
download does, and the builders are deterministic. zoo's own behaviour through them is tested in
test_pull.py, test_faults.py, test_crash.py and test_api.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from builders import commit_for, sha256_hex, timm_repo, write_hf_cache
from conftest import GATED_REPO_ID, TINY_REPO_BUILDERS
from hubserver import HubServer, Repo
from huggingface_hub import hf_hub_download, model_info, scan_cache_dir, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

RESNET = "timm/test_resnet.r160_in1k"
BERT = "zoo-test/tiny-bert"


def _layout(root: Path) -> dict[str, tuple[str, object]]:
    """Every entry under ``root``: symlinks by target, files by content (lock files left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".locks") or path.is_dir() and not path.is_symlink():
            continue
        out[rel] = ("link", os.readlink(path)) if path.is_symlink() else ("file", path.read_bytes())
    return out


def test_the_real_client_downloads_into_a_real_cache_then_works_offline(hub, hub_endpoint, zoo_env, tiny_repos):
    files = tiny_repos[RESNET]
    path = Path(hf_hub_download(RESNET, "model.safetensors", endpoint=hub_endpoint))
    storage = zoo_env.hub_cache / "models--timm--test_resnet.r160_in1k"
    assert path == storage / "snapshots" / commit_for(files) / "model.safetensors"
    assert os.readlink(path) == f"../../blobs/{sha256_hex(files['model.safetensors'])}"
    assert path.read_bytes() == files["model.safetensors"] and (storage / "refs" / "main").read_text() == commit_for(files)
    folder = Path(snapshot_download(BERT, endpoint=hub_endpoint))
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == tiny_repos[BERT]
    hub.clear()
    again = hf_hub_download(RESNET, "model.safetensors", endpoint=hub_endpoint, local_files_only=True)
    assert Path(again) == path and hub.requests == []


def test_model_info_describes_files_as_the_hub_does(hub, hub_endpoint, tiny_repos):
    files = tiny_repos[RESNET]
    info = model_info(RESNET, files_metadata=True)  # the default endpoint: patched by hub_endpoint
    assert info.id == RESNET and info.sha == commit_for(files) and info.library_name == "timm" and info.gated is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(files)
    assert siblings["model.safetensors"].lfs.sha256 == sha256_hex(files["model.safetensors"])
    assert siblings["model.safetensors"].size == len(files["model.safetensors"])
    git = subprocess.run(["git", "hash-object", "--stdin"], input=files["config.json"], capture_output=True, check=True)
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == git.stdout.decode().strip()


@pytest.mark.parametrize("repo_id, filename, revision, error", [
    ("zoo-test/does-not-exist", "config.json", None, RepositoryNotFoundError),
    (RESNET, "missing.bin", None, EntryNotFoundError),
    (RESNET, "config.json", "no-such-branch", RevisionNotFoundError),
    (RESNET, "config.json", "0" * 40, RevisionNotFoundError),
])
def test_errors_are_the_clients_typed_errors(hub_endpoint, repo_id, filename, revision, error):
    with pytest.raises(error):
        hf_hub_download(repo_id, filename, revision=revision, endpoint=hub_endpoint)


def test_a_gated_repo_needs_the_token(hub, hub_endpoint, tiny_repos):
    for token, status in ((None, 401), ("hf_wrong", 403)):
        with pytest.raises(GatedRepoError) as refused:
            hf_hub_download(GATED_REPO_ID, "config.json", endpoint=hub_endpoint, token=token)
        assert refused.value.response.status_code == status
    path = hf_hub_download(GATED_REPO_ID, "config.json", endpoint=hub_endpoint, token=hub.token)
    assert Path(path).read_bytes() == tiny_repos[BERT]["config.json"]


def test_ranges_and_a_moved_branch(hub, tiny_repos):
    import httpx

    data = tiny_repos[RESNET]["config.json"]
    url = f"{hub.endpoint}/{RESNET}/resolve/main/config.json"
    part = httpx.get(url, headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.content == data[10:]
    assert part.headers["content-range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
    assert httpx.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    old, new = {"config.json": b'{"v": 1}'}, {"config.json": b'{"v": 2}'}
    with HubServer([Repo("org/moving", old)]) as server:
        server.add(Repo("org/moving", new))
        assert Path(hf_hub_download("org/moving", "config.json", endpoint=server.endpoint)).read_bytes() == new["config.json"]
        pinned = hf_hub_download("org/moving", "config.json", revision=commit_for(old), endpoint=server.endpoint)
        assert Path(pinned).read_bytes() == old["config.json"]


def test_write_hf_cache_matches_a_real_download(hub_endpoint, tiny_repos, tmp_path):
    downloaded, written = tmp_path / "downloaded", tmp_path / "written"
    snapshot_download(BERT, endpoint=hub_endpoint, cache_dir=downloaded)
    snapshot = write_hf_cache(written, BERT, tiny_repos[BERT])
    assert _layout(written) == _layout(downloaded)
    assert snapshot == written / "models--zoo-test--tiny-bert" / "snapshots" / commit_for(tiny_repos[BERT])
    assert snapshot_download(BERT, cache_dir=written, local_files_only=True) == str(snapshot)
    assert scan_cache_dir(written).warnings == []


def test_builders_are_deterministic_and_carry_timms_preprocessing(tiny_repos):
    import json

    import timm

    assert set(tiny_repos) == set(TINY_REPO_BUILDERS)
    assert timm_repo("test_resnet.r160_in1k") == tiny_repos[RESNET]
    assert commit_for(timm_repo("test_resnet.r160_in1k", seed=1)) != commit_for(tiny_repos[RESNET])
    for repo_id in ("timm/test_vit.r160_in1k", "timm/test_efficientnet.r160_in1k"):
        cfg = json.loads(tiny_repos[repo_id]["config.json"])["pretrained_cfg"]
        expected = timm.models.get_pretrained_cfg(repo_id.split("/")[1])
        assert tuple(cfg["input_size"]) == expected.input_size and tuple(cfg["mean"]) == expected.mean
        assert (cfg["crop_pct"], cfg["interpolation"]) == (expected.crop_pct, expected.interpolation)

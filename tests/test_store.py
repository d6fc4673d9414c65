"""The content-addressed store: atomic publish, verification, stale staging."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zoo.hashing import sha256_json
from zoo.storage.artifacts import ArtifactStore, copy_out


def _stage(store, files):
    ctx = store.staging()
    path = ctx.__enter__()
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return ctx, path


def test_publish_is_content_addressed_and_idempotent(tmp_path):
    store = ArtifactStore(tmp_path)
    ctx, staged = _stage(store, {"model.onnx": b"abc", "vocab.txt": b"x"})
    art = store.publish(staged, "model.onnx", {"model": "m"}, verified=True)
    ctx.__exit__(None, None, None)
    assert art.path == tmp_path / "artifacts" / art.digest
    assert art.digest == sha256_json({"files": art.files})
    assert store.verify(art) == [] and not any((tmp_path / "tmp").iterdir())
    ctx, staged = _stage(store, {"model.onnx": b"abc", "vocab.txt": b"x"})
    again = store.publish(staged, "model.onnx", {"model": "m"}, verified=True)
    ctx.__exit__(None, None, None)
    assert again.digest == art.digest and len(store.list()) == 1


def test_failed_parity_goes_to_quarantine(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(b"bad")
        art = store.publish(staged, "model.onnx", {}, verified=False)
    assert art.path.parent.name == "quarantine" and store.get(art.digest) is None
    assert store.get(art.digest, verified=False) is not None


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_verify_detects_damage(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(bytes(range(256)) * 10)
        art = store.publish(staged, "model.onnx", {}, verified=True)
    target = art.path / "model.onnx"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[100] ^= 0x80
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-1]))
    else:
        target.unlink()
    assert store.verify(art)
    assert store.quick_check(art) is (damage == "flip")  # size check misses a flip; verify does not


def test_staging_of_killed_process_is_cleaned(tmp_path):
    store = ArtifactStore(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / "tmp" / f"{proc.stdout.strip()}-deadbeef"
    dead.mkdir(parents=True)
    (dead / "model.onnx").write_bytes(b"half")
    live = tmp_path / "tmp" / f"{os.getpid()}-alive"
    live.mkdir()
    assert store.clean_stale() == 1 and not dead.exists() and live.exists()


def test_copy_out_single_file_and_directory(tmp_path):
    store = ArtifactStore(tmp_path / "home")
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(b"onnx")
        single = store.publish(staged, "model.onnx", {}, verified=True)
    out = copy_out(single, tmp_path / "out" / "m.onnx")
    assert out.read_bytes() == b"onnx"
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(b"onnx2")
        (staged / "tokenizer.json").write_bytes(b"{}")
        multi = store.publish(staged, "model.onnx", {}, verified=True)
    out = copy_out(multi, tmp_path / "bert")
    assert out == (tmp_path / "bert" / "model.onnx").resolve() and (tmp_path / "bert" / "tokenizer.json").is_file()
    assert not [p for p in (tmp_path).rglob("*.incomplete")]


def test_a_write_between_hash_and_rename_publishes_nothing(tmp_path, monkeypatch):
    """A writer holding a descriptor opened before the seal (chmod does not revoke it) changes a file
    after zoo hashed it: the publish must fail rather than name those bytes by the old digest."""
    from zoo import errors
    from zoo.storage import artifacts as store_module

    store = ArtifactStore(tmp_path)
    ctx, staged = _stage(store, {"model.onnx": b"the bytes zoo hashes"})
    writer = open(staged / "model.onnx", "r+b")  # noqa: SIM115 - held open across the publish on purpose
    hash_tree = store_module.hash_tree

    def hash_then_tamper(root):
        files = hash_tree(root)
        writer.seek(0)
        writer.write(b"THE")
        writer.flush()
        return files

    monkeypatch.setattr(store_module, "hash_tree", hash_then_tamper)
    with pytest.raises(errors.IntegrityError, match="changed while it was being published"):
        store.publish(staged, "model.onnx", {"model": "m"}, verified=True)
    writer.close()
    ctx.__exit__(None, None, None)
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def _publish_tampering(store_module, monkeypatch, staged, tamper):
    """Publish ``staged`` with ``tamper(path)`` run on model.onnx right after zoo hashed the tree."""
    from zoo.storage.artifacts import ArtifactStore

    hash_tree = store_module.hash_tree

    def hash_then_tamper(root):
        files = hash_tree(root)
        tamper(root / "model.onnx")
        return files

    monkeypatch.setattr(store_module, "hash_tree", hash_then_tamper)
    return ArtifactStore(staged.parent.parent).publish(staged, "model.onnx", {"model": "m"}, verified=True)


def _old(path, seconds=3600):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def test_a_large_file_is_hashed_once_and_a_later_write_to_it_still_refuses_the_publish(tmp_path, monkeypatch):
    """A file over REHASH_BELOW written well before the publish is hashed once: its unchanged stat signature
    stands for the second look (a 4 GB model's weights are not read and hashed twice). A write after the hash
    moves its mtime and ctime: the publish is refused, nothing becomes visible."""
    from zoo import errors, hashing
    from zoo.storage import artifacts as store_module

    monkeypatch.setattr(store_module, "REHASH_BELOW", 16)
    store = ArtifactStore(tmp_path)
    ctx, staged = _stage(store, {"model.onnx": os.urandom(4096), "vocab.txt": b"a\nb\n"})
    _old(staged / "model.onnx")
    _old(staged / "vocab.txt")
    reads = []
    sha256_file = hashing.sha256_file
    monkeypatch.setattr(store_module, "sha256_file", lambda path: reads.append(path.name) or sha256_file(path))
    art = store.publish(staged, "model.onnx", {"model": "m"}, verified=True)
    ctx.__exit__(None, None, None)
    assert reads.count("model.onnx") == 1 and reads.count("vocab.txt") == 2  # the small one is hashed again, old or not
    assert store.verify(art) == []

    ctx, staged = _stage(store, {"model.onnx": os.urandom(4096)})
    _old(staged / "model.onnx")

    def overwrite_and_put_mtime_back(path):  # the same size, the same mtime: only ctime can tell
        st = path.stat()
        with open(path, "r+b") as f:
            f.write(b"THE")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    with pytest.raises(errors.IntegrityError, match="changed while it was being published"):
        _publish_tampering(store_module, monkeypatch, staged, overwrite_and_put_mtime_back)
    ctx.__exit__(None, None, None)
    assert not (tmp_path / "quarantine").exists() and [p.name for p in (tmp_path / "artifacts").iterdir()] == [art.digest]


def test_a_write_the_timestamps_do_not_show_is_caught_by_hashing_a_recent_file_again(tmp_path, monkeypatch):
    """The kernel's timestamps are coarse: a write in the same clock tick as a file's last one can leave its stat
    signature unchanged. A file whose content was written within RACY_NS of the hash is hashed again whatever
    its size. (The signature here is taken after the write, as such a tick would leave it.)"""
    import time

    from zoo.storage import artifacts as store_module

    monkeypatch.setattr(store_module, "REHASH_BELOW", 16)
    root = tmp_path / "staged"
    root.mkdir()
    (root / "model.onnx").write_bytes(os.urandom(4096))
    hashed_at = time.time_ns()
    files = store_module.hash_tree(root)
    with open(root / "model.onnx", "r+b") as f:
        f.write(b"THE")
    assert store_module._changed_since(root, files, store_module._signatures(root), hashed_at)
    _old(root / "model.onnx")  # the same signature on a file written long before the hash is trusted
    assert not store_module._changed_since(root, store_module.hash_tree(root), store_module._signatures(root),
                                           time.time_ns())


def test_publish_moves_the_staged_directory_into_place(tmp_path):
    """Publishing is one rename of the complete staging directory: the store's files are the very
    inodes that were staged, and the staging directory is gone. A copy would show a half artifact
    to readers (and leave one behind after a crash) while it runs."""
    store = ArtifactStore(tmp_path)
    ctx, staged = _stage(store, {"model.onnx": os.urandom(4096), "sub/vocab.txt": b"a\nb\n"})
    inodes = {p.relative_to(staged).as_posix(): (p.stat().st_dev, p.stat().st_ino)
              for p in staged.rglob("*") if p.is_file()}
    directory = (staged.stat().st_dev, staged.stat().st_ino)
    art = store.publish(staged, "model.onnx", {"model": "m"}, verified=True)
    assert not staged.exists()
    assert (art.path.stat().st_dev, art.path.stat().st_ino) == directory
    assert {rel: ((art.path / rel).stat().st_dev, (art.path / rel).stat().st_ino) for rel in inodes} == inodes
    ctx.__exit__(None, None, None)
    assert store.verify(art) == []

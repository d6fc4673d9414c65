"""The streaming safetensors writer behind ZeRO / DCP consolidation (``zoo.registry.checkpoints.stream``):
the header is declared first, every tensor must arrive in order with its declared shape and dtype, a
partial file never stays behind, every tensor is read back from the file as it is written and compared with
the assembled bytes, and the later read-back check catches a changed byte."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

from zoo import errors
from zoo.registry.checkpoints import stream


def _declared(state: dict) -> dict:
    return {k: stream.meta_tensor(tuple(v.shape), v.dtype) for k, v in state.items()}


def _state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 5, generator=g),
        "a.bias": torch.randn(3, generator=g).half(),
        "opt.step": torch.arange(4),
        "b.mask": torch.tensor([True, False]),
        "c.empty": torch.zeros(0, 4),
    }


def test_streamed_file_is_a_safetensors_file_with_the_same_tensors_and_digests(tmp_path):
    state = _state()
    rename = {k: k.replace("a.", "model.a.") for k in state if k != "opt.step"}  # opt.step: hashed, not written
    out = tmp_path / "m.safetensors"
    digests = stream.write(out, _declared(state), iter(state.items()), rename)
    back = load_file(str(out))
    assert set(back) == set(rename.values())
    for src, dst in rename.items():
        assert back[dst].dtype == state[src].dtype and torch.equal(back[dst], state[src])
    assert set(digests) == set(state)
    stream.check(out, {rename[k]: d for k, d in digests.items() if k in rename})


@pytest.mark.parametrize("bad", ["order", "shape", "dtype", "missing", "extra"])
def test_a_tensor_out_of_order_or_unlike_its_declaration_is_refused_and_no_file_stays(tmp_path, bad):
    state = _state()
    declared = _declared(state)
    items = list(state.items())
    if bad == "order":
        items[0], items[1] = items[1], items[0]
    elif bad == "shape":
        items[0] = ("a.weight", torch.zeros(5, 3))
    elif bad == "dtype":
        items[0] = ("a.weight", torch.zeros(3, 5, dtype=torch.float64))
    elif bad == "missing":
        items.pop()
    else:
        items.append(("z", torch.zeros(1)))
    out = tmp_path / "m.safetensors"
    with pytest.raises(errors.InvalidModelError):
        stream.write(out, declared, iter(items), {k: k for k in state})
    assert not out.exists()


def test_read_back_check_catches_a_changed_byte(tmp_path):
    state = _state()
    out = tmp_path / "m.safetensors"
    digests = stream.write(out, _declared(state), iter(state.items()), {k: k for k in state})
    data = bytearray(out.read_bytes())
    data[-3] ^= 1  # inside the last written tensor's bytes
    out.write_bytes(bytes(data))
    with pytest.raises(errors.IntegrityError):
        stream.check(out, digests)


@pytest.mark.parametrize("fault", ["changed byte", "short file"])
def test_the_write_time_read_back_catches_bytes_that_differ_from_the_assembled_tensor(tmp_path, monkeypatch, fault):
    """What ``write`` runs after each tensor: the file's bytes at the tensor's offset, read back in blocks (7
    bytes here, so several), compared with the tensor in memory; a difference or a short read is an error."""
    monkeypatch.setattr(stream, "_VERIFY_BLOCK", 7)
    state = _state()
    out = tmp_path / "m.safetensors"
    stream.write(out, _declared(state), iter(state.items()), {k: k for k in state})
    data = bytearray(stream.as_bytes(state["a.weight"]))  # 60 bytes at the first data offset
    import json
    import struct

    raw = out.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    at = 8 + size + json.loads(raw[8:8 + size])["a.weight"]["data_offsets"][0]
    with open(out, "r+b") as f:
        stream._verify_written(f.fileno(), at, memoryview(bytes(data)), bytearray(7), "a.weight")  # equal: passes
        if fault == "changed byte":
            data[-3] ^= 1  # the last block differs
        else:
            f.truncate(at + 30)  # the file ends inside the tensor
        with pytest.raises(errors.IntegrityError, match="reads back from the written file differently"):
            stream._verify_written(f.fileno(), at, memoryview(bytes(data)), bytearray(7), "a.weight")


def test_a_tensor_given_as_row_pieces_is_written_and_hashed_as_the_whole(tmp_path):
    """DCP's row-sharded chunks go to the writer as ``Parts``: the file and the digests are those of the
    assembled tensor; pieces that do not add up to it are refused and leave no file."""
    import hashlib

    state = _state()
    w = state["a.weight"]
    items = [("a.weight", stream.Parts(w.shape, w.dtype, [w[:1], w[1:]]))] + list(state.items())[1:]
    out = tmp_path / "m.safetensors"
    digests = stream.write(out, _declared(state), iter(items), {k: k for k in state})
    assert torch.equal(load_file(str(out))["a.weight"], w)
    assert digests["a.weight"] == hashlib.sha256(stream.as_bytes(w)).hexdigest()
    short = [("a.weight", stream.Parts(w.shape, w.dtype, [w[:1]]))] + list(state.items())[1:]
    with pytest.raises(errors.InvalidModelError, match="pieces of a.weight"):
        stream.write(out, _declared(state), iter(short), {k: k for k in state})
    assert not out.exists()


@pytest.mark.parametrize("where", ["header", "tensor"])
def test_a_write_that_stores_other_bytes_is_refused_and_leaves_no_file(tmp_path, monkeypatch, where):
    """A faulty disk, played by a writer that flips one byte of a block on its way to the file: the read-back
    (on the writing thread for a tensor's block) sees the difference, ``write`` raises and removes the file."""
    real = stream._pwrite
    hits = []

    def faulty(fd, data, at):
        if (at == 0) == (where == "header") and not hits:  # the header is written first, at 0, whole
            hits.append(at)
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0x10
            data = memoryview(bytes(bad))
        real(fd, data, at)

    monkeypatch.setattr(stream, "_pwrite", faulty)
    state = {"w": torch.randn(64, 8, generator=torch.Generator().manual_seed(1)), "b": torch.zeros(3)}
    out = tmp_path / "m.safetensors"
    with pytest.raises(errors.IntegrityError, match="reads back from the written file differently"):
        stream.write(out, _declared(state), iter(state.items()), {k: k for k in state})
    assert hits and not out.exists()


@pytest.mark.parametrize(("block", "inflight"), [(7, 1), (64, 200), (1 << 24, 1 << 26)])
def test_blocks_written_in_any_order_by_the_threads_make_the_same_file_and_digests(tmp_path, monkeypatch, block, inflight):
    """The threads write blocks at their offsets in whatever order they run; small blocks and a small in-flight
    budget (many blocks, many waits) give the same tensors and the sha256 of each."""
    import hashlib

    monkeypatch.setattr(stream, "_BLOCK", block)
    monkeypatch.setattr(stream, "_INFLIGHT", inflight)
    g = torch.Generator().manual_seed(2)
    state = {f"t{i}": torch.randn(5 + i, 3, generator=g) for i in range(12)}
    w = state["t3"]
    items = [(k, stream.Parts(w.shape, w.dtype, [w[:2], w[2:]]) if k == "t3" else v) for k, v in state.items()]
    out = tmp_path / "m.safetensors"
    digests = stream.write(out, _declared(state), iter(items), {k: k for k in state})
    back = load_file(str(out))
    assert all(torch.equal(back[k], v) for k, v in state.items())
    assert digests == {k: hashlib.sha256(stream.as_bytes(v)).hexdigest() for k, v in state.items()}


def test_parts_after_runs_once_its_bytes_are_in_the_file(tmp_path, monkeypatch):
    """``Parts.after`` (ZeRO and DCP hand mapped pages back there) runs once, when the tensor's bytes are written,
    hashed and compared, never before (the writer is slowed down so that too early would show)."""
    import time

    real = stream._pwrite

    def slow(fd, data, at):
        time.sleep(0.2)
        real(fd, data, at)

    monkeypatch.setattr(stream, "_pwrite", slow)
    state = _state()
    out = tmp_path / "m.safetensors"
    w = state["a.weight"]
    seen = []

    def after():
        raw = out.read_bytes()
        seen.append(stream.as_bytes(w).tobytes() in raw)

    items = [("a.weight", stream.Parts(w.shape, w.dtype, [w[:1], w[1:]], after))] + list(state.items())[1:]
    stream.write(out, _declared(state), iter(items), {k: k for k in state})
    assert seen == [True]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
def test_release_hands_back_only_whole_pages_of_the_range(tmp_path):
    """``release`` drops the pages behind a consumed range; a page shared with bytes outside the range is kept.
    On anonymous memory (a shard loaded without mmap) a dropped page reads back as zeros, so the neighbours'
    values prove which pages were touched."""
    import mmap

    page = mmap.PAGESIZE // 4  # float32 values per page
    t = torch.arange(8 * page, dtype=torch.float32) + 1  # no zero anywhere
    before = t.clone()
    lo, count = page + 3, 3 * page  # a range that starts and ends inside pages, holding two whole ones
    stream.release(t, lo, count)
    outside = torch.ones_like(t, dtype=torch.bool)
    outside[lo:lo + count] = False
    assert torch.equal(t[outside], before[outside])  # nothing outside the range changed
    assert (t[lo:lo + count] == 0).sum() >= 2 * page  # and the whole pages inside were handed back

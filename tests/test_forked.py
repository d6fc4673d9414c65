"""The forked reference child (converters/parity/forked.py): its arrays come back whole, a child that fails or hangs
answers None (the caller then computes in-process), and a pulled decoder's generate() reference is the child's
(the check still compares it with the ONNX loop: a child that computed wrong tokens fails the pull)."""

from __future__ import annotations

import os
import time

import numpy as np

from zoo.converters.parity import forked

BIG = forked.MIN_WEIGHT_BYTES  # weights big enough for the fork to pay


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_child_computes_with_torch_and_its_arrays_come_back(tmp_path):
    import torch

    weight = torch.randn(64, 64)
    torch.mm(weight, weight)  # the parent's thread pool has run: the child must still not hang
    jobs = {"a": lambda: [torch.mm(weight, weight).numpy(), np.arange(5)], "b": lambda: [np.ones((2, 3), np.float32)]}
    child = forked.fork_jobs(jobs, tmp_path / "ref", BIG)
    got = child.get("a")
    np.testing.assert_allclose(got[0], torch.mm(weight, weight).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(got[1], np.arange(5))
    assert child.get("b")[0].shape == (2, 3) and child.served == {"a", "b"}
    assert child.get("not-a-job") is None and child.exit_code == 0 and _reaped(child.pid)


def test_a_failing_child_answers_none(tmp_path):
    def boom() -> list:
        raise RuntimeError("the reference failed")

    child = forked.fork_jobs({"a": boom}, tmp_path / "ref", BIG)
    assert child.get("a") is None and child.exit_code == 1 and not child.served
    assert not list((tmp_path / "ref").glob("*.npz"))


def test_a_hung_child_is_killed_at_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(forked, "MIN_WAIT_S", 1.0)
    child = forked.fork_jobs({"a": lambda: time.sleep(600) or []}, tmp_path / "ref", BIG)
    start = time.monotonic()
    assert child.get("a") is None
    assert time.monotonic() - start < 10 and child.exit_code == -9 and _reaped(child.pid)


def test_forking_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_REFERENCE_FORK", "off")
    assert forked.fork_jobs({"a": lambda: [np.zeros(1)]}, tmp_path / "ref", BIG) is None


def test_a_small_model_is_not_forked_for(tmp_path):
    assert forked.fork_jobs({"a": lambda: [np.zeros(1)]}, tmp_path / "ref", BIG - 1) is None


def test_the_key_is_the_prompts_content_and_the_steps():
    feeds = {"input_ids": np.array([[1, 2, 3]]), "attention_mask": np.ones((1, 3), np.int64)}
    same = {k: v.copy() for k, v in feeds.items()}
    assert forked.feeds_key(feeds, 20) == forked.feeds_key(same, 20)
    assert forked.feeds_key(feeds, 20) != forked.feeds_key(feeds, 19)
    assert forked.feeds_key(feeds, 20) != forked.feeds_key({**feeds, "input_ids": np.array([[1, 2, 4]])}, 20)
    assert forked.feeds_key(feeds, 20) != forked.feeds_key({**feeds, "input_ids": np.array([[1, 2, 3]], np.int32)}, 20)


def test_the_child_keeps_no_inherited_descriptor_open(tmp_path):
    """A job runner's event pipe reaches end-of-file when the runner closes it, even while the child still works."""
    read, write = os.pipe()
    child = forked.fork_jobs({"a": lambda: time.sleep(30) or []}, tmp_path / "ref", BIG)
    try:
        os.close(write)
        start = time.monotonic()
        assert os.read(read, 1) == b"" and time.monotonic() - start < 5  # EOF now, not when the child ends
    finally:
        child.close()
        os.close(read)

"""Writing a consolidated checkpoint as it is assembled: the safetensors header first (from the names,
shapes and dtypes the checkpoint's metadata declares), then each tensor's bytes as its reader yields
it, hashed on the way. A reader may yield a tensor as ``Parts`` (views of the memory-mapped shards: ZeRO's
per-rank parts, DCP's row blocks), written from there without an assembled copy. Peak memory is the tensors
in flight (64 MiB, or the largest tensor and the next), never the whole model.

Every yielded tensor must be the next one declared, with the declared shape and dtype; anything else
(a missing, extra or reordered tensor) is an error and the partial file is removed.

Every block is verified as soon as it is written: its bytes are read back from the file (``preadv``) and
compared with the bytes it was written from, still in memory (``memcmp``), at the offset its header entry
names; the header is read back too. That is the same guarantee as hashing the whole file again afterwards
(every tensor of the file equals what was taken from the shards, whose sha256 is recorded) at the cost of one
read and one comparison instead of one read and a second sha256 of every byte. The sha256 (one thread, in
order), the writes and read-backs (two threads, any order: ``pwrite`` at each block's offset) and the reader
taking the next tensor overlap: hashlib, the syscalls and ``memcmp`` release the GIL. ``check`` stays for
re-verifying a written file against recorded digests later."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from zoo import errors

_DTYPES = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
_HINT = "the checkpoint's shards do not match its metadata: save the checkpoint again"


class Parts:
    """A tensor yielded as consecutive pieces whose bytes, one after the other, are the whole tensor's (row
    blocks of a tensor sharded on its first axis, a ZeRO parameter's per-rank parts): written and hashed
    piece by piece, never assembled. ``after`` runs once every piece is written, hashed and compared (to
    hand the pages of memory-mapped pieces back)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, parts: list[Any], after: Any = None) -> None:
        self.shape, self.dtype, self.parts, self.after = tuple(shape), dtype, parts, after

    def materialize(self) -> Any:
        """The assembled tensor (a copy): for the rare tensor needed twice (a tied weight)."""
        import torch

        flat = [p.reshape(-1) for p in self.parts]
        whole = torch.cat(flat) if flat else torch.empty(0, dtype=self.dtype)
        return whole.view(self.shape)


def meta_tensor(shape: tuple[int, ...], dtype: Any) -> Any:
    """A stand-in with a shape and a dtype and no memory (torch's meta device)."""
    import torch

    return torch.empty(tuple(shape), dtype=dtype, device="meta")


_BLOCK = 1 << 24  # 16 MiB: the unit handed to the hashing and the writing threads
_INFLIGHT = 1 << 26  # bytes handed to the threads and not yet done with (besides the tensor being assembled)
_WRITERS = 2  # threads that write, read back and compare (pwrite at each block's offset: any order)


def write(
    path: Path, declared: dict[str, Any], items: Iterator[tuple[str, Any]], rename: dict[str, str]
) -> dict[str, str]:
    """Write ``items`` (source name, tensor), which must come in ``declared``'s order with its shapes and
    dtypes, into one safetensors file; only names in ``rename`` are written, under their new names.
    Returns the sha256 of every yielded tensor's bytes, by source name.

    The work overlaps (hashlib, ``pwrite``/``preadv`` and ``memcmp`` release the GIL): this thread takes the
    next tensor from ``items`` (the layout assembles or maps it) while one thread hashes the tensors' bytes in
    order and two others write 16 MiB blocks at their header offsets, read each back and compare it. The
    tensors handed over and not yet done hold at most 64 MiB, or one tensor when it is larger."""
    header, end = _header(declared, rename)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    base = 8 + len(blob)
    digests: dict[str, str] = {}
    order = iter(declared.items())
    hasher, writer = ThreadPoolExecutor(1, "zoo-sha256"), ThreadPoolExecutor(_WRITERS, "zoo-write")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    scratch: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(_WRITERS):
        scratch.put(bytearray(min(_VERIFY_BLOCK, max(end, 1))))
    pending: collections.deque[tuple[int, list[Any]]] = collections.deque()
    inflight = 0
    try:
        _write_verified(fd, 0, memoryview(struct.pack("<Q", len(blob)) + blob), scratch, "the header")
        for name, tensor in items:
            want_name, want = next(order, (None, None))
            if name != want_name:
                raise errors.InvalidModelError(f"the shards hold {name} where the metadata says {want_name}", hint=_HINT)
            if tuple(tensor.shape) != tuple(want.shape) or tensor.dtype != want.dtype:
                raise errors.InvalidModelError(
                    f"consolidated {name} is {tensor.dtype}{list(tensor.shape)}, the "
                    f"metadata says {want.dtype}{list(want.shape)}",
                    hint=_HINT,
                )
            size = want.numel() * want.element_size()
            while pending and inflight + size > _INFLIGHT:  # the oldest done: its memory can go
                done, jobs = pending.popleft()
                _finish(jobs)
                inflight -= done
            entry = header.get(rename[name]) if name in rename else None
            pending.append((size, _submit(name, tensor, entry, base, hasher, writer, fd, scratch, digests)))
            inflight += size
        while pending:
            _finish(pending.popleft()[1])
        rest = [n for n, _ in order]
        if rest:
            raise errors.InvalidModelError(f"the shards lack {rest[:10]}", hint=_HINT)
        size = os.fstat(fd).st_size
        if size != base + end:
            raise errors.IntegrityError(f"wrote {size} bytes, the header promises {base + end}",
                                        hint="the disk is full or faulty: run the import again")
    except BaseException:
        hasher.shutdown(cancel_futures=True)  # waits for the running jobs before the file goes
        writer.shutdown(cancel_futures=True)
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    hasher.shutdown()
    writer.shutdown()
    os.close(fd)
    return digests


def _header(declared: dict[str, Any], rename: dict[str, str]) -> tuple[dict[str, Any], int]:
    header: dict[str, Any] = {}
    offset = 0
    for src, meta in declared.items():
        if src not in rename:
            continue
        code = _DTYPES.get(str(meta.dtype).removeprefix("torch."))
        if code is None:
            raise errors.UnsupportedError(f"{src} is {meta.dtype}, which safetensors cannot hold", hint=_HINT)
        size = meta.numel() * meta.element_size()
        header[rename[src]] = {"dtype": code, "shape": list(meta.shape), "data_offsets": [offset, offset + size]}
        offset += size
    return header, offset


def _submit(name: str, tensor: Any, entry: dict[str, Any] | None, base: int, hasher: ThreadPoolExecutor,
            writer: ThreadPoolExecutor, fd: int, scratch: queue.SimpleQueue[bytearray], digests: dict[str, str]
            ) -> list[Any]:
    """Hand one tensor's bytes to the threads, in blocks of ``_BLOCK``: hashed in order on one, written at
    the header entry's offset, read back and compared on the other. Returns their futures, the last of
    which runs the tensor's ``after``."""
    h = hashlib.sha256()
    at = None if entry is None else base + entry["data_offsets"][0]
    jobs = []
    for part in tensor.parts if isinstance(tensor, Parts) else (tensor,):
        data = as_bytes(part)
        for lo in range(0, len(data), _BLOCK):
            block = data[lo:lo + _BLOCK]
            jobs.append(hasher.submit(h.update, block))
            if at is not None:
                jobs.append(writer.submit(_write_verified, fd, at, block, scratch, name))
                at += len(block)
    if at is not None and at != base + entry["data_offsets"][1]:
        raise errors.InvalidModelError(f"the pieces of {name} hold {at - base - entry['data_offsets'][0]} bytes "
                                       f"where its header entry spans {entry['data_offsets'][1] - entry['data_offsets'][0]}",
                                       hint=_HINT)
    jobs.append(hasher.submit(lambda: digests.__setitem__(name, h.hexdigest())))
    after = getattr(tensor, "after", None)
    if after is not None:
        jobs.append(after)  # called by _finish, on this thread, once the threads are done with the pieces
    return jobs


def _finish(jobs: list[Any]) -> None:
    for job in jobs:
        if callable(job):
            job()
        else:
            job.result()  # re-raises what the thread raised (a read-back difference, a full disk)


def _pwrite(fd: int, data: memoryview, at: int) -> None:
    done = 0
    while done < len(data):
        n = os.pwrite(fd, data[done:], at + done)
        if n <= 0:
            raise errors.IntegrityError(f"the disk took no bytes at {at + done}", hint="the disk is full or faulty")
        done += n


_VERIFY_BLOCK = _BLOCK


def _write_verified(fd: int, at: int, data: memoryview, scratch: queue.SimpleQueue[bytearray], name: str) -> None:
    """``data`` written at ``at``, then read back (through the kernel, as any reader will see it) and compared."""
    _pwrite(fd, data, at)
    buf = scratch.get()
    try:
        _verify_written(fd, at, data, buf, name)
    finally:
        scratch.put(buf)


def _verify_written(fd: int, at: int, data: memoryview, scratch: bytearray, name: str) -> None:
    """The file's bytes at ``at`` read back (through the kernel, as any reader will see them) and compared
    with ``data`` block by block; an IntegrityError on the first difference or short read."""
    view = memoryview(scratch)
    done = 0
    while done < len(data):
        n = min(len(scratch), len(data) - done)
        got = os.preadv(fd, [view[:n]], at + done)
        if got != n or not _same(view[:n], data[done:done + n]):
            raise errors.IntegrityError(f"{name} reads back from the written file differently from what was assembled",
                                        hint="the disk or memory is faulty: run the import again")
        done += n


def _same(a: memoryview, b: memoryview) -> bool:
    """``a == b`` byte for byte, by libc's ``memcmp`` (memoryview equality compares item by item)."""
    import ctypes

    import numpy as np

    global _LIBC
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
    try:
        _LIBC = _LIBC or ctypes.CDLL(None, use_errno=True)
        memcmp = _LIBC.memcmp
    except (OSError, AttributeError):
        return bool(np.array_equal(x, y))
    memcmp.restype, memcmp.argtypes = ctypes.c_int, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    return memcmp(x.ctypes.data, y.ctypes.data, len(a)) == 0


def as_bytes(tensor: Any) -> memoryview:
    """The tensor's bytes without a copy when it is contiguous (little-endian, as safetensors stores them)."""
    import torch

    t = tensor.detach().contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def release(tensor: Any, start: int, count: int) -> None:
    """Unmap the pages behind ``tensor[start:start + count]`` of a memory-mapped shard from this process once
    they are written (``MADV_DONTNEED``): they leave its resident set and stay in the page cache, re-read
    from there if touched again. Only for mappings nothing writes to (torch's read-only loads): a private
    mapping's own changes would be dropped, an anonymous page (a shard loaded without mmap) reads back as
    zeros, so only pages wholly inside the range are released, and only once they are consumed. (``MADV_PAGEOUT``, used before, evicted them from the page cache
    too: a cost of its own, and the next reader of the shards went to the disk.)"""
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux") or count <= 0:
        return
    page = mmap.PAGESIZE
    lo = tensor.data_ptr() + start * tensor.element_size()
    hi = lo + count * tensor.element_size()
    lo += -lo % page  # only pages wholly inside the range: a neighbour's bytes on a shared page are kept
    hi -= hi % page
    if hi <= lo:
        return
    global _LIBC
    try:
        _LIBC = _LIBC or ctypes.CDLL(None, use_errno=True)
        _LIBC.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED
    except (OSError, AttributeError):
        return


_LIBC: Any = None


def check(path: Path, digests: dict[str, str]) -> None:
    """Read the written file back, a bounded block at a time (never mapped whole), and compare every named
    tensor's sha256 with the digest taken while it was written."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        base = 8 + size
        for name, entry in sorted(
            ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
        ):
            want = digests.get(name)
            if want is None:
                continue
            begin, end = entry["data_offsets"]
            f.seek(base + begin)
            h = hashlib.sha256()
            left = end - begin
            while left:
                block = f.read(min(left, 1 << 24))
                if not block:
                    break
                h.update(block)
                left -= len(block)
            if left or h.hexdigest() != want:
                raise errors.IntegrityError(
                    f"{name} changed between consolidation and writing (sha256 differs)",
                    hint="the disk or memory is faulty: run the import again",
                )

"""Writing a consolidated checkpoint as it is assembled: the safetensors header first (from the names,
shapes and dtypes the checkpoint's metadata declares), then each tensor's bytes as its reader yields
it, hashed on the way. Peak memory is one shard's mapped pages plus one tensor, never the whole model.

Every yielded tensor must be the next one declared, with the declared shape and dtype; anything else
(a missing, extra or reordered tensor) is an error and the partial file is removed.

Each tensor is verified as soon as it is written: its bytes are read back from the file (``pread``, in
bounded blocks) and compared with the assembled tensor still in memory (``memcmp``), at the offset its
header entry names. That is the same guarantee as hashing the whole file again afterwards (every tensor of
the file equals what was assembled from the shards, whose sha256 is recorded) at the cost of one read and
one comparison instead of one read and a second sha256 of every byte. ``check`` stays for re-verifying a
written file against recorded digests later."""

from __future__ import annotations

import hashlib
import json
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
    blocks of a tensor sharded on its first axis): written and hashed piece by piece, never assembled."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, parts: list[Any]) -> None:
        self.shape, self.dtype, self.parts = tuple(shape), dtype, parts


def meta_tensor(shape: tuple[int, ...], dtype: Any) -> Any:
    """A stand-in with a shape and a dtype and no memory (torch's meta device)."""
    import torch

    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def write(
    path: Path, declared: dict[str, Any], items: Iterator[tuple[str, Any]], rename: dict[str, str]
) -> dict[str, str]:
    """Write ``items`` (source name, tensor), which must come in ``declared``'s order with its shapes and
    dtypes, into one safetensors file; only names in ``rename`` are written, under their new names.
    Returns the sha256 of every yielded tensor's bytes, by source name."""
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
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    digests: dict[str, str] = {}
    order = iter(declared.items())
    base = 8 + len(blob)
    try:
        with open(path, "w+b") as f, ThreadPoolExecutor(1) as pool:
            f.write(struct.pack("<Q", len(blob)) + blob)
            scratch = bytearray(min(_VERIFY_BLOCK, max(offset, 1)))
            for name, tensor in items:
                want_name, want = next(order, (None, None))
                if name != want_name:
                    raise errors.InvalidModelError(
                        f"the shards hold {name} where the metadata says {want_name}", hint=_HINT
                    )
                if tuple(tensor.shape) != tuple(want.shape) or tensor.dtype != want.dtype:
                    raise errors.InvalidModelError(
                        f"consolidated {name} is {tensor.dtype}{list(tensor.shape)}, the "
                        f"metadata says {want.dtype}{list(want.shape)}",
                        hint=_HINT,
                    )
                at = base + header[rename[name]]["data_offsets"][0] if name in rename else None
                if at is not None and f.tell() != at:
                    raise errors.IntegrityError(f"{name} would start at byte {f.tell()} of the file, its header "
                                                f"entry says {at}", hint="report this with the checkpoint's metadata")
                h = hashlib.sha256()
                for part in tensor.parts if isinstance(tensor, Parts) else (tensor,):
                    data = as_bytes(part)
                    hashing = pool.submit(h.update, data)  # beside the write: both release the GIL
                    if at is not None:
                        f.write(data)
                        f.flush()
                        _verify_written(f.fileno(), at, data, scratch, name)
                        at += len(data)
                    hashing.result()
                if at is not None and at != base + header[rename[name]]["data_offsets"][1]:
                    raise errors.InvalidModelError(f"the pieces of {name} hold {at - base} bytes where its header "
                                                   f"entry ends at {header[rename[name]]['data_offsets'][1]}", hint=_HINT)
                digests[name] = h.hexdigest()
            rest = [n for n, _ in order]
            if rest:
                raise errors.InvalidModelError(f"the shards lack {rest[:10]}", hint=_HINT)
            if f.tell() != 8 + len(blob) + offset:
                raise errors.IntegrityError(
                    f"wrote {f.tell()} bytes, the header promises {8 + len(blob) + offset}",
                    hint="the disk is full or faulty: run the import again",
                )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return digests


_VERIFY_BLOCK = 1 << 23  # 8 MiB read back at a time


def _verify_written(fd: int, at: int, data: memoryview, scratch: bytearray, name: str) -> None:
    """The file's bytes at ``at`` read back (through the kernel, as any reader will see them) and compared
    with ``data`` block by block; an IntegrityError on the first difference or short read."""
    import os

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
    """Hand the mapped pages behind ``tensor[start:start + count]`` back to the kernel once they are copied
    (``MADV_PAGEOUT``: file-backed pages are dropped and re-read if touched again; never destructive)."""
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux") or count <= 0:
        return
    page = mmap.PAGESIZE
    lo = tensor.data_ptr() + start * tensor.element_size()
    hi = lo + count * tensor.element_size()
    lo -= lo % page
    hi += -hi % page
    global _LIBC
    try:
        _LIBC = _LIBC or ctypes.CDLL(None, use_errno=True)
        _LIBC.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 21)  # MADV_PAGEOUT (Linux 5.4)
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

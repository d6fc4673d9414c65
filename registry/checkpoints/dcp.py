"""``torch.distributed.checkpoint`` directories (FSDP's sharded or full state dicts, DTensor):
``.metadata`` (a pickle naming, for every tensor, its dtype, size and chunks, and where each chunk's
bytes lie) plus ``__R_N.distcp`` files (each chunk a ``torch.save`` blob at an offset).

zoo reads them itself, without a process group and without ``dcp.load``: ``.metadata`` passes the opcode
walk with an allow-list of DCP's own metadata classes and is loaded with
a restricted unpickler (torch's own reader unpickles it without restriction, and weights_only cannot
read its protocol-4 frames); every chunk's file must be a plain file inside
the directory and its byte range inside that file; each chunk blob passes the opcode walk and
``weights_only`` too, and must have the dtype and size the metadata says. The chunks of a tensor must
tile it exactly (no gap, no overlap), all checked from the metadata before a byte is written; then one
tensor is assembled, hashed and written at a time (``stream.write``)."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from zoo import errors
from zoo.registry.checkpoints.common import Checkpoint, stub
from zoo.registry.checkpoints.stream import Parts, meta_tensor, release

if TYPE_CHECKING:
    from zoo.settings import Settings

_MD = "torch.distributed.checkpoint.metadata"
_META_CLASSES = ((_MD, "Metadata"), (_MD, "MetadataIndex"), (_MD, "TensorStorageMetadata"),
                 (_MD, "BytesStorageMetadata"), (_MD, "ChunkStorageMetadata"), (_MD, "TensorProperties"),
                 (_MD, "StorageMeta"), (_MD, "_MEM_FORMAT_ENCODING"),
                 ("torch.distributed.checkpoint.filesystem", "_StorageInfo"))
_HINT = "save it again with torch.distributed.checkpoint.save, and copy the whole directory"


class _Record:
    """An inert stand-in for one of DCP's metadata classes (dataclasses, an enum): the pickled fields become
    plain attributes and no code of the original runs; zoo never imports ``torch.distributed.checkpoint``
    (about 1.5 s of CPU) to read a ``.metadata``."""

    _FIELDS: tuple[str, ...] = ()  # a class whose pickle holds a tuple of its fields (TensorProperties)

    def __init__(self, *args: Any) -> None:  # an enum's pickle calls its class with the value
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            fields = state
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict) and (
                state[0] is None or isinstance(state[0], dict)):  # (__dict__, __slots__ values)
            fields = {**(state[0] or {}), **state[1]}
        elif isinstance(state, tuple) and len(state) == len(self._FIELDS):
            fields = dict(zip(self._FIELDS, state))
        else:
            raise errors.InvalidModelError(f".metadata holds a {type(self).__name__} of an unknown form", hint=_HINT)
        if not all(isinstance(k, str) and k.isidentifier() and not k.startswith("__") for k in fields):
            raise errors.InvalidModelError(f".metadata holds a {type(self).__name__} with odd field names", hint=_HINT)
        self.__dict__.update(fields)


# the fields a pickle leaves out when they hold the class's default (MetadataIndex sets offset only when given)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "MetadataIndex": {"offset": None, "index": None},
    "_StorageInfo": {"transform_descriptors": None},
    "Metadata": {"state_dict_metadata": None, "storage_data": None, "planner_data": None, "storage_meta": None},
    "TensorProperties": {"_FIELDS": ("dtype", "layout", "requires_grad", "memory_format", "pin_memory")},
}
_STANDIN: dict[str, type] = {name: type(name, (_Record,), dict(_DEFAULTS.get(name, {}))) for _, name in _META_CLASSES}


def _allow() -> dict[tuple[str, str], Any]:
    import torch.serialization

    allow: dict[tuple[str, str], Any] = {(module, name): _STANDIN[name] for module, name in _META_CLASSES}
    allow[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    for cls in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):  # storage_meta.checkpoint_id
        allow[("pathlib", cls)] = stub("pathlib", cls)
    return allow


def read(path: Path, settings: Settings) -> Checkpoint:
    import torch

    from zoo.registry.checkpoints.common import restricted_load

    allow = _allow()
    meta = restricted_load(path / ".metadata", f"{path.name}/.metadata", allow)
    entries = getattr(meta, "state_dict_metadata", None)
    storage = getattr(meta, "storage_data", None)
    if not isinstance(entries, dict) or not isinstance(storage, dict):
        raise errors.InvalidModelError(f"{path.name}/.metadata is not DCP metadata", hint=_HINT)
    by_chunk: dict[tuple[str, tuple[int, ...]], Any] = {}
    sizes: dict[str, int] = {}
    for index, info in storage.items():
        if not isinstance(getattr(index, "fqn", None), str) or not isinstance(getattr(index, "offset", None) or (), tuple):
            raise errors.InvalidModelError(f"{path.name}/.metadata names a chunk without a tensor name", hint=_HINT)
        rel = str(getattr(info, "relative_path", ""))
        pure = PurePosixPath(rel.replace("\\", "/"))
        if not rel or "\0" in rel or pure.is_absolute() or len(pure.parts) != 1 or pure.name in (".", "..", ".metadata"):
            raise errors.UnsafeModelError(f"refusing {path.name}: .metadata points at {rel[:120]!r}, outside the checkpoint "
                                          "directory", hint=_HINT)
        if rel not in sizes:
            target = path / rel
            try:
                st = target.lstat()
            except OSError:
                raise errors.InvalidModelError(f"{path.name}: .metadata names {rel}, which is missing", hint=_HINT) from None
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise errors.UnsafeModelError(f"refusing {path.name}/{rel}: not a plain file (a link?)", hint=_HINT)
            sizes[rel] = st.st_size
        offset, length = getattr(info, "offset", -1), getattr(info, "length", -1)
        if not (isinstance(offset, int) and isinstance(length, int) and 0 <= offset and 0 < length
                and offset + length <= sizes[rel]):
            raise errors.InvalidModelError(f"{path.name}: a chunk of {index.fqn} asks for bytes {offset}+{length} of "
                                           f"{rel} ({sizes[rel]} bytes)", hint=_HINT)
        if getattr(info, "transform_descriptors", None):
            raise errors.UnsupportedError(f"{path.name}: chunks are stored with transforms {info.transform_descriptors}",
                                          hint="save without a storage transform (compression)")
        by_chunk[(index.fqn, tuple(index.offset or ()))] = info
    declared: dict[str, Any] = {}
    skipped = []
    for fqn, md in entries.items():
        if isinstance(md, _STANDIN["BytesStorageMetadata"]):
            skipped.append(fqn)  # a non-tensor entry (step counters, RNG state): never unpickled
            continue
        if not isinstance(md, _STANDIN["TensorStorageMetadata"]):
            raise errors.InvalidModelError(f"{path.name}: {fqn} has metadata of type {type(md).__name__}", hint=_HINT)
        dtype, size = getattr(getattr(md, "properties", None), "dtype", None), getattr(md, "size", None)
        if not isinstance(dtype, torch.dtype) or not isinstance(size, tuple) or not all(
                isinstance(d, int) and d >= 0 for d in size) or not isinstance(getattr(md, "chunks", None), list) or not all(
                isinstance(getattr(c, "offsets", None), tuple) and isinstance(getattr(c, "sizes", None), tuple)
                for c in md.chunks):
            raise errors.InvalidModelError(f"{path.name}: {fqn} has no dtype, size or chunks in .metadata", hint=_HINT)
        declared[fqn] = meta_tensor(tuple(size), dtype)
        _check_tiling(path, fqn, md, by_chunk)

    def items() -> Iterator[tuple[str, Any]]:
        handles: dict[str, Any] = {}
        try:
            for fqn in declared:
                yield fqn, _assemble(path, fqn, entries[fqn], by_chunk, handles)
        finally:  # the shards' mappings go when the last view of them does (the writer may still hold some)
            for key, f in handles.items():
                if not key.startswith("mmap:"):
                    f.close()

    info = {"ranks": len({p for p in sizes}), "files": sorted(sizes), "non_tensor_entries": len(skipped),
            "consolidated": {"tensors": len(declared), "streamed": True,
                             "checked": "dtype, size, exact tiling, sha256 per tensor"}}
    return Checkpoint(declared, "dcp", path.name, info, stream=items)


def _check_tiling(path: Path, fqn: str, md: Any, by_chunk: dict[tuple[str, tuple[int, ...]], Any]) -> None:
    """Before a byte is read: every chunk has stored bytes and lies inside the tensor; the chunks tile it
    exactly (no overlap, and together they cover every value)."""
    import math

    size = tuple(md.size)
    covered = 0
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for chunk in md.chunks:
        offs, csize = tuple(chunk.offsets), tuple(chunk.sizes)
        if by_chunk.get((fqn, offs)) is None or len(offs) != len(size) or len(csize) != len(size) or any(
                o < 0 or c < 0 or o + c > s for o, c, s in zip(offs, csize, size)):
            raise errors.InvalidModelError(f"{path.name}: chunk {list(offs)} of {fqn} {list(size)} has no stored "
                                           "bytes or lies outside the tensor", hint=_HINT)
        if any(all(o < bo + bc and bo < o + c for o, c, bo, bc in zip(offs, csize, b_offs, b_size))
               for b_offs, b_size in boxes):
            raise errors.InvalidModelError(f"{path.name}: chunks of {fqn} overlap at {list(offs)}", hint=_HINT)
        boxes.append((offs, csize))
        covered += math.prod(csize)
    if covered != math.prod(size):
        raise errors.InvalidModelError(f"{path.name}: the chunks of {fqn} cover {covered} of its {math.prod(size)} "
                                       "values", hint=_HINT)


def _assemble(path: Path, fqn: str, md: Any, by_chunk: dict[tuple[str, tuple[int, ...]], Any], handles: dict[str, Any]
              ) -> Any:
    """One tensor from its chunks (their tiling already checked): each chunk's blob through the opcode walk
    and ``weights_only``, with the dtype and size the metadata says."""
    import torch

    dtype, size = md.properties.dtype, tuple(md.size)
    # chunks that are whole rows (FSDP shards on the first axis): their bytes in row order are the tensor's,
    # so they are handed to the writer as they are, without assembling a copy
    rows = len(size) > 0 and all(tuple(c.offsets)[1:] == (0,) * (len(size) - 1) and tuple(c.sizes)[1:] == size[1:]
                                 for c in md.chunks)
    full = None if rows else torch.empty(size, dtype=dtype)
    pieces: list[tuple[int, Any]] = []
    for chunk in md.chunks:
        offs, csize = tuple(chunk.offsets), tuple(chunk.sizes)
        info = by_chunk[(fqn, offs)]
        where = f"{path.name}/{info.relative_path}[{fqn}@{list(offs)}]"
        part = _chunk(path, info, where, handles)
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != csize or part.dtype != dtype:
            got = f"{getattr(part, 'dtype', type(part).__name__)}{list(getattr(part, 'shape', []))}"
            raise errors.InvalidModelError(f"{where} holds {got}, the metadata says {dtype}{list(csize)}", hint=_HINT)
        if full is None:
            pieces.append((offs[0], part.contiguous()))
        else:
            full[tuple(slice(o, o + c) for o, c in zip(offs, csize))] = part
    if full is None:  # the tiling check made the row blocks cover the tensor exactly, without overlap
        parts = [p for _, p in sorted(pieces, key=lambda x: x[0]) if p.numel()]
        return Parts(size, dtype, parts, lambda: [release(p, 0, p.numel()) for p in parts])
    return full


def _chunk(path: Path, info: Any, where: str, handles: dict[str, Any]) -> Any:
    """A chunk's tensor. Its blob is a ``torch.save`` zip inside the shard file: its directory and pickle are
    read through a window on the file (opcode walk, then ``weights_only`` onto the meta device: shapes and
    dtypes, no bytes) and the tensor is a view of the shard's memory-mapped pages at its storage record's
    offset (which torch's reader notes when it loads to meta), never copied. Where torch does not say, the
    blob is read whole and loaded by ``torch.load`` instead."""
    import mmap

    import torch

    from zoo.safety import check_pickle_archive, check_pickle_bytes

    f = handles.get(info.relative_path)
    if f is None:
        f = handles[info.relative_path] = open(path / info.relative_path, "rb")  # noqa: SIM115 - closed by items()
        # copy-on-write (never written to): writable buffers for torch, pages shared with the page cache
        handles["mmap:" + info.relative_path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    window = _Window(f, info.offset, info.length)
    check_pickle_archive(window, where)
    try:
        window.seek(0)
        meta = torch.load(window, map_location="meta", weights_only=True)
        # torch's own reader notes where the storage record's bytes start inside the blob when loading to meta
        begin = getattr(meta.untyped_storage(), "_checkpoint_offset", None) if isinstance(meta, torch.Tensor) else None
        nbytes = meta.untyped_storage().nbytes() if begin is not None else 0
        if isinstance(begin, int) and 0 <= begin and begin + nbytes <= info.length:
            flat = torch.frombuffer(handles["mmap:" + info.relative_path], dtype=torch.uint8, count=nbytes,
                                    offset=info.offset + begin) if nbytes else torch.empty(0, dtype=torch.uint8)
            return flat.view(meta.dtype).as_strided(meta.shape, meta.stride(), meta.storage_offset())
        f.seek(info.offset)
        blob = f.read(info.length)
        check_pickle_bytes(blob, where)
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or hostile bytes
        raise errors.InvalidModelError(f"cannot read {where}: {str(exc)[:200]}", hint=_HINT) from None


class _Window(io.RawIOBase):
    """Bytes ``offset .. offset + length`` of an open file, as a seekable read-only file of their own."""

    def __init__(self, f: Any, offset: int, length: int) -> None:
        self.f, self.offset, self.length, self.pos = f, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = max(0, pos if whence == 0 else self.pos + pos if whence == 1 else self.length + pos)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.length - self.pos))
        if not n:
            return 0
        got = os.preadv(self.f.fileno(), [memoryview(buffer)[:n]], self.offset + self.pos)
        self.pos += got
        return got

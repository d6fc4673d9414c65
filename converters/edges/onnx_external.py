"""ONNX files whose weights live outside the graph: ``model.onnx`` plus one ``model.onnx.data``.

protobuf cannot serialise a message of 2 GiB or more, so a model whose tensors exceed ``PROTO_LIMIT`` (or
the ``--external-data-above`` option) is written as the graph and one data file beside it, the layout
torch.onnx's dynamo exporter, optimum and onnxruntime-genai use. onnxruntime resolves the data file
relative to the model file, so both travel together (in the artifact, in ``zoo pull -o``, in the API's
archive). Every edge that writes ONNX saves through ``save_model`` here, so the layout is one rule.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

PROTO_LIMIT = 1_800_000_000  # protobuf's hard limit is 2 GiB per message; keep headroom for the graph itself
DATA_SUFFIX = ".data"
INLINE_BELOW = 1024  # tensors smaller than this stay in the graph (shapes, scalars): onnx's own default


def data_name(model_path: Path) -> str:
    return model_path.name + DATA_SUFFIX


def tensor_bytes(model: Any) -> int:
    """Bytes of the model's initializers, loaded or external (the size its weights take on disk). An external
    tensor without a ``length`` entry (TorchScript's one file per tensor names only the file) counts its shape
    times its element size."""
    import math

    from onnx import helper

    total = 0
    for t in model.graph.initializer:
        if t.external_data:
            length = {e.key: e.value for e in t.external_data}.get("length")
            total += int(length) if length else math.prod(t.dims) * _itemsize(helper, t.data_type)
        else:
            total += len(t.raw_data) or t.ByteSize()
    return total


def _itemsize(helper: Any, data_type: int) -> int:
    try:
        return helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):  # a type numpy lacks (the 4-bit ones): a byte is the upper bound
        return 1


def uses_external(path: Path) -> bool:
    """Whether the ONNX file at ``path`` keeps any initializer outside itself."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def external(model: Any, threshold: int | None) -> bool:
    """Whether ``model`` must be written with external data: its weights exceed ``threshold`` (default: the
    protobuf limit)."""
    return tensor_bytes(model) > (PROTO_LIMIT if threshold is None else threshold)


def save_model(model: Any, path: Path, threshold: int | None, *, force: bool = False) -> bool:
    """Write ``model`` (tensors loaded) to ``path``: one file, or ``path`` + ``path.data`` when its weights
    exceed ``threshold`` or ``force``. Returns whether external data was written. A stale data file of an
    earlier write is removed first (``onnx`` appends to an existing one)."""
    import onnx

    data = path.parent / data_name(path)
    data.unlink(missing_ok=True)
    outside = force or external(model, threshold)
    if outside:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=INLINE_BELOW, convert_attribute=False)
    else:
        onnx.save_model(model, str(path))
    return outside


def data_files(path: Path) -> list[str]:
    """The distinct external data locations the ONNX file at ``path`` names (relative, as written)."""
    import onnx

    return _locations(onnx.load(str(path), load_external_data=False))


def consolidate(path: Path, threshold: int | None) -> bool:
    """Rewrite an exported ``path`` into zoo's layout: one data file named ``path.data`` when the weights
    exceed ``threshold``, else one file. Exporters that write one file per tensor (TorchScript above 2 GiB),
    another name, or the weights inline are brought to it by ``stream_external``, a tensor at a time; a file
    already in the layout is left as it is (no copy). Returns whether the result keeps external data."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = _locations(model)
    wanted = external(model, threshold)
    if locations == ([data_name(path)] if wanted else []):
        return wanted
    if wanted:
        stream_external(path, model, locations)
        return True
    full = onnx.load(str(path))  # under the threshold, which is under protobuf's limit: it fits in one message
    for location in locations:
        (path.parent / location).unlink(missing_ok=True)
    return save_model(full, path, threshold)


def stream_external(path: Path, model: Any, locations: list[str]) -> None:
    """Write every tensor of ``model`` (``path`` loaded without its external data) of ``INLINE_BELOW`` bytes or
    more into one ``path.data``, copying external ones from their files in chunks, then ``path`` itself and
    remove the old files: memory holds the graph and one chunk, never the weights (``onnx.load`` with its
    external data would hold them all, and ``onnx.save`` a serialised copy besides). Every location is first
    checked to be a plain file inside the folder whose bytes cover the tensor (``zoo.safety``)."""
    import onnx

    from zoo.safety import check_onnx_external_data, onnx_tensors

    folder = path.parent
    check_onnx_external_data(path)
    data = folder / data_name(path)
    partial = folder / (data.name + ".partial")
    sources: dict[str, Any] = {}
    try:
        with open(partial, "wb") as out:
            for tensor in onnx_tensors(model):
                entries = {e.key: e.value for e in tensor.external_data}
                if tensor.data_location == onnx.TensorProto.EXTERNAL or entries:
                    src = sources.get(entries["location"]) or sources.setdefault(
                        entries["location"], open(folder / entries["location"], "rb"))
                    offset = int(entries.get("offset") or 0)
                    length = int(entries["length"]) if entries.get("length") else os.fstat(src.fileno()).st_size - offset
                    if length < INLINE_BELOW:  # small tensors live in the graph, as onnx.save_model puts them
                        src.seek(offset)
                        _set_inline(tensor, src.read(length))
                        continue
                    start = _pad_to(out, length)
                    _copy_span(src, offset, length, out)
                elif tensor.HasField("raw_data") and len(tensor.raw_data) >= INLINE_BELOW:
                    start = _pad_to(out, len(tensor.raw_data))
                    out.write(tensor.raw_data)
                    length = len(tensor.raw_data)
                    tensor.ClearField("raw_data")
                else:
                    continue
                del tensor.external_data[:]
                for key, value in (("location", data.name), ("offset", str(start)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                tensor.data_location = onnx.TensorProto.EXTERNAL
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        for f in sources.values():
            f.close()
    for location in locations:
        (folder / location).unlink(missing_ok=True)
    os.replace(partial, data)
    onnx.save_model(model, str(path))


ALIGN = 4096  # tensors of a megabyte or more start on a page boundary (what onnxruntime can map directly)
_CHUNK = 16 * 1024 * 1024


def _pad_to(out: Any, length: int) -> int:
    """Pad ``out`` to the next ``ALIGN`` boundary for a tensor of ``length`` bytes of 1 MiB or more; the offset."""
    start = out.tell()
    if length >= 1 << 20 and start % ALIGN:
        out.write(b"\0" * (ALIGN - start % ALIGN))
        start = out.tell()
    return start


def _copy_span(src: Any, offset: int, length: int, out: Any) -> None:
    """``length`` bytes of ``src`` from ``offset`` appended to ``out``: inside the kernel where it can
    (``copy_file_range``: one page-cache copy instead of a read and a write through Python, ~1 s less CPU
    per 4 GB), else in chunks."""
    out.flush()
    start = out.tell()
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < length:
                n = os.copy_file_range(src.fileno(), out.fileno(), min(length - done, 1 << 30), offset + done,
                                       start + done)
                if not n:
                    break  # the source ends early: the loop below says so
                done += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
    out.seek(start + done)  # explicit offsets move neither file position: put out's after what was copied
    src.seek(offset + done)
    left = length - done
    while left:
        chunk = src.read(min(left, _CHUNK))
        if not chunk:
            raise OSError(f"{src.name} ends {left} bytes before the tensor it holds")
        out.write(chunk)
        left -= len(chunk)


def _set_inline(tensor: Any, raw: bytes) -> None:
    import onnx

    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = raw


def _locations(model: Any) -> list[str]:
    """The distinct external data locations ``model``'s tensors name (relative, as written)."""
    import onnx

    from zoo.safety import onnx_tensors

    found: list[str] = []
    for tensor in onnx_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if location not in found:
                found.append(location)
    return found

"""ONNX files whose weights live outside the graph: ``model.onnx`` plus one ``model.onnx.data``.

protobuf cannot serialise a message of 2 GiB or more, so a model whose tensors exceed ``PROTO_LIMIT`` (or
the ``--external-data-above`` option) is written as the graph and one data file beside it, the layout
torch.onnx's dynamo exporter, optimum and onnxruntime-genai use. onnxruntime resolves the data file
relative to the model file, so both travel together (in the artifact, in ``zoo pull -o``, in the API's
archive). Every edge that writes ONNX saves through ``save_model`` here, so the layout is one rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROTO_LIMIT = 1_800_000_000  # protobuf's hard limit is 2 GiB per message; keep headroom for the graph itself
DATA_SUFFIX = ".data"
INLINE_BELOW = 1024  # tensors smaller than this stay in the graph (shapes, scalars): onnx's own default


def data_name(model_path: Path) -> str:
    return model_path.name + DATA_SUFFIX


def tensor_bytes(model: Any) -> int:
    """Bytes of the model's initializers, loaded or external (the size its weights take on disk)."""
    total = 0
    for t in model.graph.initializer:
        if t.external_data:
            total += int({e.key: e.value for e in t.external_data}.get("length") or 0)
        else:
            total += len(t.raw_data) or t.ByteSize()
    return total


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

    from zoo.safety import onnx_tensors

    model = onnx.load(str(path), load_external_data=False)
    found: list[str] = []
    for tensor in onnx_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if location not in found:
                found.append(location)
    return found


def consolidate(path: Path, threshold: int | None) -> bool:
    """Rewrite an exported ``path`` into zoo's layout: one data file named ``path.data`` when the weights
    exceed ``threshold``, else one file. Exporters that write one file per tensor (TorchScript above 2 GiB)
    or another name are brought to it; a file already in the layout is left as it is (no copy). Returns
    whether the result keeps external data."""
    import onnx

    locations = data_files(path)
    model = onnx.load(str(path), load_external_data=False)
    wanted = external(model, threshold)
    if locations == ([data_name(path)] if wanted else []):
        return wanted
    full = onnx.load(str(path))  # with its external data
    for location in locations:
        (path.parent / location).unlink(missing_ok=True)
    return save_model(full, path, threshold, force=wanted)

"""Refuse a SavedModel that would touch files or run Python when loaded or served.

A SavedModel is a program: loading it runs its initialisers and serving runs
its signature. Before ``zoo convert`` loads one, this reads ``saved_model.pb``
as data and walks every function reachable from the graph and from the
objects TensorFlow restores, skipping only the checkpoint save/restore
functions the ``SaverDef`` names when nothing else calls them, and refuses ops
that read or write files, write summaries or call back into Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from zoo import errors

DENIED_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "Save", "SaveV2", "SaveSlices", "Restore",
    "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader",
    "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset", "ExperimentalSaveDataset",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteImageSummary", "WriteHistogramSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "ImportEvent", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "DebugIdentityV2", "DebugIdentityV3", "LoadAndRemapMatrix",
})


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _called(node: Any, functions: dict[str, Any]) -> Iterator[str]:
    """Functions a NodeDef calls: by op name, or through function-valued attributes."""
    if node.op in functions:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (f.name for f in value.list.func)


def _denied(node: Any) -> bool:
    if node.op in DENIED_OPS:
        return True
    stream = node.attr["output_stream"].s.decode(errors="replace") if node.op == "PrintV2" else ""
    return stream.startswith("file://")


def check_saved_model(directory: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString((directory / "saved_model.pb").read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise errors.InvalidModelError(f"{directory}/saved_model.pb is not a SavedModel: {exc}") from exc
    for meta in model.meta_graphs:
        graph = meta.graph_def
        functions = {f.signature.name: f for f in graph.library.function}
        saver = {_node_name(meta.saver_def.save_tensor_name), _node_name(meta.saver_def.restore_op_name)} - {""}
        roots = [n for n in graph.node if n.name not in saver]
        pending = [name for n in roots for name in _called(n, functions)]
        pending += list(meta.object_graph_def.concrete_functions)
        bad = [n for n in roots if _denied(n)]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen or name not in functions:
                continue
            seen.add(name)
            for node in functions[name].node_def:
                if _denied(node):
                    bad.append(node)
                pending.extend(_called(node, functions))
        if bad:
            ops = sorted({n.op for n in bad})
            raise errors.UnsafeModelError(
                f"{directory.name}: the SavedModel runs {', '.join(ops)} (node {bad[0].name!r}): it would read or write "
                "files or call Python when loaded or served", hint="zoo converts SavedModels that only compute; re-export the model without those ops")

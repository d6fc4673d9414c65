"""Hostile TensorFlow SavedModels for the hostile corpus (tests/hostile.py): real SavedModels
whose ops would write the test's canary (or read files) when TensorFlow loads or serves them.

- ``resource_initializer``: a tracked resource whose initialiser runs ``DatasetToTFRecord``
  (run by ``tf.saved_model.load``);
- ``signature``: ``serving_default`` itself runs an op on the canary (run when parity calls it);
- ``tf1_restore_op``: a TF1 SavedModel whose ``SaverDef.restore_op_name`` node is a ``WriteFile``
  (run by the TF1 loader to restore the variables);
- ``genuine`` / ``genuine_tf1``: the same models without a payload (they must still load).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def _module(serve_extra: Callable[[], None] | None = None, resource: object | None = None):
    tf = _tf()

    class Model(tf.Module):
        def __init__(self) -> None:
            self.scale = tf.Variable(2.0)
            self.res = resource

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            if serve_extra is not None:
                serve_extra()
            return {"y": x * self.scale}

    return Model()


def _save(module, path: Path, canary: Path) -> Path:
    tf = _tf()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    for left in canary.parent.glob(canary.name + "*"):  # tracing or saving may have run the payload once
        left.unlink()
    return path


def resource_initializer(canary: Path, path: Path) -> Path:
    tf = _tf()

    class Writer(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.float32)

        def _initialize(self):
            tf.raw_ops.DatasetToTFRecord(input_dataset=tf.data.Dataset.from_tensors(tf.constant("x"))._variant_tensor,
                                         filename=str(canary), compression_type="")
            return tf.raw_ops.NoOp()

    return _save(_module(resource=Writer()), path, canary)


def signature(canary: Path, path: Path, op: str = "DatasetToTFRecord") -> Path:
    """``serving_default`` runs ``op`` on the canary path."""
    tf = _tf()

    def payload() -> None:
        if op == "DatasetToTFRecord":
            tf.raw_ops.DatasetToTFRecord(input_dataset=tf.data.Dataset.from_tensors(tf.constant("x"))._variant_tensor,
                                         filename=str(canary), compression_type="")
        elif op == "CacheDatasetV2":  # iterating a cached dataset writes canary.index and canary.data-*
            tf.data.Dataset.from_tensors(tf.constant(1.0)).cache(str(canary)).reduce(0.0, lambda s, v: s + v)
        elif op == "CSVDataset":  # reads any file the process can read
            tf.data.experimental.CsvDataset(str(canary), [tf.float32]).reduce(0.0, lambda s, v: s + v)
        elif op == "WriteFile":
            tf.io.write_file(str(canary), "the model ran")

    if op == "CSVDataset":
        canary.write_text("1\n")  # tracing reads the file's existence lazily; removed by _save
    return _save(_module(payload), path, canary)


def genuine(canary: Path, path: Path) -> Path:
    return _save(_module(), path, canary)


def _tf1_model(path: Path) -> None:
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([4, 2]))
        y = tf.matmul(x, w, name="y")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()


def genuine_tf1(canary: Path, path: Path) -> Path:
    _tf1_model(path)
    return path


def tf1_restore_op(canary: Path, path: Path) -> Path:
    """A TF1 SavedModel whose saver restore op is a ``WriteFile`` of the canary."""
    tf = _tf()
    from tensorflow.core.protobuf import saved_model_pb2

    _tf1_model(path)
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = model.meta_graphs[0].graph_def
    restore = model.meta_graphs[0].saver_def.restore_op_name
    # Drop the real restore graph (RestoreV2 and its assignments): the WriteFile below takes its place.
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph.node}

    def ancestors(start: set[str]) -> set[str]:
        seen, pending = set(), list(start)
        while pending:
            name = pending.pop()
            if name not in seen and name in inputs:
                seen.add(name)
                pending.extend(inputs[name])
        return seen

    only_restore = ancestors({restore}) - ancestors(set(inputs) - ancestors({restore}))
    kept = [n for n in graph.node if n.name == restore or n.name not in only_restore]
    del graph.node[:]
    graph.node.extend(kept)
    node = next(n for n in graph.node if n.name == restore)
    for name, value in (("evil/filename", str(canary)), ("evil/contents", "the model ran")):
        const = graph.node.add(name=name, op="Const")
        const.attr["dtype"].type = tf.string.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    node.Clear()
    node.name, node.op = restore, "WriteFile"
    node.input.extend(["evil/filename", "evil/contents"])
    (path / "saved_model.pb").write_bytes(model.SerializeToString())
    return path


BUILDERS: dict[str, Callable[[Path, Path], Path]] = {
    "resource-initializer-dataset-to-tfrecord": resource_initializer,
    "signature-dataset-to-tfrecord": signature,
    "tf1-restore-op-write-file": tf1_restore_op,
    "signature-cache-dataset": lambda c, p: signature(c, p, "CacheDatasetV2"),
    "signature-csv-dataset": lambda c, p: signature(c, p, "CSVDataset"),
}
# Fed to `zoo convert DIR` by the corpus (each costs a TensorFlow start); the others are checked in-process.
THROUGH_THE_CLI = ("resource-initializer-dataset-to-tfrecord", "signature-dataset-to-tfrecord", "tf1-restore-op-write-file")
NEEDLES = {"resource-initializer-dataset-to-tfrecord": "DatasetToTFRecord", "signature-dataset-to-tfrecord": "DatasetToTFRecord",
           "tf1-restore-op-write-file": "WriteFile", "signature-cache-dataset": "CacheDatasetV2",
           "signature-csv-dataset": "CSVDataset"}

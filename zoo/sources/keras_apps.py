"""Keras applications as sources (``keras:MobileNetV2``, ``keras:MobileNetV2@96`` for a 96x96 input).

The fetch stage asks keras which weights file the application loads (once per keras version,
architecture and size, remembered in the registry), brings it into keras' cache and hashes it: the
cache key covers the weights' bytes, and the model is built from exactly that file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from zoo.registry.records import FileInfo, ModelRecord
from zoo.sources.base import Opened, Source

if TYPE_CHECKING:
    from zoo.progress import Progress
    from zoo.registry.index import Registry
    from zoo.settings import Settings


class KerasApplicationSource(Source):
    kind = "keras-application"
    node = "keras-model"

    def __init__(self, record: ModelRecord, settings: Settings, registry: Registry) -> None:
        super().__init__()
        self.record, self.settings, self.registry = record, settings, registry
        self.model_id = record.id
        self.size = int(record.input_spec[0]["shape"][1])

    def planned_node(self) -> str | None:
        return self.node

    def fetch(self, progress: Progress) -> None:
        from zoo.hashing import sha256_file
        from zoo.registry.keras_source import fetch_keras_weights
        from zoo.versions import dist_version

        version = dist_version("keras") or "none"
        request = self._weights_request(version)
        self.weights = fetch_keras_weights(request, self.settings, progress.note)
        self.root = self.weights.parent
        self.files = [FileInfo(self.weights.name, sha256_file(self.weights), self.weights.stat().st_size)]
        self.checked = True
        self.revision = f"keras-{version}-{self.size}"

    def _weights_request(self, version: str) -> dict[str, Any]:
        """keras' own answer to "which file", asked once (it imports TensorFlow) and kept in the registry."""
        from zoo import db

        key = f"keras-weights:{version}:{self.record.arch}:{self.size}"
        with self.registry.engine.connect() as conn:
            known = db.get_meta(conn, key)
        if known:
            return json.loads(known)
        from zoo.converters.loaders.keras_models import keras_weights_request

        request = keras_weights_request(self.record.arch or "", self.size)
        with self.registry.engine.begin() as conn:
            db.set_meta(conn, key, json.dumps(request))
        return request

    def memo(self) -> dict[str, Any] | None:
        """keras' version (in the fingerprint) fixes which file; the file's stat says it is still the one
        hashed (other bytes under the same name are a new conversion, never the memo's answer)."""
        st = self.weights.stat()
        return {"fixed": self.record.id, "commit": self.revision, "file": str(self.weights),
                "stat": [st.st_size, st.st_mtime_ns, st.st_ino]}

    def verify(self, progress: Progress) -> None:
        from zoo import errors
        from zoo.hashing import sha256_file

        if sha256_file(self.weights) != self.files[0].sha256:
            raise errors.IntegrityError(f"{self.weights} changed after it was hashed",
                                        hint="another process is writing keras' cache; pull again")

    def open(self, progress: Progress) -> Opened:
        from zoo.converters.loaders.keras_models import build_keras
        from zoo.converters.parity.inputs import parity_input_sets
        from zoo.converters.parity.runners import keras_runner

        with progress.stage("load", f"keras {self.record.arch}"):
            km = build_keras(self.record, self.weights)
        return Opened(km, keras_runner(km.model, km.input_names), parity_input_sets(self.record), km.input_names,
                      km.output_names, km.classifier_outputs, labels=km.labels)

    def tools(self) -> tuple[str, ...]:
        return ("keras", "tensorflow")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": f"keras:{self.record.arch}@{self.size}"}

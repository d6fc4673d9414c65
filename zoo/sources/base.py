"""The two types every source has: ``Source`` (what a conversion starts from: fetch, verify, open) and
``Opened`` (a source loaded into memory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zoo.registry.records import FileInfo, ModelRecord

if TYPE_CHECKING:
    from zoo.progress import Progress

Runner = Callable[[dict[str, Any]], list[Any]]


@dataclass
class Opened:
    """A source loaded into memory: what the chain's first edge takes, and what parity compares against."""

    model: Any  # the first edge's input: an in-memory model (torch, keras) or a file path
    reference: Runner  # feeds -> outputs of the source itself: the truth every format is checked against
    input_sets: list[Any]  # zoo.converters.parity.check.InputSet
    input_names: list[str]
    output_names: list[str]
    classifier_outputs: list[str] = field(default_factory=list)  # outputs whose argmax is compared (top-1)
    dtype: str = "float32"  # the source's own precision class: results are checked at least this loosely
    metadata: dict[str, str] = field(default_factory=dict)  # zoo.* ONNX metadata carried over from a source file
    labels: list[str] | None = None
    torch_model: Any = None  # the TorchModel of a PyTorch source: export example, divergence locator
    seq_max: int | None = None  # the longest sequence a text model takes (its dynamic axis' bound)
    input_notes: dict[str, str] = field(default_factory=dict)  # input name -> how its parity values were made
    inputs_requested: bool = False  # the source already applied the user's --input/--inputs/--samples
    onnx_model: Any = None  # an ONNX source's ModelProto: traces a failing node back to its inputs


class Source:
    """One kind of model a conversion starts from. Subclasses set the identity in ``fetch``."""

    kind = "source"  # what the manifest calls it: "hub", "local", "keras-application", "file"
    node = ""  # the conversion graph's node the chain starts from, known after fetch
    model_id = ""
    revision = ""
    record: ModelRecord | None = None
    root: Path | None = None  # the directory the files are read from
    checked = False  # every file was hashed against its expected digest during this fetch
    input_request: Any = None  # what the user said about parity inputs (set by the pipeline before open)
    task: str | None = None  # --task (set by the pipeline before fetch): overrides the task the repo declares

    def __init__(self) -> None:
        self.files: list[FileInfo] = []

    @property
    def label(self) -> str:
        return self.model_id

    @property
    def runs_model_code(self) -> bool:
        """Loading or calling this source runs a program the model defines (a TensorFlow SavedModel's
        graph): the pipeline then opens, runs and converts it in a confined process (``zoo.sandbox``)."""
        return self.node == "tf"

    def planned_node(self) -> str | None:
        """The start node when known before fetching (so a bad format fails before any download)."""
        return None

    def fetch(self, progress: Progress) -> None:
        """Bring the files here and set ``node``, ``model_id``, ``revision`` and ``files`` (with sha256)."""
        raise NotImplementedError

    def verify(self, progress: Progress) -> None:
        """Before a loader reads them, every file must still hash to the digest the key was made of."""

    def open(self, progress: Progress) -> Opened:
        raise NotImplementedError

    def tools(self) -> tuple[str, ...]:
        """The packages whose versions decide what ``open`` builds (part of the cache key)."""
        return ()

    def sidecar_files(self) -> list[str]:
        """Files (relative to ``root``) that travel beside the converted model: configs, tokenizers."""
        return []

    def onnx_metadata(self) -> dict[str, str]:
        """``zoo.*`` metadata describing the source, written into an ONNX result."""
        props = {"zoo.source": self.model_id, "zoo.source_revision": self.revision}
        if self.record is not None:
            import json

            props.update({"zoo.task": self.record.task or "", "zoo.input_spec": json.dumps(self.record.input_spec),
                          "zoo.preprocessing": json.dumps(self.record.preprocessing),
                          "zoo.license": self.record.license or ""})
            if self.record.extra.get("io"):
                props["zoo.io"] = json.dumps(self.record.extra["io"])
        return props

    def describe(self) -> dict[str, Any]:
        """How to make the same request again (``zoo cache verify --repair`` replays it)."""
        return {"kind": self.kind}

    def memo(self) -> dict[str, Any] | None:
        """What the fast path of a repeated pull checks (a hub repo's commit), or None."""
        return None

"""What zoo knows about a model: one flat record, fields grouped by concern
(the shape of timm's PretrainedCfg)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TASKS = ("image-classification", "feature-extraction", "text-classification")


@dataclass
class FileInfo:
    path: str  # path inside the repo / snapshot, POSIX, validated relative
    sha256: str
    size: int


@dataclass
class ModelRecord:
    # --- identity ---
    id: str  # canonical id: "timm/resnet50.a1_in1k", "org/name", "local/name"
    source: str  # "timm" | "hf" | "local"
    name: str  # short display name: "resnet50.a1_in1k", "org/name", "name"
    # --- where weights come from ---
    repo_id: str | None = None  # Hugging Face repo holding the weights
    repo_filename: str | None = None  # a single weights file inside it, when the catalog names one
    revision: str | None = None  # resolved commit sha (set once fetched)
    files: list[FileInfo] = field(default_factory=list)
    # --- what the model is ---
    library: str = "timm"  # "timm" | "transformers"
    arch: str | None = None  # timm architecture or transformers class name
    tag: str | None = None  # timm pretrained tag
    is_default: bool = False  # the arch's default tag in timm's catalog
    task: str | None = None
    # --- input ---
    input_spec: list[dict[str, Any]] = field(default_factory=list)  # name, shape (None/str = dynamic), dtype, layout
    preprocessing: dict[str, Any] = field(default_factory=dict)  # mean, std, input_size, interpolation, crop_pct, crop_mode
    # --- head ---
    num_classes: int | None = None
    labels: list[str] | None = None
    # --- provenance ---
    license: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelRecord":
        data = dict(data)
        data["files"] = [f if isinstance(f, FileInfo) else FileInfo(**f) for f in data.get("files") or []]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def image_input_spec(input_size: tuple[int, int, int] | list[int], name: str = "input") -> list[dict[str, Any]]:
    c, h, w = input_size
    return [{"name": name, "shape": ["batch", c, h, w], "dtype": "float32", "layout": "NCHW"}]


def text_input_spec(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64", "layout": "NS"} for n in names]

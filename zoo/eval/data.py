"""Labelled data sets from local folders, in the layouts people already have; never a download.

| layout | what | labels |
|---|---|---|
| image folder | ``PATH/<class>/<image>`` (``.jpg .jpeg .png .bmp .webp .gif .tif .tiff``) | the folder names |
| JSONL | one object a line with ``text`` (or ``sentence``) and ``label`` | strings or class indices |
| CSV | a header row with ``text`` (or ``sentence``) and ``label`` columns | strings or class indices |
| ``datasets`` | a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` | a ``ClassLabel`` or plain column |

``--limit N`` keeps the first N examples in a fixed order: for an image folder, one image of each class
in turn (so a limit never drops whole classes), otherwise the file's or table's own order. The data set's
identity is the sha256 of its files, so a result is stored against exactly the bytes it was measured on.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from zoo import errors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
TEXT_FIELDS = ("text", "sentence", "content", "review")
LABEL_FIELDS = ("label", "labels", "class")
LAYOUTS = "an image folder (PATH/<class>/<image>), a .jsonl or .csv file of text and label, or a `datasets` directory"


@dataclass
class Example:
    label: int | str  # as the data set gives it: a class name or a class index
    image: Any = None  # a Path, or a `datasets` Image cell ({"bytes", "path"})
    text: str | None = None


@dataclass
class LabelledData:
    path: Path
    layout: str  # "image-folder" | "jsonl" | "csv" | "datasets"
    kind: str  # "image" | "text"
    examples: list[Example]
    sha256: str  # of the data set's files
    label_names: list[str] | None = None  # a `datasets` ClassLabel's names (index -> name)
    total: int = 0  # examples before --limit
    split: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "layout": self.layout, "kind": self.kind, "sha256": self.sha256,
                "examples": len(self.examples), "total": self.total, "split": self.split}

    def batches(self, size: int) -> Iterator[list[Example]]:
        for start in range(0, len(self.examples), size):
            yield self.examples[start:start + size]


def load_data(path: Path | str, *, limit: int | None = None, split: str | None = None) -> LabelledData:
    """The labelled examples at ``path`` (see the module's table); a UsageError saying what a layout
    needs when ``path`` is none of them."""
    path = Path(path).expanduser()
    if limit is not None and limit < 1:
        raise errors.UsageError(f"--limit must be at least 1, not {limit}")
    if not path.exists():
        raise errors.NotFoundError(f"data set {path} does not exist", hint=f"pass {LAYOUTS}")
    if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
        data = _jsonl(path)
    elif path.is_file() and path.suffix.lower() == ".csv":
        data = _csv(path)
    elif path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        data = _datasets(path, split)
    elif path.is_dir():
        data = _image_folder(path)
    else:
        raise errors.UsageError(f"{path.name} is not a data set zoo can read", hint=f"pass {LAYOUTS}")
    if not data.examples:
        raise errors.UsageError(f"data set {path} holds no labelled examples", hint=f"pass {LAYOUTS}")
    data.total = len(data.examples)
    if limit is not None:
        data.examples = data.examples[:limit]
    return data


# --- layouts ---------------------------------------------------------------------------------------------
def _image_folder(root: Path) -> LabelledData:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not classes:
        hint = f"put them in one folder per class ({root}/<class>/{stray[0]})" if stray else f"pass {LAYOUTS}"
        raise errors.UsageError(f"{root} has no class folders", hint=hint)
    per_class = []
    for folder in classes:
        images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        links = [p for p in images if p.is_symlink()]
        if links:
            raise errors.UsageError(f"{links[0]} is a symbolic link", hint="copy the images into the data set folder")
        per_class.append([Example(label=folder.name, image=p) for p in images])
    # one image of each class in turn: a --limit keeps every class represented
    longest = max(len(c) for c in per_class)
    examples = [c[i] for i in range(longest) for c in per_class if i < len(c)]
    files = [e.image for e in examples]
    return LabelledData(root, "image-folder", "image", examples, _digest(root, files))


def _jsonl(path: Path) -> LabelledData:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise errors.UsageError(f"{path.name} line {number} is not JSON: {exc}",
                                        hint="one JSON object a line, e.g. {\"text\": \"...\", \"label\": \"positive\"}") from exc
            if not isinstance(row, dict):
                raise errors.UsageError(f"{path.name} line {number} is not a JSON object")
            rows.append((number, row))
    return LabelledData(path, "jsonl", "text", [_text_example(path, n, r) for n, r in rows], _digest(path.parent, [path]))


def _csv(path: Path) -> LabelledData:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(enumerate(csv.DictReader(f), 2))
    return LabelledData(path, "csv", "text", [_text_example(path, n, r) for n, r in rows], _digest(path.parent, [path]))


def _text_example(path: Path, number: int, row: dict[str, Any]) -> Example:
    text = next((row[k] for k in TEXT_FIELDS if k in row), None)
    label = next((row[k] for k in LABEL_FIELDS if k in row), None)
    if not isinstance(text, str) or label is None or label == "":
        raise errors.UsageError(f"{path.name} row {number} needs a text field ({', '.join(TEXT_FIELDS)}) and a "
                                f"label field ({', '.join(LABEL_FIELDS)}); it has {', '.join(map(str, row)) or 'nothing'}")
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise errors.UsageError(f"{path.name} row {number}: the label must be a class name or index, not {label!r}")
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    return Example(label=label, text=text)


def _datasets(root: Path, split: str | None) -> LabelledData:
    try:
        import datasets
    except ImportError as exc:
        raise errors.MissingDependencyError("reading a `datasets` directory needs the datasets package",
                                            hint="pip install 'zoo-hub[eval]'") from exc
    try:
        loaded = datasets.load_from_disk(str(root))  # a local directory: no download, no code from it
    except Exception as exc:  # noqa: BLE001 - the library raises many kinds for a damaged directory
        raise errors.UsageError(f"cannot read {root} as a `datasets` directory: {type(exc).__name__}: {str(exc)[:300]}",
                                hint="write it with Dataset.save_to_disk") from exc
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        chosen = split or next((s for s in ("test", "validation", "eval") if s in loaded), names[0] if len(names) == 1 else None)
        if chosen not in loaded:
            raise errors.UsageError(f"{root} holds the splits {', '.join(names)}" + (f", not {split!r}" if split else ""),
                                    hint="pick one with --split NAME")
        loaded, split = loaded[chosen], chosen
    features = loaded.features
    label_key = next((k for k in LABEL_FIELDS if k in features), None)
    image_key = next((k for k, v in features.items() if type(v).__name__ == "Image"), None)
    text_key = next((k for k in TEXT_FIELDS if k in features), None)
    if label_key is None or (image_key is None and text_key is None):
        raise errors.UsageError(f"{root} needs a label column ({', '.join(LABEL_FIELDS)}) and an Image or text column "
                                f"({', '.join(TEXT_FIELDS)}); it has {', '.join(features)}")
    names = getattr(features[label_key], "names", None)
    if image_key:  # encoded bytes, decoded a batch at a time
        loaded = loaded.cast_column(image_key, datasets.Image(decode=False))
        examples = [Example(label=row[label_key], image=row[image_key]) for row in loaded]
    else:
        examples = [Example(label=row[label_key], text=row[text_key]) for row in loaded]
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return LabelledData(root, "datasets", "image" if image_key else "text", examples, _digest(root, files), label_names=list(names) if names else None,
                        split=split)


def _digest(root: Path, files: list[Path]) -> str:
    from zoo.hashing import sha256_file, sha256_json

    return sha256_json([(p.relative_to(root).as_posix(), sha256_file(p)) for p in sorted(files)])

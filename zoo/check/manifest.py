"""The manifest ``zoo check`` reads: ``zoo.toml``, or ``[tool.zoo]`` in ``pyproject.toml``.

    [tool.zoo]
    formats = ["onnx", "onnx-int8", "tflite"]   # every model's, unless it names its own
    max_drop = 0.5                              # accuracy floor, percentage points (needs data)
    top1 = 0.75                                 # least top-1 agreement on zoo's sample inputs (0..1)
    memory_budget = "8GiB"                      # conversions run in parallel within it
    jobs = 4                                    # and at most this many at once

    [tool.zoo.tolerances]                       # per format: atol, rtol (zoo.options.Options fields)
    onnx-fp16 = { atol = 0.02 }

    [tool.zoo.data]                             # labelled data sets, by name (zoo eval's layouts)
    images = { path = "data/images", limit = 500 }
    reviews = "data/reviews.jsonl"

    [tool.zoo.baseline]                         # how far a figure may move from --baseline FILE
    diff_growth = 0.5                           # max abs diff: at most 50% above the baseline's
    points = 0.5                                # top-1 agreement / accuracy: at most 0.5 points below

    [[tool.zoo.models]]
    name = "resnet50"
    formats = ["onnx", "onnx-fp16"]             # overrides the top level's
    data = "images"
    max_drop = 1.0
    options = { opset = 18 }                    # any other zoo.options.Options field
    files = ["dist/resnet50.onnx"]              # files this project ships, checked against the model

Every key is checked: an unknown one, a format zoo cannot make or a data set that is not there is a
UsageError naming the file and the key, before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.options import Options

_TOP = {"formats", "max_drop", "top1", "memory_budget", "jobs", "tolerances", "data", "baseline", "models", "options"}
_MODEL = {"name", "formats", "max_drop", "top1", "data", "tolerances", "options", "files", "limit"}
_DATA = {"path", "limit", "split"}
_BASELINE = {"diff_growth", "points"}


@dataclass(frozen=True)
class DataSet:
    name: str
    path: Path
    limit: int | None = None
    split: str | None = None


@dataclass(frozen=True)
class Check:
    """One row of the report: a model in one format, or a file checked against a model."""

    model: str
    target: str  # a format, or the path of a file (as the manifest wrote it)
    options: dict[str, Any]  # zoo.options.Options fields, format included for a format check
    data: DataSet | None = None
    max_drop: float | None = None
    top1: float | None = None
    file: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.model} -> {self.target}"

    def to_job(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "options": self.options, "file": str(self.file) if self.file else None,
                "data": None if self.data is None else {"name": self.data.name, "path": str(self.data.path),
                                                        "limit": self.data.limit, "split": self.data.split},
                "max_drop": self.max_drop, "top1": self.top1}


@dataclass
class Manifest:
    path: Path
    checks: list[Check]
    memory_budget_mb: int | None = None
    jobs: int | None = None
    diff_growth: float = 0.5
    points: float = 0.5
    data: dict[str, DataSet] = field(default_factory=dict)


def find_manifest(start: Path) -> Path:
    """``zoo.toml`` or a ``pyproject.toml`` with ``[tool.zoo]``, in ``start`` or the nearest folder above."""
    for folder in [start, *start.parents]:
        if (folder / "zoo.toml").is_file():
            return folder / "zoo.toml"
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "zoo" in (_read_toml(pyproject).get("tool") or {}):
            return pyproject
    raise errors.UsageError(f"no zoo.toml and no [tool.zoo] in a pyproject.toml in {start} or above",
                            hint="add [tool.zoo] with [[tool.zoo.models]] name = ... formats = [...] (docs/testing.md), "
                                 "or pass --manifest FILE")


def load_manifest(path: Path) -> Manifest:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise errors.NotFoundError(f"manifest {path} does not exist", hint="pass a zoo.toml or a pyproject.toml with [tool.zoo]")
    raw = _read_toml(path)
    table = raw.get("tool", {}).get("zoo") if path.name == "pyproject.toml" else raw
    where = f"{path.name} [tool.zoo]" if path.name == "pyproject.toml" else path.name
    if not isinstance(table, dict):
        raise errors.UsageError(f"{path} has no [tool.zoo] table", hint="add one, or use a zoo.toml")
    _keys(table, _TOP, where)
    root = path.parent
    data = {name: _data_set(name, spec, root, f"{where} data.{name}") for name, spec in _table(table, "data", where).items()}
    baseline = _table(table, "baseline", where)
    _keys(baseline, _BASELINE, f"{where} baseline")
    models = table.get("models")
    if not isinstance(models, list) or not models:
        raise errors.UsageError(f"{where} lists no models", hint='add [[tool.zoo.models]] name = "resnet50"')
    checks = [c for i, m in enumerate(models) for c in _model_checks(m, table, data, root, f"{where} models[{i}]")]
    seen: set[str] = set()
    for check in checks:
        if check.id in seen:
            raise errors.UsageError(f"{where} checks {check.id} twice")
        seen.add(check.id)
    return Manifest(path, checks, memory_budget_mb=parse_memory(table.get("memory_budget"), f"{where} memory_budget"),
                    jobs=_number(table.get("jobs"), f"{where} jobs", 1, integer=True),
                    diff_growth=_number(baseline.get("diff_growth", 0.5), f"{where} baseline.diff_growth", 0),
                    points=_number(baseline.get("points", 0.5), f"{where} baseline.points", 0), data=data)


def _model_checks(spec: Any, top: dict[str, Any], data: dict[str, DataSet], root: Path, where: str) -> list[Check]:
    from zoo.converters.graph import require_format

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
        raise errors.UsageError(f"{where} needs a name", hint='e.g. name = "resnet50"')
    _keys(spec, _MODEL, where)
    name = spec["name"].strip()
    formats = spec.get("formats", top.get("formats", ["onnx"]))
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise errors.UsageError(f"{where} formats must be a list of format names")
    data_name = spec.get("data")
    if data_name is not None and data_name not in data:
        raise errors.UsageError(f"{where} names data set {data_name!r}, which [data] does not define",
                                hint=f"define it: [tool.zoo.data] {data_name} = \"path/to/data\"")
    data_set = data.get(data_name) if data_name else None
    if data_set is not None and spec.get("limit") is not None:
        data_set = DataSet(data_set.name, data_set.path, int(_number(spec["limit"], f"{where} limit", 1, integer=True)),
                           data_set.split)
    max_drop = _number(spec.get("max_drop", top.get("max_drop")), f"{where} max_drop", 0)
    top1 = _number(spec.get("top1", top.get("top1")), f"{where} top1", 0, 1)
    tolerances = {**_table(top, "tolerances", where), **_table(spec, "tolerances", where)}
    common = {**_table(top, "options", where), **_table(spec, "options", where)}
    checks = []
    for fmt in formats:
        try:
            require_format(fmt)
        except errors.UnsupportedFormatError as exc:
            raise errors.UsageError(f"{where}: {exc.message}", hint=exc.hint) from exc
        options = _options({**common, **_table(tolerances, fmt, f"{where} tolerances")}, f"{where} {fmt}", fmt)
        checks.append(Check(name, fmt, options, data_set, max_drop, top1))
    for file in spec.get("files") or []:
        if not isinstance(file, str):
            raise errors.UsageError(f"{where} files must be paths")
        path = (root / file).resolve()
        options = _options({k: v for k, v in {**common, **_table(tolerances, Path(file).suffix.lstrip('.'), where)}.items()
                            if k in ("atol", "rtol")}, f"{where} {file}", None)
        checks.append(Check(name, file, options, data_set, max_drop, top1, file=path))
    return checks


def _options(values: dict[str, Any], where: str, fmt: str | None) -> dict[str, Any]:
    try:
        options = Options.from_mapping({k: v for k, v in values.items() if k != "format"}, **({"format": fmt} if fmt else {}))
    except errors.UsageError as exc:
        raise errors.UsageError(f"{where}: {exc.message}", hint=exc.hint) from exc
    return {**options.public(), **({"format": fmt} if fmt else {})}


def _data_set(name: str, spec: Any, root: Path, where: str) -> DataSet:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise errors.UsageError(f"{where} must be a path or {{ path = ..., limit = N, split = ... }}")
    _keys(spec, _DATA, where)
    path = (root / spec["path"]).resolve()
    if not path.exists():
        raise errors.UsageError(f"{where}: {path} does not exist", hint="data sets are read from local folders, never downloaded")
    limit = spec.get("limit")
    return DataSet(name, path, None if limit is None else int(_number(limit, f"{where} limit", 1, integer=True)), spec.get("split"))


def parse_memory(value: Any, where: str) -> int | None:
    """Megabytes from 4096, "4096MB", "8GiB", "8G"; None when unset."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", str(value), re.IGNORECASE)
    if not match:
        raise errors.UsageError(f"{where} {value!r} is not a size", hint='e.g. 8192 (MB), "8GiB" or "512MB"')
    scale = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2).upper()]
    mb = int(float(match.group(1)) * scale)
    if mb < 1:
        raise errors.UsageError(f"{where} {value!r} is less than 1 MB")
    return mb


def _number(value: Any, where: str, low: float, high: float | None = None, *, integer: bool = False) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise errors.UsageError(f"{where} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if value < low or (high is not None and value > high):
        raise errors.UsageError(f"{where} {value} is outside {low:g}..{'' if high is None else f'{high:g}'}")
    return value


def _table(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key) or {}
    if not isinstance(value, dict):
        raise errors.UsageError(f"{where} {key} must be a table")
    return value


def _keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise errors.UsageError(f"{where} has unknown key(s): {', '.join(unknown)}", hint=f"known: {', '.join(sorted(allowed))}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.UsageError(f"{path} is not valid TOML: {exc}") from exc

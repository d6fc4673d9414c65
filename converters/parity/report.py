"""What a parity check found: the input sets it ran (``InputSet``), one ``OutputMetrics`` per output and
input set, and the ``ParityReport`` over all of them, JSON-safe both ways."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from zoo.converters.parity.tolerance import Tolerance

if TYPE_CHECKING:
    import numpy as np


@dataclass
class InputSet:
    """One batch of inputs both models are run on."""

    name: str  # e.g. "random-b2-s0", "sample-images"
    feeds: dict[str, np.ndarray]  # input name -> array
    kind: str = "random"  # "random" | "sample" (real data: photographs, sentences, the user's inputs)


@dataclass
class OutputMetrics:
    """One output compared on one input set. NaN figures mean "not computable"
    (shape mismatch, a side raised)."""

    output: str
    input_set: str
    kind: str
    ref_shape: list[int]
    out_shape: list[int]
    dtype: str  # reference dtype, "ref->cand" when they differ
    max_abs_diff: float
    max_rel_diff: float  # max |d| / |ref| over elements with ref != 0 (as numpy.testing reports it)
    mean_abs_diff: float
    cosine: float
    top1_agreement: float | None  # classifier outputs only: rows whose argmax agrees
    top5_agreement: float | None  # rows whose reference argmax is in the candidate top-5
    atol: float  # effective (scaled) atol; 0 for exact integer comparison
    rtol: float
    passed: bool
    reason: str | None
    worst_ratio: float = math.nan  # max |d| / (atol + rtol*|ref|): <= 1 passes, inf = exact mismatch
    atol_min: float = math.nan  # the smallest effective atol of the output (== atol unless scaled per slice)
    scale_axis: int | None = None  # the field axis atol was scaled along per slice, None: one scale
    masked: int = 0  # elements left out: padding positions of the set's attention mask


_FLOAT_FIELDS = frozenset({"max_abs_diff", "max_rel_diff", "mean_abs_diff", "cosine", "top1_agreement",
                           "top5_agreement", "atol", "rtol", "worst_ratio", "atol_min"})


@dataclass
class ParityReport:
    """Everything :func:`check_parity` found. ``to_dict`` is JSON-safe: NaN and
    infinities are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` and
    read back by ``from_dict``; agreement figures that do not apply are None."""

    passed: bool
    tolerance: Tolerance  # the requested base tolerance
    checks: list[OutputMetrics]
    outputs: dict[str, dict]  # output name -> worst figures over the input sets
    max_abs_diff: float  # worst over everything; NaN when a check measured nothing (a side raised, shapes differ)
    inputs_sha256: str  # over every input array: names, dtypes, shapes, bytes, in order
    input_sets: list[dict]  # name, kind, shapes and dtypes per input
    elapsed_s: float
    error: str | None = None  # set when the reference or the candidate raised
    versions: dict[str, str] = field(default_factory=dict)  # e.g. {"torch": ..., "onnxruntime": ...}
    warnings: list[str] = field(default_factory=list)  # e.g. an output that does not depend on the input
    tasks: list[dict] = field(default_factory=list)  # task checks on the samples (tasks.TaskResult.to_dict)
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> where its values came from
    precision: str = "float32"  # the candidate's precision class: task thresholds, the samples rule

    def to_dict(self) -> dict:
        data = {
            "passed": self.passed,
            "tolerance": asdict(self.tolerance),
            "checks": [asdict(c) for c in self.checks],
            "outputs": self.outputs,
            "max_abs_diff": self.max_abs_diff,
            "inputs_sha256": self.inputs_sha256,
            "input_sets": self.input_sets,
            "elapsed_s": self.elapsed_s,
            "error": self.error,
            "versions": dict(self.versions),
            "warnings": list(self.warnings),
            "tasks": list(self.tasks),
            "inputs": dict(self.inputs),
            "precision": self.precision,
        }
        return json_safe(data)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParityReport:
        checks = [OutputMetrics(**decode_floats(c)) for c in d.get("checks", [])]
        return cls(
            passed=bool(d["passed"]),
            tolerance=Tolerance(**d["tolerance"]),
            checks=checks,
            outputs={k: decode_floats(v) for k, v in d.get("outputs", {}).items()},
            max_abs_diff=float_in(d.get("max_abs_diff")),
            inputs_sha256=d.get("inputs_sha256", ""),
            input_sets=list(d.get("input_sets", [])),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            error=d.get("error"),
            versions=dict(d.get("versions") or {}),
            warnings=list(d.get("warnings") or []),
            tasks=list(d.get("tasks") or []),
            inputs=dict(d.get("inputs") or {}),
            precision=d.get("precision") or "float32",
        )

    def worst(self, n: int = 3) -> list[OutputMetrics]:
        """The ``n`` worst checks: failing first, then by how much of the tolerance they used."""
        def key(c: OutputMetrics) -> tuple[bool, float]:
            ratio = c.worst_ratio if not math.isnan(c.worst_ratio) else math.inf
            return (c.passed, -ratio)

        return sorted(self.checks, key=key)[:n]

    def summary_line(self) -> str:
        """One line for humans and logs."""
        outputs = len(self.outputs)
        sets = len(self.input_sets)
        if self.passed:
            line = (f"parity passed: {outputs} output{'s' * (outputs != 1)} x {sets} input "
                    f"set{'s' * (sets != 1)}, max abs diff {self.max_abs_diff:.1e}")
            top1 = min_present(o.get("top1_agreement") for o in self.outputs.values())
            if top1 is not None:
                line += f", top-1 agreement {top1:.0%}"
            checked = [t["check"] for t in self.tasks if t.get("passed")]
            if checked:
                line += f", task checks passed: {', '.join(sorted(set(checked)))}"
            return line
        if self.error and not self.checks:
            return f"parity FAILED: {self.error}"
        failed = [c for c in self.checks if not c.passed]
        worst = self.worst(1)[0] if self.checks else None
        line = f"parity FAILED: {len(failed)} of {len(self.checks)} checks failed"
        if worst is not None and not worst.passed:
            line += f"; worst: {worst.output} on {worst.input_set}: {worst.reason}"
        elif self.error:
            line += f"; {self.error}"
        tasks = [t for t in self.tasks if t.get("passed") is False]
        if tasks and (worst is None or not worst.passed):
            t = tasks[0]
            line += f"; {t['check']} check failed on {t['input_set']}: {t['reason']}"
        return line


def aggregate(checks: list[OutputMetrics]) -> dict[str, dict]:
    """Worst figures per output name over all input sets. A check that measured nothing (a side raised, the
    shapes differ) makes the worst figures unknown (NaN), never the worst of the others: a candidate that
    raised on one set and matched on another must not read as "max abs diff 0". ``unmeasured`` counts them."""
    names = list(dict.fromkeys(c.output for c in checks))
    outputs = {}
    for name in names:
        mine = [c for c in checks if c.output == name]
        outputs[name] = {
            "max_abs_diff": worst_max(c.max_abs_diff for c in mine),
            "max_rel_diff": worst_max(c.max_rel_diff for c in mine),
            "mean_abs_diff": worst_max(c.mean_abs_diff for c in mine),
            "cosine": worst_min(c.cosine for c in mine),
            "top1_agreement": min_present(c.top1_agreement for c in mine),
            "top5_agreement": min_present(c.top5_agreement for c in mine),
            "checks": len(mine),
            "passed": all(c.passed for c in mine),
            "atol": nanmax(c.atol for c in mine),  # the effective tolerance (largest, smallest over slices)
            "atol_min": nanmin(c.atol if math.isnan(c.atol_min) else c.atol_min for c in mine),
            "scale": _scale_label(mine),
            "masked": max(c.masked for c in mine),
            "unmeasured": sum(1 for c in mine if unmeasured(c)),
        }
    return outputs


def _scale_label(checks: list[OutputMetrics]) -> str:
    axes = sorted({c.scale_axis for c in checks if c.scale_axis is not None})
    if not axes:
        return "one scale for the output"
    return "per slice along axis " + ", ".join(str(a) for a in axes) + " (the output mixes quantities)"


def describe_set(input_set: InputSet) -> dict:
    return {
        "name": input_set.name,
        "kind": input_set.kind,
        "shapes": {k: list(getattr(v, "shape", ())) for k, v in input_set.feeds.items()},
        "dtypes": {k: str(getattr(v, "dtype", type(v).__name__)) for k, v in input_set.feeds.items()},
    }


def hash_inputs(np: Any, sets: list[InputSet]) -> str:
    """SHA-256 over every feed: name, dtype, shape and bytes, length-prefixed, in order.
    Input set names are labels, not data, and are left out."""
    digest = hashlib.sha256()
    for input_set in sets:
        digest.update(b"\x1eset%d;" % len(input_set.feeds))
        for name, value in input_set.feeds.items():
            arr = np.ascontiguousarray(value)
            header = f"{name}\x00{arr.dtype.str}\x00{tuple(arr.shape)}".encode()
            digest.update(len(header).to_bytes(8, "little") + header)
            digest.update(arr.nbytes.to_bytes(8, "little"))
            digest.update(arr.tobytes())
    return digest.hexdigest()


# --- small helpers ---------------------------------------------------------------
def unmeasured(check: OutputMetrics) -> bool:
    """A check with no figures: a side raised, an output is missing, the shapes differ."""
    return math.isnan(check.max_abs_diff)


def worst_max(values: Iterable[float]) -> float:
    """The largest value; NaN (unknown) when any value is NaN or there are none."""
    values = list(values)
    return math.nan if not values or any(v is None or math.isnan(v) for v in values) else max(values)


def worst_min(values: Iterable[float]) -> float:
    """The smallest value; NaN (unknown) when any value is NaN or there are none."""
    values = list(values)
    return math.nan if not values or any(v is None or math.isnan(v) for v in values) else min(values)


def figure(value: Any, spec: str = ".3g", unknown: str = "not measured") -> str:
    """A parity figure for people: ``unknown`` for NaN (a float, or the ``"nan"`` string of a JSON report),
    an empty string for None."""
    if value is None:
        return ""
    number = float_in(value)
    return unknown if math.isnan(number) else format(number, spec)


def nanmax(values: Iterable[float]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return max(present) if present else math.nan


def nanmin(values: Iterable[float]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return min(present) if present else math.nan


def min_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return min(present) if present else None


def json_safe(value: Any) -> Any:
    """Plain JSON types only; non-finite floats become "nan", "inf", "-inf"."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return number
    return str(value)


def float_in(value: Any) -> float | None:
    return None if value is None else float(value)  # float("nan"/"inf"/"-inf") parses


def decode_floats(d: Mapping[str, Any]) -> dict:
    return {k: (float_in(v) if k in _FLOAT_FIELDS else v) for k, v in d.items()}

"""Numerical parity between a reference model and a converted candidate.

Framework-free on purpose: ``reference`` and ``candidate`` are plain callables
``feeds -> outputs`` over numpy arrays, so the same checker compares PyTorch
with ONNX Runtime, ONNX with TensorRT or float32 with float16. Even numpy is
imported inside the functions, which keeps ``import zoo.converters.parity.check`` cheap
for the CLI and the API.

Parity is separate from conversion (the optimum ``validate_model_outputs``
model): :func:`check_parity` collects every mismatch into a
:class:`ParityReport` and never raises on one; the caller (the job service)
decides whether the artifact is published.

Pass rule, per element and in numpy ``allclose`` terms with the reference as
``b``: ``|cand - ref| <= atol_eff + rtol * |ref|``; shapes must be equal;
NaN/inf must sit at the same positions (inf with the same sign); integer and
bool outputs must be equal exactly.

Magnitude scaling (``Tolerance.scaled``, on by default): ``atol_eff = atol *
max(1, scale)`` where ``scale`` is ``max(|ref|)`` of that output on that input
set. Float32 rounding error grows with the values computed, so the absolute
error of logits in the hundreds is ~100x that of probabilities in [0, 1]; a
fixed atol is either too strict for the first or too lax for the second.
Scaling makes atol "relative to the output's magnitude", while ``rtol`` still
gives large elements their own headroom. Outputs with ``scale <= 1`` keep the
plain atol, so near-zero outputs are not held to an impossible standard.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from zoo.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

Feeds = Mapping[str, "np.ndarray"]
ModelFn = Callable[[Feeds], Sequence["np.ndarray"]]


@dataclass(frozen=True)
class Tolerance:
    """Allowed difference: ``|cand - ref| <= atol_eff + rtol * |ref|``."""

    atol: float
    rtol: float
    scaled: bool = True  # atol is multiplied by max(1, max|ref|) of each output


# Chosen from what exporters ship with, then scaled (see module docstring):
# - float32: optimum validates ONNX exports at atol 1e-5..1e-4 (1e-4 for most
#   transformers, looser for a few); Polygraphy defaults to 1e-5/1e-5. Kernel
#   and fusion differences between frameworks leave fp32 CNN/transformer outputs
#   ~1e-6..1e-5 apart relative to their magnitude, so 1e-4 keeps ~10x headroom
#   while a 1e-3-relative error (a wrong weight, a wrong eps) still fails.
# - float16: unit roundoff 4.9e-4 (eps 9.8e-4), compounded through the layers;
#   1e-2 is what fp16 ONNX/TensorRT validations commonly settle on.
# - bfloat16: eight-bit mantissa, unit roundoff 3.9e-3; five times looser.
# - int8: quantized models against their float reference; a few percent of the
#   output range is normal post-training quantization error.
# - float64: float64 against float64; only the summation order differs.
# Integer and bool outputs are always compared exactly, whatever this says.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-7, rtol=1e-7),
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
    "bfloat16": Tolerance(atol=5e-2, rtol=5e-2),
    "int8": Tolerance(atol=1e-1, rtol=1e-1),
}
_DTYPE_ALIASES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "half": "float16",
                  "bf16": "bfloat16", "qint8": "int8", "uint8": "int8"}


def default_tolerance(dtype: str = "float32") -> Tolerance:
    """The default tolerance for a candidate computing in ``dtype``."""
    key = _DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if key not in DEFAULT_TOLERANCES:
        raise UsageError(f"no default parity tolerance for dtype {dtype!r}",
                         hint=f"use one of {', '.join(DEFAULT_TOLERANCES)} or pass a Tolerance")
    return DEFAULT_TOLERANCES[key]


def requested_tolerance(dtype: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The dtype's default tolerance with the user's overrides; an explicit atol is not scaled."""
    base = default_tolerance(dtype)
    return Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol, scaled=atol is None)


@dataclass
class InputSet:
    """One batch of inputs both models are run on."""

    name: str  # e.g. "random-b2-s0", "sample-images"
    feeds: dict[str, np.ndarray]  # input name -> array
    kind: str = "random"  # "random" | "sample"


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


_FLOAT_FIELDS = frozenset({"max_abs_diff", "max_rel_diff", "mean_abs_diff", "cosine", "top1_agreement",
                           "top5_agreement", "atol", "rtol", "worst_ratio"})


@dataclass
class ParityReport:
    """Everything :func:`check_parity` found. ``to_dict`` is JSON-safe: NaN and
    infinities are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` and
    read back by ``from_dict``; agreement figures that do not apply are None."""

    passed: bool
    tolerance: Tolerance  # the requested base tolerance
    checks: list[OutputMetrics]
    outputs: dict[str, dict]  # output name -> worst figures over the input sets
    max_abs_diff: float  # worst over everything (NaN-valued checks ignored)
    inputs_sha256: str  # over every input array: names, dtypes, shapes, bytes, in order
    input_sets: list[dict]  # name, kind, shapes and dtypes per input
    elapsed_s: float
    error: str | None = None  # set when the reference or the candidate raised
    versions: dict[str, str] = field(default_factory=dict)  # e.g. {"torch": ..., "onnxruntime": ...}
    warnings: list[str] = field(default_factory=list)  # e.g. an output that does not depend on the input

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
        }
        return _json_safe(data)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParityReport:
        checks = [OutputMetrics(**_decode_floats(c)) for c in d.get("checks", [])]
        return cls(
            passed=bool(d["passed"]),
            tolerance=Tolerance(**d["tolerance"]),
            checks=checks,
            outputs={k: _decode_floats(v) for k, v in d.get("outputs", {}).items()},
            max_abs_diff=_float_in(d.get("max_abs_diff")),
            inputs_sha256=d.get("inputs_sha256", ""),
            input_sets=list(d.get("input_sets", [])),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            error=d.get("error"),
            versions=dict(d.get("versions") or {}),
            warnings=list(d.get("warnings") or []),
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
            top1 = _min_present(o.get("top1_agreement") for o in self.outputs.values())
            if top1 is not None:
                line += f", top-1 agreement {top1:.0%}"
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
        return line


# --- the checker ---------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    tolerance: Tolerance
    output_names: tuple[str, ...]
    classifiers: frozenset
    min_top1_agreement: float | None


def check_parity(
    reference: ModelFn,
    candidate: ModelFn,
    input_sets: Iterable[InputSet],
    *,
    output_names: Sequence[str] | None = None,
    tolerance: Tolerance | str | None = None,
    classifier_outputs: Iterable[str | int] = (),
    versions: Mapping[str, str] | None = None,
    min_top1_agreement: float | None = None,
) -> ParityReport:
    """Run both models on every input set and compare every output.

    ``tolerance`` is a :class:`Tolerance`, a dtype name for
    :func:`default_tolerance`, or None for float32. ``classifier_outputs``
    (names or indices) get top-1/top-5 agreement figures; those only fail a
    check when ``min_top1_agreement`` is set, and then only on "sample" input
    sets (random-weight models on random inputs have near-ties). Never raises
    on a mismatch or on either model raising; raises :class:`UsageError` only
    for a call that cannot mean anything (no input sets, a bad tolerance).
    """
    np = _np()
    base = tolerance if isinstance(tolerance, Tolerance) else default_tolerance(tolerance or "float32")
    sets = list(input_sets)
    if not sets:
        raise UsageError("check_parity needs at least one input set",
                         hint="build some with random_input_sets(spec) or from zoo.converters.parity.samples")
    if isinstance(output_names, str):
        output_names = [output_names]
    if isinstance(classifier_outputs, (str, int)):
        classifier_outputs = [classifier_outputs]
    ctx = _Context(base, tuple(output_names or ()), frozenset(classifier_outputs), min_top1_agreement)
    started = time.perf_counter()
    inputs_sha256 = _hash_inputs(np, sets)
    checks: list[OutputMetrics] = []
    errors: list[str] = []
    seen: list[list] = []  # the reference's outputs, to tell whether they depend on the input at all

    def recording(feeds: Feeds) -> Any:
        out = reference(feeds)
        seen.append(list(out) if isinstance(out, (list, tuple)) else [out])
        return out

    for input_set in sets:
        set_checks, error = _check_input_set(recording, candidate, input_set, ctx)
        checks.extend(set_checks)
        if error:
            errors.append(error)
    outputs = _aggregate(checks)
    constant = _input_independent(np, seen, _names(ctx.output_names, max((len(o) for o in seen), default=0)))
    warnings = [f"output {name!r} is the same for every input: it cannot show a conversion error" for name in constant]
    if constant and len(constant) == len(outputs):
        errors.append("every reference output is the same for every input (an untrained or degenerate model?): "
                      "this check would prove nothing")
    return ParityReport(
        warnings=warnings,
        passed=bool(checks) and not errors and all(c.passed for c in checks),
        tolerance=base,
        checks=checks,
        outputs=outputs,
        max_abs_diff=_nanmax(c.max_abs_diff for c in checks),
        inputs_sha256=inputs_sha256,
        input_sets=[_describe_set(s) for s in sets],
        elapsed_s=time.perf_counter() - started,
        error="; ".join(errors) or None,
        versions={str(k): str(v) for k, v in (versions or {}).items()},
    )


def _check_input_set(reference: ModelFn, candidate: ModelFn, input_set: InputSet,
                     ctx: _Context) -> tuple[list[OutputMetrics], str | None]:
    refs, error = _call(reference, input_set.feeds)
    if refs is None:
        names = list(ctx.output_names) or ["*"]
        reason = f"reference raised: {error}"
        return [_unmeasured(n, input_set, None, None, ctx, reason) for n in names], \
            f"reference raised on {input_set.name}: {error}"
    outs, error = _call(candidate, input_set.feeds)
    if outs is None:
        names = _names(ctx.output_names, len(refs))
        reason = f"candidate raised: {error}"
        return [_unmeasured(n, input_set, r, None, ctx, reason) for n, r in zip(names, refs)], \
            f"candidate raised on {input_set.name}: {error}"
    checks = []
    for i, name in enumerate(_names(ctx.output_names, max(len(refs), len(outs)))):
        if i >= len(outs) or i >= len(refs):
            reason = f"output count mismatch: reference returned {len(refs)}, candidate {len(outs)}"
            ref = refs[i] if i < len(refs) else None
            out = outs[i] if i < len(outs) else None
            checks.append(_unmeasured(name, input_set, ref, out, ctx, reason))
            continue
        try:
            checks.append(_compare(name, i, input_set, refs[i], outs[i], ctx))
        except Exception as exc:  # a dtype numpy cannot subtract, say; still a report
            reason = f"could not compare: {type(exc).__name__}: {exc}"
            checks.append(_unmeasured(name, input_set, refs[i], outs[i], ctx, reason))
    return checks, None


def _input_independent(np: Any, seen: list[list], names: list[str]) -> list[str]:
    """Outputs whose every sample, across every input set, is identical."""
    constant = []
    for i, name in enumerate(names):
        rows = []
        for outs in seen:
            if i < len(outs):
                arr = np.asarray(outs[i])
                rows.extend(arr.reshape(arr.shape[0], -1) if arr.ndim >= 1 and arr.shape[0] > 0 else [arr.reshape(-1)])
        shapes = {r.shape for r in rows}
        if len(rows) > 1 and len(shapes) == 1 and all(np.array_equal(rows[0], r) for r in rows[1:]):
            constant.append(name)
    return constant


def _call(fn: ModelFn, feeds: Feeds) -> tuple[list | None, str | None]:
    """Run one side on a private copy of the feeds; outputs as numpy arrays."""
    np = _np()
    try:
        result = fn({k: np.array(v, copy=True) for k, v in feeds.items()})
        if hasattr(result, "shape") or np.isscalar(result):
            result = [result]
        elif isinstance(result, Mapping):
            result = list(result.values())
        return [np.asarray(r) for r in result], None
    except Exception as exc:  # the model's failure is the finding, not ours to raise
        return None, f"{type(exc).__name__}: {exc}"


def _names(given: tuple[str, ...], count: int) -> list[str]:
    return [given[i] if i < len(given) else f"output_{i}" for i in range(count)]


def _unmeasured(name: str, input_set: InputSet, ref: Any, out: Any, ctx: _Context,
                reason: str) -> OutputMetrics:
    """A failed check with no figures (a side raised, an output is missing)."""
    nan = math.nan
    return OutputMetrics(
        output=name, input_set=input_set.name, kind=input_set.kind,
        ref_shape=list(getattr(ref, "shape", ())), out_shape=list(getattr(out, "shape", ())),
        dtype=_dtype_label(ref, out), max_abs_diff=nan, max_rel_diff=nan, mean_abs_diff=nan,
        cosine=nan, top1_agreement=None, top5_agreement=None,
        atol=ctx.tolerance.atol, rtol=ctx.tolerance.rtol, passed=False, reason=reason)


def _compare(name: str, index: int, input_set: InputSet, ref: np.ndarray, out: np.ndarray,
             ctx: _Context) -> OutputMetrics:
    np = _np()
    if ref.shape != out.shape:
        reason = f"shape mismatch {tuple(ref.shape)} vs {tuple(out.shape)}"
        return _unmeasured(name, input_set, ref, out, ctx, reason)
    exact = ref.dtype.kind in "biu"
    r, c = ref.astype(np.float64), out.astype(np.float64)
    finite = np.isfinite(r) & np.isfinite(c)
    scale = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))
    if exact:
        atol, rtol = 0.0, 0.0
    else:
        tol = ctx.tolerance
        atol, rtol = tol.atol * (max(1.0, scale) if tol.scaled else 1.0), tol.rtol
    diff, absr = np.abs(c[finite] - r[finite]), np.abs(r[finite])
    allowed = atol + rtol * absr
    bad = (ref != out)[finite] if exact else diff > allowed
    nonzero = absr > 0
    top1, top5 = (None, None)
    if name in ctx.classifiers or index in ctx.classifiers:
        top1, top5 = _agreement(np, r, c)
    reasons = [_nonfinite_reason(np, r, c)]
    if bad.any():
        reasons.append(_tolerance_reason(diff, bad, atol, rtol, exact))
    if (ctx.min_top1_agreement is not None and input_set.kind == "sample" and top1 is not None
            and top1 < ctx.min_top1_agreement):
        reasons.append(f"top-1 agreement {top1:.0%} < required {ctx.min_top1_agreement:.0%}")
    reasons = [x for x in reasons if x]
    return OutputMetrics(
        output=name, input_set=input_set.name, kind=input_set.kind,
        ref_shape=list(ref.shape), out_shape=list(out.shape), dtype=_dtype_label(ref, out),
        max_abs_diff=float(diff.max(initial=0.0)),
        max_rel_diff=float((diff[nonzero] / absr[nonzero]).max(initial=0.0)),
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        cosine=_cosine(np, r[finite], c[finite]),
        top1_agreement=top1, top5_agreement=top5, atol=atol, rtol=rtol,
        passed=not reasons, reason="; ".join(reasons) or None,
        worst_ratio=_worst_ratio(np, diff, allowed))


def _nonfinite_reason(np: Any, r: np.ndarray, c: np.ndarray) -> str | None:
    """NaN and inf must sit at the same positions in both (inf with the same sign)."""
    rn, cn = np.isnan(r), np.isnan(c)
    parts = []
    if (extra := int((cn & ~rn).sum())):
        parts.append(f"NaN in candidate at {extra} position{'s' * (extra != 1)} where the reference has none")
    if (missing := int((rn & ~cn).sum())):
        parts.append(f"NaN in reference at {missing} position{'s' * (missing != 1)} the candidate does not reproduce")
    infs = (np.isinf(r) | np.isinf(c)) & ~(rn | cn) & (r != c)
    if (count := int(infs.sum())):
        parts.append(f"inf differs at {count} position{'s' * (count != 1)}")
    return "; ".join(parts) or None


def _tolerance_reason(diff: np.ndarray, bad: np.ndarray, atol: float, rtol: float, exact: bool) -> str:
    count, total, worst = int(bad.sum()), bad.size, float(diff.max(initial=0.0))
    if exact:
        return f"integer output differs at {count} of {total} elements (max abs diff {worst:g})"
    return (f"max abs diff {worst:.2e} > atol {atol:.1e} + rtol {rtol:.1e}*|ref| "
            f"({count} of {total} elements out of tolerance)")


def _worst_ratio(np: Any, diff: np.ndarray, allowed: np.ndarray) -> float:
    if not diff.size:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0),
                         np.where(diff > 0, np.inf, 0.0))
    return float(ratio.max())


def _cosine(np: Any, r: np.ndarray, c: np.ndarray) -> float:
    """Cosine similarity of the flattened outputs; 1.0 when both are all zeros."""
    nr, nc = float(np.linalg.norm(r)), float(np.linalg.norm(c))
    if nr == 0.0 and nc == 0.0:
        return 1.0
    if nr == 0.0 or nc == 0.0:
        return 0.0
    return float(np.dot(r.ravel(), c.ravel()) / (nr * nc))


def _agreement(np: Any, r: np.ndarray, c: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 (argmax equal) and top-5 (reference argmax within candidate top-5)
    agreement over rows; the last axis holds the classes."""
    if r.ndim < 1 or r.shape[-1] < 2 or r.size == 0:
        return None, None
    classes = r.shape[-1]
    r2, c2 = r.reshape(-1, classes), c.reshape(-1, classes)
    ref_top1 = np.argmax(r2, axis=-1)
    top1 = float(np.mean(ref_top1 == np.argmax(c2, axis=-1)))
    if classes < 5:
        return top1, None
    cand_top5 = np.argpartition(-c2, 4, axis=-1)[:, :5]
    return top1, float(np.mean((cand_top5 == ref_top1[:, None]).any(axis=1)))


def _aggregate(checks: list[OutputMetrics]) -> dict[str, dict]:
    """Worst figures per output name over all input sets."""
    names = list(dict.fromkeys(c.output for c in checks))
    outputs = {}
    for name in names:
        mine = [c for c in checks if c.output == name]
        outputs[name] = {
            "max_abs_diff": _nanmax(c.max_abs_diff for c in mine),
            "max_rel_diff": _nanmax(c.max_rel_diff for c in mine),
            "mean_abs_diff": _nanmax(c.mean_abs_diff for c in mine),
            "cosine": _nanmin(c.cosine for c in mine),
            "top1_agreement": _min_present(c.top1_agreement for c in mine),
            "top5_agreement": _min_present(c.top5_agreement for c in mine),
            "checks": len(mine),
            "passed": all(c.passed for c in mine),
        }
    return outputs


def _describe_set(input_set: InputSet) -> dict:
    return {
        "name": input_set.name,
        "kind": input_set.kind,
        "shapes": {k: list(getattr(v, "shape", ())) for k, v in input_set.feeds.items()},
        "dtypes": {k: str(getattr(v, "dtype", type(v).__name__)) for k, v in input_set.feeds.items()},
    }


def _hash_inputs(np: Any, sets: list[InputSet]) -> str:
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


# --- random inputs ---------------------------------------------------------------
_BATCH_DIMS = frozenset({"batch", "batch_size", "n", "b"})
_SEQUENCE_DIMS = frozenset({"sequence", "sequence_length", "seq", "seq_len", "tokens", "num_tokens"})


def random_input_sets(
    spec: Sequence[Mapping[str, Any]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    batch_sizes: Sequence[int] = (2, 1, 3),
    seq_lens: int | Sequence[int] = 16,
    dims: Mapping[str, int] | None = None,
) -> list[InputSet]:
    """One deterministic random InputSet per (seed, batch size) pair, zipped.

    ``spec`` items: ``{"name", "shape", "dtype", "low", "high"}``. In a shape,
    None at axis 0 and batch-like names ("batch", "batch_size") take the batch
    size; sequence-like names ("sequence", "seq_len", ...) take ``seq_lens``
    (one length, or one per set); any other name must be given in ``dims``.
    Float inputs are standard normal (uniform in [low, high) when either is
    given); integer inputs uniform in [low, high), default [0, 100); bool fair
    coin flips. Each set draws its inputs in spec order from
    ``np.random.default_rng(seed)``.
    """
    np = _np()
    if len(seeds) != len(batch_sizes):
        raise UsageError(f"random_input_sets got {len(seeds)} seeds but {len(batch_sizes)} batch sizes",
                         hint="pass one batch size per seed")
    lengths = [seq_lens] * len(seeds) if isinstance(seq_lens, int) else list(seq_lens)
    if len(lengths) != len(seeds):
        raise UsageError(f"random_input_sets got {len(seeds)} seeds but {len(lengths)} sequence lengths",
                         hint="pass one sequence length, or one per seed")
    sets = []
    for seed, batch, seq_len in zip(seeds, batch_sizes, lengths):
        rng = np.random.default_rng(seed)
        sizes = {"batch": int(batch), "sequence": int(seq_len)}
        feeds = {item["name"]: _random_array(np, rng, item, sizes, dims or {}) for item in spec}
        sets.append(InputSet(name=f"random-b{batch}-s{seed}", feeds=feeds, kind="random"))
    return sets


def _random_array(np: Any, rng: Any, item: Mapping[str, Any], sizes: dict[str, int],
                  dims: Mapping[str, int]) -> np.ndarray:
    name = item.get("name", "?")
    try:
        dtype = np.dtype(item.get("dtype", "float32"))
    except TypeError as exc:
        raise UsageError(f"input {name!r} has an unknown dtype {item.get('dtype')!r}",
                         hint="use float32, float16, float64, int64, int32 or bool") from exc
    shape = tuple(_resolve_dim(dim, axis, name, sizes, dims) for axis, dim in enumerate(item["shape"]))
    if dtype.kind == "f":
        if "low" in item or "high" in item:
            values = rng.uniform(float(item.get("low", 0.0)), float(item.get("high", 1.0)), shape)
        else:
            values = rng.standard_normal(shape)
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        low, high = int(item.get("low", 0)), int(item.get("high", 100))
        if high <= low:
            raise UsageError(f"input {name!r} needs high > low, got [{low}, {high})")
        return rng.integers(low, high, shape, dtype=dtype)
    raise UsageError(f"input {name!r} has dtype {dtype} that random inputs cannot be drawn for",
                     hint="use a float, integer or bool dtype")


def _resolve_dim(dim: Any, axis: int, name: str, sizes: dict[str, int], dims: Mapping[str, int]) -> int:
    if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0:
        return dim
    if isinstance(dim, str) and dim in dims:
        return int(dims[dim])
    if (dim is None and axis == 0) or (isinstance(dim, str) and dim.lower() in _BATCH_DIMS):
        return sizes["batch"]
    if isinstance(dim, str) and dim.lower() in _SEQUENCE_DIMS:
        return sizes["sequence"]
    raise UsageError(f"input {name!r} has a dimension {dim!r} at axis {axis} with no size",
                     hint="give a number, name it 'batch' or 'sequence', or pass dims={name: size}")


# --- small helpers ---------------------------------------------------------------
def _np() -> Any:
    import numpy

    return numpy


def _dtype_label(ref: Any, out: Any) -> str:
    rd, od = getattr(ref, "dtype", None), getattr(out, "dtype", None)
    if rd is None or od is None or rd == od:
        return str(rd if rd is not None else od)
    return f"{rd}->{od}"


def _nanmax(values: Iterable[float]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return max(present) if present else math.nan


def _nanmin(values: Iterable[float]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return min(present) if present else math.nan


def _min_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return min(present) if present else None


def _json_safe(value: Any) -> Any:
    """Plain JSON types only; non-finite floats become "nan", "inf", "-inf"."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
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


def _float_in(value: Any) -> float | None:
    return None if value is None else float(value)  # float("nan"/"inf"/"-inf") parses


def _decode_floats(d: Mapping[str, Any]) -> dict:
    return {k: (_float_in(v) if k in _FLOAT_FIELDS else v) for k, v in d.items()}

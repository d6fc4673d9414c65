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

The pass rule and the default tolerances are in ``tolerance``; the report's types in ``report``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from zoo.converters.parity.report import (
    InputSet,
    OutputMetrics,
    ParityReport,
    aggregate,
    describe_set,
    hash_inputs,
    worst_max,
)
from zoo.converters.parity.tolerance import (
    DEFAULT_TOLERANCES,
    Tolerance,
    default_tolerance,
    effective_tolerance,
    requested_tolerance,
)
from zoo.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

Feeds = Mapping[str, "np.ndarray"]
ModelFn = Callable[[Feeds], Sequence["np.ndarray"]]

# The checker's public API, with the types it takes and returns.
__all__ = ["DEFAULT_TOLERANCES", "InputSet", "OutputMetrics", "ParityReport", "Tolerance", "check_parity",
           "default_tolerance", "requested_tolerance"]


# --- the checker ---------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    tolerance: Tolerance
    output_names: tuple[str, ...]
    classifiers: frozenset
    min_top1_agreement: float | None
    reference_outputs: Mapping[str, Sequence[Any]]  # input set name -> the reference's outputs, run before


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
    reference_outputs: Mapping[str, Sequence[Any]] | None = None,
    task: str | None = None,
    precision: str | None = None,
    require_samples: bool = False,
    input_notes: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> ParityReport:
    """Run both models on every input set and compare every output.

    ``tolerance`` is a :class:`Tolerance`, a dtype name for
    :func:`default_tolerance`, or None for float32; it is scaled per output, or
    per slice of an output that mixes quantities (``tolerance`` module).
    Positions a set's attention mask marks as padding are left out of
    outputs aligned with its tokens. ``classifier_outputs`` (names or indices)
    get top-1/top-5 agreement figures; those only fail a check when
    ``min_top1_agreement`` is set, and then only on "sample" input sets
    (random-weight models on random inputs have near-ties).

    Beside the elementwise comparison, task checks (``tasks``: detections
    matched, masks, embeddings at real tokens, decoded strings) run on the
    sample sets, chosen from ``task`` and the outputs' shapes; ``precision``
    (default: the tolerance's dtype) picks their thresholds.
    ``require_samples`` (reduced-precision candidates) fails a report with no
    sample input set. ``reference_outputs`` (set name -> outputs) are the
    reference's outputs computed before (``reference.run_source``): the
    reference is not run again on those sets. ``input_notes`` (input name ->
    how it was made) go into the report.

    Never raises on a mismatch or on either model raising; raises
    :class:`UsageError` only for a call that cannot mean anything (no input
    sets, a bad tolerance).
    """
    np = _np()
    base = tolerance if isinstance(tolerance, Tolerance) else default_tolerance(tolerance or "float32")
    precision = precision or (tolerance if isinstance(tolerance, str) else "float32")
    sets = list(input_sets)
    if not sets:
        raise UsageError("check_parity needs at least one input set",
                         hint="build some with random_input_sets(spec) or from zoo.converters.parity.samples")
    if isinstance(output_names, str):
        output_names = [output_names]
    if isinstance(classifier_outputs, (str, int)):
        classifier_outputs = [classifier_outputs]
    ctx = _Context(base, tuple(output_names or ()), frozenset(classifier_outputs), min_top1_agreement,
                   reference_outputs or {})
    started = time.perf_counter()
    inputs_sha256 = hash_inputs(np, sets)
    checks: list[OutputMetrics] = []
    errors: list[str] = []
    seen: list[list] = []  # the reference's outputs, to tell whether they depend on the input at all
    ran: list[tuple[InputSet, list, list]] = []  # (set, reference outputs, candidate outputs) for the task checks

    def recording(feeds: Feeds) -> Any:
        out = reference(feeds)
        seen.append(list(out) if isinstance(out, (list, tuple)) else [out])
        return out

    for input_set in sets:
        set_checks, error, pair = _check_input_set(recording, candidate, input_set, ctx, seen)
        checks.extend(set_checks)
        if error:
            errors.append(error)
        if pair is not None:
            ran.append((input_set, *pair))
    outputs = aggregate(checks)
    names = _names(ctx.output_names, max((len(o) for o in seen), default=0))
    warnings, tasks = _findings(np, seen, names, outputs, errors, ran, task, precision, metadata, (reference, candidate))
    if require_samples and not any(s.kind == "sample" for s in sets):
        errors.append(f"a {precision} candidate must be checked on real samples at a real input size, and there are "
                      "none for this model: pass --samples DIR or --inputs FILE.npz")
    return ParityReport(
        warnings=warnings,
        passed=bool(checks) and not errors and all(c.passed for c in checks),
        tolerance=base,
        checks=checks,
        outputs=outputs,
        max_abs_diff=worst_max(c.max_abs_diff for c in checks),
        inputs_sha256=inputs_sha256,
        input_sets=[describe_set(s) for s in sets],
        elapsed_s=time.perf_counter() - started,
        error="; ".join(errors) or None,
        versions={str(k): str(v) for k, v in (versions or {}).items()},
        tasks=[t.to_dict() for t in tasks],
        inputs=dict(input_notes or {}),
        precision=precision,
    )


def _findings(np: Any, seen: list[list], names: list[str], outputs: dict, errors: list[str], ran: list,
              task: str | None, precision: str, metadata: Mapping[str, str] | None,
              runners: tuple[Any, Any] = (None, None)) -> tuple[list[str], list]:
    """Warnings (outputs that ignore the input, task checks with nothing to compare) and the task checks;
    appends what fails the report to ``errors``."""
    from zoo.converters.parity.tasks import run_task_checks

    constant = _input_independent(np, seen, names)
    warnings = [f"output {name!r} is the same for every input: it cannot show a conversion error" for name in constant]
    if constant and len(constant) == len(outputs):
        errors.append("every reference output is the same for every input (an untrained or degenerate model?): "
                      "this check would prove nothing")
    tasks = run_task_checks(task, names, ran, precision, dict(metadata or {}), runners)
    for result in tasks:
        if result.passed is None and result.reason:
            warnings.append(f"{result.check} check on {result.input_set}: {result.reason}")
        elif result.passed is False:
            errors.append(f"{result.check} check failed on {result.input_set} ({result.output}): {result.reason}")
    return warnings, tasks


def _check_input_set(reference: ModelFn, candidate: ModelFn, input_set: InputSet, ctx: _Context,
                     seen: list[list]) -> tuple[list[OutputMetrics], str | None, tuple[list, list] | None]:
    if input_set.name in ctx.reference_outputs:
        refs = [_np().asarray(r) for r in ctx.reference_outputs[input_set.name]]
        seen.append(refs)
    else:
        refs, error = _call(reference, input_set.feeds)
    if refs is None:
        names = list(ctx.output_names) or ["*"]
        reason = f"reference raised: {error}"
        return [_unmeasured(n, input_set, None, None, ctx, reason) for n in names], \
            f"reference raised on {input_set.name}: {error}", None
    outs, error = _call(candidate, input_set.feeds)
    if outs is None:
        names = _names(ctx.output_names, len(refs))
        reason = f"candidate raised: {error}"
        return [_unmeasured(n, input_set, r, None, ctx, reason) for n, r in zip(names, refs)], \
            f"candidate raised on {input_set.name}: {error}", None
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
    return checks, None, (refs, outs)


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
    tokens = token_mask(np, input_set, ref.shape)
    real = np.ones(ref.shape, bool) if tokens is None else np.broadcast_to(tokens, ref.shape)
    masked = int(ref.size - real.sum())
    finite = np.isfinite(r) & np.isfinite(c) & real
    if exact:
        atol, rtol, axis, atol_min = np.zeros(ref.shape), 0.0, None, 0.0
    else:
        eff = effective_tolerance(np.where(real, r, 0.0), ctx.tolerance)
        atol, rtol, axis, atol_min = np.broadcast_to(eff.atol, ref.shape), eff.rtol, eff.axis, eff.atol_min
    diff, absr = np.abs(c[finite] - r[finite]), np.abs(r[finite])
    allowed = atol[finite] + rtol * absr
    bad = (ref != out)[finite] if exact else diff > allowed
    nonzero = absr > 0
    top1, top5 = (None, None)
    if name in ctx.classifiers or index in ctx.classifiers:
        top1, top5 = _agreement(np, r, c)
    reasons = [_nonfinite_reason(np, np.where(real, r, 0.0), np.where(real, c, 0.0))]
    if bad.any():
        reasons.append(_tolerance_reason(diff, bad, allowed, rtol, exact, axis))
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
        top1_agreement=top1, top5_agreement=top5, atol=float(atol.max(initial=0.0)), rtol=rtol,
        passed=not reasons, reason="; ".join(reasons) or None,
        worst_ratio=_worst_ratio(np, diff, allowed), atol_min=float(atol_min), scale_axis=axis, masked=masked)


def token_mask(np: Any, input_set: InputSet, shape: tuple[int, ...]) -> np.ndarray | None:
    """Where an output aligned with a set's tokens holds real tokens: the set's attention mask
    ``[batch, tokens]`` (ones at real tokens) shaped to broadcast over ``shape``, when the mask has padding
    and the output's first two axes are ``[batch, tokens]``; None otherwise (every position counts)."""
    for key, value in input_set.feeds.items():
        arr = np.asarray(value)
        if "mask" not in key.lower() or arr.ndim != 2 or arr.dtype.kind not in "biu" or arr.all():
            continue
        if len(shape) >= 2 and tuple(shape[:2]) == arr.shape:
            return arr.astype(bool).reshape(arr.shape + (1,) * (len(shape) - 2))
    return None


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


def _tolerance_reason(diff: np.ndarray, bad: np.ndarray, allowed: np.ndarray, rtol: float, exact: bool,
                      axis: int | None) -> str:
    count, total, worst = int(bad.sum()), bad.size, float(diff.max(initial=0.0))
    if exact:
        return f"integer output differs at {count} of {total} elements (max abs diff {worst:g})"
    at = int(_np().argmax(_np().where(bad, diff / _np().maximum(allowed, 1e-300), -1.0)))
    where = "" if axis is None else f" of its slice along axis {axis}"
    return (f"abs diff {diff[at]:.2e} > {allowed[at]:.1e} allowed there (atol{where} + rtol {rtol:.1e}*|ref|); "
            f"max abs diff {worst:.2e} ({count} of {total} elements out of tolerance)")


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


# --- small helpers ---------------------------------------------------------------
def _np() -> Any:
    import numpy

    return numpy


def _dtype_label(ref: Any, out: Any) -> str:
    rd, od = getattr(ref, "dtype", None), getattr(out, "dtype", None)
    if rd is None or od is None or rd == od:
        return str(rd if rd is not None else od)
    return f"{rd}->{od}"

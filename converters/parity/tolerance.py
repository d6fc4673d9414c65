"""How far a converted model may be from its source.

Pass rule, per element and in numpy ``allclose`` terms with the reference as
``b``: ``|cand - ref| <= atol_eff + rtol * |ref|``; shapes must be equal;
NaN/inf must sit at the same positions (inf with the same sign); integer and
bool outputs must be equal exactly.

Magnitude scaling (``Tolerance.scaled``, on by default): ``atol_eff = atol *
max(1, scale)``, where ``scale`` is the largest ``|ref|`` of the *quantity* the
element belongs to, on that input set. Float32 rounding error grows with the
values computed, so the absolute error of logits in the hundreds is ~100x that
of probabilities in [0, 1]; a fixed atol is either too strict for the first or
too lax for the second. Outputs with ``scale <= 1`` keep the plain atol.

A quantity is one output, unless the output mixes quantities along a field
axis: a detection head ``[batch, 4 + classes, anchors]`` packs box coordinates
in pixels (hundreds) beside class scores in [0, 1]; one scale for the whole
tensor would let box-sized errors pass in the scores. So for every axis but
the first whose size is 2..1024, the scale of each slice along it is taken
(``max(1, max|ref|)`` over the slice) and the slices are sorted by scale:
wherever the next slice is at least ``MIX_RATIO`` times larger, a new group of
slices (a new quantity) begins. When some axis has more than one group, the
output is scaled along the axis whose groups lie furthest apart, each element
by the largest scale of its own group. Logits or hidden units whose scales rise
gradually form one group, and are scaled as one output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.errors import UsageError


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
    "int4": Tolerance(atol=2e-1, rtol=2e-1),
}
_DTYPE_ALIASES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "half": "float16",
                  "bf16": "bfloat16", "qint8": "int8", "uint8": "int8",
                  "qint4": "int4"}


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


# --- the effective tolerance of one output ------------------------------------------------------
MIX_RATIO = 10.0  # slice scales this far apart along an axis: the output mixes quantities
MAX_FIELDS = 1024  # a field axis has at most this many slices (boxes+scores: 84; hidden units: 384..1024)


@dataclass(frozen=True)
class EffectiveTolerance:
    """The atol each element of one output is held to (an array broadcastable to it, or a number)."""

    atol: Any
    rtol: float
    axis: int | None  # the field axis scaled per slice, or None: one scale for the whole output
    atol_min: float
    atol_max: float

    def describe(self) -> str:
        if self.axis is None:
            return f"atol {self.atol_max:.2g}"
        return f"atol {self.atol_min:.2g}..{self.atol_max:.2g} per slice along axis {self.axis}"


def effective_tolerance(ref: Any, tol: Tolerance) -> EffectiveTolerance:
    """``tol`` made concrete for the reference output ``ref`` (float64, any shape): see the module docstring."""
    import numpy as np

    magnitude = np.where(np.isfinite(ref), np.abs(ref), 0.0)
    if not tol.scaled:
        return EffectiveTolerance(tol.atol, tol.rtol, None, tol.atol, tol.atol)
    whole = tol.atol * max(1.0, float(magnitude.max(initial=0.0)))
    best_axis, best_gap, best_scales = None, MIX_RATIO, None
    for axis in range(1, magnitude.ndim):
        if not 2 <= magnitude.shape[axis] <= MAX_FIELDS:
            continue
        others = tuple(a for a in range(magnitude.ndim) if a != axis)
        scales = np.maximum(1.0, magnitude.max(axis=others, initial=0.0))
        ordered = np.sort(scales)
        gap = float((ordered[1:] / ordered[:-1]).max())
        if gap >= best_gap:
            best_axis, best_gap, best_scales = axis, gap, scales
    if best_axis is None:
        return EffectiveTolerance(whole, tol.rtol, None, whole, whole)
    shape = [1] * magnitude.ndim
    shape[best_axis] = magnitude.shape[best_axis]
    atol = tol.atol * group_scales(np, best_scales).reshape(shape)
    return EffectiveTolerance(atol, tol.rtol, best_axis, float(atol.min()), float(atol.max()))


def group_scales(np: Any, scales: Any) -> Any:
    """Each slice's scale raised to the largest of its group: slices sorted by scale, a new group wherever the
    next is ``MIX_RATIO`` times larger."""
    order = np.argsort(scales, kind="stable")
    ordered = scales[order]
    group = np.concatenate([[0], np.cumsum(ordered[1:] / ordered[:-1] >= MIX_RATIO)])
    top = np.array([ordered[group == g].max() for g in range(int(group.max()) + 1)])
    out = np.empty_like(scales)
    out[order] = top[group]
    return out

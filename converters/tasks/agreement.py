"""What the label-level task checks share: how many argmax labels must agree, and the real-sample outputs to compare."""

from __future__ import annotations

from typing import Any


def label_agreement_needed(precision: str) -> float:
    """The share of argmax labels (answers, frame ids, image labels) that must agree: all at float32, 95% below."""
    return 1.0 if precision in ("float32", "float64") else 0.95


def sample_pairs(names: list[str], ran: list, output: str, ndim: int) -> Any:
    """(input set, reference array, candidate array) of ``output`` for every real-sample set where both
    sides gave it with one shape of ``ndim`` dimensions (``ran``: (input set, refs, outs) as parity ran them)."""
    import numpy as np

    for input_set, refs, outs in ran:
        if input_set.kind != "sample":
            continue
        got = dict(zip(names, zip(refs, outs)))
        if output not in got:
            continue
        r, c = (np.asarray(a) for a in got[output])
        if r.shape == c.shape and r.ndim == ndim:
            yield input_set, r, c

"""The remediation ladder, run (``graph.ladder`` lists its rungs): each rung, a route or a route at static shapes,
is a real conversion with its own parity check; the first that passes wins. Each attempt is recorded for
``zoo.json``'s ``conversion.routes`` (route, tools, rung, result, reason, won), and when no rung passes, each one
that failed parity is located (``parity/locate.py``) so the report says where every route went wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import errors


@dataclass
class Rung:
    """One rung's conversion and its parity: the chain, its context, the file of each edge, the report, the
    precision checked at, the input sets checked, and its entry in ``conversion.routes``."""

    chain: list
    ctx: Any
    hops: list[Path]
    report: Any
    dtype: str
    sets: list
    attempt: dict[str, Any] = field(default_factory=dict)


def climb(rungs: list[tuple[list, str]], try_rung: Callable[[int, list, str], Rung], fmt: str,
          progress: Any) -> tuple[Rung, list[dict[str, Any]], list[Rung]]:
    """Try ``rungs`` in order with ``try_rung(index, chain, rung)`` until one passes parity: the rung kept (the one
    that passed, else the first that produced a file), every attempt in order, and the rungs that failed parity.
    A rung whose conversion fails, or whose extra is not installed, gives way to the next; with one rung, or when
    no rung produced a file, the error is raised."""
    from zoo.converters import graph

    attempts: list[dict[str, Any]] = []
    lost: list[Rung] = []
    kept: Rung | None = None
    for i, (chain, rung) in enumerate(rungs):
        route = {"route": graph.chain_name(chain), "tools": [e.name for e in chain], "rung": rung}
        try:
            tried = try_rung(i, chain, rung)
        except (errors.ConversionError, errors.MissingDependencyError) as exc:  # a route without its extra: the next
            if len(rungs) == 1:
                raise
            attempts.append({**route, "result": "conversion failed" if isinstance(exc, errors.ConversionError)
                             else "not installed", "reason": exc.message[:500]})
            progress.note(f"route {route['route']} ({', '.join(route['tools'])}) failed: {exc.message[:200]}")
            continue
        report = tried.report
        tried.attempt = {**route, "result": "passed" if report.passed else "failed parity",
                         "reason": report.summary_line(), "max_abs_diff": report.max_abs_diff}
        attempts.append(tried.attempt)
        if kept is None or report.passed:
            kept = tried
        if report.passed:
            break
        lost.append(tried)
        if i + 1 < len(rungs):
            progress.note(f"route {route['route']} ({', '.join(route['tools'])}) failed parity "
                          f"({report.summary_line()}); trying the next route")
    if kept is None:
        raise errors.ConversionError(
            "every route to " + fmt + " failed: "
            + "; ".join(f"{a['route']} ({', '.join(a['tools'])}): {a['reason'][:200]}" for a in attempts),
            hint="convert to onnx or pt2 instead, or report the model with this message", routes=attempts)
    if len(rungs) > 1:
        won = next((a for a in attempts if a["result"] == "passed"), None)
        for a in attempts:
            a["won"] = a is won
    return kept, attempts, lost


def locate_lost(lost: list[Rung], kept: Rung, locate_rung: Callable[[Rung], dict[str, Any] | None],
                progress: Any) -> dict[str, Any] | None:
    """When no rung passed: each rung that failed parity located with ``locate_rung``, in the order tried (its
    ``conversion.routes`` entry carries its ``divergence``; a line each for the others); the kept rung's
    divergence, the report's."""
    from zoo.converters.parity.locate import describe

    found = None
    for rung in lost:
        rung.attempt["divergence"] = locate_rung(rung)
        if rung is kept:
            found = rung.attempt["divergence"]
        elif rung.attempt["divergence"]:
            progress.note(f"route {rung.attempt['route']} ({', '.join(rung.attempt['tools'])}): "
                          + "; ".join(describe(rung.attempt["divergence"])))
    return found

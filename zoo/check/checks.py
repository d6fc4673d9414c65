"""One check of ``zoo check``: convert (or take the project's file), check parity, score accuracy, and
say in one row what passed and what did not. Run in its own process by ``zoo.check.run`` (through
``python -m zoo.check.job``), or in this one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.settings import Settings


def run_check(job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The row for ``job`` (``Check.to_job()``); never raises for a failing model, only records why."""
    started = time.perf_counter()
    row: dict[str, Any] = {"model": job["model"], "target": job["target"], "kind": "file" if job.get("file") else "format",
                           "passed": False, "failures": [], "error": None, "max_abs_diff": None, "atol": None,
                           "rtol": None, "top1_agreement": None, "accuracy": None, "verified": None, "path": None}
    try:
        parity = _parity(job, settings, row)
        row.update(parity_figures(parity))
        if not parity.get("passed"):
            from zoo.converters.parity.report import ParityReport

            row["failures"].append(ParityReport.from_dict(parity).summary_line())
        top1 = row["top1_agreement"]
        if job.get("top1") is not None and top1 is not None and top1 < job["top1"]:
            row["failures"].append(f"top-1 agreement {top1:.1%} on zoo's sample inputs is below the {job['top1']:.1%} required")
        if job.get("data"):
            _accuracy(job, settings, row)
    except errors.ZooError as exc:
        row["error"] = exc.message + (f" ({exc.hint})" if exc.hint else "")
        row["failures"].append(f"error: {exc.message}")
    row["passed"] = not row["failures"]
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _parity(job: dict[str, Any], settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """The parity report of the format's artifact (pulled as ``zoo pull`` would), or of the file."""
    if job.get("file"):
        from zoo.comparison import compare, file_dtype

        path = Path(job["file"])
        if not path.exists():
            raise errors.NotFoundError(f"{path} does not exist", hint="build it before zoo check, or fix files = [...]")
        opts = job.get("options") or {}
        report, _ref, _cand = compare(job["model"], str(path), settings, atol=opts.get("atol"), rtol=opts.get("rtol"),
                                      dtype=file_dtype(path))
        row.update(path=str(path), verified=report.passed)
        return report.to_dict()
    from zoo.options import Options
    from zoo.remote import pull_anywhere

    opts = dict(job.get("options") or {})
    fmt = opts.pop("format", job["target"])
    # allow_mismatch: a failing artifact still comes back, with its report, so the row can show its figures
    result = pull_anywhere(job["model"], Options.from_mapping({**opts, "allow_mismatch": True}, format=fmt), settings)
    row.update(path=result.path, verified=result.verified, digest=result.digest, cached=result.cached,
               chain=result.conversion.get("chain"))
    return result.parity


def parity_figures(parity: dict[str, Any]) -> dict[str, Any]:
    """The figures a row shows: the worst max abs diff, the tolerance, the least top-1 agreement on zoo's
    sample inputs (real images or sentences; on random inputs near-ties make it noise), the inputs' hash."""
    checks = parity.get("checks") or []
    sample = [c.get("top1_agreement") for c in checks if c.get("kind") == "sample" and c.get("top1_agreement") is not None]
    every = [c.get("top1_agreement") for c in checks if c.get("top1_agreement") is not None]
    tolerance = parity.get("tolerance") or {}
    # the share of the (magnitude-scaled) tolerance the worst element used: <= 1 passes
    ratios = [r for c in checks if (r := _number(c.get("worst_ratio"))) is not None and r == r]
    return {"max_abs_diff": _number(parity.get("max_abs_diff")), "atol": tolerance.get("atol"), "rtol": tolerance.get("rtol"),
            "tolerance_used": max(ratios) if ratios else None,
            "top1_agreement": min(sample or every) if (sample or every) else None,
            "inputs_sha256": parity.get("inputs_sha256"), "versions": parity.get("versions") or {},
            "parity_passed": bool(parity.get("passed"))}


def _accuracy(job: dict[str, Any], settings: Settings, row: dict[str, Any]) -> None:
    from zoo.comparison import open_model
    from zoo.eval.data import load_data
    from zoo.eval.evaluate import Bench, floor_failure
    from zoo.eval.store import summary

    spec = job["data"]
    if not row.get("path"):
        return
    data = load_data(spec["path"], limit=spec.get("limit"), split=spec.get("split"))
    source, opened = open_model(job["model"], settings)
    bench = Bench(source, opened, data, settings)
    if job.get("file"):
        ev = bench.file(Path(row["path"]))
    else:
        ev = bench.artifact_at(Path(row["path"]), format=job["target"], digest=row["digest"], verified=bool(row["verified"]))
    row["accuracy"] = {"data": spec["name"], **{k: v for k, v in summary(ev).items()
                                                if k in ("task", "metrics", "source", "delta", "agreement")},
                       "examples": ev["dataset"]["examples"]}
    why = floor_failure(ev, job.get("max_drop"))
    if why:
        row["failures"].append(why)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None

"""What ``zoo check`` writes: a terminal table, its JSON report, JUnit XML and a Markdown job summary,
and the comparison with an earlier run's JSON report (``--baseline``)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

REPORT_VERSION = 1


def row_id(row: dict[str, Any]) -> str:
    return f"{row['model']} -> {row['target']}"


# --- baseline ----------------------------------------------------------------------------------------------
def compare_baseline(rows: list[dict[str, Any]], baseline: dict[str, Any], *, diff_growth: float,
                     points: float) -> list[str]:
    """Mark every row whose figures moved the wrong way beyond the margins; a note per check the
    baseline has that this run does not. A new library that changes outputs within tolerance still moves
    the max abs diff: ``diff_growth`` 0.5 lets it grow by half, no more; agreement and accuracy may fall
    ``points`` percentage points."""
    old = {row_id(r): r for r in baseline.get("rows") or [] if isinstance(r, dict) and "model" in r}
    notes = []
    for row in rows:
        before = old.pop(row_id(row), None)
        if before is None:
            row["baseline"] = None
            continue
        regressions = regressions_of(row, before, diff_growth=diff_growth, points=points)
        row["baseline"] = {"max_abs_diff": before.get("max_abs_diff"), "top1_agreement": before.get("top1_agreement"),
                           "accuracy": _accuracy_figure(before), "regressions": regressions,
                           "versions_changed": _versions_changed(before.get("versions") or {}, row.get("versions") or {})}
        if regressions:
            row["failures"] = [*row.get("failures", []), *(f"regressed: {r}" for r in regressions)]
            row["passed"] = False
    notes.extend(f"{name}: in the baseline but not checked now" for name in old)
    return notes


def regressions_of(row: dict[str, Any], before: dict[str, Any], *, diff_growth: float, points: float) -> list[str]:
    out = []
    new, old = _finite(row.get("max_abs_diff")), _finite(before.get("max_abs_diff"))
    # 1e-7: differences at float32's resolution of values near 1 are noise, however many times they grow
    if new is not None and old is not None and new > old * (1 + diff_growth) and new - old > 1e-7:
        out.append(f"max abs diff {old:.3g} -> {new:.3g} (more than +{diff_growth:.0%})")
    new, old = _finite(row.get("top1_agreement")), _finite(before.get("top1_agreement"))
    if new is not None and old is not None and (old - new) * 100 > points:
        out.append(f"top-1 agreement {old:.1%} -> {new:.1%} (more than {points:g} points)")
    new, old = _accuracy_figure(row), _accuracy_figure(before)
    if new is not None and old is not None and new[0] == old[0] and (old[1] - new[1]) * 100 > points:
        out.append(f"{new[0]} {old[1]:.2%} -> {new[1]:.2%} (more than {points:g} points)")
    return out


def _accuracy_figure(row: dict[str, Any]) -> tuple[str, float] | None:
    acc = row.get("accuracy") or {}
    metrics = acc.get("metrics") or {}
    for name in ("top1", "accuracy", "exact_match"):
        if name in metrics:
            return name, float(metrics[name])
    return None


def _versions_changed(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str | None]]:
    return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- renderings ---------------------------------------------------------------------------------------------
def cells(row: dict[str, Any]) -> dict[str, str]:
    """One row's figures as text: status, max abs diff / atol, top-1 agreement, accuracy and delta."""
    acc = row.get("accuracy") or {}
    main = _accuracy_figure(row)
    delta = (acc.get("delta") or {}).get(main[0]) if main else None
    diff = _finite(row.get("max_abs_diff"))
    return {
        "check": row_id(row),
        "status": "pass" if row["passed"] else "FAIL",
        "max_abs_diff": "" if diff is None else f"{diff:.2e}" + (f" ({used:.0%} of tol.)" if (used := _finite(row.get("tolerance_used"))) is not None else ""),
        "top1": "" if row.get("top1_agreement") is None else f"{row['top1_agreement']:.1%}",
        "accuracy": "" if main is None else f"{main[0]} {main[1]:.2%}",
        "delta": "" if delta is None else f"{delta:+.2f} pt",
        "peak": "" if not row.get("peak_rss_mb") else f"{row['peak_rss_mb'] / 1024:.1f} GB",
        "time": "" if row.get("seconds") is None else f"{row['seconds']:.1f} s",
    }


_HEAD = {"check": "check", "status": "", "max_abs_diff": "max abs diff", "top1": "top-1 agr.",
         "accuracy": "accuracy", "delta": "delta", "peak": "peak RSS", "time": "time"}


def table(report: dict[str, Any]) -> str:
    rows = [cells(r) for r in report["rows"]]
    widths = {k: max(len(_HEAD[k]), *(len(r[k]) for r in rows)) for k in _HEAD}
    line = lambda r: "  ".join(r[k].ljust(widths[k]) for k in _HEAD).rstrip()  # noqa: E731
    out = [line(_HEAD), line({k: "-" * widths[k] for k in _HEAD}), *map(line, rows)]
    for row in report["rows"]:
        for failure in row.get("failures") or []:
            out.append(f"  {row_id(row)}: {failure}")
    out.append(summary_line(report))
    return "\n".join(out)


def summary_line(report: dict[str, Any]) -> str:
    failed = sum(not r["passed"] for r in report["rows"])
    return (f"{len(report['rows']) - failed} passed, {failed} failed in {report['wall_s']:.1f} s; peak memory "
            f"{report['peak_rss_mb']} MB of a {report['budget_mb']} MB budget, {report['jobs']} at a time")


def markdown(report: dict[str, Any]) -> str:
    """A CI job summary (GitHub's $GITHUB_STEP_SUMMARY, GitLab's report): a heading, the table, the failures."""
    failed = [r for r in report["rows"] if not r["passed"]]
    total = len(report["rows"])
    out = [f"### zoo check: {f'{len(failed)} of {total} failed' if failed else f'all {total} passed'}",
           "", "| check | | max abs diff (share of tolerance) | top-1 agreement | accuracy | delta | peak RSS | time |",
           "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        c = cells(row)
        status = "✅" if row["passed"] else "❌"
        out.append(f"| `{c['check']}` | {status} | {c['max_abs_diff']} | {c['top1']} | {c['accuracy']} | {c['delta']} | "
                   f"{c['peak']} | {c['time']} |")
    if failed:
        out += ["", "**Failures**", ""]
        out += [f"- `{row_id(r)}`: {_md(f)}" for r in failed for f in r.get("failures") or []]
    out += ["", f"_{summary_line(report)}_", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def junit(report: dict[str, Any]) -> str:
    """JUnit XML: one testcase per check, its figures as properties, a failure element with every reason."""
    failed = sum(not r["passed"] for r in report["rows"])
    errors_ = sum(bool(r.get("error")) for r in report["rows"])
    suite = ET.Element("testsuite", name="zoo check", tests=str(len(report["rows"])), failures=str(failed - errors_),
                       errors=str(errors_), time=f"{report['wall_s']:.3f}")
    for row in report["rows"]:
        case = ET.SubElement(suite, "testcase", classname=f"zoo.check.{row['model']}", name=str(row["target"]),
                             time=f"{row.get('seconds') or 0:.3f}")
        props = ET.SubElement(case, "properties")
        for name, value in properties(row).items():
            ET.SubElement(props, "property", name=name, value=value)
        if not row["passed"]:
            tag = "error" if row.get("error") else "failure"
            failure = ET.SubElement(case, tag, message=(row.get("failures") or ["failed"])[0][:500])
            failure.text = "\n".join(row.get("failures") or [])
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def properties(row: dict[str, Any]) -> dict[str, str]:
    """The figures of a row as flat ``zoo.*`` name/value pairs (JUnit properties, the pytest plugin)."""
    out = {"zoo.passed": str(bool(row["passed"])).lower()}
    for key in ("max_abs_diff", "atol", "rtol", "tolerance_used", "top1_agreement", "inputs_sha256", "digest", "peak_rss_mb"):
        if row.get(key) is not None:
            out[f"zoo.{key}"] = str(row[key])
    acc = row.get("accuracy") or {}
    for side in ("source", "metrics", "delta"):
        for metric, value in (acc.get(side) or {}).items():
            name = {"metrics": "format", "source": "source", "delta": "delta_points"}[side]
            out[f"zoo.accuracy.{metric}.{name}"] = str(value)
    return out

"""``zoo check``: run a project's manifest (``zoo.toml`` or ``[tool.zoo]``) and fail when any check fails."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zoo import __version__, errors
from zoo.cli.output import print_json
from zoo.errors import EXIT_OK
from zoo.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ck = sub.add_parser("check", help="convert and check every model x format of a project's manifest (CI)",
                        description="Reads zoo.toml or [tool.zoo] in pyproject.toml (here or above); converts every "
                                    "model to every format, checks parity and accuracy, in parallel within a memory "
                                    "budget; exits 6 when any check fails.")
    ck.add_argument("--manifest", type=Path, metavar="FILE", help="zoo.toml or pyproject.toml (default: found from here up)")
    ck.add_argument("--only", action="append", metavar="MODEL", help="check only this model (repeatable)")
    ck.add_argument("--jobs", "-j", type=int, metavar="N", help="checks at once (default: manifest's jobs, else CPU count)")
    ck.add_argument("--memory-budget", metavar="SIZE", help="e.g. 8GiB (default: manifest's, else 3/4 of available memory)")
    ck.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    ck.add_argument("--markdown", type=Path, metavar="FILE", help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    ck.add_argument("--baseline", type=Path, metavar="FILE",
                    help="an earlier run's --json report: fail when a figure regresses beyond the manifest's margins")
    ck.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report to FILE (a later --baseline)")
    ck.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    ck.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from zoo.check import reports
    from zoo.check.manifest import find_manifest, load_manifest, parse_memory
    from zoo.check.run import default_budget_mb, run_checks

    manifest = load_manifest(args.manifest or find_manifest(Path.cwd()))
    checks = [c for c in manifest.checks if not args.only or c.model in args.only]
    if not checks:
        raise errors.UsageError(f"no check left: {', '.join(args.only or [])} names no model of {manifest.path.name}")
    baseline = _read_baseline(args.baseline) if args.baseline else None
    budget = parse_memory(args.memory_budget, "--memory-budget") or manifest.memory_budget_mb or default_budget_mb()
    jobs = args.jobs or manifest.jobs or _cpus()
    if jobs < 1:
        raise errors.UsageError(f"--jobs must be at least 1, not {jobs}")
    def log(line: str) -> None:
        print(f"zoo: check {line}", file=sys.stderr, flush=True)

    report = run_checks(checks, settings, budget_mb=budget, jobs=jobs, log=log)
    report.update(version=reports.REPORT_VERSION, zoo=__version__, manifest=str(manifest.path),
                  created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), notes=[])
    if baseline is not None:
        report["baseline"] = str(args.baseline)
        report["notes"] = reports.compare_baseline(report["rows"], baseline, diff_growth=manifest.diff_growth,
                                                   points=manifest.points)
    report["passed"] = all(r["passed"] for r in report["rows"])
    _write(args, report)
    code = EXIT_OK if report["passed"] else errors.exit_code_for(errors.ParityError(""))
    if args.json:
        print_json({**report, "exit_code": code})
    else:
        print(reports.table(report))
        for note in report["notes"]:
            print(f"note: {note}")
    return code


def _write(args: argparse.Namespace, report: dict[str, Any]) -> None:
    from zoo.check import reports

    for path, text in ((args.junit, lambda: reports.junit(report)), (args.markdown, lambda: reports.markdown(report)),
                       (args.report, lambda: json.dumps(report, indent=1, default=str) + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")


def _read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.NotFoundError(f"baseline {path} cannot be read: {exc.strerror}",
                                   hint="pass the --report (or --json) output of an earlier zoo check") from exc
    except ValueError as exc:
        raise errors.UsageError(f"baseline {path} is not JSON: {exc}",
                                hint="pass the --report (or --json) output of an earlier zoo check") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise errors.UsageError(f"baseline {path} is not a zoo check report (no rows)",
                                hint="pass the --report (or --json) output of an earlier zoo check")
    return data


def _cpus() -> int:
    import os

    return os.cpu_count() or 1

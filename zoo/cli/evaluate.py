"""``zoo eval NAME --format F --data PATH``: accuracy of the source model and of each format on a
labelled local data set, the delta in percentage points, and an optional floor (``--max-drop``)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.cli.output import emit, print_json
from zoo.errors import EXIT_OK
from zoo.options import Options, add_arguments, from_arguments
from zoo.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="accuracy of a model and its formats on a labelled local data set",
                        description="Run the source model and each format on the same labelled examples (an image "
                                    "folder per class, JSONL/CSV of text and label, or a `datasets` directory saved "
                                    "to disk; never a download) and report top-1/top-5 or accuracy/F1 and the delta.")
    ev.add_argument("name", help="a model name, as for zoo pull")
    fmt = next(f for f in fields(Options) if f.name == "format")
    ev.add_argument("--format", "-f", dest="formats", action="append", required=True, metavar="FORMAT",
                    help=f"repeat or comma-separate for several; {fmt.metadata['help']}")
    ev.add_argument("--data", required=True, type=Path, metavar="PATH", help="the labelled data set")
    ev.add_argument("--limit", type=int, metavar="N", help="the first N examples (an image folder: one class after another)")
    ev.add_argument("--split", help="the split of a `datasets` DatasetDict (default: test, then validation)")
    ev.add_argument("--max-drop", type=float, metavar="POINTS",
                    help="fail (exit 6) when a format's top-1 / accuracy is more than POINTS percentage points below the source's")
    add_arguments(ev, exclude=("format",))
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from zoo.eval.evaluate import evaluate, floor_failure
    from zoo.progress import Progress

    formats = [f.strip() for item in args.formats for f in item.split(",") if f.strip()]
    options = from_arguments(args)
    for fmt in formats:  # every format known before anything is fetched
        Options.from_mapping({}, format=fmt)
        from zoo.converters.graph import require_format

        require_format(fmt)
    if args.max_drop is not None and args.max_drop < 0:
        raise errors.UsageError(f"--max-drop must be >= 0, not {args.max_drop}")
    result = evaluate(args.name, formats, args.data, settings, options=options, limit=args.limit, split=args.split,
                      progress=Progress())
    failures = [f"{row['format']}: {why}" for row in result["formats"] if (why := floor_failure(row, args.max_drop))]
    result = strip_predictions(result)
    broken = [row for row in result["formats"] if row.get("error")]
    result["passed"] = not failures and not broken
    if broken:  # a format zoo could not make: its own error and exit code, after the others' figures
        from zoo.remote import error_from_body

        first = broken[0]
        error = error_from_body({"error": first["error_code"], "hint": first.get("hint")},
                                f"{first['format']}: {first['error']}" + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""))
    elif failures:
        error = errors.ParityError("accuracy floor broken: " + "; ".join(failures),
                                   hint="the figures above are stored (zoo info NAME); raise --max-drop only if the loss is acceptable")
    else:
        error = None
    if error is not None and args.json:
        print_json({**result, "failures": failures, "exit_code": errors.exit_code_for(error)})
        return errors.exit_code_for(error)
    emit(args, result, render(result))
    if error is not None:
        raise error
    return EXIT_OK


def strip_predictions(result: dict[str, Any]) -> dict[str, Any]:
    from zoo.eval.store import summary

    return {**result, "source": summary(result["source"]),
            "formats": [r if r.get("error") else summary(r) for r in result["formats"]]}


def render(result: dict[str, Any]) -> str:
    data = result["dataset"]
    lines = [f"{result['model']}@{result['revision'][:12]} ({result['task']}) on {Path(data['path']).name}: "
             f"{data['examples']} of {data['total']} examples ({data['layout']})",
             f"  {'source':12} {figures(result['source']['metrics'])}"]
    for row in result["formats"]:
        if row.get("error"):
            lines.append(f"  {row['format']:12} not evaluated: {row['error']}")
            continue
        delta = "  ".join(f"{k} {v:+.2f}" for k, v in row["delta"].items())
        lines.append(f"  {row['format']:12} {figures(row['metrics'])}  delta {delta} points  "
                     f"top-1 agreement {row['agreement']:.1%}{'' if row['verified'] else '  (NOT VERIFIED)'}")
    return "\n".join(lines)


def figures(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.2%}" for k, v in metrics.items())


def info_lines(artifact: dict[str, Any]) -> list[str]:
    """``zoo info``'s lines for an artifact's stored evaluations."""
    lines = []
    for ev in artifact.get("evaluations") or []:
        data = ev["dataset"]
        delta = ", ".join(f"{k} {v:+.2f}" for k, v in ev.get("delta", {}).items())
        lines.append(f"    eval on {Path(data['path']).name} ({data['examples']} examples, sha256 {data['sha256'][:12]}): "
                     f"{figures(ev['metrics'])}; source {figures(ev.get('source', {}))}; delta {delta} points")
    return lines

"""The ``zoo`` command line. argparse keeps start-up fast; every subcommand
imports what it needs inside its handler."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from zoo import __version__
from zoo.cli.output import ReaderGone, emit, json_output, print_json, say, silence_stdout
from zoo.errors import EXIT_OK, StorageError, ZooError, as_storage_error, exit_code_for
from zoo.options import add_arguments, from_arguments

EXIT_CODES_HELP = """exit codes:
  0  success
  1  internal error (rerun with ZOO_DEBUG=1 for a traceback)
  2  usage: bad arguments, malformed or ambiguous model name
  3  not found: unknown model, revision or artifact
  4  offline or network: hub unreachable, not cached while offline, auth refused
  5  unsupported: format, architecture, head or missing optional dependency
  6  parity failed: the converted model does not match the source
  7  invalid model files: corrupt, unsafe or missing (e.g. no config.json)
  8  conversion failed: the exporter could not convert the model, or a job ran past its limits
  9  storage full: disk full, quota or file-size limit while writing; nothing was published
 10  the source model itself failed on the parity inputs (pass --input, --inputs or --samples); nothing converted
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="Pull models by name, convert them, check parity.",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pull = sub.add_parser("pull", help="resolve, download, convert and verify a model",
                          epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    pull.add_argument("name", help="resnet50, resnet50.a1_in1k, org/name[@rev], hf:org/name, local:NAME, keras:MobileNetV2[@SIZE]")
    add_arguments(pull)
    pull.add_argument("-o", "--output", type=Path, help="also copy the artifact to this path")
    pull.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    conv = sub.add_parser("convert", help="convert a local .onnx or .keras file, a .pt2 zoo wrote, a SavedModel or a model directory",
                          epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    conv.add_argument("path", type=Path, help="an .onnx or .keras file, a .pt2 file zoo wrote, a TensorFlow SavedModel "
                                              "directory, or a directory with config.json and weights")
    add_arguments(conv, flags={"format": ("--to",)}, required=("format",))
    conv.add_argument("-o", "--output", type=Path)
    conv.add_argument("--json", action="store_true")

    par = sub.add_parser("parity", help="compare two models on the same inputs, or every format of one (--matrix)",
                         epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    par.add_argument("models", nargs="*", help="REFERENCE CANDIDATE: a model name or file (.onnx, .pt2, .tflite, .keras, SavedModel dir), then a file")
    par.add_argument("--matrix", metavar="NAME", help="convert NAME to every reachable format and tabulate parity")
    add_arguments(par, exclude=("format", "opset", "exporter", "allow_mismatch"))
    par.add_argument("--dtype", default=None, help="tolerance class: float32, float16, bfloat16, int8 (default: the "
                                                   "candidate's own, read from its graph: an int8 or fp16 file is "
                                                   "checked as zoo convert checks it)")
    par.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", help="search the model index (offline)")
    ls.add_argument("pattern", nargs="?", help="substring, or a glob with *")
    ls.add_argument("--source", choices=("timm", "hf", "local", "keras"))
    ls.add_argument("--limit", type=int, default=50, help="at most this many rows (0: all)")
    ls.add_argument("--json", action="store_true")

    info = sub.add_parser("info", help="everything zoo knows about a model (offline)")
    info.add_argument("name")
    info.add_argument("--json", action="store_true")

    imp = sub.add_parser("import", help="register a local model directory or archive (config.json + weights), or a training "
                                            "checkpoint (Lightning, DDP, DeepSpeed ZeRO, FSDP / torch.distributed.checkpoint)")
    imp.add_argument("directory", type=Path, metavar="PATH", help="a directory, or a .tar, .tar.gz or .zip archive of one")
    imp.add_argument("--name", required=True)
    imp.add_argument("--arch", metavar="A", help="the architecture of a training checkpoint's weights: timm:NAME, hf:ORG/NAME, "
                                                 "a config.json (default: what the checkpoint says), or "
                                                 "flax:PACKAGE.MODULE:CLASS for a Flax msgpack/orbax checkpoint "
                                                 "(that module is imported: name only your own code)")
    imp.add_argument("--json", action="store_true")

    cache = sub.add_parser("cache", help="inspect and maintain the artifact store")
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    cls_ = csub.add_parser("ls", help="list artifacts")
    cls_.add_argument("--json", action="store_true")
    crm = csub.add_parser("rm", help="remove artifacts by digest (prefix) or model id")
    crm.add_argument("targets", nargs="+")
    crm.add_argument("--json", action="store_true")
    cver = csub.add_parser("verify", help="re-hash every artifact and source file")
    cver.add_argument("--repair", action="store_true",
                      help="fetch corrupt source files again and re-convert corrupt artifacts")
    cver.add_argument("--json", action="store_true")

    from zoo.cli import demo as cli_demo
    from zoo.cli import server as cli_server
    from zoo.cli import worker as cli_dist

    cli_server.add_parsers(sub)
    cli_dist.add_parsers(sub)
    cli_demo.add_parser(sub)
    from zoo.cli import check as cli_check  # zoo check and zoo eval: each sets its own handler
    from zoo.cli import diff as cli_diff
    from zoo.cli import evaluate as cli_eval

    cli_check.add_parsers(sub), cli_eval.add_parsers(sub), cli_diff.add_parsers(sub)
    return p


# The exit status of a process that wrote into a closed pipe (128 + SIGPIPE), as `yes | head` gives.
EXIT_PIPE = 141


def tune_process(one_shot: bool) -> None:
    """Before any framework is imported: PyTorch's OpenMP threads sleep between parallel regions instead of
    spinning (libgomp's default spins ~300,000 times: on a tiny model's thousands of small operations, and on
    a shared machine, that doubled the CPU time of a pull and slowed its wall time); onnxruntime's sessions
    are made without spinning already (converters/parity/runners.py). A value the user set is kept. A
    one-shot command also raises the garbage collector's threshold (``ONE_SHOT_GC_THRESHOLD``)."""
    from zoo.settings import quiet_openmp

    quiet_openmp()
    if one_shot:
        import gc

        gc.set_threshold(ONE_SHOT_GC_THRESHOLD, *gc.get_threshold()[1:])


# Commands that run as long as a server or a worker does: they keep Python's garbage collector as it is.
LONG_LIVED = ("serve", "worker")
# The collector's first-generation threshold for a one-shot command (Python's default: 700). Importing torch
# and transformers makes millions of objects that live as long as the process; at 700 the collector walks them
# again and again (about 1 CPU second of a tiny model's 6 in `zoo pull`). Garbage cycles still go, in batches.
ONE_SHOT_GC_THRESHOLD = 50_000


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    one_shot = argv is None and args.command not in LONG_LIVED  # a real process, not an in-process call
    if argv is None:
        tune_process(one_shot)
    try:
        with json_output(getattr(args, "json", False) and argv is None):
            return _main(args)
    except (ReaderGone, BrokenPipeError):  # `zoo list | head`: the reader has what it wanted
        silence_stdout()
        return EXIT_PIPE
    finally:
        if one_shot:
            # The interpreter's last collections would walk every object left (about 1 CPU second after a
            # conversion) only to free memory the process returns at exit; frozen objects are not walked.
            # atexit handlers and weakref finalizers (temporary directories) still run.
            import gc

            gc.freeze()


def _main(args: argparse.Namespace) -> int:
    from zoo.settings import get_settings

    try:
        settings = get_settings()
    except ZooError as exc:  # a malformed ZOO_* variable
        return _report_error(exc, args, False)
    try:
        handler = getattr(args, "handler", None) or {"pull": cmd_pull, "convert": cmd_convert, "parity": cmd_parity,
                                                     "list": cmd_list, "info": cmd_info, "import": cmd_import}.get(args.command)
        if args.command in ("serve", "token"):
            from zoo.cli import server as cli_server

            handler = cli_server.cmd_serve if args.command == "serve" else cli_server.cmd_token
        elif args.command == "worker":
            from zoo.cli.worker import cmd_worker

            handler = cmd_worker
        elif args.command == "demo":
            from zoo.cli.demo import cmd_demo

            handler = cmd_demo
        elif handler is None:
            from zoo.cli.cache import cmd_cache

            handler = cmd_cache
        return handler(args, settings)
    except ZooError as exc:
        return _report_error(as_storage_error(exc), args, settings.debug)
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except ReaderGone:
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: one line, exit 1
        full = as_storage_error(exc)
        if isinstance(full, StorageError):
            return _report_error(full, args, settings.debug)
        if settings.debug:
            raise
        print(f"zoo: internal error: {type(exc).__name__}: {exc} (rerun with ZOO_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def _report_error(exc: ZooError, args: argparse.Namespace, debug: bool) -> int:
    code = exit_code_for(exc)
    if debug and exc.__cause__ is not None:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print_json({**exc.to_dict(), "exit_code": code})
    print(f"zoo: error: {exc.message}", file=sys.stderr)
    worst = exc.details.get("worst")
    if worst:
        from zoo.converters.parity.report import figure

        print("zoo: worst outputs:", file=sys.stderr)
        for m in worst:
            print(f"  {m['output']} on {m['input_set']}: max abs {figure(m['max_abs_diff'])} (atol {figure(m['atol'])}), "
                  f"max rel {figure(m['max_rel_diff'])}, cosine {figure(m['cosine'], '.6f')}"
                  f"{'' if m.get('reason') is None else ' - ' + m['reason']}", file=sys.stderr)
    from zoo.converters.parity.locate import describe

    for line in describe(exc.details.get("divergence")):
        print(f"zoo: {line}", file=sys.stderr)
    if exc.hint:
        print(f"zoo: hint: {exc.hint}", file=sys.stderr)
    return code


def cmd_pull(args: argparse.Namespace, settings) -> int:
    from zoo.pipeline import pull
    from zoo.progress import Progress

    options = from_arguments(args)
    if settings.server:  # remote mode: the server converts, this process downloads and verifies
        from zoo.remote import pull_remote

        return _print_result(args, pull_remote(args.name, options, settings, progress=Progress(), output=args.output))
    result = pull(args.name, options, settings=settings, progress=Progress(), output=args.output)
    return _print_result(args, result)


def cmd_convert(args: argparse.Namespace, settings) -> int:
    from zoo.pipeline import convert_path
    from zoo.progress import Progress

    options = from_arguments(args)
    result = convert_path(args.path, options, settings=settings, progress=Progress(), output=args.output)
    return _print_result(args, result)


def cmd_parity(args: argparse.Namespace, settings) -> int:
    from zoo import comparison
    from zoo.errors import ParityError, UsageError

    if args.matrix:
        rows = comparison.matrix(args.matrix, settings)
        emit(args, {"model": args.matrix, "rows": rows}, comparison.matrix_markdown(args.matrix, rows))
        return EXIT_OK
    if len(args.models) != 2:
        raise UsageError("zoo parity takes two models (REFERENCE CANDIDATE) or --matrix NAME",
                         hint="e.g. zoo parity resnet50 ./model.onnx")
    options = from_arguments(args)
    report, ref, cand = comparison.compare(*args.models, settings, atol=args.atol, rtol=args.rtol, dtype=args.dtype,
                                           request=options.input_request())
    lines = [f"{cand}\n  against {ref}\n  {report.summary_line()} ({report.precision} tolerance)"]
    for name, o in report.outputs.items():
        lines.append(f"  {name}: max abs {o.get('max_abs_diff')}, max rel {o.get('max_rel_diff')}, "
                     f"cosine {o.get('cosine')}, top-1 {o.get('top1_agreement')}, passed {o.get('passed')}; "
                     f"atol {o.get('atol_min'):.2g}..{o.get('atol'):.2g} ({o.get('scale')})")
    for task in report.tasks:
        lines.append(f"  {task['check']} on {task['input_set']} ({task['output']}): "
                     f"{'passed' if task['passed'] else 'FAILED' if task['passed'] is False else 'nothing to compare'}"
                     f"{'' if not task.get('reason') else ' - ' + task['reason']}")
    for name, how in report.inputs.items():
        lines.append(f"  input {name}: {how}")
    if args.json:  # one object, failure included
        code = EXIT_OK if report.passed else exit_code_for(ParityError(""))
        print_json({"reference": ref, "candidate": cand, "parity": report.to_dict(), "exit_code": code})
        return code
    say("\n".join(lines))
    if not report.passed:
        raise ParityError(f"{cand} does not match {ref}: {report.summary_line()}", worst=[vars(m) for m in report.worst(3)])
    return EXIT_OK


def _print_result(args: argparse.Namespace, result) -> int:
    parity = result.parity
    out = result.to_json()
    out["parity"] = {"passed": parity["passed"], "max_abs_diff": parity["max_abs_diff"], "outputs": parity["outputs"],
                     "tolerance": parity.get("tolerance"), "inputs_sha256": parity.get("inputs_sha256")}
    text = (f"{result.path}\n  model {result.model}@{result.revision[:12]}  format {result.format}  "
            f"sha256 {result.sha256[:16]}...  {result.size / 1e6:.1f} MB  {'cached' if result.cached else 'converted'}\n"
            f"  {_parity_line(parity)}")
    emit(args, out, text)
    return EXIT_OK


def _parity_line(parity: dict[str, Any]) -> str:
    from zoo.converters.parity.report import figure

    status = "passed" if parity.get("passed") else "FAILED"
    return f"parity {status}: max abs diff {figure(parity.get('max_abs_diff', 'nan'))} over {len(parity.get('outputs', {}))} output(s)"


def cmd_list(args: argparse.Namespace, settings) -> int:
    from zoo.registry.index import Registry, cached_hf_repos

    registry = Registry(settings)
    if args.source in (None, "timm"):
        registry.ensure_timm_catalog()
    if args.source in (None, "keras"):
        registry.ensure_keras_catalog()
    records = registry.search(args.pattern, source=args.source, limit=None)
    rows = [{"id": r.id, "source": r.source, "name": r.name, "task": r.task, "default": r.is_default} for r in records]
    known = {r["id"] for r in rows}
    if args.source in (None, "hf"):
        for repo_id, commits in cached_hf_repos(settings.hf_hub_cache):
            if repo_id not in known and (not args.pattern or args.pattern.replace("*", "") in repo_id):
                rows.append({"id": repo_id, "source": "hf", "name": repo_id, "task": None, "default": False,
                             "cached_revisions": commits})
    total = len(rows)
    if args.limit:
        rows = rows[: args.limit]
    text = "\n".join(f"{r['source']:5}  {r['id']}{'  (default tag)' if r['default'] else ''}" for r in rows)
    if total > len(rows):
        text += f"\n... {total - len(rows)} more (use --limit 0 for all)"
    emit(args, {"total": total, "models": rows}, text or "no models match")
    return EXIT_OK


def cmd_info(args: argparse.Namespace, settings) -> int:
    from zoo.catalog import model_info

    info = model_info(args.name, settings)
    lines = [f"{info['id']}  ({info['source']}, {info.get('library')})"]
    for key in ("repo_id", "task", "license", "num_classes"):
        if info.get(key) is not None:
            lines.append(f"  {key}: {info[key]}")
    lines.append(f"  input: {json.dumps(info.get('input_spec'))}")
    lines.append(f"  preprocessing: {json.dumps(info.get('preprocessing'))}")
    for rev in info["revisions"]:
        lines.append(f"  revision {rev['revision']}: " + ", ".join(f"{f['path']} ({f['size']} B, sha256 {f['sha256'][:12]})" for f in rev["files"]))
    for art in info["artifacts"]:
        lines.append(f"  artifact {art['format']} {art['digest'][:16]} {'verified' if art['verified'] else 'NOT VERIFIED'}: {art['path']}")
        lines.append(f"    {_parity_line(art['parity'])}")
        for name, o in art["parity"].get("outputs", {}).items():
            lines.append(f"      {name}: max abs {o.get('max_abs_diff')}, max rel {o.get('max_rel_diff')}, "
                         f"cosine {o.get('cosine', o.get('min_cosine'))}, top-1 {o.get('top1_agreement', o.get('min_top1_agreement'))}")
        from zoo.cli.evaluate import info_lines

        lines.extend(info_lines(art))
    emit(args, info, "\n".join(lines))
    return EXIT_OK


def cmd_import(args: argparse.Namespace, settings) -> int:
    from zoo.registry.local_source import import_path

    record = import_path(args.directory, args.name, settings, arch=args.arch)
    emit(args, record.to_dict(), f"imported {record.id}@{record.revision} ({record.library} {record.arch}, {record.task})\n"
                                  f"  pull it with: zoo pull local:{record.name} --format onnx")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

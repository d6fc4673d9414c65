"""The vision task families of issue 11 (CLIP, DINOv2, YOLOS, SegFormer, DPT) pulled to the non-ONNX formats.

Builds each family's tiny repo (tests/task_builders.py: real architecture, real tokenizer / image processor,
seeded weights) into an offline Hugging Face cache in a temporary directory and runs, per cell,
``zoo pull hf:REPO --format F --json`` (no --allow-mismatch: the exit code is what a user gets). Records per cell:
exit code, passed, max abs diff, the task checks' verdicts (check, input set, passed, reason), the route that
won (or every route's reason when none did), wall time and the error. ``tflite-fp16``/``tflite-int8`` run only
where ``tflite`` passed (``--all`` runs them anyway).

    nice .venv/bin/python bench/bench_vision_targets.py [--families clip,yolos] [--formats jax,tflite] \
        [--out bench/results-vision-targets.json]
    .venv/bin/python bench/bench_vision_targets.py --markdown   # the table of docs/parity-matrix.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
FORMATS = ["jax", "tf", "tflite", "tflite-fp16", "tflite-int8"]
FAMILIES = {  # family -> (repo id, builder name in tests/task_builders.py)
    "clip": ("zoo-test/tiny-clip", "clip_repo"),
    "dinov2": ("zoo-test/tiny-dinov2", "dinov2_repo"),
    "yolos": ("zoo-test/tiny-yolos", "yolos_repo"),
    "segformer": ("zoo-test/tiny-segformer", "segformer_repo"),
    "dpt": ("zoo-test/tiny-dpt", "dpt_repo"),
}


def task_verdicts(parity: dict) -> list[dict]:
    return [{"check": t["check"], "input_set": t["input_set"], "output": t.get("output"), "passed": t.get("passed"),
             "reason": t.get("reason")} for t in parity.get("tasks") or []]


def route_won(conversion: dict) -> str | None:
    won = [r for r in conversion.get("routes") or [] if r.get("won")]
    if won:
        return f"{won[0]['route']} ({', '.join(won[0]['tools'])}; {won[0]['rung']})"
    return conversion.get("chain")


def run_cell(repo: str, fmt: str, env: dict, timeout: int) -> dict:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "zoo", "pull", f"hf:{repo}", "--format", fmt, "--json"],
                              check=False, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"format": fmt, "exit": None, "passed": False, "seconds": round(time.perf_counter() - start, 1),
                "error": f"timed out after {timeout} s"}
    cell: dict = {"format": fmt, "exit": proc.returncode, "seconds": round(time.perf_counter() - start, 1)}
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        out = {}
    if proc.returncode == 0:
        manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
        parity, conversion = manifest["parity"], manifest["conversion"]
        cell.update(passed=bool(parity["passed"]), max_abs_diff=parity.get("max_abs_diff"),
                    tasks=task_verdicts(parity), route=route_won(conversion), size=out.get("size"),
                    warnings=parity.get("warnings"), routes=conversion.get("routes"), divergence=parity.get("divergence"))
        return cell
    report = out.get("report") or {}
    cell.update(passed=False, error=out.get("message") or (proc.stderr.strip().splitlines() or ["?"])[-1],
                error_kind=out.get("error"), hint=out.get("hint"), max_abs_diff=report.get("max_abs_diff"),
                tasks=task_verdicts(report), routes=out.get("routes"), divergence=out.get("divergence"),
                stderr_tail=proc.stderr[-1500:])
    return cell


def verdict(cell: dict) -> str:
    """The task checks on the real samples: ``check passed/run`` per check, the first failure's reason."""
    counts: dict[str, list] = {}
    for t in cell.get("tasks") or []:
        if t["input_set"].startswith("sample"):
            counts.setdefault(t["check"], []).append(t["passed"])
    parts = [f"{name} {sum(1 for p in got if p)}/{len(got)}" for name, got in counts.items()]
    failed = [t for t in cell.get("tasks") or [] if t["passed"] is False]
    if failed:
        parts.append(f"({failed[0]['reason']})")
    return ", ".join(parts) or "none"


def markdown(results: dict) -> str:
    """One row per family and format, as docs/parity-matrix.md shows them."""
    rows = ["| family | format | passed | max abs diff | task check on the samples (passed/run) | route that won "
            "(tools; rung) | time | reason when red |", "|---|---|---|---|---|---|---|---|"]
    for family, cells in results.items():
        for fmt in FORMATS:
            c = cells.get(fmt)
            if c is None:
                continue
            passed = "yes" if c.get("passed") else f"NO (exit {c.get('exit')})" if c.get("exit") is not None else "not run"
            diff = f"{c['max_abs_diff']:.1e}" if isinstance(c.get("max_abs_diff"), float) else "-"
            seconds = f"{c['seconds']:.0f} s" if c.get("seconds") is not None else "-"
            reason = "" if c.get("passed") else str(c.get("error") or "").replace("|", "/")[:300]
            rows.append(f"| {family} | {fmt} | {passed} | {diff} | {verdict(c)} | {c.get('route') or '-'} | {seconds} | "
                        f"{reason} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--all", action="store_true", help="run the tflite variants even where tflite failed")
    parser.add_argument("--timeout", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-vision-targets.json")
    parser.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    import task_builders as tb
    from builders import write_hf_cache

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZOO_HOME": f"{tmp}/zoo", "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
        for family in args.families.split(","):
            repo, builder = FAMILIES[family]
            write_hf_cache(Path(tmp) / "hf" / "hub", repo, getattr(tb, builder)())
            row = results.setdefault(family, {})
            for fmt in args.formats.split(","):
                base = row.get("tflite") or {}
                if fmt.startswith("tflite-") and not args.all and not base.get("passed"):
                    row[fmt] = {"format": fmt, "passed": False, "exit": None,
                                "error": "not run: tflite does not pass for this family"}
                    continue
                row[fmt] = run_cell(repo, fmt, env, args.timeout)
                c = row[fmt]
                print(f"{family} {fmt}: exit {c['exit']} passed={c['passed']} diff={c.get('max_abs_diff')} "
                      f"{c['seconds']} s tasks={[(t['check'], t['input_set'], t['passed']) for t in c.get('tasks') or []]} "
                      f"route={c.get('route')} error={str(c.get('error'))[:300]}", file=sys.stderr, flush=True)
                args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Coverage against ``optimum-cli export onnx``: the same tiny architectures, built once, given to both tools.

    .venv/bin/python bench/bench_coverage.py [--only gpt2,vit | --all] [--tools zoo,optimum] [--json OUT] [--table]

The 40 architectures of ``bench/coverage_archs.py`` SELECTION (``--all``: its 69) (decoders, encoders with each head, vision, speech,
seq2seq; seeded random weights, real tokenizers / image processors / feature extractors built offline) is
written once into a fresh Hugging Face cache (``HF_HOME``, offline) as ``zoo-bench/tiny-NAME``. Then, per
architecture, each tool runs in a subprocess under ``/usr/bin/time -v`` (wall time, peak RSS):

- zoo: ``zoo pull zoo-bench/tiny-NAME --format onnx --json`` (a fresh ``ZOO_HOME``, ``HF_HUB_OFFLINE=1``);
  exported = an ONNX file was written (published or quarantined), validated = exit 0 and ``verified``.
- optimum: ``optimum-cli export onnx --model SNAPSHOT --task TASK OUT`` from its own venv
  (``--optimum-python``, default ``.zoo-bench/optimum-venv``; bench/README.md says how to make it);
  exported = exit 0 and an ``.onnx`` written, validated = its own validation ran and logged no mismatch
  (optimum only warns on a tolerance failure and still exits 0: such a run counts as exported, not validated).

Results are merged into ``--json`` (default ``bench/results-coverage.json``) per architecture, so the bench
can run in portions (``--only``); ``--table`` prints the Markdown table of what the file holds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

REPO = "zoo-bench/tiny-{}"
TIMEOUT_S = 900


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: exit code, wall seconds, peak RSS (MB), stdout and stderr (saved in ``log``)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = 124, exc.stdout or "", (exc.stderr or "") if isinstance(exc.stderr, str) else ""
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err))
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}")
    return {"rc": rc, "wall_s": round(wall, 2), "peak_rss_mb": int(match.group(1)) // 1024 if match else None,
            "cpu_s": round(cpu, 2), "stdout": out, "stderr": err}


def _last_error(text: str) -> str:
    """The line that says why a run failed (zoo's ``zoo: ...`` message, else a Python exception)."""
    text = text.split("\tCommand being timed:")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("zoo: error:"):
            return ln[:300]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def run_zoo(name: str, env: dict, template: Path, tmp: Path) -> dict:
    home = tmp / f"home-{name}"
    shutil.copytree(template, home)
    r = timed([sys.executable, "-m", "zoo", "pull", REPO.format(name), "--format", "onnx", "--json"],
              {**env, "ZOO_HOME": str(home)}, tmp / "logs" / f"zoo-{name}.log")
    row = {"rc": r["rc"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"]}
    try:
        out = json.loads(r["stdout"].strip().splitlines()[-1])
    except (IndexError, ValueError):
        out = {}
    onnx = list(home.glob("artifacts/*/*.onnx")) + list(home.glob("quarantine/*/*.onnx"))
    row["exported"] = bool(onnx)
    row["validated"] = r["rc"] == 0 and bool(out.get("verified"))
    if out:
        # the CLI's JSON carries a summary of the parity report; the whole report (input sets, task checks) is in
        # the artifact's zoo.json, or, when parity failed, in the error's "report"
        manifest = Path(out.get("artifact_dir") or home / "none") / "zoo.json"
        parity = (json.loads(manifest.read_text()).get("parity") if manifest.is_file() else out.get("report")) \
            or out.get("parity") or {}
        row["checks"] = sorted({t.get("check") for t in parity.get("tasks", []) if t.get("check")}) \
            if isinstance(parity.get("tasks"), list) else []
        row["input_sets"] = len(parity.get("input_sets", []))
        row["max_abs_diff"] = parity.get("max_abs_diff")
        row["exporter"] = (out.get("conversion") or {}).get("exporter")
    if not row["validated"]:
        row["error"] = _last_error(r["stderr"])
    shutil.rmtree(home, ignore_errors=True)
    return row


def run_optimum(name: str, task: str, snap: Path, python: str, env: dict, tmp: Path) -> dict:
    out_dir = tmp / f"optimum-{name}"
    cli = str(Path(python).with_name("optimum-cli"))
    r = timed([cli, "export", "onnx", "--model", str(snap), "--task", task, str(out_dir)],
              {**env, "TRANSFORMERS_VERBOSITY": "info"},  # optimum logs its validation at info level
              tmp / "logs" / f"optimum-{name}.log")
    log = r["stdout"] + r["stderr"]
    onnx = sorted(p.name for p in out_dir.glob("*.onnx"))
    row = {"rc": r["rc"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"], "files": onnx}
    row["exported"] = r["rc"] == 0 and bool(onnx)
    mismatch = "succeeded with the warning" in log or "not within the set tolerance" in log
    row["validated"] = row["exported"] and "Validating ONNX model" in log and not mismatch
    if mismatch:
        row["warning"] = next((ln.strip()[:300] for ln in log.splitlines()
                               if "tolerance" in ln or "succeeded with the warning" in ln), "")
    if not row["exported"]:
        row["error"] = _last_error(r["stderr"])
    shutil.rmtree(out_dir, ignore_errors=True)
    return row


def table(results: dict) -> str:
    """The Markdown table (one row per architecture), totals and the median time ratio."""
    import coverage_archs

    def cell(row: dict | None) -> str:
        if not row:
            return "| - | - | - | - "
        status = "yes" if row["exported"] else "no"
        valid = "yes" if row["validated"] else "no"
        return f"| {status} | {valid} | {row['wall_s']:.0f} / {row.get('cpu_s', 0):.1f} | {row['peak_rss_mb']} "

    lines = ["| architecture | zoo task | zoo exported | zoo verified | zoo wall / CPU s | zoo peak MB | optimum exported | "
             "optimum validated | optimum wall / CPU s | optimum peak MB | why not (zoo / optimum) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios, cpu_ratios, rss_ratios = [], [], []
    for name in coverage_archs.ARCHS:
        entry = results.get(name)
        if not entry:
            continue
        z, o = entry.get("zoo"), entry.get("optimum")
        why = " / ".join(x for x in ((z or {}).get("error", ""), (o or {}).get("error", "") or
                                     (o or {}).get("warning", "")) if x)
        why = why.replace("|", "\\|")[:160]
        lines.append(f"| {name} | {entry['task']} {cell(z)}{cell(o)}| {why} |")
        if z and o and z["validated"] and o["exported"]:
            ratios.append(z["wall_s"] / o["wall_s"])
            cpu_ratios.append(z["cpu_s"] / o["cpu_s"]) if z.get("cpu_s") and o.get("cpu_s") else None
            rss_ratios.append(z["peak_rss_mb"] / o["peak_rss_mb"]) if z.get("peak_rss_mb") and o.get("peak_rss_mb") else None
    done = [e for e in results.values() if e.get("zoo") and e.get("optimum")]
    count = lambda tool, key: sum(1 for e in done if e[tool][key])  # noqa: E731
    lines.append("")
    lines.append(f"{len(done)} architectures: zoo exported {count('zoo', 'exported')}, verified "
                 f"{count('zoo', 'validated')}; optimum exported {count('optimum', 'exported')}, validated "
                 f"{count('optimum', 'validated')}.")
    if ratios:
        lines.append(f"Median ratio zoo / optimum over the {len(ratios)} architectures zoo verified and optimum exported: "
                     f"wall time {statistics.median(ratios):.2f}, CPU time (user + sys) "
                     f"{statistics.median(cpu_ratios):.2f}, peak RSS {statistics.median(rss_ratios):.2f}.")
    return "\n".join(lines)


def main() -> int:
    import coverage_archs

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated names of bench/coverage_archs.py ARCHS "
                                       "(default: its SELECTION of 40)")
    parser.add_argument("--all", action="store_true", help="every architecture of ARCHS (69)")
    parser.add_argument("--tools", default="zoo,optimum")
    parser.add_argument("--optimum-python", default=str(ROOT / ".zoo-bench" / "optimum-venv" / "bin" / "python"))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results-coverage.json")
    parser.add_argument("--table", action="store_true", help="print the table of --json and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs of every run)")
    parser.add_argument("--merge", help="comma-separated result files of portions run apart: their architectures "
                                        "(each tool's row) go into --json")
    args = parser.parse_args()
    results = json.loads(args.json.read_text()).get("architectures", {}) if args.json.exists() else {}
    if args.merge:
        for part in args.merge.split(","):
            for name, entry in json.loads(Path(part).read_text())["architectures"].items():
                results.setdefault(name, {}).update(entry)
        _write(args.json, results, args.optimum_python)
    if args.table or args.merge:
        print(table(results))
        return 0
    names = args.only.split(",") if args.only else list(coverage_archs.ARCHS if args.all else coverage_archs.SELECTION)
    unknown = [n for n in names if n not in coverage_archs.ARCHS]
    if unknown:
        raise SystemExit(f"unknown architectures {unknown}; known: {', '.join(coverage_archs.ARCHS)}")
    tools = args.tools.split(",")
    if "optimum" in tools and not Path(args.optimum_python).exists():
        raise SystemExit(f"{args.optimum_python} is missing: make the optimum venv first (bench/README.md)")
    import builders

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-coverage-"))
    (tmp / "logs").mkdir()
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env.pop("ZOO_DEBUG", None)
    try:
        template = tmp / "template"
        subprocess.run([sys.executable, "-m", "zoo", "list", "resnet50", "--limit", "1"], check=True,
                       capture_output=True, env={**env, "ZOO_HOME": str(template)})
        snaps = {}
        for name in names:  # build every repo once; both tools read the same snapshot
            snaps[name] = builders.write_hf_cache(tmp / "hf" / "hub", REPO.format(name), coverage_archs.build(name))
        for name in names:
            task, optimum_task, _ = coverage_archs.ARCHS[name]
            entry = results.setdefault(name, {})
            entry.update({"task": task, "optimum_task": optimum_task})
            if "zoo" in tools:
                entry["zoo"] = run_zoo(name, env, template, tmp)
            if "optimum" in tools:
                entry["optimum"] = run_optimum(name, optimum_task, snaps[name], args.optimum_python, env, tmp)
            z, o = entry.get("zoo") or {}, entry.get("optimum") or {}
            print(f"{name:32} zoo {'V' if z.get('validated') else 'E' if z.get('exported') else '-'} "
                  f"{z.get('wall_s', 0):6.1f} s {z.get('peak_rss_mb') or 0:5} MB  optimum "
                  f"{'V' if o.get('validated') else 'E' if o.get('exported') else '-'} {o.get('wall_s', 0):6.1f} s "
                  f"{o.get('peak_rss_mb') or 0:5} MB  {z.get('error', '')[:60]} {o.get('error', '')[:60]}", flush=True)
            _write(args.json, results, args.optimum_python)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(results))
    return 0


def _write(path: Path, results: dict, optimum_python: str) -> None:
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("torch", "transformers", "onnxruntime", "onnx")}
    opt = {}
    if Path(optimum_python).exists():
        code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                "('optimum-onnx', 'optimum', 'transformers', 'torch', 'onnxruntime', 'onnx')}))")
        try:
            opt = json.loads(subprocess.run([optimum_python, "-c", code], capture_output=True, text=True).stdout)
        except ValueError:
            opt = {}
    path.write_text(json.dumps({"cpus": os.cpu_count(), "zoo_env": versions, "optimum_env": opt,
                                "architectures": results}, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

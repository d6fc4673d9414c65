"""The text and audio task families to jax, tf, tflite and pt2 (issue 14): per family and format, `zoo pull`
from an offline Hugging Face cache of the tests' tiny repos (tests/task_builders.py), recording whether it was
verified, its max abs diff, the task checks' verdict (which checks ran on which sets, and passed), the route that
won (tools and rung), the wall time, and, for a red cell, the exit code and zoo's message.

Each pull is a fresh process with its own ZOO_HOME (nothing cached from an earlier code), run under ``nice``;
``--allow-mismatch`` keeps a failed parity's report (quarantined, never verified) so its figures are recorded.
A quantised tflite variant is pulled only where the family's float ``tflite`` passed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_task_targets.py [--families bert-fill,llama] [--formats jax,tf]
        [--json bench/results-task-targets.json] [--timeout 900]
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
FORMATS = ["pt2", "jax", "tf", "tflite", "tflite-fp16", "tflite-int8"]
VARIANTS = {"tflite-fp16", "tflite-int8"}


def families() -> dict[str, tuple[str, object]]:
    """family -> (repo id, builder)."""
    import task_builders as tb

    return {
        "bert-fill-mask": ("zoo-test/tiny-bert-fill-mask", lambda: tb.bert_head_repo("fill-mask")),
        "bert-token-classification": ("zoo-test/tiny-bert-token-classification",
                                      lambda: tb.bert_head_repo("token-classification")),
        "bert-question-answering": ("zoo-test/tiny-bert-question-answering",
                                    lambda: tb.bert_head_repo("question-answering")),
        "wav2vec2-ctc": ("zoo-test/tiny-wav2vec2-ctc", tb.wav2vec2_ctc_repo),
        "wav2vec2-audio-classification": ("zoo-test/tiny-wav2vec2-audio", tb.wav2vec2_audio_classifier_repo),
        "llama": ("zoo-test/tiny-llama", lambda: tb.decoder_repo("llama")),
        "gpt2": ("zoo-test/tiny-gpt2", lambda: tb.decoder_repo("gpt2")),
        "gpt2-256": ("zoo-test/gpt2-256", lambda: tb.decoder_repo("gpt2", hidden=256, init=0.02)),
    }


def task_verdict(parity: dict) -> dict:
    """Per check: sets passed / run, and the first failure's reason."""
    checks: dict[str, list] = {}
    for t in parity.get("tasks") or []:
        checks.setdefault(t["check"], []).append(t.get("passed"))
    failed = next((t for t in parity.get("tasks") or [] if t.get("passed") is False), None)
    return {"checks": {k: f"{sum(1 for v in vs if v)}/{len(vs)}" for k, vs in checks.items()},
            "failed": f"{failed['check']} on {failed['input_set']}: {failed.get('reason')}" if failed else None}


def winner(conversion: dict) -> str:
    routes = conversion.get("routes") or []
    won = next((r for r in routes if r.get("won")), None)
    if won:
        return f"{won['route']} ({', '.join(won['tools'])}{', static shapes' if won['rung'] == 'static shapes' else ''})"
    return conversion.get("chain") or ""


def pull(repo: str, fmt: str, env: dict, home: Path, timeout: int) -> dict:
    start = time.perf_counter()
    cmd = ["nice", sys.executable, "-m", "zoo", "pull", f"hf:{repo}", "--format", fmt, "--allow-mismatch", "--json"]
    try:
        proc = subprocess.run(cmd, check=False, env={**env, "ZOO_HOME": str(home)}, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"exit": None, "error": f"timed out after {timeout} s", "seconds": round(time.perf_counter() - start, 1)}
    row: dict = {"exit": proc.returncode, "seconds": round(time.perf_counter() - start, 1)}
    lines = proc.stdout.strip().splitlines()
    out = None
    if lines:
        try:
            out = json.loads(lines[-1])
        except ValueError:
            out = None
    if out and out.get("artifact_dir"):
        manifest = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())
        p, conversion = manifest["parity"], manifest.get("conversion") or {}
        row.update(verified=bool(out.get("verified")), passed=bool(p.get("passed")), max_abs_diff=p.get("max_abs_diff"),
                   atol=(p.get("tolerance") or {}).get("atol"), task=task_verdict(p), route=winner(conversion),
                   error=(p.get("error") or None) and p["error"][:400],
                   routes=[{k: r.get(k) for k in ("route", "rung", "result", "reason")} for r in conversion.get("routes") or []],
                   warnings=[w[:200] for w in p.get("warnings") or []], divergence=p.get("divergence"))
    else:
        err = [x for x in proc.stderr.strip().splitlines() if x.startswith("zoo: error") or x.startswith("zoo: hint")]
        row["error"] = " / ".join(err)[:800] or proc.stderr.strip()[-800:]
        if out:
            row["routes"] = [{k: r.get(k) for k in ("route", "rung", "result", "reason")} for r in out.get("routes") or []]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="", help="comma-separated substrings of the families to run")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results-task-targets.json")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    from builders import write_hf_cache

    wanted = [f for f in args.families.split(",") if f]
    chosen = {k: v for k, v in families().items() if not wanted or any(w in k for w in wanted)}
    formats = [f for f in args.formats.split(",") if f]
    results = json.loads(args.json.read_text()) if args.json.exists() else {"rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        for family, (repo, builder) in chosen.items():
            write_hf_cache(Path(tmp) / "hf" / "hub", repo, builder())
            for fmt in formats:
                if fmt in VARIANTS and not (results["rows"].get(family, {}).get("tflite") or {}).get("verified"):
                    continue
                row = pull(repo, fmt, env, Path(tmp) / f"zoo-{family}-{fmt}", args.timeout)
                results["rows"].setdefault(family, {})[fmt] = {"repo": repo, **row}
                print(family, fmt, json.dumps({k: row.get(k) for k in ("exit", "verified", "max_abs_diff", "task", "route",
                                                                       "seconds", "error")}), file=sys.stderr, flush=True)
                results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

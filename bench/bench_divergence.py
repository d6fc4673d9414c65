"""Where the red int8 cells diverge (issue 14): YOLOS, SegFormer, Wav2Vec2 CTC and Wav2Vec2 audio-classification
pulled to ``tflite-int8`` (their tiny repos from tests/task_builders.py in an offline Hugging Face cache), each a
fresh ``zoo pull hf:REPO --format tflite-int8 --allow-mismatch --json`` process; from the quarantined artifact's
``zoo.json`` it records the parity report's ``divergence``: the input set the locator ran on and why, the first
node out of the elementwise tolerance (or none), where the relative error grows most over its inputs', and the
largest relative error, with op types and the tflite tensors' readable labels.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_divergence.py [--families yolos,wav2vec2-ctc] \
        [--out bench/results-divergence.json]
    .venv/bin/python bench/bench_divergence.py --markdown   # the table of docs/parity-matrix.md
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
FAMILIES = {  # family -> (repo id, builder name in tests/task_builders.py)
    "yolos": ("zoo-test/tiny-yolos", "yolos_repo"),
    "segformer": ("zoo-test/tiny-segformer", "segformer_repo"),
    "wav2vec2-ctc": ("zoo-test/tiny-wav2vec2-ctc", "wav2vec2_ctc_repo"),
    "wav2vec2-audio-classification": ("zoo-test/tiny-wav2vec2-audio", "wav2vec2_audio_classifier_repo"),
}


def node_of(row: dict | None) -> dict | None:
    """The figures of one located node, without litert-torch's full module-path tensor name."""
    if not row:
        return None
    keys = ("label", "op_type", "index", "max_rel_diff", "max_abs_diff", "input_rel_diff", "growth", "elements_out")
    return {k: row[k] for k in keys if k in row}


def pull(repo: str, env: dict, home: Path, timeout: int) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "zoo", "pull", f"hf:{repo}", "--format", "tflite-int8", "--allow-mismatch", "--json"]
    proc = subprocess.run(cmd, check=False, env={**env, "ZOO_HOME": str(home)}, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    row: dict = {"exit": proc.returncode, "seconds": round(time.perf_counter() - start, 1)}
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if not out.get("artifact_dir"):
        row["error"] = proc.stderr.strip()[-800:]
        return row
    parity = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["parity"]
    found = parity.get("divergence") or {}
    failed = [f"{t['check']} on {t['input_set']}: {t.get('reason')}" for t in parity.get("tasks") or []
              if t.get("passed") is False]
    row.update(verified=bool(out.get("verified")), passed=bool(parity.get("passed")), task_failures=failed,
               edge=found.get("edge"), input_set=found.get("input_set"), why=found.get("why"),
               compared=found.get("compared"), first=node_of(found) if found.get("node") else None,
               note=found.get("note"), grows_most=node_of(found.get("grows_most")), worst=node_of(found.get("worst")))
    return row


def markdown(results: dict) -> str:
    rows = ["| family | input set (why) | first node out of tolerance (op, rel. error) | error grows most at "
            "(op: rel. error in -> out) | largest rel. error (op) |", "|---|---|---|---|---|"]
    for family, r in results["cells"].items():
        first = r.get("first")
        grows, worst = r.get("grows_most") or {}, r.get("worst") or {}
        first_text = (f"#{first['index']} `{first['label']}` ({first['op_type']}, {first['max_rel_diff']:.3f})"
                      if first else f"none of {r.get('compared')} tensors")
        grows_text = (f"#{grows['index']} `{grows['label']}` ({grows['op_type']}: {grows['input_rel_diff']:.3f} -> "
                      f"{grows['max_rel_diff']:.3f})" if grows else "-")
        worst_text = f"#{worst['index']} `{worst['label']}` ({worst['op_type']}, {worst['max_rel_diff']:.3f})" if worst else "-"
        rows.append(f"| {family} | {r.get('input_set')} ({r.get('why')}) | {first_text} | {grows_text} | {worst_text} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-divergence.json")
    parser.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    import task_builders as tb
    from builders import write_hf_cache

    results = json.loads(args.out.read_text()) if args.out.exists() else {"cells": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        for family in args.families.split(","):
            repo, builder = FAMILIES[family]
            write_hf_cache(Path(tmp) / "hf" / "hub", repo, getattr(tb, builder)())
            row = pull(repo, env, Path(tmp) / f"zoo-{family}", args.timeout)
            results["cells"][family] = {"repo": repo, **row}
            results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            print(family, json.dumps({k: row.get(k) for k in ("exit", "input_set", "first", "grows_most", "seconds")}),
                  file=sys.stderr, flush=True)
            args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

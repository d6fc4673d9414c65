"""A decoder over 2 GB through `zoo pull`: ONNX external data, verified for real, and the conversion's peak
memory against the weights' size (issue 11: "conversion must not need much more than a few copies of its
weights").

A Llama with one layer, hidden 2048 and an untied 131072-token vocabulary (2.36 GB of float32 weights, seeded
random) is written into a fresh Hugging Face cache (tests/task_builders.py ``large_decoder_cache``) and pulled
with the real `zoo pull` in a subprocess (offline, a fresh ZOO_HOME). Peak RSS is the child's ``ru_maxrss``
(resource.getrusage(RUSAGE_CHILDREN)), which covers the whole pull: hashing, loading the safetensors, running
the source on the parity inputs, the torch.onnx (dynamo) export, onnxruntime's session, the greedy-generation
check against transformers' generate().

    .venv/bin/python bench/bench_external_data.py                      # default model, --format onnx
    .venv/bin/python bench/bench_external_data.py --format onnx-int4   # the same, then 4-bit weights
    .venv/bin/python bench/bench_external_data.py --json bench/results-external-data.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
REPO = "zoo-bench/llama-2gb"


def pull(root: Path, fmt: str, extra: tuple[str, ...] = ()) -> dict:
    """`zoo pull REPO --format fmt --json` in a child; its result, wall time and peak RSS."""
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "ZOO_HOME": str(root / "zoo"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoo", "pull", REPO, "--format", fmt, "--json", *extra], env=env,
                          capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if proc.returncode != 0:
        raise SystemExit(f"zoo pull exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"result": out, "wall_s": round(wall, 1), "peak_rss": peak if peak > before * 1024 else None,
            "stderr_tail": proc.stderr[-1500:]}


def main() -> int:
    from task_builders import large_decoder_cache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="onnx")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=131072)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--allow-mismatch", action="store_true", help="report an artifact that fails parity too")
    parser.add_argument("--tmp", type=Path, default=None, help="where the cache and store go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        weights = large_decoder_cache(root / "hf" / "hub", REPO, hidden=args.hidden, vocab=args.vocab)
        built = time.perf_counter() - start
        run = pull(root, args.format, ("--allow-mismatch",) if args.allow_mismatch else ())
        manifest = json.loads((Path(run["result"]["artifact_dir"]) / "zoo.json").read_text())
        gen = next((t for t in manifest["parity"]["tasks"] if t["check"] == "text-generation"), {})
        figures = {
            "model": REPO, "format": args.format, "weights_bytes": weights, "build_s": round(built, 1),
            "pull_wall_s": run["wall_s"], "peak_rss_bytes": run["peak_rss"],
            "peak_rss_over_weights": round(run["peak_rss"] / weights, 2) if run["peak_rss"] else None,
            "verified": run["result"]["verified"], "parity_summary": manifest["parity"].get("summary"), "files": {f["path"]: f["size"] for f in manifest["files"]},
            "external_data": manifest["conversion"].get("external_data"),
            "exporter": manifest["conversion"].get("exporter"),
            "generation": {k: gen.get("figures", {}).get(k) for k in ("identical", "next_token_agreement",
                                                                     "max_logit_rel_diff")},
            "cpus": os.cpu_count(),
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The encoder-decoder families (T5, BART, Marian, mT5, Whisper) to pt2, jax, tf and tflite (issue 14): per family and
format, `zoo pull` from an offline Hugging Face cache of the tests' tiny repos (tests/task_builders.py), recording
whether it was verified, the generation check's figures (tokens identical to generate()'s, the largest logits and
encoder-output differences as a share of their range), the route, the wall time, and, for a red cell, the exit code
and zoo's message. The pulls are bench_task_targets.pull's: a fresh process and ZOO_HOME each, under ``nice``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_seq2seq_targets.py [--families t5,whisper] [--formats pt2,jax]
        [--json bench/results-seq2seq-targets.json] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
FORMATS = ["pt2", "jax", "tf", "tflite"]


def families() -> dict[str, tuple[str, object]]:
    import task_builders as tb

    return {"t5": ("zoo-test/tiny-t5", tb.t5_repo), "bart": ("zoo-test/tiny-bart", tb.bart_repo),
            "marian": ("zoo-test/tiny-marian", tb.marian_repo), "mt5": ("zoo-test/tiny-mt5", tb.mt5_repo),
            "whisper": ("zoo-test/tiny-whisper", tb.whisper_repo)}


def generation_figures(artifact_dir: str | None) -> dict | None:
    if not artifact_dir:
        return None
    manifest = json.loads((Path(artifact_dir) / "zoo.json").read_text())
    gen = next((t for t in manifest["parity"].get("tasks") or [] if t["check"] == "text2text-generation"), None)
    if gen is None:
        return None
    f = gen.get("figures") or {}
    return {"passed": gen.get("passed"), "identical": f.get("identical"), "new_tokens": f.get("new_tokens"),
            "samples": f.get("samples"), "max_logit_rel_diff": f.get("max_logit_rel_diff"),
            "max_encoder_rel_diff": f.get("max_encoder_rel_diff"), "reason": (gen.get("reason") or "")[:300] or None,
            "files": (manifest.get("conversion") or {}).get("files")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results-seq2seq-targets.json")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    from bench_task_targets import pull
    from builders import write_hf_cache

    wanted = [f for f in args.families.split(",") if f]
    chosen = {k: v for k, v in families().items() if not wanted or k in wanted}
    results = json.loads(args.json.read_text()) if args.json.exists() else {"rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        for family, (repo, builder) in chosen.items():
            write_hf_cache(Path(tmp) / "hf" / "hub", repo, builder())
            for fmt in [f for f in args.formats.split(",") if f]:
                home = Path(tmp) / f"zoo-{family}-{fmt}"
                row = pull(repo, fmt, env, home, args.timeout)
                art = next(iter(sorted((home / "artifacts").glob("*/zoo.json"))), None) or \
                    next(iter(sorted((home / "quarantine").glob("*/zoo.json"))), None)
                row["generation"] = generation_figures(str(art.parent) if art else None)
                results["rows"].setdefault(family, {})[fmt] = {"repo": repo, **row}
                print(family, fmt, json.dumps({k: row.get(k) for k in ("exit", "verified", "generation", "route",
                                                                       "seconds", "error")}), file=sys.stderr, flush=True)
                results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

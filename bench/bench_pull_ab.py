"""``zoo pull`` of the same tiny repos by two checkouts of zoo, alternated: what a change costs or saves per model.

    .venv/bin/python bench/bench_pull_ab.py --old /work/wt/OLD --only t5,bart,whisper --rounds 4 [--json OUT]

The repos of ``bench/coverage_archs.py`` (``--only``) are written once into a fresh offline Hugging Face cache;
then, per round and architecture, ``zoo pull zoo-bench/tiny-NAME --format onnx --json`` runs in a subprocess under
``/usr/bin/time -v`` from each checkout (its own ``.venv/bin/python``, its directory as working directory and
``PYTHONPATH``, a fresh ``ZOO_HOME``), the order swapped every round (old-new, new-old, ...) so that the load of a
shared machine hits both alike. Reported per architecture and side: the median CPU time (user + sys) and wall time,
and whether every run verified. The CPU time is the figure to compare on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bench_coverage import REPO, timed  # noqa: E402


def pull(root: Path, name: str, env: dict, template: Path, tmp: Path, tag: str) -> dict:
    home = tmp / f"home-{tag}-{name}"
    shutil.copytree(template, home)
    r = timed([str(root / ".venv" / "bin" / "python"), "-m", "zoo", "pull", REPO.format(name), "--format", "onnx",
               "--json"], {**env, "ZOO_HOME": str(home), "PYTHONPATH": str(root)}, tmp / "logs" / f"{tag}-{name}.log")
    shutil.rmtree(home, ignore_errors=True)
    try:
        verified = bool(json.loads(r["stdout"].strip().splitlines()[-1]).get("verified"))
    except (IndexError, ValueError):
        verified = False
    return {"cpu_s": r["cpu_s"], "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "verified": verified}


def main() -> int:
    import builders
    import coverage_archs

    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True, help="the other checkout (with its own .venv)")
    parser.add_argument("--only", default="t5,bart,whisper")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sides = {"old": args.old.resolve(), "new": ROOT}
    names = args.only.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-ab-"))
    (tmp / "logs").mkdir()
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ZOO_DEBUG", None)
    runs: dict = {n: {s: [] for s in sides} for n in names}
    try:
        templates = {}
        for side, root in sides.items():  # each checkout indexes its own registry template
            templates[side] = tmp / f"template-{side}"
            subprocess.run([str(root / ".venv" / "bin" / "python"), "-m", "zoo", "list", "resnet50", "--limit", "1"],
                           check=True, capture_output=True, cwd=root,
                           env={**env, "ZOO_HOME": str(templates[side]), "PYTHONPATH": str(root)})
        for name in names:
            builders.write_hf_cache(tmp / "hf" / "hub", REPO.format(name), coverage_archs.build(name))
        for rnd in range(args.rounds):
            order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
            for name in names:
                for side in order:
                    row = pull(sides[side], name, env, templates[side], tmp, f"{side}{rnd}")
                    runs[name][side].append(row)
                    print(f"round {rnd} {name:8} {side}: cpu {row['cpu_s']:6.2f} s wall {row['wall_s']:6.2f} s "
                          f"verified {row['verified']}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    print(f"\n{'arch':8} {'old CPU':>8} {'new CPU':>8} {'new/old':>8} {'old wall':>9} {'new wall':>9}  verified")
    for name in names:
        med = {s: {k: statistics.median(r[k] for r in runs[name][s]) for k in ("cpu_s", "wall_s")} for s in sides}
        ok = all(r["verified"] for s in sides for r in runs[name][s])
        summary[name] = {**{f"{s}_median": med[s] for s in sides}, "verified": ok}
        print(f"{name:8} {med['old']['cpu_s']:8.2f} {med['new']['cpu_s']:8.2f} "
              f"{med['new']['cpu_s'] / med['old']['cpu_s']:8.2f} {med['old']['wall_s']:9.2f} "
              f"{med['new']['wall_s']:9.2f}  {ok}")
    if args.json:
        args.json.write_text(json.dumps({"old": str(sides["old"]), "rounds": args.rounds, "summary": summary,
                                         "runs": runs, "cpus": os.cpu_count()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Feed header bombs to ``zoo import`` and report, per bomb, the exit code, the wall time and the
peak resident memory of the zoo process (``wait4``'s ``ru_maxrss``), beside the same figures for
``python -c 'import zoo'``-level baseline work (a tiny genuine archive import).

Bombs (built here, streamed to disk, never held in memory):
- ``tar-pax-header``: a 0.8 MB .tar.gz whose first header is an 800 MB pax header;
- ``tar-gnu-long-name``: the same with an 800 MB GNU long name;
- ``safetensors-flood``: a model directory whose model.safetensors header lists 1.4 million
  empty tensors (about 80 MB of header);
- ``safetensors-count``: 150 000 empty tensors (9 MB of header: under the size cap, over the count cap).

Targets (issue 12): refused with exit 7, under 1 s and under 200 MB each.

    .venv/bin/python bench/bench_bombs.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))


# A fresh, small process forks and execs zoo and reports the child's rusage: on Linux a child's
# ru_maxrss starts from its parent's RSS at fork, so the bench itself (which built the bombs) must not be it.
_MEASURE = """import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "zoo", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status), "seconds": round(time.perf_counter() - start, 2),
                  "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}))
"""


def _run(args: list[str], env: dict[str, str], logs: Path) -> dict[str, float | int | str]:
    with open(logs / "err", "w+") as err:
        out = subprocess.run([sys.executable, "-c", _MEASURE, *args], env=env, stdout=subprocess.PIPE,
                             stderr=err, text=True, check=True).stdout
        err.seek(0)
        text = err.read()
    message = next((line for line in text.splitlines() if line.startswith("zoo: error:")), text.strip()[-160:])
    return {**json.loads(out.strip().splitlines()[-1]), "message": message[:200], "stderr_bytes": len(text)}


def main() -> None:
    import hostile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-bombs-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "ZOO_HOME": str(work / "home"), "HF_HOME": str(work / "hf"), "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
        cases: dict[str, list[str]] = {}
        cases["tar-pax-header"] = [str(hostile.header_bomb(work / "pax.tar.gz", "pax", 800 << 20))]
        cases["tar-gnu-long-name"] = [str(hostile.header_bomb(work / "longname.tar.gz", "longname", 800 << 20))]
        for name, tensors in (("safetensors-flood", 1_400_000), ("safetensors-count", 150_000)):
            model = work / name
            model.mkdir()
            (model / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 10}))
            (model / "model.safetensors").write_bytes(hostile.safetensors_flood(tensors))
            cases[name] = [str(model)]
        baseline = work / "genuine.tar.gz"
        import tarfile

        with tarfile.open(baseline, "w:gz") as tar:
            tar.add(work / "safetensors-count" / "config.json", "model/config.json")
        cases["baseline: a 1-file archive (no weights)"] = [str(baseline)]
        results = {}
        for name, target in cases.items():
            size = sum(f.stat().st_size for f in Path(target[0]).rglob("*")) if Path(target[0]).is_dir() else Path(target[0]).stat().st_size
            results[name] = {"input_mb": round(size / 2**20, 2), **_run(["import", *target, "--name", "bomb"], env, work)}
            r = results[name]
            print(f"{name:40s} {r['input_mb']:8.2f} MB in  exit {r['exit_code']}  {r['seconds']:5.2f} s  "
                  f"peak {r['peak_rss_mb']:7.1f} MB  | {r['message']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

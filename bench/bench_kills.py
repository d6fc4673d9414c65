"""SIGKILL ``zoo pull`` at random moments, then check that the next pull recovers
and the cache verifies clean. Prints the figures the crash-safety issue asks for:
kills tried / runs recovered / corrupt artifacts found.

One ``ZOO_HOME`` and one Hugging Face cache serve the whole run, so whatever a
killed pull leaves behind (staging directories, lock files, ``.incomplete``
downloads, an artifact published but not indexed) is what the next pull meets.
Before each round the artifact is removed (and, every other round, the model's
Hugging Face cache too), so the killed pull has real work to do; the hub stalls
the weights download for a moment, so kills land in the download as well as in
the conversion and the publish. Where each kill landed is read from the
``ZOO_TEST_PAUSE_AT`` markers (written with a zero pause at every stage).

    .venv/bin/python bench/bench_kills.py [--rounds 12] [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

STAGES = ("fetch.downloaded", "convert.exported", "publish.staged", "publish.renamed")
REPO_ID = "zoo-bench/kill-resnet"


def _env(base: Path, markers: Path | None, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    env.update(ZOO_HOME=str(base / "zoo"), HF_HOME=str(base / "hf"), HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO_ROOT),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", ZOO_DOWNLOAD_BACKOFF_S="0.1")
    if markers is not None:
        env.update(ZOO_TEST_PAUSE_AT=",".join(STAGES), ZOO_TEST_PAUSE_S="0", ZOO_TEST_HOOK_DIR=str(markers))
    return env


def _zoo(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _landed(markers: Path, pid: int) -> str:
    reached = [s for s in STAGES if (markers / f"{s}.{pid}").exists()]
    return {None: "resolve/download", "fetch.downloaded": "load/export", "convert.exported": "parity/publish",
            "publish.staged": "publish (before rename)", "publish.renamed": "index (after rename)"}[reached[-1] if reached else None]


def run(rounds: int, seed: int, keep: bool) -> dict:
    from builders import timm_repo
    from hubserver import HubServer, Repo

    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="zoo-kills-"))
    with HubServer([Repo(REPO_ID, timm_repo("test_resnet.r160_in1k"))]) as hub:
        env = _env(base, None, hub.endpoint)
        t0 = time.perf_counter()
        first = _zoo(env, "pull", REPO_ID, "--json")
        full = time.perf_counter() - t0
        assert first.returncode == 0, first.stderr[-2000:]
        tally: Counter = Counter()
        rows = []
        for i in range(rounds):
            _zoo(env, "cache", "rm", REPO_ID)
            shutil.rmtree(base / "zoo" / "pulls", ignore_errors=True)
            if i % 2:
                shutil.rmtree(base / "hf" / "hub" / f"models--{REPO_ID.replace('/', '--')}", ignore_errors=True)
            hub.fault(REPO_ID, "model.safetensors", "stall", after=rng.randrange(1, 1_800_000), seconds=1.0)
            markers = base / f"markers-{i}"
            proc = subprocess.Popen([sys.executable, "-m", "zoo", "pull", REPO_ID, "--json"], env=_env(base, markers, hub.endpoint),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            delay = rng.uniform(0.2, full)
            time.sleep(delay)
            alive = proc.poll() is None
            if alive:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            hub.clear_faults()
            where = _landed(markers, proc.pid) if alive else "after exit (no kill)"
            recovery = _zoo(env, "pull", REPO_ID, "--json")
            ok = recovery.returncode == 0 and json.loads(recovery.stdout.splitlines()[-1]).get("verified") is True
            verify = _zoo(env, "cache", "verify", "--json")
            report = json.loads(verify.stdout.splitlines()[-1]) if verify.stdout.strip() else {"corrupt": -1}
            corrupt = sum(1 for r in report.get("results", []) if not r["ok"])
            tally.update(kills=int(alive), recovered=int(alive and ok), corrupt=corrupt, failed_recoveries=int(not ok))
            rows.append({"round": i, "delay_s": round(delay, 2), "killed": alive, "landed": where, "recovered": ok,
                         "corrupt": corrupt, "verify_exit": verify.returncode})
            print(f"round {i:2d}: kill at {delay:5.2f}s -> {where:24s} recovered={ok} corrupt={corrupt}", flush=True)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return {"rounds": rounds, "seed": seed, "cold_pull_s": round(full, 2), "kills_tried": tally["kills"],
            "runs_recovered": tally["recovered"], "failed_recoveries": tally["failed_recoveries"],
            "corrupt_artifacts_found": tally["corrupt"], "landed": dict(Counter(r["landed"] for r in rows)), "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary ZOO_HOME and HF cache")
    args = parser.parse_args()
    result = run(args.rounds, args.seed, args.keep)
    print(f"kills tried: {result['kills_tried']}, runs recovered: {result['runs_recovered']}, "
          f"corrupt artifacts found: {result['corrupt_artifacts_found']} (landed: {result['landed']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["failed_recoveries"] == 0 and result["corrupt_artifacts_found"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

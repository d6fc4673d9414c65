"""Benchmark ``zoo pull`` against the bare library calls it wraps, in one run.

Two questions, each answered by wall time of real subprocesses (python start-up included):

1. Cold pull (weights in the Hugging Face cache, nothing converted yet): ``zoo pull NAME --format onnx
   --json`` in a fresh ``ZOO_HOME`` versus a bare script doing what zoo must do at least once (import
   torch and timm, build the model, load the safetensors, ``torch.onnx.export`` with the exporter zoo uses
   (TorchScript, which ``--exporter auto`` tries first), open one
   onnxruntime session, one torch forward and one ORT run). Target: zoo / bare <= 1.3.
2. Cached pull (the artifact is already there): ``zoo pull NAME --format onnx`` versus ``hf download
   REPO`` on the same cache, offline and online against a local hub server. Target: zoo no slower.
   A cached pull must not import torch, timm or onnxruntime (checked with ``python -X importtime``).

The weights are random (timm's ``save_for_hf`` of a seeded model, in the exact HF cache layout), so
no hub access is needed. Usage::

    .venv/bin/python bench/bench_pull.py [--model resnet50.a1_in1k] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # builders.py and hubserver.py (they import each other flat)

BIN = Path(sys.executable).parent
COLD_TARGET = 1.3  # zoo / bare, cold
CACHED_TARGET = 1.0  # zoo / hf download, cached
HEAVY_MODULES = ("torch", "timm", "onnxruntime")
DIM_MAX_BATCH = 4096  # as converters/edges/torch_onnx.py
EXAMPLE_BATCH = 2  # zoo exports at its first parity input set (batch 2)

# Variables that would let a run escape the sandbox built here (or change what it measures).
_SCRUB = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HF_HOME", "HUGGING_FACE_HUB_TOKEN",
          "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE", "HF_ASSETS_CACHE", "TRANSFORMERS_OFFLINE",
          "ZOO_HOME", "ZOO_DATABASE_URL", "ZOO_DEBUG", "ZOO_SERVER")

BARE_SCRIPT = r'''
"""The bare library calls a cold zoo pull wraps: build, load, export, one ORT session, one check."""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch, timm
import onnxruntime as ort
from safetensors.torch import load_file
t_import = time.perf_counter()

arch, weights, out, c, h, w, batch_max = sys.argv[1:8]
model = timm.create_model(arch, pretrained=False)
model.load_state_dict(load_file(weights))
model.eval()
t_load = time.perf_counter()

x = torch.randn(%(batch)d, int(c), int(h), int(w), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    # the exporter zoo's --exporter auto picks first (and keeps, when parity passes): TorchScript
    torch.onnx.export(model, (x,), out, input_names=["input"], output_names=["logits"], opset_version=18,
                      dynamo=False, dynamic_axes={"input": {0: "batch"}}, do_constant_folding=True)
t_export = time.perf_counter()

with torch.no_grad():
    ref = model(x).numpy()
session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
got = session.run(None, {"input": x.numpy()})[0]
t_check = time.perf_counter()
print(json.dumps({"max_abs_diff": float(np.abs(ref - got).max()), "import_s": t_import - t0,
                  "build_load_s": t_load - t_import, "export_s": t_export - t_load, "check_s": t_check - t_export}))
''' % {"batch": EXAMPLE_BATCH}

STAGES_SCRIPT = r'''
"""One cold zoo pull in-process, timing zoo's internal steps (names that no longer exist are skipped)."""
import functools, sys, time
T0 = time.perf_counter()
acc = {}

def add(label, secs):
    acc.setdefault(label, []).append(secs)

def wrap(owner, name, label):
    f = getattr(owner, name, None)
    if f is None:
        return
    @functools.wraps(f)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            add(label, time.perf_counter() - t)
    setattr(owner, name, timed)

from zoo import pipeline
from zoo.converters.edges import torch_onnx
from zoo.converters.loaders import torch_models as loading
from zoo.converters.parity import check as parity, inputs, runners
from zoo.options import Options
from zoo.sources import hub
from zoo.storage import artifacts as store
add("import zoo.pipeline", time.perf_counter() - T0)
for owner, name, label in [
    (hub.RecordSource, "fetch", "fetch (cache scan + sha256 of source files)"), (pipeline, "cache_key", "cache_key"),
    (pipeline, "lookup", "lookup"), (loading, "build_model", "build_model (import torch+timm, create, load)"),
    (inputs, "parity_input_sets", "parity_input_sets (random + sample images)"),
    (torch_onnx, "export_onnx", "export_onnx (torch.onnx)"), (parity, "check_parity", "check_parity (all sets)"),
    (torch_onnx, "write_metadata", "write_metadata"), (store.ArtifactStore, "publish", "store.publish"),
]:
    wrap(owner, name, label)
make_torch, make_onnx = runners.torch_runner, runners.onnx_runner

def per_call(run, label):
    def timed(feeds):
        t = time.perf_counter()
        out = run(feeds)
        add(label, time.perf_counter() - t)
        return out
    return timed

def torch_runner(tm):
    return per_call(make_torch(tm), "  torch forward, per input set")

def onnx_runner(path):
    t = time.perf_counter()
    run = make_onnx(path)
    add("ORT import + session", time.perf_counter() - t)
    return per_call(run, "  ORT run, per input set")

runners.torch_runner, runners.onnx_runner = torch_runner, onnx_runner
t = time.perf_counter()
result = pipeline.pull(sys.argv[1], Options(format="onnx"))
add("pull() total", time.perf_counter() - t)
assert not result.cached
for label, secs in acc.items():
    each = f"  ({', '.join(f'{x:.2f}' for x in secs)})" if len(secs) > 1 else ""
    print(f"{label:48s} {sum(secs):6.2f} s{each}")
'''


# --- environment and subprocesses ------------------------------------------------------------------


def base_env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_UPDATE_CHECK="1")
    return env


def offline(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def online(env: dict[str, str], endpoint: str, **extra: str) -> dict[str, str]:
    return {**env, "HF_ENDPOINT": endpoint, **extra}


def _busy_cpu_s() -> float:
    """CPU-seconds all CPUs have spent busy since boot (/proc/stat), or NaN where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]  # user..steal (guest is inside user)
    except (OSError, ValueError):
        return float("nan")
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def timed(cmd: list[str], env: dict[str, str], what: str) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one subprocess, start to exit; raises with its stderr if it fails.

    Also left on ``proc``: ``cpu_s``, the child's CPU time (user + sys, from rusage), and ``other_cores``,
    how many cores other processes kept busy meanwhile on average (all busy CPU time from /proc/stat,
    less the child's and this process's own). On a shared machine that is what skews wall times.
    """
    child0, self0 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    busy0 = _busy_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    busy1 = _busy_cpu_s()
    child1, self1 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    own = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    proc.cpu_s = cpu  # type: ignore[attr-defined]
    proc.other_cores = max(busy1 - busy0 - cpu - own, 0.0) / elapsed  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise SystemExit(f"bench: {what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return elapsed, proc


def timed_clean(attempt, what: str, args, discarded: list[dict[str, Any]]
                ) -> tuple[float, subprocess.CompletedProcess]:
    """``timed(*attempt())``, run again (up to ``--retries`` times) while other processes kept more than
    ``--max-other-load`` cores busy; the last attempt is kept, flagged by its ``other_cores``."""
    for n in range(args.retries + 1):
        cmd, env = attempt()
        secs, proc = timed(cmd, env, what)
        if not proc.other_cores > args.max_other_load or n == args.retries:  # NaN (no /proc/stat): keep it
            return secs, proc
        discarded.append({"what": what, "wall_s": secs, "other_cores": proc.other_cores})
        say(f"  {what}: other processes kept {proc.other_cores:.2f} cores busy ({secs:.2f} s); running it again")
        time.sleep(args.retry_pause)
    raise AssertionError("unreachable")


def machine_load(label: str, log: list[dict[str, Any]]) -> None:
    """Record (and warn about) load from other processes before a section."""
    busy0 = _busy_cpu_s()
    time.sleep(1.0)
    other = max(_busy_cpu_s() - busy0, 0.0)
    log.append({"before": label, "other_cores": round(other, 2), "loadavg": [round(x, 2) for x in os.getloadavg()]})
    if other > 0.3:
        say(f"WARNING: other processes keep {other:.1f} cores busy before {label}; wall times will be inflated "
            "(torch's OpenMP threads suffer most) and contended runs will be repeated")


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count()}
    try:
        out["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    for dist in ("torch", "timm", "onnx", "onnxscript", "onnxruntime", "huggingface_hub", "safetensors", "zoo-hub"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- setup -----------------------------------------------------------------------------------------


def pull_name(model: str) -> str:
    """The name a user types: the bare arch when ``model`` is its default tag, else ``arch.tag``."""
    from timm.models import get_pretrained_cfg

    arch = model.split(".", 1)[0]
    cfg = get_pretrained_cfg(arch)
    return arch if cfg is not None and f"{arch}.{cfg.tag}" == model else model


def build_cache(model: str, hf_home: Path) -> tuple[str, dict[str, bytes], Path, tuple[int, int, int]]:
    from builders import timm_repo, write_hf_cache
    from timm.models import get_pretrained_cfg

    repo_id = f"timm/{model}"
    files = timm_repo(model, seed=0)
    snapshot = write_hf_cache(hf_home / "hub", repo_id, files)
    input_size = tuple(get_pretrained_cfg(model).input_size)
    return repo_id, files, snapshot, input_size  # type: ignore[return-value]


def index_catalog(work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Index timm's catalog once into a template registry.db; time it (fresh home vs indexed home)."""
    template = work / "template-home"
    cmd = [str(BIN / "zoo"), "list", "resnet50", "--limit", "1", "--json"]
    fresh_s, _ = timed(cmd, offline(env, ZOO_HOME=str(template)), "zoo list (fresh ZOO_HOME, indexes timm)")
    indexed = sorted(timed(cmd, offline(env, ZOO_HOME=str(template)), "zoo list (indexed)")[0] for _ in range(3))
    return {"template_home": template, "fresh_s": fresh_s, "indexed_s": indexed[1],
            "index_s": fresh_s - indexed[1]}


def fresh_home(work: Path, template: Path, label: str) -> Path:
    home = work / "homes" / label
    home.mkdir(parents=True)
    for f in template.glob("registry.db*"):  # the db, plus any -wal/-shm left behind
        shutil.copy2(f, home / f.name)
    return home


# --- 1. cold pull ----------------------------------------------------------------------------------


def bench_cold(args, work: Path, env: dict[str, str], template: Path, name: str, snapshot: Path,
               input_size: tuple[int, int, int]) -> tuple[dict[str, Any], Path]:
    bare_py = work / "bare_export.py"
    bare_py.write_text(BARE_SCRIPT)
    arch = args.model.split(".", 1)[0]
    weights = snapshot / "model.safetensors"
    zoo_cmd = [str(BIN / "zoo"), "pull", name, "--format", "onnx", "--json"]
    zoo_runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    last_home = template
    for i in range(args.repeat):
        order = ("zoo", "bare") if i % 2 == 0 else ("bare", "zoo")  # ABBA: cancel drift between the two
        for kind in order:
            if kind == "zoo":
                homes: list[Path] = []

                def attempt() -> tuple[list[str], dict[str, str]]:
                    homes.append(fresh_home(work, template, f"cold-{i}-{len(homes)}"))
                    return zoo_cmd, offline(env, ZOO_HOME=str(homes[-1]))

                secs, proc = timed_clean(attempt, "cold zoo pull", args, discarded)
                home = homes.pop()
                for h in homes:
                    shutil.rmtree(h)
                out = json.loads(proc.stdout)
                if out.get("cached") or not out.get("verified"):
                    raise SystemExit(f"bench: the cold zoo pull was cached={out.get('cached')}, "
                                     f"verified={out.get('verified')}")
                zoo_runs.append({"wall_s": secs, "cpu_s": proc.cpu_s, "other_cores": proc.other_cores,
                                 "exporter": out["conversion"].get("exporter"),
                                 "max_abs_diff": out["parity"]["max_abs_diff"], "size": out["size"]})
                if last_home != template:
                    shutil.rmtree(last_home)  # keep only the newest store (the artifact is ~100 MB)
                last_home = home
            else:
                onnx_out = work / f"bare-{i}.onnx"
                cmd = [sys.executable, str(bare_py), arch, str(weights), str(onnx_out), *map(str, input_size),
                       str(DIM_MAX_BATCH)]
                secs, proc = timed_clean(lambda: (cmd, offline(env)), "bare export script", args, discarded)
                figures = json.loads(proc.stdout.strip().splitlines()[-1])
                bare_runs.append({"wall_s": secs, "cpu_s": proc.cpu_s, "other_cores": proc.other_cores, **figures})
                onnx_out.unlink(missing_ok=True)
            say(f"cold {kind:4} #{i + 1}/{args.repeat}: {secs:6.1f} s wall, {proc.cpu_s:6.1f} s CPU, "
                f"other load {proc.other_cores:.2f} cores")
    zoo_med = statistics.median(r["wall_s"] for r in zoo_runs)
    bare_med = statistics.median(r["wall_s"] for r in bare_runs)
    zoo_cpu = statistics.median(r["cpu_s"] for r in zoo_runs)
    bare_cpu = statistics.median(r["cpu_s"] for r in bare_runs)
    return {"zoo_s": zoo_med, "bare_s": bare_med, "ratio": zoo_med / bare_med, "target": COLD_TARGET,
            "ok": zoo_med / bare_med <= COLD_TARGET, "zoo_cpu_s": zoo_cpu, "bare_cpu_s": bare_cpu,
            "cpu_ratio": zoo_cpu / bare_cpu, "zoo_runs": zoo_runs, "bare_runs": bare_runs, "discarded": discarded,
            "bare_breakdown_median": {k: statistics.median(r[k] for r in bare_runs)
                                      for k in ("import_s", "build_load_s", "export_s", "check_s")}}, last_home


# --- 2. cached pull --------------------------------------------------------------------------------


def bench_cached(args, n: int, zoo_env: dict[str, str], hf_env: dict[str, str], name: str, repo_id: str,
                 label: str, server=None) -> dict[str, Any]:
    zoo_cmd = [str(BIN / "zoo"), "pull", name, "--format", "onnx"]
    hf_cmd = [str(BIN / "hf"), "download", repo_id]
    times: dict[str, list[float]] = {"zoo": [], "hf": []}
    cpu: dict[str, list[float]] = {"zoo": [], "hf": []}
    other: dict[str, list[float]] = {"zoo": [], "hf": []}
    discarded: list[dict[str, Any]] = []
    requests: dict[str, list[str]] = {}
    for i in range(n):
        for kind in (("zoo", "hf") if i % 2 == 0 else ("hf", "zoo")):
            def attempt() -> tuple[list[str], dict[str, str]]:
                if server is not None:
                    server.clear()
                return (zoo_cmd, zoo_env) if kind == "zoo" else (hf_cmd, hf_env)

            secs, proc = timed_clean(attempt, f"cached {label} {kind}", args, discarded)
            if kind == "zoo" and "cached" not in proc.stdout:
                raise SystemExit(f"bench: the {label} zoo pull was not a cache hit:\n{proc.stdout}{proc.stderr}")
            times[kind].append(secs)
            cpu[kind].append(proc.cpu_s)
            other[kind].append(proc.other_cores)
            if server is not None and kind not in requests:
                requests[kind] = [f"{m} {p}" for m, p in server.requests]
    zoo_med, hf_med = statistics.median(times["zoo"]), statistics.median(times["hf"])
    say(f"cached {label}: zoo {zoo_med:.3f} s, hf download {hf_med:.3f} s (median of {n})")
    out: dict[str, Any] = {"zoo_s": zoo_med, "hf_s": hf_med, "ratio": zoo_med / hf_med, "target": CACHED_TARGET,
                           "ok": zoo_med <= hf_med * CACHED_TARGET, "n": n, "zoo_runs": times["zoo"],
                           "hf_runs": times["hf"], "zoo_cpu_s": statistics.median(cpu["zoo"]),
                           "hf_cpu_s": statistics.median(cpu["hf"]), "other_cores": other, "discarded": discarded}
    if server is not None:
        out["requests"] = requests
    return out


def check_imports(zoo_env: dict[str, str], name: str) -> dict[str, Any]:
    """``python -X importtime -m zoo pull`` once: no heavy framework may appear; top imports by cumulative."""
    cmd = [sys.executable, "-X", "importtime", "-m", "zoo", "pull", name, "--format", "onnx"]
    _, proc = timed(cmd, zoo_env, "importtime zoo pull")
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, cum_us, mod = (part.strip() for part in line.split(":", 1)[1].split("|"))
        rows.append((mod, int(self_us), int(cum_us)))
    heavy = sorted({mod for mod, _, _ in rows if mod.split(".")[0] in HEAVY_MODULES})
    top_level = sorted(((m, c) for m, s, c in rows if "." not in m), key=lambda r: -r[1])[:12]
    return {"heavy_modules": heavy, "ok": not heavy, "n_modules": len(rows),
            "total_import_s": sum(s for _, s, _ in rows) / 1e6,
            "top_level_cumulative_ms": [(m, round(c / 1000, 1)) for m, c in top_level]}


# --- optional profile ------------------------------------------------------------------------------


def profile_cold(work: Path, env: dict[str, str], template: Path, name: str) -> dict[str, Any]:
    """Step timings of one more cold pull, and cProfile's top functions of another."""
    stages_py = work / "pull_stages.py"
    stages_py.write_text(STAGES_SCRIPT)
    home = fresh_home(work, template, "profile-stages")
    secs, proc = timed([sys.executable, str(stages_py), name], offline(env, ZOO_HOME=str(home)), "step-timed pull")
    stages = proc.stdout.strip().splitlines() + [f"{'wall, python start to exit':48s} {secs:6.2f} s"]
    shutil.rmtree(home)
    home = fresh_home(work, template, "profile-cprofile")
    prof = work / "cold.prof"
    timed([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "zoo", "pull", name, "--format", "onnx"],
          offline(env, ZOO_HOME=str(home)), "cProfile'd pull")
    shutil.rmtree(home)
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(prof), stream=buf).sort_stats("cumulative").print_stats(40)
    return {"stages_wall_s": secs, "stages": stages, "cprofile_top": buf.getvalue(), "cprofile_file": str(prof)}


# --- report ----------------------------------------------------------------------------------------


def table(res: dict[str, Any]) -> str:
    cold, off, on, imp, idx = res["cold"], res["cached_offline"], res["cached_online"], res["imports"], res["index"]
    ok = lambda flag: "OK" if flag else "MISSED"  # noqa: E731
    rows = [
        ("", "zoo", "baseline", "zoo/base", "target", ""),
        (f"cold pull, median of {len(cold['zoo_runs'])} (vs bare script)", f"{cold['zoo_s']:.2f} s",
         f"{cold['bare_s']:.2f} s", f"{cold['ratio']:.2f}", f"<= {COLD_TARGET}", ok(cold["ok"])),
        (f"cached pull offline, median of {off['n']} (vs hf download)", f"{off['zoo_s']:.3f} s",
         f"{off['hf_s']:.3f} s", f"{off['ratio']:.2f}", f"<= {CACHED_TARGET}", ok(off["ok"])),
        (f"cached pull online, median of {on['n']} (vs hf download)", f"{on['zoo_s']:.3f} s",
         f"{on['hf_s']:.3f} s", f"{on['ratio']:.2f}", f"<= {CACHED_TARGET}", ok(on["ok"])),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    b = cold["bare_breakdown_median"]
    heavy = "no" if imp["ok"] else "YES: " + ", ".join(imp["heavy_modules"][:8])
    worst_cold = max(r["other_cores"] for r in cold["zoo_runs"] + cold["bare_runs"])
    worst_cached = max(max(v) for d in (off, on) for v in d["other_cores"].values())
    lines += [
        "",
        f"CPU time (user+sys, median): cold zoo {cold['zoo_cpu_s']:.2f} s vs bare {cold['bare_cpu_s']:.2f} s "
        f"(ratio {cold['cpu_ratio']:.2f}); cached offline zoo {off['zoo_cpu_s']:.3f} s vs hf {off['hf_cpu_s']:.3f} s; "
        f"online zoo {on['zoo_cpu_s']:.3f} s vs hf {on['hf_cpu_s']:.3f} s",
        f"bare script breakdown (median): import {b['import_s']:.2f} s, build+load {b['build_load_s']:.2f} s, "
        f"export {b['export_s']:.2f} s, forward+ORT session+run {b['check_s']:.2f} s",
        f"timm catalog index, once per ZOO_HOME and timm version (not in the cold figure): {idx['index_s']:.2f} s "
        f"(zoo list on a fresh home {idx['fresh_s']:.2f} s vs {idx['indexed_s']:.2f} s indexed)",
        f"cached zoo pull imports torch/timm/onnxruntime: {heavy} ({imp['n_modules']} modules, "
        f"{imp['total_import_s']:.3f} s of imports under -X importtime)",
        "  heaviest top-level imports (cumulative ms): "
        + ", ".join(f"{m} {c}" for m, c in imp["top_level_cumulative_ms"][:8]),
        "other processes' load (cores busy): before sections "
        + ", ".join(f"{m['before']} {m['other_cores']:.2f}" for m in res["machine_load"])
        + f"; worst kept run: cold {worst_cold:.2f}, cached {worst_cached:.2f}; runs repeated for contention: "
        f"{len(cold['discarded']) + len(off['discarded']) + len(on['discarded'])}",
        f"online requests per run: zoo {len(on['requests'].get('zoo', []))} {on['requests'].get('zoo')}; "
        f"hf download {len(on['requests'].get('hf', []))} {on['requests'].get('hf')}",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50.a1_in1k", help="timm arch.tag (default: resnet50.a1_in1k)")
    p.add_argument("--repeat", type=int, default=3, help="cold runs of each kind (default: 3)")
    p.add_argument("--cached-repeat", type=int, default=10, help="cached runs of each kind per mode (default: 10)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--max-other-load", type=float, default=0.25, metavar="CORES",
                   help="run a measurement again when other processes kept more cores than this busy (default: 0.25)")
    p.add_argument("--retries", type=int, default=3, help="at most this many repeats of a contended run (default: 3)")
    p.add_argument("--retry-pause", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help="also step-time and cProfile one extra cold pull")
    p.add_argument("--keep", action="store_true", help="keep the work directory (and the cProfile file)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, not only on heavy imports")
    args = p.parse_args()
    if args.repeat < 1 or args.cached_repeat < 1:
        p.error("--repeat and --cached-repeat must be >= 1")

    from hubserver import HubServer, Repo

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    hf_home = work / "hf"
    env = base_env(hf_home)
    res: dict[str, Any] = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                           "model": args.model, "environment": versions(), "machine_load": []}
    load = res["machine_load"]
    try:
        say(f"building timm/{args.model} (random weights) into {hf_home}")
        repo_id, files, snapshot, input_size = build_cache(args.model, hf_home)
        name = pull_name(args.model)
        res.update(repo_id=repo_id, pull_name=name, commit=snapshot.name,
                   weights_bytes=len(files.get("model.safetensors", b"")))
        say("warming the page cache (import torch, timm, onnxruntime once)")
        timed([sys.executable, "-c", "import torch, timm, onnxruntime, onnxscript"], offline(env), "warm-up")
        say("indexing timm's catalog into a template registry.db")
        idx = index_catalog(work, env)
        template = idx.pop("template_home")
        res["index"] = idx
        say(f"index: {idx['index_s']:.2f} s")

        machine_load("cold pulls", load)
        res["cold"], home = bench_cold(args, work, env, template, name, snapshot, input_size)
        zoo_env = offline(env, ZOO_HOME=str(home))
        timed([str(BIN / "zoo"), "pull", name, "--format", "onnx"], zoo_env, "cached warm-up")
        machine_load("cached offline", load)
        res["cached_offline"] = bench_cached(args, args.cached_repeat, zoo_env, offline(env), name, repo_id,
                                             "offline")
        with HubServer([Repo(repo_id, files)]) as server:
            zoo_on, hf_on = online(env, server.endpoint, ZOO_HOME=str(home)), online(env, server.endpoint)
            timed([str(BIN / "zoo"), "pull", name, "--format", "onnx"], zoo_on, "online warm-up")
            machine_load("cached online", load)
            res["cached_online"] = bench_cached(args, args.cached_repeat, zoo_on, hf_on, name, repo_id, "online",
                                                server)
        res["imports"] = check_imports(zoo_env, name)
        if args.profile:
            say("profiling one more cold pull (step timings, then cProfile)")
            res["profile"] = profile_cold(work, env, template, name)
            if not args.keep:
                del res["profile"]["cprofile_file"]
    finally:
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    report = table(res)
    res["table"] = report
    print(f"\nzoo pull benchmark: {res['repo_id']} (random weights, {res['weights_bytes'] / 1e6:.1f} MB), "
          f"`zoo pull {name}`; {res['environment']['cpu_count']} CPUs, python {res['environment']['python']}, "
          f"torch {res['environment']['torch']}, timm {res['environment']['timm']}, "
          f"onnxruntime {res['environment']['onnxruntime']}, huggingface_hub {res['environment']['huggingface_hub']}\n")
    print(report)
    if "profile" in res:
        print("\ncold pull steps (one extra run, timed in-process):\n  " + "\n  ".join(res["profile"]["stages"]))
        print("\ncProfile (cumulative) of one extra cold pull:\n" + res["profile"]["cprofile_top"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}")
    if not res["imports"]["ok"]:
        print("bench: FAILED: a cached zoo pull imported " + ", ".join(res["imports"]["heavy_modules"][:8]),
              file=sys.stderr)
        return 1
    missed = [k for k in ("cold", "cached_offline", "cached_online") if not res[k]["ok"]]
    if missed and args.strict:
        print(f"bench: targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

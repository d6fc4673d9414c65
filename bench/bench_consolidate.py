"""Consolidating sharded training checkpoints: zoo against the tools that ship with the frameworks.

    .venv/bin/python bench/bench_consolidate.py                 # a 200 MB model (fp32), 2 ranks, 3 rounds
    .venv/bin/python bench/bench_consolidate.py --mb 1024 --rounds 3 --keep --json /tmp/consolidate.json
    .venv/bin/python bench/bench_consolidate.py --reuse /tmp/bench-consolidate-XXXX --rounds 5   # kept checkpoints

Two real checkpoints of the same MLP (``--mb`` of fp32 parameters) are written on the CPU with 2 gloo ranks:
DeepSpeed ZeRO-3 (``engine.save_checkpoint``) and FSDP2 (``fully_shard`` + ``torch.distributed.checkpoint``).
Each consolidation then runs in its own fresh process, zoo and the reference alternated (zoo, reference, zoo,
reference, ...) for ``--rounds`` rounds: wall time from start to exit, CPU time (user + system, from ``wait4``),
the process's own peak resident memory (``VmHWM``) and the 1-minute load average when it started. Each
writes one file to a temporary directory (removed before the next run); nothing is fsynced, on either side.

- ZeRO-3: zoo (``zoo.registry.checkpoints.zero.read`` + ``stream.write``: opcode walk, weights_only loads,
  the header from ``param_shapes``, every tensor checked, written, hashed and read back from the file and
  compared) against DeepSpeed's own script as users run it: ``python zero_to_fp32.py CKPT OUT
  --safe_serialization`` (the installed package's ``deepspeed/utils/zero_to_fp32.py``, the file
  ``save_checkpoint`` copies next to the checkpoint);
- FSDP: zoo (``zoo.registry.checkpoints.dcp.read`` + ``stream.write``) against torch's
  ``python -m torch.distributed.checkpoint.format_utils dcp_to_torch CKPT OUT/model.pt`` (``dcp_to_torch_save``).

The scripts run under ``runpy`` as ``__main__`` (the same code as ``python script.py``), so that the process
can print its own ``VmHWM`` at exit. Both sides produce the same tensors (checked after the rounds, in a
separate process: zoo's output against the reference's, tensor by tensor).
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

TRAIN = r'''
import os, sys, torch
os.environ.update(DS_ACCELERATOR="cpu", LOCAL_RANK=os.environ["RANK"])
kind, out, mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
width = 1024
layers = max(1, int(mb * (1 << 20) / 4 / (width * width + width)))
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
if kind == "zero3":
    import deepspeed
    deepspeed.init_distributed(dist_backend="gloo")
    cfg = {"train_micro_batch_size_per_gpu": 2, "zero_allow_untested_optimizer": True,
           "zero_optimization": {"stage": 3}, "optimizer": {"type": "SGD", "params": {"lr": 0.01}}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
    engine.backward(engine(torch.randn(2, width)).square().mean())
    engine.step()
    engine.save_checkpoint(out)
else:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model(torch.randn(2, width)).square().mean().backward()
    opt.step()
    dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=out)
sys.stdout.flush()
os._exit(0)
'''

ZOO = r'''
import importlib.util, sys; sys.path.insert(0, sys.argv[3])
from pathlib import Path
# zoo.registry is the checkout's registry/ folder (as pyproject's package-dir maps it), whatever is installed
spec = importlib.util.spec_from_file_location("zoo.registry", Path(sys.argv[3]) / "registry" / "__init__.py",
                                              submodule_search_locations=[str(Path(sys.argv[3]) / "registry")])
sys.modules["zoo.registry"] = registry = importlib.util.module_from_spec(spec); spec.loader.exec_module(registry)
from zoo.registry.checkpoints import stream
from zoo.registry.checkpoints.{module} import read
ckpt = read(Path(sys.argv[1]), None)
out = Path(sys.argv[2]) / "model.safetensors"
digests = stream.write(out, ckpt.state, ckpt.stream(), {{k: k for k in ckpt.state}})  # each tensor read back and compared
'''

CONSOLIDATE = {
    "zoo-zero3": ZOO.format(module="zero"),
    "deepspeed-zero_to_fp32": r'''
import runpy, sys
sys.argv = [sys.argv[4], sys.argv[1], sys.argv[2], "--safe_serialization"]  # python zero_to_fp32.py CKPT OUT ...
runpy.run_path(sys.argv[0], run_name="__main__")
''',
    "zoo-dcp": ZOO.format(module="dcp"),
    "torch-dcp_to_torch_save": r'''
import runpy, sys
sys.argv = ["format_utils", "dcp_to_torch", sys.argv[1], sys.argv[2] + "/model.pt"]
runpy.run_module("torch.distributed.checkpoint.format_utils", run_name="__main__", alter_sys=True)
''',
}


def zero_to_fp32_script() -> Path:
    """The installed deepspeed package's zero_to_fp32.py, found without importing deepspeed here."""
    import importlib.util

    spec = importlib.util.find_spec("deepspeed")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("deepspeed is not installed: pip install deepspeed")
    return Path(next(iter(spec.submodule_search_locations))) / "utils" / "zero_to_fp32.py"


def train(kind: str, out: Path, mb: float, work: Path) -> float:
    script = work / "train.py"
    script.write_text(TRAIN)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), kind, str(out), str(mb)],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": port, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    for p in procs:
        log = p.communicate()[0]
        if p.returncode:
            raise SystemExit(f"{kind} training failed:\n{log.decode(errors='replace')[-3000:]}")
    return time.perf_counter() - start


def consolidate(name: str, src: Path, dest: Path, root: Path = ROOT) -> dict[str, float]:
    """One consolidation in a fresh process (zoo's from the checkout at ``root``), into an emptied ``dest``."""
    import shutil

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    code = CONSOLIDATE[name.split("@")[0]] + "\nprint(next(x for x in open('/proc/self/status') if x.startswith('VmHWM:')), flush=True)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(dest), str(root), str(zero_to_fp32_script())],
                            env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"{name} failed:\n{log[-3000:]}")
    hwm = [line.split()[1] for line in log.splitlines() if line.startswith("VmHWM:")]
    # wait4's ru_maxrss can carry a high-water mark from before exec; VmHWM is the process's own peak.
    # cpu_s (user + system of the process): what a shared machine's load distorts least
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
            "vmhwm_mb": round(int(hwm[-1]) / 1024, 1) if hwm else None, "load1": round(load, 2)}


SAME = r'''
import sys, torch
from pathlib import Path
from safetensors.torch import load_file

def load(p):
    f = next(Path(p).iterdir())
    sd = load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, weights_only=True)
    sd = sd["model"] if isinstance(sd.get("model"), dict) else sd
    return {k.removeprefix("model."): v for k, v in sd.items()}

x, y = load(sys.argv[1]), load(sys.argv[2])
print(set(x) == set(y) and all(x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]) for k in x))
'''


def same_tensors(a: Path, b: Path) -> bool:
    """zoo's output against the reference's, tensor by tensor (names, dtypes, values), in its own process so
    this one never holds torch (a child's wait4 figures can carry the parent's high-water mark)."""
    out = subprocess.run([sys.executable, "-c", SAME, str(a), str(b)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def _median(values: list[float]) -> float:
    import statistics

    return round(statistics.median(values), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="model size in MB of fp32 parameters (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated zoo / reference runs of each (default 3)")
    ap.add_argument("--only", choices=("zero3", "dcp"), help="one kind of checkpoint only")
    ap.add_argument("--reuse", type=Path, help="a directory an earlier --keep run left (its zero3/ and dcp/)")
    ap.add_argument("--before", type=Path, help="an older checkout of zoo (git archive COMMIT | tar -x -C DIR): its "
                    "consolidation runs too, alternated with this one's ('zoo-...@before')")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    work = args.reuse or Path(tempfile.mkdtemp(prefix="bench-consolidate-"))
    results: dict = {"model_mb": args.mb, "ranks": 2, "cpus": os.cpu_count(), "rounds": args.rounds,
                     "command": " ".join(["bench/bench_consolidate.py", *sys.argv[1:]])}
    for kind, ours, theirs in (("zero3", "zoo-zero3", "deepspeed-zero_to_fp32"),
                               ("dcp", "zoo-dcp", "torch-dcp_to_torch_save")):
        if args.only and kind != args.only:
            continue
        src = work / kind
        if not args.reuse:
            results[f"{kind}_train_s"] = round(train(kind if kind == "zero3" else "fsdp", src, args.mb, work), 1)
        names = (ours, theirs, f"{ours}@before") if args.before else (ours, theirs)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names:
                root = args.before.resolve() if name.endswith("@before") else ROOT
                runs[name].append(consolidate(name, src, work / "out" / name, root))
                x = runs[name][-1]
                print(f"{kind:6} round {r + 1} {name:24} wall {x['wall_s']:6.2f} s  cpu {x['cpu_s']:6.2f} s "
                      f"(user {x['user_s']:5.2f} sys {x['sys_s']:5.2f})  VmHWM {x['vmhwm_mb']:7.1f} MB  "
                      f"load {x['load1']:.1f}", flush=True)
        same = same_tensors(work / "out" / ours, work / "out" / theirs)
        summary = {name: {"median_wall_s": _median([x["wall_s"] for x in xs]),
                          "median_cpu_s": _median([x["cpu_s"] for x in xs]),
                          "vmhwm_mb": max(x["vmhwm_mb"] or 0 for x in xs)} for name, xs in runs.items()}
        summary["zoo_over_reference"] = {
            k: round(summary[ours][f"median_{k}_s"] / summary[theirs][f"median_{k}_s"], 3) for k in ("wall", "cpu")}
        results[kind] = {"runs": runs, "summary": summary, "same_tensors": same}
        print(f"{kind:6} medians: {ours} wall {summary[ours]['median_wall_s']} s cpu {summary[ours]['median_cpu_s']} s; "
              f"{theirs} wall {summary[theirs]['median_wall_s']} s cpu {summary[theirs]['median_cpu_s']} s; "
              f"zoo/reference {summary['zoo_over_reference']}; same tensors: {same}", flush=True)
        import shutil

        shutil.rmtree(work / "out", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.keep and not args.reuse:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

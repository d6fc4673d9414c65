"""Consolidating sharded training checkpoints: zoo against the tools that ship with the frameworks.

    .venv/bin/python bench/bench_consolidate.py                 # a 200 MB model (fp32), 2 ranks
    .venv/bin/python bench/bench_consolidate.py --mb 1024 --json /tmp/consolidate.json

Two real checkpoints of the same MLP (``--mb`` of fp32 parameters) are written on the CPU with 2 gloo ranks:
DeepSpeed ZeRO-3 (``engine.save_checkpoint``) and FSDP2 (``fully_shard`` + ``torch.distributed.checkpoint``).
Each consolidation then runs in its own fresh process (wall time from start to exit, peak RSS of that
process from ``wait4``), writing one safetensors / torch file to a temporary directory:

- ZeRO-3: zoo (``zoo.registry.checkpoints.zero.read``: opcode walk, weights_only loads, the header from
  ``param_shapes``, then each tensor merged, checked, hashed and written as it is assembled by
  ``stream.write``, each read back from the file as soon as it is written and compared with the assembled
  bytes) against DeepSpeed's
  ``convert_zero_checkpoint_to_state_dict(..., safe_serialization=True)`` (zero_to_fp32);
- FSDP: zoo (``zoo.registry.checkpoints.dcp.read`` + ``stream.write`` with its read-back check) against torch's
  ``torch.distributed.checkpoint.format_utils.dcp_to_torch_save``.

Both sides produce the same tensors (checked: zoo's output is compared with the reference's, tensor by tensor).
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

CONSOLIDATE = {
    "zoo-zero3": r'''
import sys; sys.path.insert(0, sys.argv[3])
from pathlib import Path
from zoo.registry.checkpoints import stream
from zoo.registry.checkpoints.zero import read
ckpt = read(Path(sys.argv[1]), None)
out = Path(sys.argv[2]) / "model.safetensors"
digests = stream.write(out, ckpt.state, ckpt.stream(), {k: k for k in ckpt.state})  # each tensor read back and compared
''',
    "deepspeed-zero_to_fp32": r'''
import sys
from deepspeed.utils.zero_to_fp32 import convert_zero_checkpoint_to_state_dict
convert_zero_checkpoint_to_state_dict(sys.argv[1], sys.argv[2], safe_serialization=True, max_shard_size=None)
''',
    "zoo-dcp": r'''
import sys; sys.path.insert(0, sys.argv[3])
from pathlib import Path
from zoo.registry.checkpoints import stream
from zoo.registry.checkpoints.dcp import read
ckpt = read(Path(sys.argv[1]), None)
out = Path(sys.argv[2]) / "model.safetensors"
digests = stream.write(out, ckpt.state, ckpt.stream(), {k: k for k in ckpt.state})  # each tensor read back and compared
''',
    "torch-dcp_to_torch_save": r'''
import sys
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
dcp_to_torch_save(sys.argv[1], sys.argv[2] + "/model.pt")
''',
}


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


def consolidate(name: str, src: Path, dest: Path) -> dict[str, float]:
    dest.mkdir(parents=True)
    start = time.perf_counter()
    code = CONSOLIDATE[name] + "\nprint(next(x for x in open('/proc/self/status') if x.startswith('VmHWM:')), flush=True)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(dest), str(ROOT)],
                            env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if status:
        raise SystemExit(f"{name} failed:\n{log[-3000:]}")
    hwm = [line.split()[1] for line in log.splitlines() if line.startswith("VmHWM:")]
    # wait4's ru_maxrss can carry a high-water mark from before exec; VmHWM is the process's own peak.
    # cpu_s (user + system of the process): what a shared machine's load distorts least
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "vmhwm_mb": round(int(hwm[-1]) / 1024, 1) if hwm else None}


def same_tensors(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    def load(p: Path) -> dict:
        f = next(p.iterdir())
        sd = load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, weights_only=True)
        return sd.get("model", sd) if isinstance(sd.get("model"), dict) else sd

    x, y = load(a), load(b)
    y = {k.removeprefix("model."): v for k, v in y.items()}
    x = {k.removeprefix("model."): v for k, v in x.items()}
    return set(x) == set(y) and all(torch.equal(x[k], y[k].to(x[k].dtype)) for k in x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="model size in MB of fp32 parameters (default 200)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-consolidate-"))
    results: dict = {"model_mb": args.mb, "ranks": 2, "cpus": os.cpu_count()}
    for kind, ours, theirs in (("zero3", "zoo-zero3", "deepspeed-zero_to_fp32"),
                               ("dcp", "zoo-dcp", "torch-dcp_to_torch_save")):
        src = work / kind
        results[f"{kind}_train_s"] = round(train(kind if kind == "zero3" else "fsdp", src, args.mb, work), 1)
        for name in (theirs, ours):
            results[name] = consolidate(name, src, work / name)
            print(f"{kind:6} {name:26} wall {results[name]['wall_s']:7.2f} s   cpu {results[name]['cpu_s']:7.2f} s   peak RSS {results[name]['peak_rss_mb']:8.1f} MB"
                  f"   VmHWM {results[name]['vmhwm_mb']} MB", flush=True)
        results[f"{kind}_same_tensors"] = same_tensors(work / ours, work / theirs)
        print(f"{kind:6} same tensors: {results[f'{kind}_same_tensors']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

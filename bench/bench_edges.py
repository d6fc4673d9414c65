"""Every PyTorch-sourced format of resnet50: cold ``zoo pull --format F`` against
the bare library calls of the same chain, plus peak memory, in one run; and
inference latency of zoo's ONNX in onnxruntime against PyTorch eager.

    .venv/bin/python bench/bench_edges.py [--repeat 2] [--json OUT]

Weights are random (timm's save_for_hf of a seeded resnet50 in an offline HF
cache); every measured command is a fresh subprocess (python start included),
and its peak RSS comes from /usr/bin/time.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "onnx-opt", "pt2")

BARE = r'''
import sys, time, numpy as np, torch, timm, onnxruntime as ort
from safetensors.torch import load_file
fmt, weights, out = sys.argv[1], sys.argv[2], sys.argv[3]
m = timm.create_model("resnet50", pretrained=False); m.load_state_dict(load_file(weights)); m.eval()
x = torch.randn(2, 3, 224, 224)
B = torch.export.Dim("batch", min=1, max=4096)
if fmt == "pt2":
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: B},)); torch.export.save(ep, out + ".pt2")
    got = torch.export.load(out + ".pt2").module()(x).detach().numpy()
else:
    torch.onnx.export(m, (x,), out, dynamo=True, dynamic_shapes=({0: B},), input_names=["input"], opset_version=18, verbose=False)
    path = out
    if fmt == "onnx-fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
        onnx.save(convert_float_to_float16(onnx.load(out), keep_io_types=True), out + ".fp16"); path = out + ".fp16"
    elif fmt == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(out, out + ".int8", weight_type=QuantType.QInt8, per_channel=True); path = out + ".int8"
    elif fmt == "onnx-opt":
        so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = out + ".opt"; ort.InferenceSession(out, so); path = out + ".opt"
    got = ort.InferenceSession(path).run(None, {"input": x.numpy()})[0]
with torch.no_grad():
    ref = m(x).numpy()
print(float(np.abs(got - ref).max()))
'''

LATENCY = r'''
import sys, time, json, numpy as np, torch, timm, onnxruntime as ort
from safetensors.torch import load_file
weights, onnx_path = sys.argv[1], sys.argv[2]
m = timm.create_model("resnet50", pretrained=False); m.load_state_dict(load_file(weights)); m.eval()
s = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
out = {}
for b in (1, 8):
    x = np.random.default_rng(0).standard_normal((b, 3, 224, 224)).astype(np.float32)
    t = torch.from_numpy(x)
    with torch.no_grad():
        for _ in range(3): m(t); s.run(None, {"input": x})
        tt, to = [], []
        for _ in range(10):
            a = time.perf_counter(); m(t); tt.append(time.perf_counter() - a)
            a = time.perf_counter(); s.run(None, {"input": x}); to.append(time.perf_counter() - a)
    out[b] = {"torch_ms": 1000 * float(np.median(tt)), "onnxruntime_ms": 1000 * float(np.median(to))}
print(json.dumps(out))
'''


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (from /usr/bin/time), stdout."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return wall, rss_kb // 1024, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from builders import timm_repo, write_hf_cache

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-edges-"))
    try:
        snap = write_hf_cache(tmp / "hf" / "hub", "timm/resnet50.a1_in1k", timm_repo("resnet50.a1_in1k"))
        weights = str(snap / "model.safetensors")
        env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("ZOO_DEBUG", None)
        template = tmp / "template"
        subprocess.run([sys.executable, "-m", "zoo", "list", "resnet50", "--limit", "1"], check=True, capture_output=True,
                       env={**env, "ZOO_HOME": str(template)})
        rows = {}
        for fmt in FORMATS:
            zoo_t, bare_t, zoo_m, bare_m = [], [], [], []
            for i in range(args.repeat):
                home = tmp / f"home-{fmt}-{i}"
                shutil.copytree(template, home)
                wall, rss, _ = timed([sys.executable, "-m", "zoo", "pull", "resnet50", "--format", fmt, "--json"],
                                     {**env, "ZOO_HOME": str(home)})
                zoo_t.append(wall)
                zoo_m.append(rss)
                wall, rss, _ = timed([sys.executable, "-c", BARE, fmt, weights, str(tmp / f"bare-{fmt}-{i}.onnx")], env)
                bare_t.append(wall)
                bare_m.append(rss)
            rows[fmt] = {"zoo_s": statistics.median(zoo_t), "bare_s": statistics.median(bare_t),
                         "ratio": statistics.median(zoo_t) / statistics.median(bare_t),
                         "zoo_peak_mb": max(zoo_m), "bare_peak_mb": max(bare_m)}
            print(f"{fmt:10} zoo {rows[fmt]['zoo_s']:6.2f} s  bare {rows[fmt]['bare_s']:6.2f} s  "
                  f"ratio {rows[fmt]['ratio']:.2f}  peak RSS zoo {max(zoo_m)} MB / bare {max(bare_m)} MB", flush=True)
        onnx_file = next((tmp / "home-onnx-0" / "artifacts").glob("*/model.onnx"))
        _, _, out = timed([sys.executable, "-c", LATENCY, weights, str(onnx_file)], env)
        latency = json.loads(out)
        for b, v in latency.items():
            print(f"latency batch {b}: torch eager {v['torch_ms']:.1f} ms, onnxruntime (zoo's onnx) {v['onnxruntime_ms']:.1f} ms "
                  f"({v['torch_ms'] / v['onnxruntime_ms']:.2f}x)")
        if args.json:
            args.json.write_text(json.dumps({"formats": rows, "latency": latency, "cpus": os.cpu_count()}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

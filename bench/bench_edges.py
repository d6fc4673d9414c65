"""Every format zoo makes of resnet50 and of a BERT-base-sized encoder: cold
``zoo pull --format F`` against the bare library calls of the same chain, with
peak memory, in one run; inference latency of zoo's ONNX in onnxruntime against
PyTorch eager; and, for the encoder, ``optimum-cli export onnx`` end to end.

    .venv/bin/python bench/bench_edges.py [--models resnet50,bert-base] [--formats onnx,pt2]
                                          [--repeat 2] [--optimum-python PATH] [--json OUT]

Weights are random (timm's ``save_for_hf`` of a seeded resnet50, transformers'
``save_pretrained`` of a seeded BERT-base: 12 layers, hidden 768) in an offline
HF cache; every measured command is a fresh subprocess (Python start included),
and its peak RSS comes from ``/usr/bin/time``. optimum-onnx pins transformers
below 5, so it runs from its own virtual environment (``--optimum-python``,
default ``.zoo-bench/optimum-venv/bin/python``; see bench/README.md to make it).
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

# The bare chain for each model: build + load + example inputs (BUILD), then the format's own calls (FORMATS).
BUILD = r'''
import sys, numpy as np, torch, onnxruntime as ort
kind, fmt, src, out, exporter = sys.argv[1:6]
Dim = torch.export.Dim
if kind == "resnet50":
    import timm
    from safetensors.torch import load_file
    m = timm.create_model("resnet50", pretrained=False); m.load_state_dict(load_file(src + "/model.safetensors")); m.eval()
    x = (torch.randn(2, 3, 224, 224),); names = ["input"]
    dyn = ({0: Dim("batch", min=1, max=4096)},)
else:
    from transformers import AutoModel
    inner = AutoModel.from_pretrained(src, attn_implementation="eager").eval()
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.inner = inner
        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return o.last_hidden_state, o.pooler_output
    m = Encoder().eval()
    ids = torch.randint(0, 1000, (2, 16)); x = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    B, S = Dim("batch", min=1, max=4096), Dim("sequence", min=1, max=512)
    dyn = tuple({0: B, 1: S} for _ in x)
feeds = {n: t.numpy() for n, t in zip(names, x)}
def onnx_export(path):  # the exporter zoo used (its --exporter auto tries TorchScript first)
    if exporter == "dynamo":
        torch.onnx.export(m, x, path, dynamo=True, dynamic_shapes=dyn, input_names=names, opset_version=18, verbose=False)
    else:
        axes = {n: {0: "batch"} if kind == "resnet50" else {0: "batch", 1: "sequence"} for n in names}
        torch.onnx.export(m, x, path, dynamo=False, dynamic_axes=axes, input_names=names, opset_version=18,
                          do_constant_folding=True)
'''

FORMATS = {
    "onnx": "onnx_export(out); path = out",
    "onnx-fp16": """onnx_export(out)
import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16
onnx.save(convert_float_to_float16(onnx.load(out), keep_io_types=True), out + ".fp16"); path = out + ".fp16"
""",
    "onnx-int8": """onnx_export(out)
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(out, out + ".int8", weight_type=QuantType.QInt8, per_channel=True, reduce_range=True); path = out + ".int8"
""",
    "onnx-opt": """onnx_export(out)
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
so.optimized_model_filepath = out + ".opt"; ort.InferenceSession(out, so); path = out + ".opt"
""",
    "tf": """onnx_export(out)
import os, onnx2tf, tensorflow as tf
os.chdir(os.path.dirname(out))  # onnx2tf writes beside its working directory
onnx2tf.convert(input_onnx_file_path=out, output_folder_path=out + ".tf", keep_ncw_or_nchw_or_ncdhw_input_names=names,
                output_signaturedefs=True, not_use_onnxsim=True, non_verbose=True, verbosity="error")  # zoo's options
fn = tf.saved_model.load(out + ".tf").signatures["serving_default"]
got = list(fn(**{k: tf.constant(v) for k, v in feeds.items()}).values())[0].numpy(); path = None
""",
    "tflite": """onnx_export(out)
import os, onnx2tf, tensorflow as tf
os.chdir(os.path.dirname(out))
onnx2tf.convert(input_onnx_file_path=out, output_folder_path=out + ".tf", keep_ncw_or_nchw_or_ncdhw_input_names=names,
                output_signaturedefs=True, not_use_onnxsim=True, non_verbose=True, verbosity="error")  # zoo's options
open(out + ".tflite", "wb").write(tf.lite.TFLiteConverter.from_saved_model(out + ".tf").convert())
interp = tf.lite.Interpreter(model_path=out + ".tflite")
for d in interp.get_input_details():
    interp.resize_tensor_input(d["index"], feeds[names[0]].shape)
interp.allocate_tensors()
interp.set_tensor(interp.get_input_details()[0]["index"], feeds[names[0]])
interp.invoke()
got = interp.get_tensor(interp.get_output_details()[0]["index"]); path = None
""",
    "pt2": """ep = torch.export.export(m, x, dynamic_shapes=dyn); torch.export.save(ep, out + ".pt2")
got = torch.export.load(out + ".pt2").module()(*x); got = got[0] if isinstance(got, tuple) else got
got = got.detach().numpy(); path = None
""",
}

CHECK = r'''
if path is not None:
    got = ort.InferenceSession(path).run(None, feeds)[0]
with torch.no_grad():
    ref = m(*x)
ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
print(float(np.abs(got - ref).max()))
'''

LATENCY = r'''
import sys, time, json, numpy as np, torch, onnxruntime as ort
kind, src, onnx_path = sys.argv[1:4]
s = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
names = [i.name for i in s.get_inputs()]
if kind == "resnet50":
    import timm
    from safetensors.torch import load_file
    m = timm.create_model("resnet50", pretrained=False); m.load_state_dict(load_file(src + "/model.safetensors")); m.eval()
    shapes = {"batch 1": (1, 3, 224, 224), "batch 8": (8, 3, 224, 224)}
    make = lambda shape: {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    call = lambda f: m(torch.from_numpy(f["input"]))
else:
    from transformers import AutoModel
    m = AutoModel.from_pretrained(src, attn_implementation="eager").eval()
    shapes = {"batch 1 x 128": (1, 128), "batch 8 x 128": (8, 128)}
    def make(shape):
        ids = np.random.default_rng(0).integers(0, 1000, shape).astype(np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    call = lambda f: m(**{k: torch.from_numpy(v) for k, v in f.items()})
out = {}
for label, shape in shapes.items():
    f = make(shape)
    fo = {n: f[n] for n in names}
    with torch.no_grad():
        for _ in range(3): call(f); s.run(None, fo)
        tt, to = [], []
        for _ in range(10):
            a = time.perf_counter(); call(f); tt.append(time.perf_counter() - a)
            a = time.perf_counter(); s.run(None, fo); to.append(time.perf_counter() - a)
    out[label] = {"torch_ms": 1000 * float(np.median(tt)), "onnxruntime_ms": 1000 * float(np.median(to))}
print(json.dumps(out))
'''

MODELS = {
    # name -> (repo id in the offline cache, name given to zoo pull, builder)
    "resnet50": ("timm/resnet50.a1_in1k", "resnet50", lambda b: b.timm_repo("resnet50.a1_in1k")),
    "bert-base": ("zoo-bench/bert-base", "zoo-bench/bert-base", lambda b: b.bert_repo("base", size="base")),
}


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (from /usr/bin/time), stdout."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-1000:]}\n{proc.stderr[-3000:]}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return wall, rss_kb // 1024, proc.stdout


def bench_formats(model: str, pull_name: str, snap: Path, formats: list[str], repeat: int, tmp: Path,
                  env: dict, template: Path) -> dict:
    rows = {}
    for fmt in formats:
        zoo_t, bare_t, zoo_m, bare_m = [], [], [], []
        for i in range(repeat):  # alternate zoo and bare so drift hits both
            home = tmp / f"home-{model}-{fmt}-{i}"
            shutil.copytree(template, home)
            wall, rss, out = timed([sys.executable, "-m", "zoo", "pull", pull_name, "--format", fmt, "--json"],
                                   {**env, "ZOO_HOME": str(home)})
            zoo_t.append(wall)
            zoo_m.append(rss)
            exporter = json.loads(out.strip().splitlines()[-1])["conversion"].get("exporter", "dynamo")
            script = BUILD + FORMATS[fmt] + CHECK
            wall, rss, _ = timed([sys.executable, "-c", script, model, fmt, str(snap), str(tmp / f"bare-{model}-{fmt}-{i}.onnx"),
                                  exporter], env)
            bare_t.append(wall)
            bare_m.append(rss)
        rows[fmt] = {"exporter": exporter, "zoo_s": statistics.median(zoo_t), "bare_s": statistics.median(bare_t),
                     "ratio": statistics.median(zoo_t) / statistics.median(bare_t),
                     "zoo_peak_mb": max(zoo_m), "bare_peak_mb": max(bare_m)}
        print(f"{model:9} {fmt:10} ({exporter}) zoo {rows[fmt]['zoo_s']:6.2f} s  bare {rows[fmt]['bare_s']:6.2f} s  "
              f"ratio {rows[fmt]['ratio']:.2f}  peak RSS zoo {max(zoo_m)} MB / bare {max(bare_m)} MB", flush=True)
    return rows


def bench_optimum(python: str, snap: Path, pull_name: str, repeat: int, tmp: Path, env: dict, template: Path) -> dict:
    """zoo pull --format onnx against optimum-cli export onnx (its default validation) on the same encoder."""
    zoo_t, opt_t, zoo_m, opt_m = [], [], [], []
    for i in range(repeat):
        home = tmp / f"home-optimum-{i}"
        shutil.copytree(template, home)
        wall, rss, out = timed([sys.executable, "-m", "zoo", "pull", pull_name, "--format", "onnx", "--json"],
                               {**env, "ZOO_HOME": str(home)})
        zoo_t.append(wall)
        zoo_m.append(rss)
        zoo_result = json.loads(out.strip().splitlines()[-1])
        wall, rss, _ = timed([python, "-m", "optimum.commands.optimum_cli", "export", "onnx", "--model", str(snap),
                              "--task", "feature-extraction", "--opset", "18", str(tmp / f"optimum-{i}")], env)
        opt_t.append(wall)
        opt_m.append(rss)
    row = {"zoo_s": statistics.median(zoo_t), "optimum_s": statistics.median(opt_t),
           "ratio": statistics.median(zoo_t) / statistics.median(opt_t), "zoo_peak_mb": max(zoo_m),
           "optimum_peak_mb": max(opt_m), "zoo_parity_sets": len(zoo_result["parity"].get("input_sets", [])),
           "zoo_max_abs_diff": zoo_result["parity"].get("max_abs_diff")}
    print(f"bert-base  onnx zoo {row['zoo_s']:6.2f} s  optimum-cli {row['optimum_s']:6.2f} s  ratio {row['ratio']:.2f}  "
          f"peak RSS zoo {row['zoo_peak_mb']} MB / optimum {row['optimum_peak_mb']} MB", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,bert-base")
    parser.add_argument("--formats", default=",".join(FORMATS), help="text models skip tf and tflite (onnx2tf fails on BERT)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--optimum-python", default=str(ROOT / ".zoo-bench" / "optimum-venv" / "bin" / "python"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import builders

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-edges-"))
    results: dict = {"cpus": os.cpu_count(), "models": {}}
    try:
        env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("ZOO_DEBUG", None)
        template = tmp / "template"
        subprocess.run([sys.executable, "-m", "zoo", "list", "resnet50", "--limit", "1"], check=True, capture_output=True,
                       env={**env, "ZOO_HOME": str(template)})
        for model in args.models.split(","):
            repo_id, pull_name, build = MODELS[model]
            snap = builders.write_hf_cache(tmp / "hf" / "hub", repo_id, build(builders))
            formats = [f for f in args.formats.split(",") if not (model == "bert-base" and f in ("tf", "tflite"))]
            entry = {"formats": bench_formats(model, pull_name, snap, formats, args.repeat, tmp, env, template)}
            if model == "bert-base" and Path(args.optimum_python).exists():
                entry["optimum"] = bench_optimum(args.optimum_python, snap, pull_name, args.repeat, tmp, env, template)
            onnx_file = next((tmp / f"home-{model}-onnx-0" / "artifacts").glob("*/model.onnx"), None)
            if onnx_file is not None:
                _, _, out = timed([sys.executable, "-c", LATENCY, model, str(snap), str(onnx_file)], env)
                entry["latency"] = json.loads(out)
                for label, v in entry["latency"].items():
                    print(f"{model:9} latency {label}: torch eager {v['torch_ms']:.1f} ms, onnxruntime (zoo's onnx) "
                          f"{v['onnxruntime_ms']:.1f} ms ({v['torch_ms'] / v['onnxruntime_ms']:.2f}x)", flush=True)
            results["models"][model] = entry
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

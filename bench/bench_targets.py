"""Every family to tflite and jax (issue 14): per family (resnet-like CNN, ViT, BERT-like encoder) and target,
pass/fail, max abs diff against PyTorch and wall time of

- ``litert``: litert-torch alone (dynamic axes, as a user would call it first; static shapes when that fails),
- ``onnx2tf``: torch.onnx then onnx2tf alone (zoo's onnx -> tflite edge),
- ``jax2tf tflite``: torchax + jax.export, jax2tf's SavedModel, then the TFLite converter (zoo's last route,
  ``graph.DETOURS``), with the source's dynamic axes, then static shapes,
- ``zoo``: zoo's ladder for tflite, in its order (``graph.routes``, ``graph.ladder``): onnx2tf, litert-torch with
  dynamic axes, the jax2tf detour, then the static-shapes rungs (litert-torch, the detour), the first that passes
  (the same rungs as above, timed as zoo runs them: the sum up to the winner),
- ``jax``: torchax + jax.export (symbolic batch/sequence, static when that fails),

then inference latency at batch 1 of each target in its own runtime (onnxruntime, the LiteRT interpreter,
the deserialised jax export under jit) against PyTorch eager, on the same inputs.

Everything runs through zoo's own edge functions (converters/edges/*), in-process, with seeded random
weights. The routes with dynamic axes export at batch 2, as zoo's pipeline does (its first input set), and must
match PyTorch at batch 2 and batch 1; the static-shapes rungs export and are checked at batch 1. Parity here is
those sets at zoo's fp32 tolerance (the pipeline checks several more); latency is at batch 1.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_targets.py [--size small|base] [--target tflite|tf] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def families(size: str):
    import timm
    import torch
    from transformers import BertConfig, BertModel

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    torch.manual_seed(0)
    convnext = timm.create_model("convnext_atto" if size == "small" else "convnext_tiny")
    if size == "base":
        cnn, vit = timm.create_model("resnet50"), timm.create_model("vit_base_patch16_224")
        bert_cfg = BertConfig()  # BERT-base: 12 layers, hidden 768
        seq, hw = 128, 224
    else:
        cnn, vit = timm.create_model("resnet18"), timm.create_model("vit_tiny_patch16_224")
        bert_cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
        seq, hw = 64, 224
    ids = torch.randint(1, bert_cfg.vocab_size, (1, seq))
    mask = torch.ones(1, seq, dtype=torch.long)
    mask[0, seq * 3 // 4:] = 0
    image = {"pixel_values": {0: "batch"}}
    text = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    return [
        ("cnn", cnn.eval(), ["pixel_values"], ["logits"], image, (torch.randn(1, 3, hw, hw),)),
        ("vit", vit.eval(), ["pixel_values"], ["logits"], image, (torch.randn(1, 3, hw, hw),)),
        ("convnext", convnext.eval(), ["pixel_values"], ["logits"], image, (torch.randn(1, 3, hw, hw),)),
        ("bert", Encoder(BertModel(bert_cfg)).eval(), ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"],
         text, (ids, mask)),
    ]


def max_diff(got, ref) -> tuple[float, bool]:
    from zoo.converters.parity.tolerance import default_tolerance

    tol = default_tolerance("float32")
    worst, ok = 0.0, True
    for g, r in zip(got, ref):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        if g.shape != r.shape:
            return float("inf"), False
        d = np.abs(g - r)
        worst = max(worst, float(d.max()))
        ok &= bool(np.all(d <= tol.atol * max(1.0, float(np.abs(r).max())) + tol.rtol * np.abs(r)))
    return worst, ok


def batch_of_two(inputs: list[str], example: tuple) -> tuple:
    """The example with a second, different row: zoo's pipeline exports at its first input set, which has batch 2
    (``random-b2-s0``). Exported at batch 1, ``torch.export`` specialises the batch (its 0/1 rule) and every route
    through it (litert-torch, the jax export's fallback) fails to keep a dynamic batch for the bench's sake only."""
    import torch

    gen = torch.Generator().manual_seed(1)
    second = [torch.randn(t.shape, generator=gen, dtype=t.dtype) if t.is_floating_point()
              else t.clone() if "mask" in n else t.flip(-1) for n, t in zip(inputs, example)]
    return tuple(torch.cat([t, s]) for t, s in zip(example, second))


def checked(path: Path, inputs: list[str], outputs: list[str], sets: list[tuple[dict, list]], static: bool) -> tuple:
    """Max abs diff and pass over the batch-1 set, and the batch-2 set where the artifact is meant to take it."""
    from zoo.converters.parity.runners import artifact_runner

    run = artifact_runner(path, inputs, outputs)
    worst, ok = 0.0, True
    for feeds, ref in sets[:1] if static else sets:
        diff, good = max_diff(run(feeds), ref)
        worst, ok = max(worst, diff), ok and good
    return worst, ok


def latency(fn, feeds, n: int = 20) -> float:
    fn(feeds)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(feeds)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run_family(name, module, inputs, outputs, axes, example, root: Path, reps: int) -> dict:
    from zoo import errors
    from zoo.converters.edges.from_torch import torch_to_onnx
    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.edges.jax_tf import jax_to_tf
    from zoo.converters.edges.litert import torch_to_tflite
    from zoo.converters.edges.tf import onnx_to_tflite, saved_model_to_tflite
    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.parity.runners import artifact_runner, torch_runner

    tm = TorchModel(module, inputs, outputs, axes)
    feeds = {n: t.numpy() for n, t in zip(inputs, example)}
    ref_fn = torch_runner(tm)
    ref = ref_fn(feeds)
    example2 = batch_of_two(inputs, example)
    feeds2 = {n: t.numpy() for n, t in zip(inputs, example2)}
    sets = [(feeds, ref), (feeds2, ref_fn(feeds2))]
    # the longest sequence the model takes (a text model's position embeddings), as the pipeline passes it
    seq_max = getattr(getattr(getattr(module, "model", None), "config", None), "max_position_embeddings", None)
    rows: dict[str, dict] = {}

    def attempt(label: str, fn) -> dict:
        out_dir = root / name / label
        out_dir.mkdir(parents=True)
        t = time.perf_counter()
        try:
            path = fn(out_dir)
            seconds = time.perf_counter() - t
            diff, ok = checked(path, inputs, outputs, sets, "static" in label)
            row = {"passed": ok, "max_abs_diff": diff, "seconds": round(seconds, 2), "path": str(path)}
        except (errors.ZooError, Exception) as exc:  # noqa: BLE001 - a failed conversion is a finding
            row = {"passed": False, "error": f"{type(exc).__name__}: {str(exc)[:160]}",
                   "seconds": round(time.perf_counter() - t, 2)}
        print(f"  {name:5} {label:22} {'PASS' if row['passed'] else 'fail'} {row.get('max_abs_diff', '-')!s:>12} "
              f"{row['seconds']:>7.1f}s {row.get('error', '')[:100]}", flush=True)
        return row

    def ctx(static: bool = False) -> EdgeContext:
        # dynamic routes export at batch 2 as zoo's pipeline does; the static rungs at batch 1, a device's shape
        return EdgeContext(opset=18, example=tuple(example) if static else example2, static_shapes=static,
                           seq_max=seq_max)

    rows["litert (dynamic)"] = attempt("litert (dynamic)", lambda d: torch_to_tflite(tm, d, ctx()))
    rows["litert (static)"] = attempt("litert (static)", lambda d: torch_to_tflite(tm, d, ctx(True)))
    onnx_row = attempt("torch.onnx", lambda d: torch_to_onnx(tm, d, ctx()))
    rows["onnx2tf"] = attempt("onnx2tf", lambda d: onnx_to_tflite(Path(onnx_row["path"]), d, ctx())) \
        if onnx_row.get("path") else {"passed": False, "error": "no ONNX export", "seconds": 0.0}
    rows["onnx2tf"]["seconds"] = round(rows["onnx2tf"]["seconds"] + onnx_row["seconds"], 2)
    jax_row = attempt("jax (dynamic)", lambda d: torch_to_jax(tm, d, ctx()))
    if not jax_row["passed"]:
        jax_row = {**attempt("jax (static)", lambda d: torch_to_jax(tm, d, ctx(True))), "after": jax_row}
    rows["jax"] = jax_row
    for label, static in (("jax2tf tflite (dynamic)", False), ("jax2tf tflite (static)", True)):
        c = ctx(static)

        def detour(d: Path, c=c) -> Path:  # torch -> jax -> tf -> tflite, graph.DETOURS
            (d / "jax").mkdir()
            (d / "tf").mkdir()
            (d / "tflite").mkdir()
            return saved_model_to_tflite(jax_to_tf(torch_to_jax(tm, d / "jax", c), d / "tf", c), d / "tflite", c)

        rows[label] = attempt(label, detour)
    # zoo's ladder for tflite (graph.routes + graph.ladder): every route with the source's dynamic axes, in order
    # (onnx2tf, litert-torch, the jax2tf detour), then the static-shapes rungs; the sum of the rungs' times up to
    # the first that passes
    ladder, spent, won = [("onnx2tf", rows["onnx2tf"]), ("litert (dynamic)", rows["litert (dynamic)"]),
                          ("jax2tf tflite (dynamic)", rows["jax2tf tflite (dynamic)"]),
                          ("litert (static)", rows["litert (static)"]),
                          ("jax2tf tflite (static)", rows["jax2tf tflite (static)"])], 0.0, None
    for label, row in ladder:
        spent += row["seconds"]
        if row["passed"]:
            won = (label, row)
            break
    rows["zoo tflite"] = {"passed": won is not None, "route": won[0] if won else None, "seconds": round(spent, 2),
                          "max_abs_diff": won[1]["max_abs_diff"] if won else None}
    rows["litert alone"] = rows["litert (dynamic)"] if rows["litert (dynamic)"]["passed"] else rows["litert (static)"]
    # latency at batch 1, each in its own runtime
    lat = {"torch eager": latency(ref_fn, feeds, reps)}
    if onnx_row.get("path"):
        lat["onnxruntime"] = latency(artifact_runner(Path(onnx_row["path"]), inputs, outputs), feeds, reps)
    if won:
        lat[f"LiteRT ({won[0]})"] = latency(artifact_runner(Path(won[1]["path"]), inputs, outputs), feeds, reps)
    if rows["jax"]["passed"]:
        lat["jax (jit)"] = latency(artifact_runner(Path(rows["jax"]["path"]), inputs, outputs), feeds, reps)
    return {"family": name, "targets": rows, "latency_ms": {k: round(v, 2) for k, v in lat.items()}}


def run_tf_family(name, module, inputs, outputs, axes, example, root: Path, reps: int) -> dict:
    """``tf``: onnx2tf alone (torch.onnx + onnx2tf), jax2tf (torchax + jax.export, static when the symbolic export
    fails, then jax2tf), zoo's tf ladder in its order (onnx2tf, jax2tf, jax2tf static: the sum up to the winner),
    whether TFLite converts the jax2tf SavedModel, and the SavedModel's latency at batch 1 against torch eager."""
    from zoo.converters.edges.from_torch import torch_to_onnx
    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.edges.jax_tf import jax_to_tf
    from zoo.converters.edges.tf import onnx_to_saved_model, saved_model_to_tflite
    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.parity.runners import artifact_runner, torch_runner

    tm = TorchModel(module, inputs, outputs, axes)
    feeds = {n: t.numpy() for n, t in zip(inputs, example)}
    ref_fn = torch_runner(tm)
    ref = ref_fn(feeds)
    example2 = batch_of_two(inputs, example)
    feeds2 = {n: t.numpy() for n, t in zip(inputs, example2)}
    sets = [(feeds, ref), (feeds2, ref_fn(feeds2))]
    # the longest sequence the model takes (a text model's position embeddings), as the pipeline passes it
    seq_max = getattr(getattr(getattr(module, "model", None), "config", None), "max_position_embeddings", None)

    def attempt(label: str, fn) -> dict:
        out_dir = root / name / label
        out_dir.mkdir(parents=True)
        t = time.perf_counter()
        try:
            path = fn(out_dir)
            seconds = time.perf_counter() - t
            diff, ok = checked(path, inputs, outputs, sets, "static" in label)
            row = {"passed": ok, "max_abs_diff": diff, "seconds": round(seconds, 2), "path": str(path)}
        except Exception as exc:  # noqa: BLE001 - a failed conversion is a finding
            row = {"passed": False, "error": f"{type(exc).__name__}: {str(exc)[:160]}",
                   "seconds": round(time.perf_counter() - t, 2)}
        print(f"  {name:8} {label:22} {'PASS' if row['passed'] else 'fail'} {row.get('max_abs_diff', '-')!s:>12} "
              f"{row['seconds']:>7.1f}s {row.get('error', '')[:100]}", flush=True)
        return row

    def ctx(static: bool = False) -> EdgeContext:
        # dynamic routes export at batch 2 as zoo's pipeline does; the static rungs at batch 1, a device's shape
        return EdgeContext(opset=18, example=tuple(example) if static else example2, static_shapes=static,
                           seq_max=seq_max)

    rows: dict[str, dict] = {}
    onnx_row = attempt("torch.onnx", lambda d: torch_to_onnx(tm, d, ctx()))
    rows["onnx2tf"] = attempt("onnx2tf", lambda d: onnx_to_saved_model(Path(onnx_row["path"]), d, ctx())) \
        if onnx_row.get("path") else {"passed": False, "error": "no ONNX export", "seconds": 0.0}
    rows["onnx2tf"]["seconds"] = round(rows["onnx2tf"]["seconds"] + onnx_row["seconds"], 2)
    for label, static in (("jax2tf (dynamic)", False), ("jax2tf (static)", True)):
        c = ctx(static)

        def jax2tf_route(d: Path, c=c) -> Path:
            (d / "jax").mkdir()
            (d / "tf").mkdir()
            return jax_to_tf(torch_to_jax(tm, d / "jax", c), d / "tf", c)

        rows[label] = attempt(label, jax2tf_route)
    ladder = [("onnx2tf", rows["onnx2tf"]), ("jax2tf (dynamic)", rows["jax2tf (dynamic)"]),
              ("jax2tf (static)", rows["jax2tf (static)"])]
    spent, won = 0.0, None
    for label, row in ladder:
        spent += row["seconds"]
        if row["passed"]:
            won = (label, row)
            break
    rows["zoo tf"] = {"passed": won is not None, "route": won[0] if won else None, "seconds": round(spent, 2),
                      "max_abs_diff": won[1]["max_abs_diff"] if won else None}
    jax2tf = rows["jax2tf (dynamic)"] if rows["jax2tf (dynamic)"]["passed"] else rows["jax2tf (static)"]
    if jax2tf.get("path"):
        rows["tflite from the jax2tf SavedModel"] = attempt(
            "tflite from jax2tf", lambda d: saved_model_to_tflite(Path(jax2tf["path"]), d, ctx()))
    lat = {"torch eager": latency(ref_fn, feeds, reps)}
    if won:
        lat[f"tf ({won[0]})"] = latency(artifact_runner(Path(won[1]["path"]), inputs, outputs), feeds, reps)
    return {"family": name, "targets": rows, "latency_ms": {k: round(v, 2) for k, v in lat.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("small", "base"), default="small")
    ap.add_argument("--only", help="comma-separated families: cnn,vit,bert")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--target", choices=("tflite", "tf"), default="tflite",
                    help="tflite (litert-torch, onnx2tf, jax) or tf (onnx2tf against jax2tf)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in families(args.size):
            if args.only and fam[0] not in args.only.split(","):
                continue
            run = run_tf_family if args.target == "tf" else run_family
            results.append(run(*fam, Path(tmp), args.reps))
    for r in results:
        t = r["targets"]
        print(f"\n{r['family']}: " + " | ".join(
            f"{k}: {'pass' if v['passed'] else 'FAIL'} {v.get('max_abs_diff') if v.get('max_abs_diff') is not None else ''} "
            f"{v['seconds']}s" for k, v in t.items() if k in ("zoo tflite", "litert alone", "onnx2tf", "jax", "zoo tf", "jax2tf (dynamic)", "jax2tf (static)")))
        print("  latency ms (batch 1): " + ", ".join(f"{k} {v}" for k, v in r["latency_ms"].items()))
    if args.json:
        for r in results:
            for v in r["targets"].values():
                v.pop("path", None)
        args.json.write_text(json.dumps({"size": args.size, "target": args.target, "threads": torch.get_num_threads(), "results": results},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()

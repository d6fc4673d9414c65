"""Where onnx2tf goes wrong, zoo against onnx2tf alone (issue 14, "the first diverging node on every edge").

Part 1, ``ops``: a small CNN (conv, ReLU, OP, conv, pooled head; 1x3x32x32) with one op from a list of the
layout-sensitive ones in its middle, exported to ONNX (TorchScript, opset 17). For each:

- zoo: ``zoo convert model.onnx --to tf --json`` in a fresh process and ZOO_HOME: exit code, verdict, the node
  the locator names, the convert and locate stage times (from the progress lines);
- onnx2tf alone, as its README shows it (``onnx2tf -i model.onnx -o out -kat x``): its exit code, and how far its
  SavedModel's output is from onnxruntime's on the same random input (it publishes whatever it converts);
- onnx2tf's own per-op check (``-cotof``, needs ``pip install sne4onnx``): the first op it reports Unmatched.

Part 2, ``size``: timm resnet50 (random weights, 224x224, exported by zoo's own edge) with one conv's weights made
5% off in the copy onnx2tf converts (as tests/test_locate_onnx2tf.py does on a tiny model), to tf and to tflite: the
conversion time, the locator's time, how many tensors it marked and compared, and the node it names.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_onnx2tf_locate.py [--parts ops,size] \
        [--out bench/results-onnx2tf-locate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT / "tests"))
from onnx2tf_cases import OPS, build_op_model  # noqa: E402 - the models tests/test_locate_onnx2tf.py checks
def stage_times(err: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"zoo: (\w+) done in ([\d.]+)s", err)}


def zoo_convert(model: Path, target: str, home: Path) -> dict:
    env = {**os.environ, "ZOO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.time()
    proc = subprocess.run([PY, "-m", "zoo", "convert", str(model), "--to", target, "--json"], capture_output=True,
                          text=True, env=env, cwd=home.parent)
    wall = time.time() - start
    last = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    found = last.get("divergence") or {}
    row = {"exit": proc.returncode, "wall_s": round(wall, 1), "stages_s": stage_times(proc.stderr),
           "verdict": "verified" if proc.returncode == 0 else last.get("error") or "?"}
    if proc.returncode == 6:
        row["worst"] = (last.get("message") or "")[:160]
        row["located"] = {k: found.get(k) for k in ("edge", "node", "op_type", "max_rel_diff", "elements_out",
                                                      "reproduced", "compared", "marked", "note") if found.get(k) is not None}
        grows = found.get("grows_most") or {}
        row["located"]["grows_most"] = grows.get("node")
    elif proc.returncode != 0:
        row["message"] = (last.get("message") or proc.stderr[-300:])[:300]
    return row


def onnx2tf_alone(model: Path, work: Path) -> dict:
    """onnx2tf's own CLI on the model, in ``work`` with the calibration file it would download; its SavedModel's
    output against onnxruntime's on one seeded input."""
    import numpy as np
    import onnxruntime as ort

    from zoo.converters.edges.onnx2tf_worker import write_calibration_file

    work.mkdir()
    write_calibration_file(work)
    out = {}
    start = time.time()
    proc = subprocess.run(["onnx2tf", "-i", str(model), "-o", str(work / "out"), "-kat", "x"], cwd=work,
                          capture_output=True, text=True)
    out["exit"], out["wall_s"] = proc.returncode, round(time.time() - start, 1)
    if proc.returncode == 0:
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        code = ("import sys, numpy as np, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
                "f = m.signatures['serving_default']; x = np.load(sys.argv[2]); "
                "o = list(f(**{list(f.structured_input_signature[1])[0]: tf.constant(x)}).values())[0].numpy(); "
                "np.save(sys.argv[3], o)")
        np.save(work / "x.npy", x)
        run = subprocess.run([PY, "-c", code, str(work / "out"), str(work / "x.npy"), str(work / "y.npy")],
                             capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if run.returncode == 0:
            got = np.load(work / "y.npy")
            out["max_abs_diff"] = float(np.abs(got.reshape(ref.shape) - ref).max()) if got.size == ref.size else None
        else:
            out["run_error"] = run.stderr.strip().splitlines()[-1][:200] if run.stderr.strip() else "?"
    cot = subprocess.run(["onnx2tf", "-i", str(model), "-o", str(work / "cot"), "-kat", "x", "-cotof"], cwd=work,
                         capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", cot.stdout + cot.stderr)
    if "install onnxruntime and sne4onnx" in text:
        out["cotof"] = "not run: pip install sne4onnx"
    else:
        unmatched = re.findall(r"onnx_output_name: (\S+) .*?validate_result:\s+Unmatched", text)
        skipped = re.findall(r"onnx_output_name: (\S+) .*?validate_result:\s+Skipped", text)
        out["cotof_first_unmatched"] = unmatched[0] if unmatched else None
        out["cotof_skipped"] = len(skipped)
    return out


def part_ops(root: Path) -> list[dict]:
    rows = []
    for kind in OPS:
        model = root / f"{kind}.onnx"
        build_op_model(kind, model)
        row = {"op": kind, "zoo_tf": zoo_convert(model, "tf", root / f"home-{kind}"),
               "onnx2tf_alone": onnx2tf_alone(model, root / f"alone-{kind}")}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def part_size(root: Path) -> list[dict]:
    """resnet50 at 224, one conv 5% off in what onnx2tf converts, located to tf and tflite."""
    import numpy as np
    import onnx
    import timm
    import torch
    from onnx import numpy_helper

    import zoo.converters.edges.tf as tf_edges
    from zoo.converters.graph import EdgeContext
    from zoo.converters.parity.onnx2tf_layers import locate_onnx2tf

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    path = root / "resnet50.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    broken = "/layer3/layer3.2/conv2/Conv"
    real_copy = tf_edges._copy_onnx

    def broken_copy(src: Path, dst: Path) -> None:
        m = onnx.load(str(src))
        conv = next(n for n in m.graph.node if n.name == broken)
        for init in m.graph.initializer:
            if init.name == conv.input[1]:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.05), init.name))
        onnx.save(m, str(dst))

    tf_edges._copy_onnx = broken_copy
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    rows = []
    try:
        for target in ("tf", "tflite"):
            out = root / f"size-{target}"
            out.mkdir()
            start = time.time()
            run = tf_edges.onnx_to_saved_model if target == "tf" else tf_edges.onnx_to_tflite
            artifact = run(path, out, EdgeContext(opset=17))
            convert_s = time.time() - start
            start = time.time()
            found = locate_onnx2tf(path, artifact, feeds, ["x"], ["y"], target=target, atol=1e-4, rtol=1e-4)
            row = {"model": "timm resnet50 (random weights) 1x3x224x224", "target": target, "broken": broken,
                   "convert_s": round(convert_s, 1), "locate_s": round(time.time() - start, 1),
                   **{k: found.get(k) for k in ("node", "op_type", "max_rel_diff", "reproduced", "compared", "marked")}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        tf_edges._copy_onnx = real_copy
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="ops,size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-onnx2tf-locate.json")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()[0]}
    from zoo.versions import dist_version

    result["versions"] = {p: dist_version(p) for p in ("onnx2tf", "tensorflow", "onnx", "onnxruntime", "torch")}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-onnx2tf-") as tmp:
        root = Path(tmp)
        if "ops" in parts:
            result["ops"] = part_ops(root)
        if "size" in parts:
            result["size"] = part_size(root)
    result["load_after"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

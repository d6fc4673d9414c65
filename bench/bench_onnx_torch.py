"""ONNX -> PyTorch: zoo's converter (zoo.onnx_torch) against onnx2torch, the
anchor it must beat, on the ONNX files zoo writes for every tiny test family
(torch.onnx dynamo and TorchScript exports, tf2onnx for Keras) and on a
full-size resnet50 (random weights) exported by both exporters.

    .venv/bin/pip install 'zoo-hub[bench]'     # onnx2torch; this script installs nothing
    .venv/bin/python bench/bench_onnx_torch.py [--families a,b] [--no-resnet50] [--json OUT]

Per file and converter: converted or not (with the converter's error), max abs
diff against onnxruntime over batch 1 and 3 (text: sequence 16 and 33 too), and
the conversion time. zoo's time is the whole ONNX -> .pt2 (build, torch.export
with dynamic dims, save); onnx2torch's is its ``convert`` to an eager module,
and the last column says whether that module then survives ``torch.export``
with a dynamic batch (what a .pt2 needs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:160]


def _feed_sets(spec: list[dict[str, Any]], text: bool) -> list[dict[str, Any]]:
    import numpy as np

    shapes = [(1, 16), (3, 16)] + ([(3, 33)] if text else [])
    sets = []
    for seed, (batch, seq) in enumerate(shapes):
        rng = np.random.default_rng(seed)
        feeds = {}
        for item in spec:
            shape = [batch if i == 0 else (seq if not isinstance(d, int) else d) for i, d in enumerate(item["shape"])]
            if item["dtype"] == "float32":
                feeds[item["name"]] = rng.standard_normal(shape).astype(np.float32)
            elif "mask" in item["name"]:
                feeds[item["name"]] = np.ones(shape, np.int64)
            else:
                feeds[item["name"]] = rng.integers(0, 2 if "type" in item["name"] else 100, shape).astype(np.int64)
        sets.append(feeds)
    return sets


def _max_diff(module: Any, spec: list, sets: list, session: Any) -> tuple[float, float]:
    """(max abs diff against onnxruntime, max |onnxruntime output|) over every input set and output."""
    import numpy as np
    import torch

    worst, scale = 0.0, 0.0
    for feeds in sets:
        with torch.no_grad():
            out = module(*[torch.from_numpy(feeds[s["name"]]) for s in spec])
        out = out if isinstance(out, (tuple, list)) else (out,)
        for got, ref in zip(out, session.run(None, feeds)):
            worst = max(worst, float(np.abs(got.detach().numpy() - ref).max()))
            scale = max(scale, float(np.abs(ref).max()))
    return worst, scale


def _source_diff(module: Any, spec: list, sets: list, family: Any) -> float:
    """Max abs diff of the converted program against the model the ONNX file was exported from."""
    import numpy as np
    import torch

    worst = 0.0
    for feeds in sets:
        with torch.no_grad():
            out = module(*[torch.from_numpy(feeds[s["name"]]) for s in spec])
        for got, ref in zip(out, family.reference(feeds)):
            worst = max(worst, float(np.abs(got.numpy() - np.asarray(ref)).max()))
    return worst


def bench_zoo(path: Path, spec: list, sets: list, session: Any, work: Path, family: Any) -> dict[str, Any]:
    from zoo.converters.loaders.pt2_archive import load_program
    from zoo.converters.onnx_torch.module import export_pt2

    start = time.perf_counter()
    try:
        export_pt2(path, work / "model.pt2")
    except Exception as exc:  # noqa: BLE001 - report, do not stop the table
        return {"converted": False, "error": _first_line(exc), "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    module = load_program(work / "model.pt2")[0].module()
    diff, scale = _max_diff(module, spec, sets, session)
    return {"converted": True, "seconds": seconds, "max_abs_diff": diff, "max_abs_output": scale, "pt2": True,
            "source_diff": _source_diff(module, spec, sets, family)}


def bench_onnx2torch(path: Path, spec: list, sets: list, session: Any) -> dict[str, Any]:
    import torch
    from onnx2torch import convert

    start = time.perf_counter()
    try:
        module = convert(str(path)).eval()
    except Exception as exc:  # noqa: BLE001
        return {"converted": False, "error": _first_line(exc), "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"converted": True, "seconds": seconds}
    try:
        row["max_abs_diff"], row["max_abs_output"] = _max_diff(module, spec, sets, session)
    except Exception as exc:  # noqa: BLE001 - converted, but fails when run
        row.update(converted=False, error=f"runs but fails: {_first_line(exc)}")
        return row
    example = tuple(torch.from_numpy(sets[1][s["name"]]) for s in spec)
    dynamic = (tuple({i: torch.export.Dim.DYNAMIC for i, d in enumerate(s["shape"]) if not isinstance(d, int)} for s in spec),)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(_positional(module), example, dynamic_shapes=dynamic)
        diff, scale = _max_diff(program.module(), spec, sets[:1], session)
        row["pt2"] = diff <= 1e-4 * max(1.0, scale)
    except Exception as exc:  # noqa: BLE001
        row["pt2"] = False
        row["pt2_error"] = _first_line(exc)
    return row


def _positional(module: Any) -> Any:
    """``module`` behind ``forward(*inputs)``: onnx2torch names its arguments after the graph's inputs."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *inputs: Any) -> Any:
            return self.inner(*inputs)

    return Positional()


def export_files(root: Path, families: list[str], resnet50: bool) -> list[tuple[str, str, Path, Any]]:
    from onnx_families import Family, family_exports

    rows = [(name, exporter, path, family) for (name, exporter), (family, path) in family_exports(families, root=root).items()]
    if resnet50:
        from builders import _timm_model
        from onnx_families import export_family

        from zoo.converters.loaders.torch_models import TorchModel

        module = _timm_model("resnet50", seed=0)  # timm.create_model('resnet50', pretrained=False), seeded norms
        tm = TorchModel(module, ["input"], ["logits"], {"input": {0: "batch"}, "logits": {0: "batch"}})
        family = Family("resnet50", tm, False, (1, 3, 224, 224))
        for exporter in ("dynamo", "torchscript"):
            rows.append(("resnet50 (full size)", exporter, export_family(family, exporter, root / "resnet50" / exporter), family))
    return rows


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not installed"
    if not row["converted"]:
        return f"no: {row['error']}"
    relative = row["max_abs_diff"] / max(row["max_abs_output"], 1e-30)
    return f"yes, {row['max_abs_diff']:.1e} ({relative:.0e} of max), {row['seconds']:.2f} s"


def main() -> int:
    from onnx_families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated family names")
    parser.add_argument("--no-resnet50", action="store_true", help="skip the full-size resnet50")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from zoo.versions import dist_version

    try:
        import onnx2torch  # noqa: F401
        o2t_version = dist_version("onnx2torch") or "installed"
    except ImportError:
        o2t_version = None
        print("onnx2torch is not installed (pip install 'zoo-hub[bench]'): zoo only", file=sys.stderr)
    import onnxruntime as ort
    import torch

    from zoo.converters.parity.inputs import onnx_signature

    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-onnx-torch-") as tmp:
        root = Path(tmp)
        for name, exporter, path, family in export_files(root, args.families.split(","), not args.no_resnet50):
            spec = onnx_signature(path)[0]
            sets = _feed_sets(spec, family.is_text)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            work = root / "work" / name / exporter
            work.mkdir(parents=True)
            row = {"family": name, "exporter": exporter, "size_mb": round(path.stat().st_size / 1e6, 2),
                   "zoo": bench_zoo(path, spec, sets, session, work, family),
                   "onnx2torch": bench_onnx2torch(path, spec, sets, session) if o2t_version else None}
            print(f"{name} {exporter}: zoo {_cell(row['zoo'])} | onnx2torch {_cell(row['onnx2torch'])}", file=sys.stderr)
            results.append(row)
    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
           "onnx2torch": o2t_version, "cpus": __import__("os").cpu_count()}
    print(markdown(results, env))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": results}, indent=1))
    return 0


def markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, onnx2torch {env['onnx2torch']}, "
             f"python {env['python']}, {env['cpus']} CPUs",
             "", "| ONNX file | exporter | zoo.onnx_torch: converted, max abs diff vs ORT, time to .pt2 | zoo .pt2 vs source model | "
                 "onnx2torch: converted, max abs diff vs ORT, convert time | onnx2torch module -> torch.export (dynamic batch) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        o2t = r["onnx2torch"]
        export = "" if not o2t or not o2t["converted"] else ("yes" if o2t.get("pt2") else f"no: {o2t.get('pt2_error', 'wrong outputs')}")
        source = f"{r['zoo']['source_diff']:.1e}" if r["zoo"].get("converted") else ""
        lines.append(f"| {r['family']} | {r['exporter']} | {_cell(r['zoo'])} | {source} | {_cell(o2t)} | {export} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

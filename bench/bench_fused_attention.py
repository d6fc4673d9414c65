"""Does timm ViT's fused attention decide any route's failure? (issue 14's decomposition rung)

    .venv/bin/python bench/bench_fused_attention.py

timm's ``test_vit`` (seeded random weights), built with ``timm.layers.set_fused_attn(True)`` and ``(False)``
(F.scaled_dot_product_attention against the math path), through the two edges its failing routes stop at:
zoo's onnx -> tf edge (onnx2tf) on the TorchScript opset-18 export with a dynamic batch, and litert-torch with
static shapes. Prints, per mode, the attention ops of the ``torch.export`` graph, the ONNX op counts and each
edge's result, then wall and CPU seconds and the load average. About 3 minutes on 2 busy cores.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import litert_torch
    import onnx
    import timm
    import timm.layers
    import torch

    from zoo import errors
    from zoo.converters.edges.tf import onnx_to_saved_model
    from zoo.converters.graph import EdgeContext

    started = time.time()
    x = torch.randn(2, 3, 160, 160)
    for fused in (True, False):
        timm.layers.set_fused_attn(fused)
        torch.manual_seed(0)
        model = timm.create_model("test_vit.r160_in1k", pretrained=False).eval()
        print(f"fused_attn={model.blocks[0].attn.fused_attn}")
        program = torch.export.export(model, (x,))
        ops = collections.Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
        print("  torch.export:", {k: v for k, v in ops.items() if "attention" in k or "softmax" in k})
        work = Path(tempfile.mkdtemp(prefix="fused-attention-"))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(work / "model.onnx"), opset_version=18, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              dynamo=False)
        counts = collections.Counter(n.op_type for n in onnx.load(str(work / "model.onnx")).graph.node)
        print("  onnx:", {k: counts[k] for k in ("MatMul", "Softmax", "Sqrt", "Shape", "Cast")})
        (work / "tf").mkdir()
        try:
            onnx_to_saved_model(work / "model.onnx", work / "tf", EdgeContext(opset=18))
            print("  onnx2tf: converted")
        except errors.ZooError as exc:
            print("  onnx2tf:", exc.message[:240])
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                litert_torch.convert(model, (x,))
            print("  litert-torch (static): converted")
        except Exception as exc:  # noqa: BLE001 - the failure is the figure
            print("  litert-torch (static):", type(exc).__name__, str(exc).strip().splitlines()[0][:200])
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    print(f"wall {time.time() - started:.1f} s, cpu {cpu:.1f} s, load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

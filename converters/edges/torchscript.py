"""What zoo changes in the TorchScript ONNX exporter's run, kept apart from ``torch_onnx`` so that every caller of
``torch.onnx.export(..., dynamo=False)`` (the single-graph edge, the encoder-decoder pair) can use it without
importing the edge."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

# A floating-point parameter of at least this many elements is a weight (never a shape): see lean_shape_inference
WEIGHT_ELEMENTS = 65536
_LEAN = threading.Lock()
_lean_users = [0, None]  # exports in progress in this process, the exporter's own pass they replaced


@contextlib.contextmanager
def lean_shape_inference() -> Any:
    """The TorchScript exporter's whole-graph ONNX shape inference without the weights' data. It runs twice per
    export and encodes every parameter it is given into a throwaway ONNX proto for each node that reads it: two
    copies of every weight, half of a 1.1B-parameter decoder's export (py-spy: 2 x 25 s of 57 s, most of it
    ``GraphEncoder::EncodeTensor``; optimum's export pays the same). A weight's value never decides a shape; its
    shape is still known (the traced graph types it), so floating-point parameters of ``WEIGHT_ELEMENTS`` or more
    are left out of what the pass sees, and every integer or small tensor (a folded shape, an index) stays. On the
    4-layer Llama of bench_llm.py the ONNX file is byte-identical either way and the export 2.2x faster
    (tests/test_lean_export.py checks the file against the exporter's own on real models). A torch without the
    pass is left alone."""
    import torch

    with _LEAN:
        if _lean_users[0] == 0:
            real = getattr(torch._C, "_jit_pass_onnx_graph_shape_type_inference", None)
            if real is not None:
                def lean(graph: Any, params: Any, opset: int) -> Any:
                    kept = {k: v for k, v in params.items()
                            if not (isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() >= WEIGHT_ELEMENTS)}
                    return real(graph, kept, opset)
                torch._C._jit_pass_onnx_graph_shape_type_inference = lean
            _lean_users[1] = real
        _lean_users[0] += 1
    try:
        yield
    finally:
        with _LEAN:
            _lean_users[0] -= 1
            if _lean_users[0] == 0 and _lean_users[1] is not None:
                torch._C._jit_pass_onnx_graph_shape_type_inference = _lean_users[1]
                _lean_users[1] = None

"""zoo's own ONNX -> PyTorch compiler: ``module`` turns a graph into a ``torch.nn.Module`` and a ``.pt2``;
``ops/`` holds one small handler per ONNX op type."""

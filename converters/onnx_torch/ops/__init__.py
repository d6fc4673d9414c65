"""Op handlers of zoo's ONNX -> PyTorch converter (``converters/onnx_torch.py``).
Importing the package fills ``OPS``, one entry per supported ONNX op type."""

from zoo.converters.onnx_torch.ops import elementwise, nn, quant, reduce, shape  # noqa: F401 - registers the handlers
from zoo.converters.onnx_torch.ops.core import OPS, NodeDef, Static  # noqa: F401

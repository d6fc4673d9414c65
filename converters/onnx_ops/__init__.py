"""Op handlers of zoo's ONNX -> PyTorch converter (``converters/onnx_torch.py``).
Importing the package fills ``OPS``, one entry per supported ONNX op type."""

from converters.onnx_ops import elementwise, nn, quant, reduce, shape  # noqa: F401 - registers the handlers
from converters.onnx_ops.core import OPS, NodeDef, Static  # noqa: F401

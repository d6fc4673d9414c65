"""zoo: pull a model by name, convert it, check parity, get a verified artifact.

The package imports nothing heavy at import time: torch, timm, transformers and
onnxruntime are imported inside the functions that need them, so `zoo --help`,
`zoo list` and a cached `zoo pull` stay fast.
"""

__version__ = "0.1.0"

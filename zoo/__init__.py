"""zoo: pull a model by name, convert it, check parity, get a verified artifact.

The package imports nothing heavy at import time: torch, timm, transformers and
onnxruntime are imported inside the functions that need them, so `zoo --help`,
`zoo list` and a cached `zoo pull` stay fast.
"""

__version__ = "0.1.0"

# The Python API, loaded on first use (as huggingface_hub lazy-loads its submodules): ``import zoo`` stays
# light, and the package (the ground layer) imports nothing above it at import time.
_API = {"convert_jax": "zoo.pipeline", "pull": "zoo.pipeline", "convert_path": "zoo.pipeline"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")

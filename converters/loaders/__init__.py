"""Loaders: build the in-memory model a conversion starts from (PyTorch modules from timm or transformers,
Keras models, the model files ``zoo convert`` takes), each after zoo's own checks of the untrusted files."""

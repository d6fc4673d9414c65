"""Reading a ``spiece.model`` with the protobuf the TensorFlow side pins.

A repo that ships only a sentencepiece model (google/mt5-*, google/t5-v1_1-*, many T5 fine-tunes: no
``tokenizer.json``) is turned into a fast tokenizer by transformers at load time; transformers parses the model's
protobuf with ``sentencepiece.sentencepiece_model_pb2`` when the sentencepiece package is there. sentencepiece
0.2.1+ ships that module generated for protobuf 5+ (it imports ``google.protobuf.runtime_version``), while zoo's
``tf`` extra keeps protobuf < 5 (TensorFlow 2.19): the import fails, transformers falls back to reading the file
as a tiktoken vocabulary and the tokenizer cannot be loaded. transformers carries its own copy of the same
message definitions generated for protobuf 4 (``transformers.utils.sentencepiece_model_pb2_new``); where the
package's module cannot be imported, this points ``sentencepiece.sentencepiece_model_pb2`` at it. Nothing
changes where the package's own module imports.
"""

from __future__ import annotations

import sys


def ensure_sentencepiece_proto() -> str:
    """Make ``from sentencepiece import sentencepiece_model_pb2`` work; returns which module serves it
    (``"sentencepiece"``, ``"transformers"``, or ``"absent"`` when sentencepiece is not installed)."""
    try:
        import sentencepiece
    except ImportError:
        return "absent"
    try:
        from sentencepiece import sentencepiece_model_pb2  # noqa: F401
    except ImportError:
        from transformers.utils import sentencepiece_model_pb2_new

        sys.modules["sentencepiece.sentencepiece_model_pb2"] = sentencepiece_model_pb2_new
        sentencepiece.sentencepiece_model_pb2 = sentencepiece_model_pb2_new
        return "transformers"
    module = sys.modules["sentencepiece.sentencepiece_model_pb2"]
    return "transformers" if module.__name__.startswith("transformers.") else "sentencepiece"

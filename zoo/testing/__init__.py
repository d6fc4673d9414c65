"""zoo's checks for a project's own tests: ``assert_parity``, ``assert_accuracy``, ``pull``.

    from zoo.testing import assert_parity, pull

    def test_shipped_model_matches_its_source():
        assert_parity("resnet50", "dist/resnet50.onnx")

    def test_int8_keeps_its_accuracy():
        assert_accuracy("resnet50", "onnx-int8", "tests/data/images", max_drop=0.5)

The pytest plugin (``zoo.testing.plugin``, registered as a ``pytest11`` entry point) adds the fixtures
``zoo_pull``, ``zoo_artifact`` and ``zoo_format``, the marker ``zoo_formats`` and attaches every report
to the test's report. This package's import is light (no torch, no numpy): names load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PulledArtifact", "assert_accuracy", "assert_parity", "pull", "pull_artifact"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from zoo.testing import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo.testing' has no attribute {name!r}")

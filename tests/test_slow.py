"""Full-size models: real architectures at their real size (seeded random weights).
Deselected by default; run with ``./scripts/test.sh -m slow``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pull_json, source_outputs


@pytest.mark.slow
def test_resnet50_full_size_pull_matches_source(indexed, zoo_env):
    from builders import timm_repo, write_hf_cache

    files = timm_repo("resnet50.a1_in1k")
    write_hf_cache(zoo_env.hub_cache, "timm/resnet50.a1_in1k", files)
    out = pull_json("resnet50", "--format", "onnx", env={"HF_HUB_OFFLINE": "1"})
    assert out["model"] == "timm/resnet50.a1_in1k" and out["parity"]["passed"] and out["size"] > 90e6
    import onnxruntime as ort

    x = np.random.default_rng(5).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref = source_outputs(files, "resnet50", x)
    got = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)
    again = pull_json("resnet50", env={"HF_HUB_OFFLINE": "1"})
    assert again["cached"] and again["sha256"] == out["sha256"]

"""The vision task families of issue 11 (CLIP, DINOv2, YOLOS, SegFormer, DPT) pulled to jax, tf and tflite (issue 14):
each candidate is held to its task's own check on the real photographs (zero-shot labels, embeddings at real
tokens, matched detections, masks, depth order), as the ONNX ones are, and a broken candidate of a non-ONNX format
fails that check. Figures of every cell: docs/parity-matrix.md, bench/bench_vision_targets.py."""

from __future__ import annotations

import pytest
from task_builders import clip_repo, dinov2_repo, dpt_repo, in_process_pull, manifest_of, segformer_repo, yolos_repo
from test_targets import require

REPOS = {"zoo-test/tiny-clip": clip_repo, "zoo-test/tiny-dinov2": dinov2_repo, "zoo-test/tiny-yolos": yolos_repo,
         "zoo-test/tiny-segformer": segformer_repo, "zoo-test/tiny-dpt": dpt_repo}


@pytest.fixture(scope="module")
def vision_repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in REPOS.items()}


@pytest.fixture
def pull(indexed, vision_repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, vision_repos, capsys)


def _sample_checks(parity: dict, check: str) -> list[dict]:
    return [t for t in parity["tasks"] if t["check"] == check and t["input_set"].startswith("sample-photos")]


def negate_output(module, index: int):
    """``module`` (outputs a tuple) with output ``index`` negated: the broken candidates the task checks must fail."""
    import torch

    class Negated(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = list(self.inner(*args))
            out[index] = -out[index]
            return tuple(out)

    return Negated(module).eval()


# --- the guard: no verified candidate without its task check on the real samples ---------------------------
def _report(sets, task: str | None = None):
    import numpy as np

    from zoo.converters.parity.check import check_parity

    run = lambda feeds: [np.asarray(feeds["pixel_values"]).mean((2, 3))]  # noqa: E731
    return check_parity(run, run, sets, output_names=["logits"], task=task)


def test_a_static_export_of_a_two_batch_model_takes_the_photographs_shape():
    """CLIP's random sets (3 prompts x 2 images) cannot be re-batched into the photographs (6 prompts x 4 images):
    the static rung exports the photographs' shapes, so the zero-shot check runs; a model whose samples differ only
    in batch (an image model) keeps the first set's shapes (static_sets re-batches the samples)."""
    import numpy as np

    from zoo.converters.parity.report import InputSet
    from zoo.converters.parity.static_sets import export_set

    names = ["input_ids", "pixel_values"]
    random = InputSet("random", {"input_ids": np.zeros((3, 7), np.int64), "pixel_values": np.zeros((2, 3, 8, 8), np.float32)})
    photos = InputSet("sample-photos", {"input_ids": np.zeros((6, 9), np.int64),
                                        "pixel_values": np.zeros((4, 3, 8, 8), np.float32)}, kind="sample")
    assert export_set([random, photos], names, "static shapes") is photos
    assert export_set([random, photos], names, "route") is random  # dynamic routes trace the first set
    images = InputSet("b2", {"pixel_values": np.zeros((2, 3, 8, 8), np.float32)})
    samples = InputSet("sample-photos", {"pixel_values": np.ones((4, 3, 8, 8), np.float32)}, kind="sample")
    assert export_set([images, samples], ["pixel_values"], "static shapes") is images


def test_a_candidate_whose_samples_or_task_check_did_not_run_is_not_verified():
    import numpy as np

    from zoo.converters.parity.report import InputSet
    from zoo.converters.parity.static_sets import unchecked_samples

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    random, photos = InputSet("random", {"pixel_values": x}), InputSet("sample-photos", {"pixel_values": x}, kind="sample")
    report = _report([random])
    assert report.passed
    unchecked_samples(report, [random, photos], [random])  # the photographs were skipped
    assert not report.passed and "do not fit the static shapes" in report.error
    report = _report([random, photos], task="image-classification")  # no check registered: nothing to require
    unchecked_samples(report, [random, photos], [random, photos])
    assert report.passed
    # a declared task whose check finds no logits/pred_boxes: failed by the task runner itself, whatever the format
    report = _report([random, photos], task="object-detection")
    assert not report.passed and [(t["check"], t["passed"]) for t in report.tasks] == [("detection", False)]
    assert "found nothing to compare" in report.tasks[0]["reason"]


# --- each family on the formats it reaches, checked by its task on the photographs ---------------------------
SLOW = pytest.mark.slow
# (repo, format, task check, the task's figure that must hold, the ladder's rung that won): fast ones by default
TARGETS = [
    ("zoo-test/tiny-clip", "jax", "zero-shot", ("label_agreement", 1.0), "route"),
    ("zoo-test/tiny-dinov2", "jax", "embedding", ("min_token_cosine", 0.9999), "route"),
    # a dynamic batch: torch.export traces batch 2, bilinear upsampling decomposed in its graph (edges/jax_export.py)
    ("zoo-test/tiny-yolos", "jax", "object-detection", ("mean_iou", 0.99), "route"),
    ("zoo-test/tiny-segformer", "jax", "segmentation", ("mean_iou", 0.995), "route"),
    ("zoo-test/tiny-dpt", "jax", "depth", ("pair_order_agreement", 1.0), "route"),
    pytest.param("zoo-test/tiny-clip", "tf", "zero-shot", ("label_agreement", 1.0), "route", marks=SLOW),
    # litert-torch at the photographs' shapes (6 prompts x 4 images): no route keeps CLIP's dynamic axes to tflite
    pytest.param("zoo-test/tiny-clip", "tflite", "zero-shot", ("label_agreement", 1.0), "static shapes", marks=SLOW),
    pytest.param("zoo-test/tiny-dinov2", "tf", "embedding", ("min_token_cosine", 0.9999), "route", marks=SLOW),
    pytest.param("zoo-test/tiny-dinov2", "tflite", "embedding", ("min_token_cosine", 0.9999), "route", marks=SLOW),
    # tf through jax2tf with a dynamic batch; tflite is litert-torch's static file (batch 1, 2, 1): docs/parity-matrix.md
    pytest.param("zoo-test/tiny-yolos", "tf", "object-detection", ("mean_iou", 0.99), "route", marks=SLOW),
    pytest.param("zoo-test/tiny-segformer", "tf", "segmentation", ("mean_iou", 0.995), "route", marks=SLOW),
    pytest.param("zoo-test/tiny-dpt", "tf", "depth", ("pair_order_agreement", 1.0), "route", marks=SLOW),
    pytest.param("zoo-test/tiny-yolos", "tflite", "object-detection", ("mean_iou", 0.99), "static shapes", marks=SLOW),
    pytest.param("zoo-test/tiny-segformer", "tflite", "segmentation", ("mean_iou", 0.995), "static shapes", marks=SLOW),
    pytest.param("zoo-test/tiny-dpt", "tflite", "depth", ("pair_order_agreement", 1.0), "static shapes", marks=SLOW),
]


@pytest.mark.parametrize("repo, fmt, check, figure, rung", TARGETS)
def test_a_vision_family_reaches_the_format_with_its_task_check(pull, repo, fmt, check, figure, rung):
    require({"jax": "jax", "tf": "tf"}.get(fmt, "litert"))
    out = pull(repo, "--format", fmt)
    assert out["verified"]
    manifest = manifest_of(out)
    parity = manifest["parity"]
    assert parity["passed"] and "sample-photos" in {s["name"].split("[")[0] for s in parity["input_sets"]}
    found = _sample_checks(parity, check)
    assert found and all(t["passed"] is True for t in found), parity["tasks"]
    name, bound = figure
    assert min(t["figures"][name] for t in found) >= bound, found
    won = [r for r in manifest["conversion"].get("routes") or [] if r.get("won")]
    assert won and won[0]["rung"] == rung, manifest["conversion"].get("routes")


# --- a broken candidate of a non-ONNX format fails its task check ----------------------------------------
def break_exports(monkeypatch, index: int) -> None:
    """Negate output ``index`` of whatever the jax and litert-torch edges export (the module they trace)."""
    import dataclasses

    from zoo.converters.edges import jax_export, litert

    real_export, real_litert = jax_export._export, litert.convert_litert
    monkeypatch.setattr(jax_export, "_export", lambda module, specs: real_export(negate_output(module, index), specs))
    monkeypatch.setattr(litert, "convert_litert", lambda tm, example, out, **kw: real_litert(
        dataclasses.replace(tm, module=negate_output(tm.module, index)), example, out, **kw))


@pytest.mark.parametrize("repo, fmt, index, check, reason", [
    ("zoo-test/tiny-clip", "jax", 0, "zero-shot", "the label of each image agrees on"),
    ("zoo-test/tiny-dinov2", "jax", 0, "embedding", "cosine"),
    ("zoo-test/tiny-yolos", "jax", 1, "object-detection", "lost"),  # pred_boxes negated
    ("zoo-test/tiny-segformer", "jax", 0, "segmentation", "mean IoU over classes"),
    pytest.param("zoo-test/tiny-dpt", "jax", 0, "depth", "ordered alike", marks=SLOW),  # ~17 s; the jax runner's
    # broken-candidate path is the default run's through the CLIP, YOLOS and SegFormer cases
    # litert-torch's static file at the photographs' shapes, run through its args_N/output_N signature
    pytest.param("zoo-test/tiny-clip", "tflite", 0, "zero-shot", "the label of each image agrees on", marks=SLOW),
])
def test_a_broken_non_onnx_candidate_fails_its_task_check(pull, monkeypatch, repo, fmt, index, check, reason):
    require("jax" if fmt == "jax" else "litert")
    break_exports(monkeypatch, index)
    err = pull(repo, "--format", fmt, code=6)
    assert err["error"] == "parity_failed"
    found = _sample_checks(err["report"], check)
    assert found and any(t["passed"] is False and reason in (t["reason"] or "") for t in found), err["report"]["tasks"]

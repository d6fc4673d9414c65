"""Vision tasks of issue 11 beyond image classification: zero-shot image classification (a tiny CLIP built
offline with a real tokenizer and CLIP's image processor, tests/task_builders.py), pulled through `zoo pull`
from a local Hugging Face cache, checked by zoo on the real photographs and here again independently."""

from __future__ import annotations

import numpy as np
import pytest
from task_builders import (
    DETECTION_LABELS,
    SEGMENTATION_LABELS,
    clip_repo,
    depth_anything_repo,
    dinov2_repo,
    dpt_repo,
    in_process_pull,
    manifest_of,
    mask2former_repo,
    resnet_classifier_repo,
    scale_output,
    segformer_repo,
    source_dir,
    yolos_repo,
)

REPOS = {"zoo-test/tiny-clip": clip_repo, "zoo-test/tiny-yolos": yolos_repo,
         "zoo-test/tiny-segformer": segformer_repo, "zoo-test/tiny-mask2former": mask2former_repo,
         "zoo-test/tiny-dinov2": dinov2_repo, "zoo-test/tiny-dpt": dpt_repo,
         "zoo-test/tiny-depth-anything": depth_anything_repo, "zoo-test/tiny-resnet": resnet_classifier_repo}


@pytest.fixture(scope="module")
def vision_repos() -> dict[str, dict[str, bytes]]:
    return {repo: build() for repo, build in REPOS.items()}


@pytest.fixture
def pull(indexed, vision_repos, monkeypatch, capsys):
    """``(repo, *args, code=0, files=None) -> JSON`` of an in-process offline `zoo pull REPO --json`."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, vision_repos, capsys)


def _task(manifest: dict, check: str) -> dict:
    found = [t for t in manifest["parity"]["tasks"] if t["check"] == check]
    assert found, [t["check"] for t in manifest["parity"]["tasks"]]
    return found[0]


def test_task_of_a_clip_repo_is_zero_shot_image_classification():
    from zoo.converters.tasks import detect_task, head_task

    assert head_task("CLIPModel") == "zero-shot-image-classification"
    assert head_task("SiglipModel") == "zero-shot-image-classification"
    assert head_task("BertModel") == "feature-extraction"
    assert detect_task("m", "CLIPModel")[0] == "zero-shot-image-classification"


def test_clip_zero_shot_labels_the_photographs_as_the_source_does(pull, vision_repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos
    from zoo.converters.tasks.vision import LABELS

    repo = "zoo-test/tiny-clip"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "zero-shot-image-classification"
    check = _task(manifest, "zero-shot")
    assert check["passed"] is True and check["input_set"] == "sample-photos"
    assert check["figures"]["images"] == 4 and check["figures"]["labels"] == len(LABELS)
    assert check["figures"]["label_agreement"] == 1.0 and check["figures"]["distinct_labels"] >= 2
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "pixel_values"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]
    # independently: tokenizer and image processor travel with the artifact; other prompts, batch sizes differ
    tokenizer = transformers.AutoTokenizer.from_pretrained(out["artifact_dir"])
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)][:3]
    prompts = ["a picture of a cat", "an astronaut in space", "coffee", "a rocket", "a red car"]
    enc = tokenizer(prompts, padding=True, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
             "pixel_values": processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)}
    got = dict(zip(names, session.run(None, feeds)))
    root = source_dir(tmp_path, vision_repos[repo])
    model = transformers.CLIPModel.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    assert got["logits_per_image"].shape == (3, 5) and got["logits_per_text"].shape == (5, 3)
    for name in names:
        np.testing.assert_allclose(got[name], getattr(ref, name).numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(got["logits_per_image"].argmax(-1), ref.logits_per_image.numpy().argmax(-1))


def test_the_zero_shot_check_fails_when_a_label_flips():
    """The check itself: the same logits pass; one image's best prompt swapped with another fails."""
    from zoo.converters.parity.report import InputSet
    from zoo.converters.tasks.vision import OUTPUTS, zero_shot_results

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 6)) * 5
    sample = InputSet("sample-photos", {}, kind="sample")
    ran = [(sample, [ref, ref.T], [ref.copy(), ref.T.copy()])]
    (ok,) = zero_shot_results(OUTPUTS[:2], ran, "float32")
    assert ok["passed"] is True and ok["figures"]["label_agreement"] == 1.0
    flipped = ref.copy()
    best, worst = flipped[1].argmax(), flipped[1].argmin()
    flipped[1, [best, worst]] = flipped[1, [worst, best]]
    (bad,) = zero_shot_results(OUTPUTS[:2], [(sample, [ref, ref.T], [flipped, flipped.T])], "float32")
    assert bad["passed"] is False and "label of each image agrees on 75%" in bad["reason"]


# --- object detection: YOLOS ------------------------------------------------------------------------------
def test_yolos_detections_on_the_photographs_match(pull, vision_repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos

    repo = "zoo-test/tiny-yolos"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "object-detection"
    assert manifest["record"]["labels"] == list(DETECTION_LABELS.values())
    check = _task(manifest, "object-detection")
    fig = check["figures"]
    assert check["passed"] is True and check["input_set"] == "sample-photos", check
    assert fig["confident_reference_detections"] >= 8 and fig["lost"] == 0 and fig["spurious"] == 0
    assert fig["mean_iou"] >= 0.99 and len(fig["classes"]) >= 2
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "pred_boxes"]
    # independently: the image processor travels with the artifact; post-processing as transformers does it
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)][1:]
    pixels = processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)
    logits, boxes = session.run(None, {"pixel_values": pixels})
    root = source_dir(tmp_path, vision_repos[repo])
    model = transformers.YolosForObjectDetection.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(pixels))
    sizes = [img.size[::-1] for img in photos]
    want = processor.post_process_object_detection(ref, threshold=0.5, target_sizes=sizes)
    got_out = type(ref)(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes))
    got = processor.post_process_object_detection(got_out, threshold=0.5, target_sizes=sizes)
    assert sum(len(w["scores"]) for w in want) >= 5
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g["labels"].numpy(), w["labels"].numpy())
        np.testing.assert_allclose(g["boxes"].numpy(), w["boxes"].numpy(), atol=0.05)
        np.testing.assert_allclose(g["scores"].numpy(), w["scores"].numpy(), atol=1e-4)


def test_the_detection_check_fails_on_a_moved_box_and_a_lost_detection():
    """decode + match of set predictions: identical outputs pass; one confident query's box moved by half
    its size, or its class flipped to 'no object', fails."""
    from zoo.converters.parity import tasks as checks
    from zoo.converters.parity.report import InputSet
    from zoo.converters.tasks.vision import DETECTION_OUTPUTS, detection_results

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 10, 4)) * 4
    boxes = rng.uniform(0.3, 0.7, (2, 10, 4)) * np.array([1, 1, 0.5, 0.5])
    sample = InputSet("sample-photos", {"pixel_values": np.zeros((2, 3, 64, 64), np.float32)}, kind="sample")
    (ok,) = detection_results(DETECTION_OUTPUTS, [(sample, [logits, boxes], [logits.copy(), boxes.copy()])], "float32", checks)
    assert ok["passed"] is True and ok["figures"]["confident_reference_detections"] >= 4
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    i, q = np.argwhere(probs[..., :-1].max(-1) >= 0.5)[0]
    moved = boxes.copy()
    moved[i, q, :2] += moved[i, q, 2:] * 0.6
    (bad,) = detection_results(DETECTION_OUTPUTS, [(sample, [logits, boxes], [logits, moved])], "float32", checks)
    assert bad["passed"] is False and "lost" in bad["reason"]
    gone = logits.copy()
    gone[i, q, -1] = 50.0
    (bad,) = detection_results(DETECTION_OUTPUTS, [(sample, [logits, boxes], [gone, boxes])], "float32", checks)
    assert bad["passed"] is False and bad["figures"]["lost"] == 1


def test_set_prediction_decoding_is_transformers_post_processing():
    """zoo's decoder (what the check compares) gives what post_process_object_detection gives a user."""
    import torch
    from transformers import YolosImageProcessor
    from transformers.models.yolos.modeling_yolos import YolosObjectDetectionOutput

    from zoo.converters.tasks.vision import decode_set_predictions

    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 10, 4)) * 4
    boxes = rng.uniform(0.2, 0.8, (3, 10, 4)) * np.array([1, 1, 0.4, 0.4])
    mine = decode_set_predictions(logits, boxes, 48, 64, 0.5)
    out = YolosObjectDetectionOutput(logits=torch.from_numpy(logits).float(), pred_boxes=torch.from_numpy(boxes).float())
    theirs = YolosImageProcessor().post_process_object_detection(out, threshold=0.5, target_sizes=[(48, 64)] * 3)
    assert sum(len(t["scores"]) for t in theirs) >= 5
    for m, t in zip(mine, theirs):
        order = np.argsort(-t["scores"].numpy(), kind="stable")
        np.testing.assert_allclose(m["scores"], t["scores"].numpy()[order], atol=1e-5)
        np.testing.assert_array_equal(m["classes"], t["labels"].numpy()[order])
        np.testing.assert_allclose(m["boxes"], t["boxes"].numpy()[order], atol=1e-3)


# --- image segmentation: SegFormer ----------------------------------------------------------------------
def test_segformer_masks_on_the_photographs_match(pull, vision_repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos
    from zoo.converters.tasks import detect_task

    assert detect_task("m", "SegformerForSemanticSegmentation")[0] == "image-segmentation"
    repo = "zoo-test/tiny-segformer"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "image-segmentation"
    seg = [t for t in manifest["parity"]["tasks"] if t["check"] == "segmentation" and t["input_set"] == "sample-photos"]
    assert seg and seg[0]["passed"] is True and seg[0]["figures"]["classes"] >= 2, manifest["parity"]["tasks"]
    assert seg[0]["figures"]["mean_iou"] >= 0.995
    # independently: the repo's processor (travels with the artifact) and the masks a user reads
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)]
    pixels = processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"pixel_values": pixels})
    root = source_dir(tmp_path, vision_repos[repo])
    model = transformers.SegformerForSemanticSegmentation.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(pixels))
    assert logits.shape == (4, len(SEGMENTATION_LABELS), 16, 16)
    sizes = [img.size[::-1] for img in photos]
    want = processor.post_process_semantic_segmentation(ref, target_sizes=sizes)
    got = processor.post_process_semantic_segmentation(type(ref)(logits=torch.from_numpy(logits)), target_sizes=sizes)
    for w, g in zip(want, got):
        assert (w.numpy() == g.numpy()).mean() >= 0.999


# --- universal segmentation: Mask2Former ----------------------------------------------------------------
def test_mask2former_queries_on_the_photographs_match(pull, vision_repos, tmp_path):
    """Mask2Former (a Swin backbone built from config) exports with its two outputs, a class and a mask per query;
    zoo's segmentation check decodes both on the photographs through the repo's image processor; checked here
    again with the processor's own semantic, instance and panoptic post-processing of the ONNX outputs."""
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos
    from zoo.converters.tasks import detect_task

    assert detect_task("m", "Mask2FormerForUniversalSegmentation")[0] == "image-segmentation"
    repo = "zoo-test/tiny-mask2former"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "image-segmentation"
    assert manifest["record"]["extra"]["io"]["outputs"] == ["class_queries_logits", "masks_queries_logits"]
    seg = [t for t in manifest["parity"]["tasks"] if t["check"] == "segmentation" and t["input_set"] == "sample-photos"]
    assert seg and seg[0]["passed"] is True, manifest["parity"]["tasks"]
    figures = seg[0]["figures"]
    assert figures["classes"] >= 2 and figures["mean_iou"] >= 0.995 and figures["query_mask_iou"] >= 0.995
    assert figures["query_label_agreement"] == 1.0 and figures["queries"] == 10
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)]
    pixels = processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    classes, masks = session.run(None, {"pixel_values": pixels})
    assert classes.shape == (4, 10, len(SEGMENTATION_LABELS) + 1) and masks.shape == (4, 10, 16, 16)
    model = transformers.AutoModelForUniversalSegmentation.from_pretrained(
        str(source_dir(tmp_path, vision_repos[repo]))).eval()
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(pixels))
    got = type(ref)(class_queries_logits=torch.from_numpy(classes), masks_queries_logits=torch.from_numpy(masks))
    sizes = [img.size[::-1] for img in photos]
    for w, g in zip(processor.post_process_semantic_segmentation(ref, target_sizes=sizes),
                    processor.post_process_semantic_segmentation(got, target_sizes=sizes)):
        assert len(np.unique(w.numpy())) >= 1 and (w.numpy() == g.numpy()).mean() >= 0.999
    for post in ("post_process_instance_segmentation", "post_process_panoptic_segmentation"):
        want = getattr(processor, post)(ref, threshold=0.1, target_sizes=sizes)
        have = getattr(processor, post)(got, threshold=0.1, target_sizes=sizes)
        for w, g in zip(want, have):
            assert [s["label_id"] for s in w["segments_info"]] == [s["label_id"] for s in g["segments_info"]]
            assert (w["segmentation"].numpy() == g["segmentation"].numpy()).mean() >= 0.999


def test_mask2former_with_negated_class_logits_fails_the_segmentation_check(pull, monkeypatch):
    """An export whose class logits come out negated: the segmentation check fails (exit 6) on the query labels."""
    from zoo.converters.edges import torch_onnx

    real_export = torch_onnx.export_onnx

    def broken_export(tm, example, out_path, **kwargs):
        info = real_export(tm, example, out_path, **kwargs)
        scale_output(out_path, "class_queries_logits", -1.0)
        return info

    monkeypatch.setattr(torch_onnx, "export_onnx", broken_export)
    err = pull("zoo-test/tiny-mask2former", "--exporter", "torchscript", code=6)
    seg = [t for t in err["report"]["tasks"] if t["check"] == "segmentation" and t["input_set"] == "sample-photos"]
    assert seg and seg[0]["passed"] is False and "query label agreement" in seg[0]["reason"], seg


# --- image feature extraction: DINOv2 -----------------------------------------------------------------
def test_dinov2_image_embeddings_on_the_photographs(pull, vision_repos, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers

    from zoo.converters.parity.samples import sample_photos

    repo = "zoo-test/tiny-dinov2"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "image-feature-extraction"
    assert manifest["record"]["extra"]["task_from"] == "model card pipeline_tag"
    emb = {t["output"]: t for t in manifest["parity"]["tasks"] if t["check"] == "embedding"
           and t["input_set"] == "sample-photos"}
    assert emb["last_hidden_state"]["passed"] is True and emb["last_hidden_state"]["figures"]["real_tokens"] == 4 * 17
    assert emb["last_hidden_state"]["figures"]["min_token_cosine"] >= 0.9999
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    pixels = processor([img for _, img in sample_photos(4)], return_tensors="np")["pixel_values"].astype(np.float32)
    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    (hidden,) = session.run(None, {"pixel_values": pixels})
    root = source_dir(tmp_path, vision_repos[repo])
    with torch.no_grad():
        ref = transformers.Dinov2Model.from_pretrained(str(root)).eval()(pixel_values=torch.from_numpy(pixels))
    np.testing.assert_allclose(hidden, ref.last_hidden_state.numpy(), atol=1e-4, rtol=1e-4)
    cls = hidden[:, 0] / np.linalg.norm(hidden[:, 0], axis=-1, keepdims=True)
    assert (cls @ cls.T)[~np.eye(4, dtype=bool)].max() < 0.9999  # the photographs get different embeddings


def test_a_vision_task_zoo_does_not_convert_exits_5_listing_the_new_ones(pull):
    err = pull("zoo-test/tiny-segformer", "--task", "mask-generation", code=5)
    assert err["error"] == "unsupported" and "mask-generation" in err["message"]
    for task in ("zero-shot-image-classification", "object-detection", "image-segmentation", "image-feature-extraction",
                 "depth-estimation", "audio-classification"):
        assert task in err["hint"]


# --- depth estimation (DPT, Depth Anything) -------------------------------------------------------------
@pytest.mark.parametrize("repo, arch", [("zoo-test/tiny-dpt", "DPTForDepthEstimation"),
                                        ("zoo-test/tiny-depth-anything", "DepthAnythingForDepthEstimation")])
def test_depth_estimation_predicts_the_source_depth_on_the_photographs(pull, vision_repos, tmp_path, repo, arch):
    import torch
    import transformers

    from zoo.converters.parity.report import InputSet
    from zoo.converters.parity.samples import sample_photos
    from zoo.converters.tasks import detect_task
    from zoo.converters.tasks.depth import depth_results

    assert detect_task("m", arch)[0] == "depth-estimation"
    out = pull(repo)
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["task"] == "depth-estimation"
    check = _task(manifest, "depth")
    assert check["passed"] is True and check["input_set"] == "sample-photos" and check["figures"]["images"] == 4
    assert check["figures"]["pair_order_agreement"] == 1.0 and check["figures"]["max_diff_of_range"] < 1e-4
    assert check["figures"]["pairs"] > 20000  # the maps are not flat: most pixel pairs have an ordering
    session = ort_session(out["path"])
    assert [o.name for o in session.get_outputs()] == ["predicted_depth"]
    # independently: the image processor travels with the artifact; the photographs at the graph's square size
    processor = transformers.AutoImageProcessor.from_pretrained(out["artifact_dir"])
    photos = [img for _, img in sample_photos(4)][::-1]
    x = processor(photos, return_tensors="np", size={"height": 32, "width": 32},
                  keep_aspect_ratio=False)["pixel_values"].astype(np.float32)
    (got,) = session.run(None, {"pixel_values": x[:3]})
    root = source_dir(tmp_path, vision_repos[repo])
    model = transformers.AutoModelForDepthEstimation.from_pretrained(str(root)).eval()
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(x[:3])).predicted_depth.numpy()
    assert got.shape == ref.shape and float(ref.std()) > 0.1
    np.testing.assert_allclose(got, ref, atol=1e-4 * float(ref.max() - ref.min()), rtol=1e-4)
    # the check fails a map with one region's depth reversed (what a user would see as a wrong scene)
    bad = ref.copy()
    bad[0, : ref.shape[1] // 2] = ref[0].max() - bad[0, : ref.shape[1] // 2]
    (result,) = depth_results(["predicted_depth"], [(InputSet("p", {"pixel_values": x[:3]}, kind="sample"), [ref], [bad])],
                              "float32")
    assert result["passed"] is False and "ordered alike" in result["reason"]


def test_a_config_without_image_size_takes_the_processor_size(pull):
    """ResNet's config has no image_size: the graph takes what the image processor feeds (32 px here), not 224
    (which exported and then failed on the processed photographs, exit 6)."""
    out = pull("zoo-test/tiny-resnet")
    assert out["verified"]
    manifest = manifest_of(out)
    assert manifest["record"]["input_spec"][0]["shape"][1:] == [3, 32, 32]
    assert "sample-photos" in {s["name"] for s in manifest["parity"]["input_sets"]}


def ort_session(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])

"""Vision tasks beyond image classification.

``zero-shot-image-classification`` (CLIP-style dual encoders: ``CLIPModel``, ``SiglipModel``, ...): one graph
taking ``input_ids``, ``attention_mask`` ``[texts, sequence]`` (the candidate labels as prompts) and
``pixel_values`` ``[images, channels, height, width]``, giving ``logits_per_image [images, texts]``,
``logits_per_text [texts, images]``, ``text_embeds [texts, dim]`` and ``image_embeds [images, dim]``.
The image and text batches are independent axes. Parity feeds the real photographs through the repo's
own image processor and label prompts through its own tokenizer; the ``zero-shot`` check compares the
label each image gets (argmax over the prompts) and the per-image label probabilities.
"""

from __future__ import annotations

from typing import Any

# contrastive image-text models whose head is the bare *Model class
ZERO_SHOT_ARCHS = ("CLIPModel", "SiglipModel", "Siglip2Model", "ChineseCLIPModel", "AltCLIPModel")
ZERO_SHOT = "zero-shot-image-classification"
TEXT_INPUTS = ["input_ids", "attention_mask"]
OUTPUTS = ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]
AXES = {"input_ids": ["texts", "sequence"], "attention_mask": ["texts", "sequence"],
        "pixel_values": ["images", "channels", "height", "width"], "logits_per_image": ["images", "texts"],
        "logits_per_text": ["texts", "images"], "text_embeds": ["texts", "embed_dim"],
        "image_embeds": ["images", "embed_dim"]}
# what the photographs in converters/parity/photos show, and distractors: the candidate labels of parity
LABELS = ["an astronaut", "a cup of coffee", "a cat", "a rocket launch", "a dog", "a car"]
PROMPT = "a photo of {}."


def head_task(arch: str | None) -> str | None:
    return ZERO_SHOT if arch in ZERO_SHOT_ARCHS else None


def io_contract(config: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": TEXT_INPUTS + ["pixel_values"], "outputs": OUTPUTS, "axes": AXES, "padding": "right",
            "labels": "logits_per_image[i] scores image i against each text prompt; softmax over texts"}


def input_spec(config: dict[str, Any]) -> list[dict[str, Any]]:
    vision = config.get("vision_config") or {}
    size = int(vision.get("image_size") or config.get("image_size") or 224)
    channels = int(vision.get("num_channels") or 3)
    return [{"name": n, "shape": list(AXES[n]), "dtype": "int64", "layout": "NS"} for n in TEXT_INPUTS] + \
        [{"name": "pixel_values", "shape": ["images", channels, size, size], "dtype": "float32", "layout": "NCHW"}]


class Preprocess:
    """The repo's tokenizer and image processor together (what a zero-shot pipeline uses)."""

    def __init__(self, tokenizer: Any, image_processor: Any) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor


def load_preprocess(root: Any) -> Preprocess:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
    images = transformers.AutoImageProcessor.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
    return Preprocess(tokenizer, images)


def wrap(model: Any, input_names: list[str]) -> Any:
    import torch

    class ZeroShot(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple:
            out = self.inner(**dict(zip(input_names, args)), return_dict=True)
            return tuple(out[name] for name in OUTPUTS)

    return ZeroShot(model).eval()


def dynamic_axes(input_names: list[str]) -> dict[str, dict[int, str]]:
    return {n: {i: a for i, a in enumerate(AXES[n]) if a not in ("channels", "height", "width", "embed_dim")}
            for n in [*input_names, *OUTPUTS]}


def input_sets(record: Any, preprocess: Preprocess | None) -> list[Any]:
    """Random ids and pixels at three (texts, images) shapes, then the photographs against the label prompts."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    spec = {s["name"]: s for s in record.input_spec}
    _, c, h, w = spec["pixel_values"]["shape"]
    vocab = int(record.extra.get("vocab_size") or 100)
    sets = []
    for seed, (texts, images, seq) in enumerate(((3, 2, 7), (1, 1, 5), (4, 3, 11))):
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, vocab, (texts, seq), dtype=np.int64)
        ids[:, -1] = vocab - 1  # an end token where CLIP pools (argmax of the ids in old configs)
        sets.append(InputSet(f"random-t{texts}-i{images}-s{seq}", {
            "input_ids": ids, "attention_mask": np.ones((texts, seq), np.int64),
            "pixel_values": rng.standard_normal((images, c, h, w)).astype(np.float32)}))
    if preprocess is not None:
        from zoo.converters.parity.samples import sample_photos

        photos = [img for _, img in sample_photos(4)]
        pixels = preprocess.image_processor(photos, return_tensors="np")["pixel_values"].astype(np.float32)
        enc = preprocess.tokenizer([PROMPT.format(x) for x in LABELS], padding=True, return_tensors="np")
        sets.append(InputSet("sample-photos", {"input_ids": np.asarray(enc["input_ids"], np.int64),
                                               "attention_mask": np.asarray(enc["attention_mask"], np.int64),
                                               "pixel_values": pixels}, kind="sample"))
    return sets


def zero_shot_results(names: list[str], ran: list, precision: str) -> list[dict[str, Any]]:
    """Per image, the label it gets (argmax over the prompts) identical at float32 (95% below), and the
    softmax probabilities over the prompts within 1e-3 (fp16 2e-2, else 5e-2)."""
    import numpy as np

    from zoo.converters.tasks.agreement import label_agreement_needed

    need = label_agreement_needed(precision)
    prob_bound = 1e-3 if precision in ("float32", "float64") else 2e-2 if precision == "float16" else 5e-2
    results = []
    for input_set, refs, outs in ran:
        if input_set.kind != "sample":
            continue
        got = dict(zip(names, zip(refs, outs)))
        if "logits_per_image" not in got:
            continue
        r, c = (np.asarray(a, np.float64) for a in got["logits_per_image"])
        if r.shape != c.shape or r.ndim != 2:
            continue
        pr, pc = (np.exp(x - x.max(-1, keepdims=True)) for x in (r, c))
        pr, pc = pr / pr.sum(-1, keepdims=True), pc / pc.sum(-1, keepdims=True)
        agree = float((r.argmax(-1) == c.argmax(-1)).mean())
        diff = float(np.abs(pr - pc).max())
        reasons = []
        if agree < need:
            reasons.append(f"the label of each image agrees on {agree:.0%} < {need:.0%}")
        if diff > prob_bound:
            reasons.append(f"label probabilities moved by up to {diff:.4f} > {prob_bound}")
        if "logits_per_text" in got:
            t = np.asarray(got["logits_per_text"][1], np.float64)
            if t.shape == c.shape[::-1] and not np.allclose(t, c.T, atol=1e-3 * max(1.0, float(np.abs(c).max()))):
                reasons.append("logits_per_text is not the transpose of logits_per_image")
        results.append({"check": "zero-shot", "input_set": input_set.name, "output": "logits_per_image",
                        "passed": not reasons, "reason": "; ".join(reasons) or None,
                        "figures": {"images": int(r.shape[0]), "labels": int(r.shape[1]), "label_agreement": agree,
                                    "max_probability_diff": diff, "reference_labels": r.argmax(-1).tolist(),
                                    "distinct_labels": len(set(r.argmax(-1).tolist()))}})
    return results


# --- object detection with set-prediction heads (YOLOS, DETR, ...) ---------------------------------------
DETECTION = "object-detection"
DETECTION_OUTPUTS = ["logits", "pred_boxes"]
DETECTION_AXES = {"pixel_values": ["batch", "channels", "height", "width"], "logits": ["batch", "queries", "labels + 1"],
                  "pred_boxes": ["batch", "queries", 4]}


def detection_contract(config: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": ["pixel_values"], "outputs": DETECTION_OUTPUTS, "axes": DETECTION_AXES,
            "decoding": "softmax over logits, the last class is 'no object'; pred_boxes are (cx, cy, w, h) relative "
                        "to the input image; no NMS (one query, one object)"}


def detection_input_spec(config: dict[str, Any]) -> list[dict[str, Any]]:
    size = config.get("image_size") or 224
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return [{"name": "pixel_values", "shape": ["batch", int(config.get("num_channels") or 3), h, w],
             "dtype": "float32", "layout": "NCHW"}]


def detection_axes() -> dict[str, dict[int, str]]:
    return {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}}


def detection_sets(record: Any, image_processor: Any) -> list[Any]:
    """Seeded random pixels at three batch sizes, then the photographs through the repo's image processor."""
    return image_sets(record, image_processor)


def image_sets(record: Any, image_processor: Any, *, square: bool = False) -> list[Any]:
    """Seeded random pixels at three batch sizes, then the photographs through the repo's image processor,
    kept when they come out at the graph's size. ``square``: ask the processor for the graph's size where its
    own resizing would not give it (``keep_aspect_ratio``, Depth Anything's: one size per photograph)."""
    import numpy as np

    from zoo.converters.parity.report import InputSet

    _, c, h, w = record.input_spec[0]["shape"]
    sets = [InputSet(f"random-b{b}", {"pixel_values": np.random.default_rng(b).standard_normal((b, c, h, w))
                                      .astype(np.float32)}) for b in (1, 2, 3)]
    if image_processor is not None:
        from zoo.converters.parity.samples import sample_photos

        photos = [img for _, img in sample_photos(4)]
        sized = {"size": {"height": h, "width": w}, "keep_aspect_ratio": False}
        first = sized if square and getattr(image_processor, "keep_aspect_ratio", False) else {}
        pixels = image_processor(photos, return_tensors="np", **first)["pixel_values"]
        if square and pixels.shape[1:] != (c, h, w):
            pixels = image_processor(photos, return_tensors="np", **sized)["pixel_values"]
        if pixels.shape[1:] == (c, h, w):
            sets.append(InputSet("sample-photos", {"pixel_values": np.asarray(pixels, np.float32)}, kind="sample"))
    return sets


def decode_set_predictions(logits: Any, boxes: Any, height: int, width: int, threshold: float) -> list[dict]:
    """DETR-style decoding as ``post_process_object_detection``: softmax, the 'no object' class dropped,
    each query's best class and score; boxes (cx, cy, w, h) relative -> (x1, y1, x2, y2) pixels."""
    import numpy as np

    logits, boxes = np.asarray(logits, np.float64), np.asarray(boxes, np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True))[..., :-1]
    scale = np.array([width, height, width, height], np.float64)
    out = []
    for p, b in zip(probs, boxes):
        scores, classes = p.max(-1), p.argmax(-1)
        xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1) * scale
        keep = scores >= threshold
        order = np.argsort(-scores[keep], kind="stable")
        out.append({"boxes": xyxy[keep][order], "scores": scores[keep][order], "classes": classes[keep][order],
                    "kept": np.arange(int(keep.sum()), dtype=np.int64)})
    return out


def detection_results(names: list[str], ran: list, precision: str, checks: Any) -> list[dict[str, Any]]:
    """Detections decoded from both models on the photographs and matched by ``checks`` (the module
    ``zoo.converters.parity.tasks``, passed in by its caller: its ``match_detections``, ``bounds``, ``CONF``
    and ``MATCH_IOU``): every confident reference detection found by the candidate (same class,
    IoU >= 0.5), none from nowhere, mean IoU and largest score difference within the precision's bounds."""
    import numpy as np

    limit = checks.bounds(precision)
    results = []
    for input_set, refs, outs in ran:
        got = dict(zip(names, zip(refs, outs)))
        if input_set.kind != "sample" or not {"logits", "pred_boxes"} <= set(got):
            continue
        h, w = np.asarray(input_set.feeds["pixel_values"]).shape[-2:]
        ref, cand = (decode_set_predictions(got["logits"][k], got["pred_boxes"][k], h, w, checks.CONF) for k in (0, 1))
        per_image = [checks.match_detections(a, b) for a, b in zip(ref, cand)]
        confident = sum(m["confident"] for m in per_image)
        lost, spurious = sum(m["lost"] for m in per_image), sum(m["spurious"] for m in per_image)
        ious = [v for m in per_image for v in m["matched_iou"]]
        diffs = [v for m in per_image for v in m["score_diff"]]
        figures = {"images": len(per_image), "confident_reference_detections": confident, "lost": lost,
                   "spurious": spurious, "mean_iou": float(np.mean(ious)) if ious else None,
                   "min_iou": float(np.min(ious)) if ious else None,
                   "max_score_diff": float(np.max(diffs)) if diffs else None,
                   "classes": sorted({int(k) for d in ref for k in d["classes"]}),
                   "bounds": {"mean_iou": limit["iou"], "max_score_diff": limit["score"]}}
        if confident == 0 and spurious == 0:
            results.append({"check": "object-detection", "input_set": input_set.name, "output": "logits,pred_boxes",
                            "passed": None, "figures": figures,
                            "reason": "the reference detects nothing confidently on these samples"})
            continue
        reasons = checks.detection_reasons(lost, confident, spurious, figures, limit,
                                           f"no same-class box at IoU >= {checks.MATCH_IOU}")
        results.append({"check": "object-detection", "input_set": input_set.name, "output": "logits,pred_boxes",
                        "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures})
    return results


# --- universal segmentation: Mask2Former (``*ForUniversalSegmentation``) ------------------------------
UNIVERSAL_ARCHS = ("Mask2FormerForUniversalSegmentation",)  # OneFormer's also takes a task text: not this contract
UNIVERSAL_OUTPUTS = ["class_queries_logits", "masks_queries_logits"]
UNIVERSAL_AXES = {"pixel_values": ["batch", "channels", "height", "width"],
                  "class_queries_logits": ["batch", "queries", "labels + 1"],
                  "masks_queries_logits": ["batch", "queries", "height / 4", "width / 4"]}


def is_universal(arch: str | None) -> bool:
    return bool(arch) and arch.endswith(UNIVERSAL_ARCHS)


def universal_contract(config: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": ["pixel_values"], "outputs": UNIVERSAL_OUTPUTS, "axes": UNIVERSAL_AXES,
            "decoding": "per query a class (softmax over class_queries_logits, the last class is 'no object') and a "
                        "mask (sigmoid of masks_queries_logits, at a quarter of the input's size): semantic = argmax "
                        "over classes of sum_q softmax(class)[q, :-1] * sigmoid(mask)[q] (the image processor's "
                        "post_process_semantic_segmentation); instance and panoptic keep the confident queries "
                        "(post_process_instance_segmentation, post_process_panoptic_segmentation)"}


def universal_axes() -> dict[str, dict[int, str]]:
    return {"pixel_values": {0: "batch"}, **{n: {0: "batch"} for n in UNIVERSAL_OUTPUTS}}


def semantic_map(class_logits: Any, mask_logits: Any) -> Any:
    """post_process_semantic_segmentation at the masks' own size: argmax over classes of the query-weighted masks."""
    import numpy as np

    c = np.asarray(class_logits, np.float64)
    probs = np.exp(c - c.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True))[..., :-1]
    masks = 1 / (1 + np.exp(-np.asarray(mask_logits, np.float64)))
    return np.einsum("bqc,bqhw->bchw", probs, masks).argmax(1)


def class_ious(a: Any, b: Any) -> dict[int, float]:
    """Per class present in either of two label maps, its IoU (1.0 where neither has it after all): the
    segmentation checks' per-class figures, SegFormer's argmax maps and Mask2Former's semantic maps alike."""
    import numpy as np

    ious = {}
    for k in np.union1d(np.unique(a), np.unique(b)):
        inter, union = int(((a == k) & (b == k)).sum()), int(((a == k) | (b == k)).sum())
        ious[int(k)] = inter / union if union else 1.0
    return ious


def universal_results(names: list[str], ran: list, limit: float) -> list[dict[str, Any]]:
    """Mask2Former's two outputs on the real samples, as users decode them: the semantic map (mean IoU over classes
    >= ``limit``, the SegFormer check's bound), each query's class (argmax, 'no object' included) and each query's
    binary mask (sigmoid > 0.5: what instance and panoptic decoding keep), mean IoU of the masks >= ``limit`` and
    the classes agreeing at >= ``limit`` of the queries. Dicts with TaskResult's fields."""
    import numpy as np

    if not set(UNIVERSAL_OUTPUTS) <= set(names):
        return []
    ci, mi = names.index(UNIVERSAL_OUTPUTS[0]), names.index(UNIVERSAL_OUTPUTS[1])
    results = []
    for input_set, refs, outs in ran:
        if input_set.kind != "sample":
            continue
        rc, rm, cc, cm = (np.asarray(x) for x in (refs[ci], refs[mi], outs[ci], outs[mi]))
        if rc.shape != cc.shape or rm.shape != cm.shape:
            continue  # the elementwise check reports the shapes
        ious = class_ious(semantic_map(rc, rm), semantic_map(cc, cm))
        ra, ca = rm > 0, cm > 0
        inter, union = (ra & ca).sum((2, 3)), (ra | ca).sum((2, 3))
        mask_iou = float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())
        label_agreement = float((rc.argmax(-1) == cc.argmax(-1)).mean())
        mean = float(np.mean(list(ious.values())))
        figures = {"classes": len(ious), "mean_iou": mean, "min_class_iou": min(ious.values()),
                   "query_mask_iou": mask_iou, "query_label_agreement": label_agreement,
                   "queries": int(rc.shape[1]), "bound": limit}
        reasons = [f"{what} {value:.3f} < {limit}" for what, value in
                   (("semantic mean IoU over classes", mean), ("mean IoU of the query masks", mask_iou),
                    ("query label agreement", label_agreement)) if value < limit]
        results.append({"check": "segmentation", "input_set": input_set.name, "output": UNIVERSAL_OUTPUTS[1],
                        "passed": not reasons, "reason": "; ".join(reasons) or None, "figures": figures})
    return results

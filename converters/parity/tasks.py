"""Task-level checks: what a model's user sees, compared on real samples beside the elementwise check.

An elementwise tolerance cannot tell a harmless drift from a lost detection, and it compares numbers
no user reads (hidden states at padding positions). Each check here decodes both models' outputs the
way an application would and compares the results:

- ``detection``: a YOLO-style head ``[batch, 4 + classes, anchors]`` (or ``[batch, anchors, 4 + classes]``)
  decoded (score threshold, per-class NMS) and matched: every confident reference detection must be
  found by the candidate (same class, IoU >= 0.5) and no confident detection may appear from nowhere;
  the mean IoU and the largest score difference of the matches are held to the precision's bounds.
- ``segmentation``: per-pixel argmax over the class axis of ``[batch, classes, H, W]``; IoU per class.
- ``embedding``: outputs ``[batch, tokens, hidden]`` compared at real tokens only (the attention mask),
  cosine per token and of the mean-pooled sentence vector; ``[batch, hidden]`` pooled vectors by cosine.
- ``ctc``: OCR/ASR logits ``[batch, steps, vocabulary]`` greedily decoded (argmax, repeats collapsed,
  blank 0 dropped); the character error rate between the two decoded strings.

Checks are a small registry keyed by task name (:func:`register_task_check`); a later task family adds
its own with the decorator. :func:`run_task_checks` picks them from the task the source declares
(``task``: a Hugging Face pipeline tag, ``zoo.task`` or an exporter's ``task`` metadata) and, for
embeddings and unmistakable detection heads, from the outputs themselves. A check that finds nothing
to compare (no confident detection on the samples) passes nothing: its result says so, as a warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np

    from zoo.converters.parity.report import InputSet


@dataclass
class TaskResult:
    check: str  # the registry key: "detection", "segmentation", "embedding", "ctc", ...
    input_set: str
    output: str
    passed: bool | None  # None: nothing to compare on these samples (a warning, not a pass)
    reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from zoo.converters.parity.report import json_safe

        return json_safe(asdict(self))


@dataclass
class TaskContext:
    """What a check sees: the sets both models ran on, with their outputs, and the candidate's precision."""

    names: list[str]  # output names, in order
    ran: list[tuple[InputSet, list, list]]  # (input set, reference outputs, candidate outputs)
    precision: str  # float32 | float16 | bfloat16 | int8 | int4: picks the bounds
    metadata: dict[str, str]
    explicit: bool  # the task was declared, not guessed from the outputs
    reference: Any = None  # the two models as feeds -> outputs callables, for checks that run them again
    candidate: Any = None  # (a decode loop over the KV cache); None where the caller gave none

    def samples(self) -> list[tuple[InputSet, list, list]]:
        return [r for r in self.ran if r[0].kind == "sample"]


TaskCheck = Callable[[TaskContext], list[TaskResult]]
TASK_CHECKS: dict[str, TaskCheck] = {}
TASK_ALIASES: dict[str, str] = {}  # task names as sources declare them -> registry key
_GUESSERS: dict[str, Callable[[TaskContext], bool]] = {}


def register_task_check(name: str, *aliases: str, guess: Callable[[TaskContext], bool] | None = None) -> Callable:
    """Register ``fn(ctx) -> [TaskResult]`` as the check of task ``name`` (and of each alias); ``guess``
    says from the outputs alone that the check applies when no task is declared."""
    def register(fn: TaskCheck) -> TaskCheck:
        TASK_CHECKS[name] = fn
        for alias in (name, *aliases):
            TASK_ALIASES[alias] = name
        if guess is not None:
            _GUESSERS[name] = guess
        return fn

    return register


def declared_task(task: str | None, metadata: dict[str, str]) -> str | None:
    """The task a source declares: the caller's, else ``zoo.task``, else an exporter's ``task`` entry."""
    return task or metadata.get("zoo.task") or metadata.get("task") or None


def run_task_checks(task: str | None, names: list[str], ran: list, precision: str,
                    metadata: dict[str, str], runners: tuple[Any, Any] = (None, None)) -> list[TaskResult]:
    """The checks of the declared task, then those the outputs themselves call for."""
    key = TASK_ALIASES.get((declared_task(task, metadata) or "").lower())
    chosen = {key: True} if key else {}  # registry key -> declared (True) or guessed
    guessing = TaskContext(names, ran, precision, metadata, explicit=False)
    for name, guess in _GUESSERS.items():
        if name not in chosen and guess(guessing):
            chosen[name] = False
    results = []
    for name, explicit in chosen.items():
        got = TASK_CHECKS[name](TaskContext(names, ran, precision, metadata, explicit, *runners))
        if explicit and not got:  # the declared task's check compared nothing: never a silent pass
            ran_sets = ", ".join(s.name for s, _, _ in ran) or "none"
            got = [TaskResult(name, "-", "-", False, f"the {name} check of the declared task found nothing to compare "
                              f"on the input sets both models ran ({ran_sets}): the candidate is unchecked for its task")]
        results += got
    return results


# Bounds per precision class: what a faithful conversion keeps, with room for its own rounding.
_BOUNDS = {
    "float64": {"iou": 0.999, "score": 0.002, "seg_iou": 0.999, "token_cos": 0.99999, "sent_cos": 0.99999, "cer": 0.0},
    "float32": {"iou": 0.99, "score": 0.01, "seg_iou": 0.995, "token_cos": 0.9999, "sent_cos": 0.9999, "cer": 0.0},
    "float16": {"iou": 0.97, "score": 0.03, "seg_iou": 0.98, "token_cos": 0.999, "sent_cos": 0.999, "cer": 0.02},
    "bfloat16": {"iou": 0.95, "score": 0.05, "seg_iou": 0.95, "token_cos": 0.995, "sent_cos": 0.995, "cer": 0.05},
    "int8": {"iou": 0.9, "score": 0.1, "seg_iou": 0.9, "token_cos": 0.98, "sent_cos": 0.99, "cer": 0.05},
    # 4-bit weights (onnx-int4, decoders only): a GPT-2-style decoder's logit rows keep cosine >= 0.98
    "int4": {"iou": 0.85, "score": 0.15, "seg_iou": 0.85, "token_cos": 0.95, "sent_cos": 0.97, "cer": 0.1},
}


def bounds(precision: str) -> dict[str, float]:
    return _BOUNDS.get(precision, _BOUNDS["int8"])


def _np() -> Any:
    import numpy

    return numpy


# --- detection ---------------------------------------------------------------------------------------
CONF = 0.25  # a detection at all
CONFIDENT = 0.5  # a detection a user acts on: must be found again
MATCH_IOU = 0.5
NMS_IOU = 0.45


def detection_layout(arr: np.ndarray) -> str | None:
    """"fields-first" for ``[batch, 4 + classes, anchors]``, "anchors-first" for the transpose, else None:
    boxes in pixels (more than 4x the score range) in the first four fields, scores in [0, 1] after."""
    np = _np()
    if arr.ndim != 3 or arr.dtype.kind != "f" or not np.isfinite(arr).all():
        return None
    for layout, fields in (("fields-first", arr), ("anchors-first", np.swapaxes(arr, 1, 2))):
        f, n = fields.shape[1], fields.shape[2]
        if not (5 <= f <= 300 and n >= 4 * f):
            continue
        boxes, scores = fields[:, :4], fields[:, 4:]
        if scores.min() >= 0.0 and scores.max() <= 1.0 and np.abs(boxes).max() > 4.0:
            return layout
    return None


def _guess_detection(ctx: TaskContext) -> bool:
    samples = ctx.samples()
    return bool(samples) and any(detection_layout(_np().asarray(r)) for r in samples[0][1])


def decode_detections(arr: np.ndarray, layout: str) -> list[dict[str, np.ndarray]]:
    """Per image: every candidate box above ``CONF`` (``boxes`` x1, y1, x2, y2; ``scores``; ``classes``) and
    the indices NMS keeps (``kept``): the detections a user gets."""
    np = _np()
    fields = arr if layout == "fields-first" else np.swapaxes(arr, 1, 2)
    out = []
    for image in fields.astype(np.float64):
        xywh, scores_all = image[:4].T, image[4:].T
        classes, scores = scores_all.argmax(1), scores_all.max(1)
        keep = scores >= CONF
        xywh, classes, scores = xywh[keep], classes[keep], scores[keep]
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        order = np.argsort(-scores, kind="stable")[:3000]
        boxes, scores, classes = boxes[order], scores[order], classes[order]
        out.append({"boxes": boxes, "scores": scores, "classes": classes,
                    "kept": _nms(np, boxes, scores, classes)[:300]})
    return out


def _iou(np: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _nms(np: Any, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Greedy per-class NMS on score-sorted boxes; indices kept."""
    kept: list[int] = []
    suppressed = np.zeros(len(boxes), bool)
    ious = _iou(np, boxes, boxes) if len(boxes) else np.zeros((0, 0))
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= (ious[i] > NMS_IOU) & (classes == classes[i])
    return np.asarray(kept, dtype=np.int64)


def _found(np: Any, mine: dict, theirs: dict) -> list[tuple[float, float] | None]:
    """For each confident detection NMS keeps in ``mine``: (IoU, score difference) of the best same-class box
    among all of ``theirs`` above ``CONF`` (before their NMS, so which of two near-equal boxes NMS keeps
    does not matter), or None when no such box overlaps at IoU >= ``MATCH_IOU``."""
    kept = [i for i in mine["kept"] if mine["scores"][i] >= CONFIDENT]
    if not kept:
        return []
    if not len(theirs["scores"]):
        return [None] * len(kept)
    ious = _iou(np, mine["boxes"][kept], theirs["boxes"])
    out: list[tuple[float, float] | None] = []
    for row, i in zip(ious, kept):
        row = np.where(theirs["classes"] == mine["classes"][i], row, 0.0)
        j = int(np.argmax(row))
        out.append((float(row[j]), abs(float(theirs["scores"][j]) - float(mine["scores"][i])))
                   if row[j] >= MATCH_IOU else None)
    return out


def match_detections(ref: dict, cand: dict) -> dict[str, Any]:
    """Figures of one image: confident reference detections the candidate has (or lost), confident
    candidate detections the reference does not have (spurious), IoU and score difference of the matches."""
    np = _np()
    found = _found(np, ref, cand)
    matched = [m for m in found if m is not None]
    return {"confident": len(found), "lost": sum(m is None for m in found),
            "spurious": sum(m is None for m in _found(np, cand, ref)),
            "matched_iou": [m[0] for m in matched], "score_diff": [m[1] for m in matched]}


@register_task_check("detection", "object-detection", "detect", guess=_guess_detection)
def check_detection(ctx: TaskContext) -> list[TaskResult]:
    if {"logits", "pred_boxes"} <= set(ctx.names):  # set-prediction heads (YOLOS, DETR): zoo.converters.tasks.vision
        import sys

        from zoo.converters.tasks.vision import detection_results

        return [TaskResult(**r) for r in detection_results(ctx.names, ctx.ran, ctx.precision, sys.modules[__name__])]
    np = _np()
    limit = bounds(ctx.precision)
    results = []
    for input_set, refs, outs in ctx.samples():
        for name, r, c in zip(ctx.names, refs, outs):
            r, c = np.asarray(r), np.asarray(c)
            layout = detection_layout(r)
            if layout is None or r.shape != c.shape:
                continue
            per_image = [match_detections(a, b) for a, b in zip(decode_detections(r, layout), decode_detections(c, layout))]
            confident = sum(m["confident"] for m in per_image)
            lost = sum(m["lost"] for m in per_image)
            spurious = sum(m["spurious"] for m in per_image)
            ious = [v for m in per_image for v in m["matched_iou"]]
            diffs = [v for m in per_image for v in m["score_diff"]]
            figures = {"images": len(per_image), "confident_reference_detections": confident, "lost": lost,
                       "spurious": spurious, "mean_iou": float(np.mean(ious)) if ious else None,
                       "min_iou": float(np.min(ious)) if ious else None,
                       "max_score_diff": float(np.max(diffs)) if diffs else None,
                       "bounds": {"mean_iou": limit["iou"], "max_score_diff": limit["score"]}}
            if confident == 0 and spurious == 0:
                results.append(TaskResult("detection", input_set.name, name, None,
                                          "the reference detects nothing confidently on these samples: "
                                          "no detection was compared", figures))
                continue
            reasons = detection_reasons(lost, confident, spurious, figures, limit,
                                        f"no same-class box at IoU >= {MATCH_IOU} with score >= {CONF}")
            results.append(TaskResult("detection", input_set.name, name, not reasons, "; ".join(reasons) or None, figures))
    return results


def detection_reasons(lost: int, confident: int, spurious: int, figures: dict[str, Any], limit: dict[str, float],
                      lost_rule: str) -> list[str]:
    """Why matched detections fail: lost or spurious confident ones, matched boxes that moved, scores that
    moved (``figures`` holds ``mean_iou`` / ``max_score_diff``, None where nothing was matched)."""
    reasons = []
    if lost:
        reasons.append(f"{lost} of {confident} confident detections lost ({lost_rule})")
    if spurious:
        reasons.append(f"{spurious} confident detections the reference does not make")
    if figures["mean_iou"] is not None and figures["mean_iou"] < limit["iou"]:
        reasons.append(f"mean IoU of matched boxes {figures['mean_iou']:.3f} < {limit['iou']}")
    if figures["max_score_diff"] is not None and figures["max_score_diff"] > limit["score"]:
        reasons.append(f"score moved by up to {figures['max_score_diff']:.3f} > {limit['score']}")
    return reasons


# --- segmentation ------------------------------------------------------------------------------------
@register_task_check("segmentation", "image-segmentation", "semantic-segmentation")
def check_segmentation(ctx: TaskContext) -> list[TaskResult]:
    np = _np()
    limit = bounds(ctx.precision)["seg_iou"]
    if "class_queries_logits" in ctx.names:  # Mask2Former: a class and a mask per query (tasks/vision.py)
        from zoo.converters.tasks.vision import universal_results

        return [TaskResult(**r) for r in universal_results(ctx.names, ctx.ran, limit)]
    from zoo.converters.tasks.vision import class_ious

    results = []
    for input_set, refs, outs in ctx.samples():
        for name, r, c in zip(ctx.names, refs, outs):
            r, c = np.asarray(r), np.asarray(c)
            if r.ndim != 4 or r.shape != c.shape or r.shape[1] < 2:
                continue
            a, b = r.argmax(1), c.argmax(1)
            per_class = class_ious(a, b)
            worst = min(per_class.values())
            mean = float(np.mean(list(per_class.values())))
            figures = {"classes": len(per_class), "mean_iou": mean, "min_class_iou": worst,
                       "pixel_agreement": float((a == b).mean()), "bound": limit}
            ok = mean >= limit
            results.append(TaskResult("segmentation", input_set.name, name, ok,
                                      None if ok else f"mean IoU over classes {mean:.3f} < {limit}", figures))
    return results


# --- embeddings at real tokens -----------------------------------------------------------------------
def _padding_mask(np: Any, input_set: InputSet) -> np.ndarray | None:
    for key, value in input_set.feeds.items():
        arr = np.asarray(value)
        if "mask" in key.lower() and arr.ndim == 2 and arr.dtype.kind in "biu":
            return arr.astype(bool)
    return None


def _cos_rows(np: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(-1) / np.where(na * nb > 0, na * nb, 1.0)
    return np.where(both_zero, 1.0, np.where(na * nb > 0, cos, 0.0))


def _guess_embedding(ctx: TaskContext) -> bool:
    np = _np()
    for input_set, refs, _ in ctx.samples():
        mask = _padding_mask(np, input_set)
        if mask is not None and any(np.asarray(r).ndim == 3 and np.asarray(r).shape[:2] == mask.shape for r in refs):
            return True
    return False


@register_task_check("embedding", "feature-extraction", "sentence-similarity", "text-embedding",
                     "image-feature-extraction", guess=_guess_embedding)
def check_embedding(ctx: TaskContext) -> list[TaskResult]:
    np = _np()
    limit = bounds(ctx.precision)
    results = []
    for input_set, refs, outs in ctx.samples():
        mask = _padding_mask(np, input_set)
        for name, r, c in zip(ctx.names, refs, outs):
            r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
            if r.shape != c.shape or r.dtype.kind != "f":
                continue
            if mask is None and ctx.explicit and r.ndim == 3 and "pixel_values" in input_set.feeds:
                mask = np.ones(r.shape[:2], bool)  # image tokens (patches, CLS): every one is real
            if r.ndim == 3 and mask is not None and r.shape[:2] == mask.shape:
                tokens = _cos_rows(np, r[mask], c[mask])
                weights = mask[..., None].astype(np.float64)
                pooled_r, pooled_c = (r * weights).sum(1) / weights.sum(1), (c * weights).sum(1) / weights.sum(1)
                sentences = _cos_rows(np, pooled_r, pooled_c)
                figures = {"real_tokens": int(mask.sum()), "padding_tokens": int((~mask).sum()),
                           "min_token_cosine": float(tokens.min()), "min_sentence_cosine": float(sentences.min()),
                           "bounds": {"token_cosine": limit["token_cos"], "sentence_cosine": limit["sent_cos"]}}
                reasons = []
                if tokens.min() < limit["token_cos"]:
                    reasons.append(f"cosine at a real token {tokens.min():.5f} < {limit['token_cos']}")
                if sentences.min() < limit["sent_cos"]:
                    reasons.append(f"mean-pooled sentence cosine {sentences.min():.5f} < {limit['sent_cos']}")
            elif r.ndim == 2 and ctx.explicit and r.shape[1] > 1:
                sentences = _cos_rows(np, r, c)
                figures = {"vectors": int(r.shape[0]), "min_cosine": float(sentences.min()),
                           "bounds": {"cosine": limit["sent_cos"]}}
                reasons = [f"embedding cosine {sentences.min():.5f} < {limit['sent_cos']}"] \
                    if sentences.min() < limit["sent_cos"] else []
            else:
                continue
            results.append(TaskResult("embedding", input_set.name, name, not reasons, "; ".join(reasons) or None, figures))
    return results


# --- decoded strings (OCR, ASR) ----------------------------------------------------------------------
def ctc_decode(logits: np.ndarray, blank: int = 0) -> list[list[int]]:
    """Greedy CTC decoding of ``[batch, steps, vocabulary]``: argmax, repeats collapsed, blanks dropped."""
    np = _np()
    out = []
    for row in np.asarray(logits).argmax(-1):
        seq, last = [], None
        for k in row.tolist():
            if k != last and k != blank:
                seq.append(int(k))
            last = k
        out.append(seq)
    return out


def edit_distance(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _vocabulary(metadata: dict[str, str]) -> list[str] | None:
    import json

    for key in ("zoo.vocabulary", "character", "vocabulary", "zoo.labels"):
        if key in metadata:
            try:
                value = json.loads(metadata[key])
            except ValueError:
                value = metadata[key].splitlines()
            if isinstance(value, list):
                return [str(v) for v in value]
    return None


def _guess_ctc(ctx: TaskContext) -> bool:
    """Per-step probabilities ``[batch, steps, classes]`` (rows in [0, 1] summing to 1) from a sample of
    images or audio: what a CTC text recogniser (OCR, ASR) puts out."""
    np = _np()
    for input_set, refs, _ in ctx.samples():
        if _padding_mask(np, input_set) is not None:
            continue
        for r in refs:
            r = np.asarray(r)
            if r.ndim == 3 and r.dtype.kind == "f" and r.shape[1] >= 4 and r.shape[2] >= 3 and r.min() >= 0 \
                    and r.max() <= 1 and np.allclose(r.sum(-1), 1.0, atol=1e-3):
                return True
    return False


@register_task_check("ctc", "ocr", "text-recognition", "automatic-speech-recognition", "asr", guess=_guess_ctc)
def check_ctc(ctx: TaskContext) -> list[TaskResult]:
    np = _np()
    limit = bounds(ctx.precision)["cer"]
    vocab = _vocabulary(ctx.metadata)
    results = []
    if ctx.explicit and any("input_values" in s.feeds for s, _, _ in ctx.samples()):
        from zoo.converters.tasks.speech import argmax_results  # audio CTC heads: per-frame ids too

        results += [TaskResult(**r) for r in argmax_results(ctx.names, ctx.ran, ctx.precision)]
    for input_set, refs, outs in ctx.samples():
        for name, r, c in zip(ctx.names, refs, outs):
            r, c = np.asarray(r), np.asarray(c)
            if r.ndim != 3 or r.shape != c.shape or r.dtype.kind != "f" or r.shape[-1] < 2:
                continue
            a, b = ctc_decode(r), ctc_decode(c)
            errors = sum(edit_distance(x, y) for x, y in zip(a, b))
            length = max(1, sum(len(x) for x in a))
            cer = errors / length
            text = (lambda seq: "".join(vocab[k - 1] if 0 < k <= len(vocab) else "?" for k in seq)) if vocab else None
            figures = {"strings": len(a), "character_error_rate": cer, "bound": limit,
                       "reference": [text(x) if text else x for x in a[:4]],
                       "candidate": [text(y) if text else y for y in b[:4]]}
            ok = cer <= limit
            results.append(TaskResult("ctc", input_set.name, name, ok,
                                      None if ok else f"decoded strings differ: character error rate {cer:.3f} > {limit}",
                                      figures))
    return results


@register_task_check("depth", "depth-estimation")
def check_depth(ctx: TaskContext) -> list[TaskResult]:
    from zoo.converters.tasks.depth import depth_results

    return [TaskResult(**r) for r in depth_results(ctx.names, ctx.ran, ctx.precision)]


# --- text generation (zoo.converters.tasks.text_generation) ------------------------------------------
@register_task_check("text-generation", "causal-lm", "text-generation-with-past")
def check_generation(ctx: TaskContext) -> list[TaskResult]:
    """Greedy generation through each model's own KV cache, tokens and per-step logits compared."""
    from zoo.converters.tasks.text_generation import generation_results

    if ctx.reference is None or ctx.candidate is None:
        return []
    return [TaskResult(**r) for r in generation_results(ctx.names, ctx.ran, ctx.precision, ctx.reference,
                                                         ctx.candidate, metadata=ctx.metadata)]


@register_task_check("audio-classification")
def check_audio_classification(ctx: TaskContext) -> list[TaskResult]:
    from zoo.converters.tasks.speech import clip_label_results

    labels = getattr(getattr(ctx.reference, "torch_model", None), "labels", None)
    return [TaskResult(**r) for r in clip_label_results(ctx.names, ctx.ran, ctx.precision, labels)]


# --- encoder-decoder generation (zoo.converters.tasks.seq2seq) ----------------------------------------
@register_task_check("text2text-generation", "summarization", "translation", "seq2seq-lm")
def check_seq2seq(ctx: TaskContext) -> list[TaskResult]:
    """Greedy generation through both graphs (the encoder beside the decoder being checked) against the
    source's ``generate()``; T5/BART prompts or Whisper clips through the repo's own preprocessing."""
    from pathlib import Path

    from zoo.converters.tasks.seq2seq_check import generation_results

    pair = getattr(getattr(ctx.reference, "torch_model", None), "seq2seq", None)
    path = getattr(ctx.candidate, "path", None)
    if pair is None or path is None:
        return [TaskResult("text2text-generation", "sample-prompts", "logits", False,
                           "the generation check needs the PyTorch source and the pair (the encoder beside the "
                           "decoder); only the decoder was given")]
    return [TaskResult(**generation_results(pair.model, pair.preprocess, Path(path), pair.contract,
                                            precision=ctx.precision, samples=pair.samples))]


# --- encoder heads (zoo.converters.tasks.heads) ------------------------------------------------------
def _head_check(task: str) -> TaskCheck:
    def check(ctx: TaskContext) -> list[TaskResult]:
        from zoo.converters.tasks.heads import head_results

        return [TaskResult(**r) for r in head_results(task, ctx.names, ctx.ran, ctx.precision)]

    return check


register_task_check("fill-mask", "masked-lm")(_head_check("fill-mask"))
register_task_check("token-classification", "ner")(_head_check("token-classification"))
register_task_check("question-answering")(_head_check("question-answering"))


@register_task_check("multiple-choice")
def check_multiple_choice(ctx: TaskContext) -> list[TaskResult]:
    from zoo.converters.tasks.heads import choice_results

    return [TaskResult(**r) for r in choice_results(ctx.names, ctx.ran, ctx.precision)]


@register_task_check("zero-shot", "zero-shot-image-classification")
def check_zero_shot(ctx: TaskContext) -> list[TaskResult]:
    from zoo.converters.tasks.vision import zero_shot_results

    return [TaskResult(**r) for r in zero_shot_results(ctx.names, ctx.ran, ctx.precision)]

"""Task metrics, on numpy arrays and plain strings; every figure a fraction in [0, 1].

| task | metrics |
|---|---|
| image-classification | ``top1``, ``top5`` (label within the five highest scores; classifiers of 5+ classes) |
| text-classification | ``accuracy``, ``f1`` (macro: the mean F1 over the classes seen in labels or predictions) |
| question-answering | ``exact_match`` (SQuAD's normalisation: case, punctuation, articles, spaces) |
| automatic-speech-recognition | ``wer`` (word edit distance over reference words; lower is better) |

``delta`` is the candidate's figure minus the source's, in percentage points.
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

# Metrics where a smaller figure is better (a drop is an improvement).
LOWER_IS_BETTER = frozenset({"wer"})
TASK_METRICS = {
    "image-classification": ("top1", "top5"),
    "text-classification": ("accuracy", "f1"),
    "question-answering": ("exact_match",),
    "automatic-speech-recognition": ("wer",),
}


def topk_accuracy(scores: Any, labels: Any, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (ties: the lower class index first)."""
    import numpy as np

    scores, labels = np.asarray(scores), np.asarray(labels)
    if k == 1:
        return float(np.mean(np.argmax(scores, axis=-1) == labels))
    top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def accuracy(predictions: Any, labels: Any) -> float:
    import numpy as np

    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def macro_f1(predictions: Any, labels: Any) -> float:
    """Mean per-class F1 over every class that occurs in the labels or the predictions."""
    import numpy as np

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    scores = []
    for cls in np.union1d(predictions, labels):
        tp = int(np.sum((predictions == cls) & (labels == cls)))
        fp = int(np.sum((predictions == cls) & (labels != cls)))
        fn = int(np.sum((predictions != cls) & (labels == cls)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def classification_metrics(task: str, scores: Any, labels: Any) -> dict[str, float]:
    """The task's figures for class scores ``(N, classes)`` against class indices ``(N,)``."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    if task == "image-classification":
        out = {"top1": topk_accuracy(scores, labels, 1)}
        if scores.shape[-1] >= 5:
            out["top5"] = topk_accuracy(scores, labels, 5)
        return out
    predictions = np.argmax(scores, axis=-1)
    return {"accuracy": accuracy(predictions, labels), "f1": macro_f1(predictions, labels)}


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> float:
    """Fraction of predictions equal (normalised) to one of their reference answers."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    hits = 0
    for prediction, answers in zip(predictions, references):
        answers = [answers] if isinstance(answers, str) else list(answers)
        hits += any(normalize_answer(prediction) == normalize_answer(a) for a in answers)
    return hits / len(predictions) if predictions else 0.0


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Word-level edit distance (substitutions + deletions + insertions) over the reference word count,
    summed over the corpus (as jiwer and the HF ``wer`` metric compute it)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    edits = words = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        row = list(range(len(h) + 1))
        for i, rw in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, hw in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
        edits += row[len(h)]
        words += len(r)
    return edits / words if words else 0.0


def deltas(source: dict[str, float], candidate: dict[str, float]) -> dict[str, float]:
    """Candidate minus source per metric, in percentage points."""
    return {k: round((candidate[k] - source[k]) * 100, 6) for k in source if k in candidate}


def drop(metric: str, delta_pp: float) -> float:
    """How many percentage points worse the candidate is (negative: better)."""
    return delta_pp if metric in LOWER_IS_BETTER else -delta_pp

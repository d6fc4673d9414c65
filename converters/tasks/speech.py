"""Speech: automatic-speech-recognition with a CTC head (Wav2Vec2, HuBERT, ...): ``input_values [batch, samples]``
(raw audio as the repo's feature extractor normalises it) -> ``logits [batch, frames, vocabulary]``.

Parity inputs: seeded noise at three lengths, and a synthetic spoken-like clip (a gliding harmonic tone
with syllable-rate amplitude modulation and a little noise, two lengths in one padded batch) put through
the repo's own feature extractor. The ``ctc`` task check (``converters/parity/tasks.py``) compares the
greedy CTC decodings; here the per-frame argmax ids are compared as well (``argmax_results``).

audio-classification (``Wav2Vec2ForSequenceClassification`` & co.) takes the same inputs and gives
``logits [batch, labels]``, one label per clip: ``clip_label_results`` compares the label of every clip and
the probabilities over the labels.
"""

from __future__ import annotations

from typing import Any

from zoo.converters.parity.report import InputSet


def synthetic_clip(seconds: float, rate: int, seed: int = 0) -> Any:
    """A deterministic speech-like waveform in [-1, 1]: what parity feeds instead of a real recording."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)  # a gliding fundamental, as a voice
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # ~4 syllables a second
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.02
    wave = envelope * voice + noise
    return (wave / np.abs(wave).max()).astype(np.float32)


def input_sets(record: Any, extractor: Any) -> list[InputSet]:
    import numpy as np

    names = [s["name"] for s in record.input_spec]
    sets = []
    for seed, (batch, samples) in enumerate(((2, 8000), (1, 5000), (3, 11000))):
        rng = np.random.default_rng(seed)
        feeds = {"input_values": rng.standard_normal((batch, samples)).astype(np.float32)}
        if "attention_mask" in names:
            feeds["attention_mask"] = np.ones((batch, samples), np.int64)
        sets.append(InputSet(f"random-b{batch}-n{samples}", feeds))
    if extractor is not None:
        # the clips as the extractor pads them, then again cut (or padded) to the export example's length (the
        # first set's): a static-shape export (litert-torch's tflite) takes only that length, and its task check
        # (and its float16/int8 variants' require_samples) must still see real-sample audio
        rate = int(getattr(extractor, "sampling_rate", 16000))
        clips = [synthetic_clip(1.0, rate, 0), synthetic_clip(0.6, rate, 1)]
        length = int(sets[0].feeds["input_values"].shape[1])
        for name, padding in (("sample-audio", {"padding": True}),
                              (f"sample-audio-n{length}", {"padding": "max_length", "max_length": length,
                                                           "truncation": True})):
            enc = extractor(clips, sampling_rate=rate, return_tensors="np", **padding)
            feeds = {"input_values": np.asarray(enc["input_values"], np.float32)}
            if "attention_mask" in names:
                mask = enc.get("attention_mask")
                feeds["attention_mask"] = np.asarray(mask if mask is not None else np.ones_like(feeds["input_values"]),
                                                     np.int64)
            sets.append(InputSet(name, feeds, kind="sample"))
    return sets


def argmax_results(names: list[str], ran: list, precision: str) -> list[dict[str, Any]]:
    """Per-frame argmax ids (what a CTC decoder reads) identical at float32 (95% below)."""
    import numpy as np

    from zoo.converters.tasks.agreement import label_agreement_needed, sample_pairs

    need = label_agreement_needed(precision)
    results = []
    for input_set, r, c in sample_pairs(names, ran, "logits", 3):
        agree = float((r.argmax(-1) == c.argmax(-1)).mean())
        reason = None if agree >= need else f"per-frame argmax ids agree on {agree:.1%} < {need:.0%}"
        results.append({"check": "ctc-ids", "input_set": input_set.name, "output": "logits", "passed": reason is None,
                        "reason": reason, "figures": {"frames": int(r.shape[0] * r.shape[1]),
                                                      "argmax_agreement": agree,
                                                      "distinct_ids": len(np.unique(r.argmax(-1)))}})
    return results


def clip_label_results(names: list[str], ran: list, precision: str, labels: list[str] | None) -> list[dict[str, Any]]:
    """audio-classification: the synthetic clips through the repo's feature extractor, the label of every clip
    (argmax of ``logits [batch, labels]``) identical at float32 (95% below), and the softmax probabilities
    within 1e-4 at float32 (1e-2 below)."""
    import numpy as np

    from zoo.converters.tasks.agreement import label_agreement_needed, sample_pairs

    need = label_agreement_needed(precision)
    prob_tol = 1e-4 if precision in ("float32", "float64") else 1e-2
    softmax = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
    results = []
    for input_set, r, c in sample_pairs(names, ran, "logits", 2):
        ref, cand = r.argmax(-1), c.argmax(-1)
        agree = float((ref == cand).mean())
        prob = float(np.abs(softmax(r.astype(np.float64)) - softmax(c.astype(np.float64))).max())
        reasons = []
        if agree < need:
            reasons.append(f"the label of {agree:.0%} of the clips agrees < {need:.0%}")
        if prob > prob_tol:
            reasons.append(f"probabilities differ by {prob:.2e} > {prob_tol:.0e}")
        name = (lambda i: labels[i] if isinstance(labels, list) and i < len(labels) else int(i))  # noqa: E731
        results.append({"check": "audio-classification", "input_set": input_set.name, "output": "logits",
                        "passed": not reasons, "reason": "; ".join(reasons) or None,
                        "figures": {"clips": int(r.shape[0]), "label_agreement": agree, "max_prob_diff": prob,
                                    "bounds": {"label_agreement": need, "prob_diff": prob_tol},
                                    "reference": [name(int(i)) for i in ref], "candidate": [name(int(i)) for i in cand]}})
    return results

"""Hugging Face tasks: which one a repo is, which zoo converts, and the I/O contract of each.

Framework-free (a cached pull imports neither torch nor transformers through here). The task of a repo
comes, in order, from ``--task`` (``Options.task``), from ``modules.json`` (a sentence-transformers repo:
``sentence-similarity``), from the head in ``config.json``'s ``architectures`` and, for a bare ``*Model``,
from the model card's ``pipeline_tag``. Names are those of transformers' pipelines and optimum's exporters
(aliases such as ``causal-lm`` or ``ner`` are accepted). A task zoo does not convert is an
:class:`~zoo.errors.UnsupportedError` (exit 5) that lists those it does.
"""

from __future__ import annotations

import re
from typing import Any

from zoo import errors

# task -> the transformers Auto class its head loads with
SUPPORTED_TASKS: dict[str, str] = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
    "text-generation": "AutoModelForCausalLM",
    "fill-mask": "AutoModelForMaskedLM",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "sentence-similarity": "AutoModel",
    "multiple-choice": "AutoModelForMultipleChoice",
    "automatic-speech-recognition": "AutoModelForCTC",  # CTC heads; Whisper: AutoModelForSpeechSeq2Seq (tasks/seq2seq.py)
    "text2text-generation": "AutoModelForSeq2SeqLM",  # encoder-decoder: encoder.onnx + decoder.onnx (tasks/seq2seq.py)
    "audio-classification": "AutoModelForAudioClassification",  # a label per clip (tasks/speech.py)
    "zero-shot-image-classification": "AutoModel",  # CLIP-style dual encoders (tasks/vision.py)
    "object-detection": "AutoModelForObjectDetection",  # set-prediction heads: YOLOS, DETR (tasks/vision.py)
    "image-segmentation": "AutoModelForSemanticSegmentation",  # semantic heads (SegFormer, ...): logits per pixel
    "image-feature-extraction": "AutoModel",  # a bare vision encoder (DINOv2, ViT): its hidden states
    "depth-estimation": "AutoModelForDepthEstimation",  # DPT, Depth Anything: predicted_depth (tasks/depth.py)
}

# Hugging Face tasks zoo knows the name of but does not convert yet (exit 5, not a usage error)
KNOWN_UNSUPPORTED = (
    "image-to-text", "text-to-audio", "zero-shot-classification",
    "table-question-answering", "visual-question-answering", "mask-generation",
)  # fmt: skip

ALIASES = {
    "causal-lm": "text-generation", "text-generation-with-past": "text-generation",
    "masked-lm": "fill-mask", "ner": "token-classification", "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification", "default": "feature-extraction",
    "sentence-transformers": "sentence-similarity", "sentence-embedding": "sentence-similarity",
    "seq2seq-lm": "text2text-generation", "ctc": "automatic-speech-recognition",
    "summarization": "text2text-generation", "translation": "text2text-generation",
}  # fmt: skip

# head suffix of config.json's architectures -> task (longest first where one suffix ends another)
HEADS = (
    ("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
    ("ForMaskedLM", "fill-mask"), ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"), ("ForSequenceClassification", "text-classification"),
    ("ForImageClassification", "image-classification"), ("ForMultipleChoice", "multiple-choice"),
    ("ForCTC", "automatic-speech-recognition"), ("WhisperForConditionalGeneration", "automatic-speech-recognition"),
    ("ForSpeechSeq2Seq", "text2text-generation"),
    ("ForConditionalGeneration", "text2text-generation"), ("MarianMTModel", "text2text-generation"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    # Mask2Former only: OneFormer's *ForUniversalSegmentation also takes a task text (exit 5 until converted)
    ("Mask2FormerForUniversalSegmentation", "image-segmentation"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForAudioClassification", "audio-classification"), ("ForPreTraining", "feature-extraction"),
)  # fmt: skip

# speech encoders whose *ForSequenceClassification head classifies a clip (audio-classification, not text)
_AUDIO_ENCODERS = ("Wav2Vec2", "Wav2Vec2Conformer", "Wav2Vec2Bert", "Hubert", "WavLM", "Data2VecAudio", "SEW", "SEWD",
                "UniSpeech", "UniSpeechSat")

# a bare *Model repo takes its task from the card only for these (the graph is the same encoder)
_CARD_TASKS_OF_A_BASE_MODEL = ("feature-extraction", "sentence-similarity", "image-feature-extraction")


def supported_list() -> str:
    return ", ".join(SUPPORTED_TASKS)


def canonical_task(task: str | None) -> str | None:
    """A task name as the user or a card writes it -> zoo's name (None stays None; unknown names stay)."""
    if task is None:
        return None
    name = task.strip().lower().replace("_", "-")
    return ALIASES.get(name, name)


def check_task(task: str, model_id: str = "", what: str = "--task") -> str:
    """``task`` in zoo's spelling, or UnsupportedError (a known Hugging Face task zoo does not convert, exit 5)
    or UsageError (no such task, exit 2); both list the supported tasks."""
    name = canonical_task(task) or ""
    if name in SUPPORTED_TASKS:
        return name
    prefix = f"{model_id}: " if model_id else ""
    if name in KNOWN_UNSUPPORTED:
        raise errors.UnsupportedError(f"{prefix}task {name} is not supported yet (from {what})",
                                      hint=f"supported tasks: {supported_list()}", model=model_id or None)
    raise errors.UsageError(f"{prefix}{what} {task!r} is not a task zoo knows",
                            hint=f"supported tasks: {supported_list()}")


def card_pipeline_tag(card: str | None) -> str | None:
    """``pipeline_tag`` from a model card's YAML front matter (read as text: never parsed as YAML objects)."""
    if not card or not card.startswith("---"):
        return None
    end = card.find("\n---", 3)
    front = card[3:end] if end > 0 else ""
    match = re.search(r"^pipeline_tag:\s*['\"]?([A-Za-z0-9_-]+)['\"]?\s*$", front, re.MULTILINE)
    return match.group(1) if match else None


def head_task(arch: str | None) -> str | None:
    if not arch:
        return None
    from zoo.converters.tasks.vision import head_task as vision_head

    if vision := vision_head(arch):
        return vision
    if arch.endswith("ForSequenceClassification") and arch[:-len("ForSequenceClassification")] in _AUDIO_ENCODERS:
        return "audio-classification"
    for suffix, task in HEADS:
        if arch.endswith(suffix):
            return task
    return "feature-extraction" if arch.endswith("Model") else None


def detect_task(model_id: str, arch: str | None, *, override: str | None = None, card: str | None = None,
                modules: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """(task, where it came from) for a transformers repo; exits 5 for a head zoo does not convert."""
    if override:
        return check_task(override, model_id), "--task"
    if modules and arch and head_task(arch) == "feature-extraction":
        return "sentence-similarity", "modules.json"
    task = head_task(arch)
    source = f"config.json architectures ({arch})"
    if task == "feature-extraction" and arch and arch.endswith("Model"):
        tag = canonical_task(card_pipeline_tag(card))
        if tag in _CARD_TASKS_OF_A_BASE_MODEL:
            return tag, "model card pipeline_tag"
    if task is None and arch is None:
        tag = canonical_task(card_pipeline_tag(card))
        if tag:
            return check_task(tag, model_id, "the model card's pipeline_tag"), "model card pipeline_tag"
        return "feature-extraction", "no architectures in config.json"
    if task is None:
        raise errors.UnsupportedError(f"{model_id}: head {arch} is not supported yet",
                                      hint=f"supported tasks: {supported_list()}; pass --task to pick another",
                                      model=model_id)
    if task not in SUPPORTED_TASKS:
        raise errors.UnsupportedError(f"{model_id}: head {arch} ({task}) is not supported yet",
                                      hint=f"supported tasks: {supported_list()}", model=model_id)
    return task, source


def prepare_tokenizer(tokenizer: Any, task: str | None, note: Any) -> Any:
    """A pad token where the tokenizer has none (GPT-2: its end-of-text token; padding is masked out
    anyway), and left padding for decoders, whose next token is read at the last position."""
    if tokenizer is None:
        return None
    if getattr(tokenizer, "pad_token", None) is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is not None:
            tokenizer.pad_token = fallback
            note(f"the tokenizer has no pad token: padding with {fallback!r} (masked out by the attention mask)")
    if task == "text-generation":
        tokenizer.padding_side = "left"
    return tokenizer


def _falcon_kv_heads(config: dict[str, Any]) -> int | None:
    """Falcon names its key/value heads ``num_kv_heads``, and its multi-query layout (``multi_query`` without
    ``new_decoder_architecture``, falcon-7b's) caches one head whatever that says."""
    if config.get("model_type") != "falcon":
        return None
    if not config.get("new_decoder_architecture") and config.get("multi_query", True):
        return 1
    return config.get("num_kv_heads")


def vision_universal(config: dict[str, Any]) -> bool:
    """A Mask2Former-style universal segmentation head (a class and a mask per query)."""
    from zoo.converters.tasks import vision

    return any(vision.is_universal(a) for a in config.get("architectures") or [])


def io_contract(task: str, config: dict[str, Any], generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a consumer of the ONNX file needs beside its names: recorded in zoo.json and ``zoo.io``
    (``generation``: the repo's generation_config.json: how an encoder-decoder starts decoding, and the rules a
    greedy decode loop applies to the logits)."""
    if task == "text2text-generation" or (task == "automatic-speech-recognition" and config.get("is_encoder_decoder")):
        from zoo.converters.tasks import seq2seq

        if not config.get("is_encoder_decoder"):
            raise errors.UnsupportedError(f"{config.get('architectures') or config.get('model_type')}: task {task} "
                                          "is for encoder-decoder models and this one is not",
                                          hint=f"supported tasks: {supported_list()}; pass --task to pick another")
        return seq2seq.io_contract(config, generation)
    if task == "text-generation":
        from zoo.converters.tasks import text_generation

        layers = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
        heads = config.get("num_attention_heads") or config.get("n_head")
        hidden = config.get("hidden_size") or config.get("n_embd")
        kv_heads = config.get("num_key_value_heads") or _falcon_kv_heads(config) or heads
        head_dim = config.get("head_dim") or (hidden // heads if hidden and heads else None)
        return {
            "inputs": ["input_ids", "attention_mask"] + [f"past_key_values.{i}.{k}" for i in range(layers or 0)
                                                         for k in ("key", "value")],
            "outputs": ["logits"] + [f"present.{i}.{k}" for i in range(layers or 0) for k in ("key", "value")],
            "axes": {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "past_sequence + sequence"],
                     "past_key_values.*": ["batch", "num_key_value_heads", "past_sequence", "head_dim"],
                     "logits": ["batch", "sequence", "vocab"],
                     "present.*": ["batch", "num_key_value_heads", "past_sequence + sequence", "head_dim"]},
            "cache": {"num_layers": layers, "num_key_value_heads": kv_heads, "head_dim": head_dim,
                      "prefill": "feed every past_key_values.* with past_sequence = 0 (shape [batch, heads, 0, head_dim])",
                      "decode": "feed present.* of the previous step as past_key_values.*, the new token(s) as "
                                "input_ids and the attention mask of every position so far (past + new)",
                      "position_ids": "computed inside the graph from attention_mask (cumsum - 1)",
                      "padding_positions": "present.* hold zeros where attention_mask is 0"},
            "padding": "left", "pad_token_id": config.get("pad_token_id"), "eos_token_id": config.get("eos_token_id"),
            "vocab_size": config.get("vocab_size"),
            "decoding": text_generation.decoding(config, generation),
        }
    if task == "zero-shot-image-classification":
        from zoo.converters.tasks import vision

        return vision.io_contract(config)
    if task == "object-detection":
        from zoo.converters.tasks import vision

        return vision.detection_contract(config)
    if task == "image-segmentation" and vision_universal(config):
        from zoo.converters.tasks import vision

        return vision.universal_contract(config)
    if task == "depth-estimation":
        from zoo.converters.tasks import depth

        return depth.io_contract(config)
    outputs = {"fill-mask": ["logits"], "token-classification": ["logits"],
               "question-answering": ["start_logits", "end_logits"], "sentence-similarity": ["sentence_embedding"],
               "automatic-speech-recognition": ["logits"], "multiple-choice": ["logits"], "audio-classification": ["logits"],
               "text-classification": ["logits"]}.get(task)
    if outputs is None:
        return {}
    axes = {"fill-mask": ["batch", "sequence", "vocab"], "token-classification": ["batch", "sequence", "labels"],
            "question-answering": ["batch", "sequence"], "sentence-similarity": ["batch", "hidden"],
            "automatic-speech-recognition": ["batch", "frames", "vocab"], "multiple-choice": ["batch", "choices"],
            "audio-classification": ["batch", "labels"],
            "text-classification": ["batch", "labels"]}[task]
    if task == "audio-classification":
        return {"inputs": ["input_values"], "outputs": ["logits"],
                "axes": {"input_values": ["batch", "samples"], "logits": ["batch", "labels"]},
                "decoding": "the label of a clip: argmax over logits (config.json id2label)"}
    if task == "automatic-speech-recognition":
        return {"inputs": ["input_values"], "outputs": outputs, "axes": {"input_values": ["batch", "samples"], "logits": axes},
                "decoding": "greedy CTC: argmax per frame, repeats collapsed, the pad (blank) token dropped",
                "blank_id": config.get("pad_token_id", 0)}
    return {"outputs": outputs, "axes": {o: axes for o in outputs}, "padding": "right"}

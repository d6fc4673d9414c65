"""The tiny architectures of ``bench_coverage.py``: one row per (family, head), each built offline with seeded
random weights and the preprocessing a user's repo carries (a tokenizer trained here, an image processor,
a feature extractor), as ``tests/task_builders.py`` builds the test repos.

``ARCHS`` maps a short name to ``(task, optimum task, builder)``; ``build(name)`` returns the repo's files.
Tiny means 2 layers (4 where a head reads 4 hidden states), hidden 32, 4 heads: every export runs in seconds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import builders
import task_builders

H, L, NH, FF = 32, 2, 4, 37
IMG = 32

DECODERS: dict[str, tuple[str, str, dict[str, Any]]] = {  # name -> (config class, model class, kwargs)
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": H, "n_layer": L, "n_head": NH, "n_positions": 128}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"num_key_value_heads": 2}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"num_key_value_heads": 2, "head_dim": 8}),
    "phi": ("PhiConfig", "PhiForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"num_key_value_heads": 2}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"num_key_value_heads": 2, "head_dim": 8}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"num_key_value_heads": 2, "head_dim": 8}),
    "opt": ("OPTConfig", "OPTForCausalLM", {"ffn_dim": FF, "word_embed_proj_dim": H}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {}),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", {"n_embd": H, "n_layer": L, "n_head": NH, "rotary_dim": 4,
                                               "n_positions": 128}),
    "bloom": ("BloomConfig", "BloomForCausalLM", {"n_layer": L, "n_head": NH}),
    "falcon": ("FalconConfig", "FalconForCausalLM", {}),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM", {"num_layers": L, "num_heads": NH,
                                                      "attention_types": [[["global", "local"], 1]]}),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM", {"n_embd": H, "n_layer": L, "n_head": NH, "rotary_dim": 4,
                                                        "n_positions": 128, "n_ctx": 128}),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", {"num_key_value_heads": 2}),
    "olmo": ("OlmoConfig", "OlmoForCausalLM", {"num_key_value_heads": 2}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"num_key_value_heads": 2}),
}
COMMON = {"hidden_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "intermediate_size": FF,
          "max_position_embeddings": 128}

ENCODERS: dict[str, tuple[str, str, dict[str, Any]]] = {  # name -> (config class, model class, kwargs)
    "bert-fill-mask": ("BertConfig", "BertForMaskedLM", {}),
    "bert-text-classification": ("BertConfig", "BertForSequenceClassification", {"num_labels": 3}),
    "bert-token-classification": ("BertConfig", "BertForTokenClassification", {"num_labels": 5}),
    "bert-question-answering": ("BertConfig", "BertForQuestionAnswering", {}),
    "bert-multiple-choice": ("BertConfig", "BertForMultipleChoice", {}),
    "bert-feature-extraction": ("BertConfig", "BertModel", {}),
    "roberta-fill-mask": ("RobertaConfig", "RobertaForMaskedLM", {"max_position_embeddings": 130}),
    "roberta-text-classification": ("RobertaConfig", "RobertaForSequenceClassification",
                                    {"max_position_embeddings": 130, "num_labels": 3}),
    "xlm-roberta-fill-mask": ("XLMRobertaConfig", "XLMRobertaForMaskedLM", {"max_position_embeddings": 130}),
    "camembert-fill-mask": ("CamembertConfig", "CamembertForMaskedLM", {"max_position_embeddings": 130}),
    "distilbert-text-classification": ("DistilBertConfig", "DistilBertForSequenceClassification",
                                       {"dim": H, "n_layers": L, "n_heads": NH, "hidden_dim": FF, "num_labels": 3}),
    "distilbert-question-answering": ("DistilBertConfig", "DistilBertForQuestionAnswering",
                                      {"dim": H, "n_layers": L, "n_heads": NH, "hidden_dim": FF}),
    "albert-question-answering": ("AlbertConfig", "AlbertForQuestionAnswering", {"embedding_size": 16}),
    "electra-token-classification": ("ElectraConfig", "ElectraForTokenClassification",
                                     {"embedding_size": 16, "num_labels": 5}),
    "deberta-v2-text-classification": ("DebertaV2Config", "DebertaV2ForSequenceClassification", {"num_labels": 3}),
    "deberta-fill-mask": ("DebertaConfig", "DebertaForMaskedLM", {}),
    "mpnet-sentence-similarity": ("MPNetConfig", "MPNetModel", {"max_position_embeddings": 130}),
    "roformer-fill-mask": ("RoFormerConfig", "RoFormerForMaskedLM", {"embedding_size": H}),
    "convbert-text-classification": ("ConvBertConfig", "ConvBertForSequenceClassification",
                                     {"embedding_size": H, "num_labels": 3}),
}
TEXT_TASKS = {"ForMaskedLM": "fill-mask", "ForSequenceClassification": "text-classification",
              "ForTokenClassification": "token-classification", "ForQuestionAnswering": "question-answering",
              "ForMultipleChoice": "multiple-choice"}

VISION: dict[str, tuple[str, str, dict[str, Any]]] = {  # name -> (config class, model class, kwargs)
    "vit": ("ViTConfig", "ViTForImageClassification", {"image_size": IMG, "patch_size": 8}),
    "deit": ("DeiTConfig", "DeiTForImageClassification", {"image_size": IMG, "patch_size": 8}),
    "beit": ("BeitConfig", "BeitForImageClassification", {"image_size": IMG, "patch_size": 8}),
    "data2vec-vision": ("Data2VecVisionConfig", "Data2VecVisionForImageClassification",
                        {"image_size": IMG, "patch_size": 8}),
    "convnext": ("ConvNextConfig", "ConvNextForImageClassification",
                 {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}),
    "convnextv2": ("ConvNextV2Config", "ConvNextV2ForImageClassification",
                   {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}),
    "swin": ("SwinConfig", "SwinForImageClassification", {"image_size": IMG, "patch_size": 4, "embed_dim": 16,
                                                          "depths": [1, 1], "num_heads": [2, 4], "window_size": 4}),
    "resnet": ("ResNetConfig", "ResNetForImageClassification", {"embedding_size": 8, "hidden_sizes": [8, 16, 24, 32],
                                                                "depths": [1, 1, 1, 1], "layer_type": "basic"}),
    "regnet": ("RegNetConfig", "RegNetForImageClassification", {"embedding_size": 8, "hidden_sizes": [8, 16, 24, 32],
                                                                "depths": [1, 1, 1, 1], "groups_width": 8}),
    "mobilenet_v2": ("MobileNetV2Config", "MobileNetV2ForImageClassification",
                     {"image_size": IMG, "depth_multiplier": 0.25}),
    "mobilevit": ("MobileViTConfig", "MobileViTForImageClassification",
                  {"image_size": 64, "hidden_sizes": [16, 24, 32], "neck_hidden_sizes": [8, 8, 16, 16, 24, 32, 48],
                   "num_attention_heads": 2}),
    "efficientnet": ("EfficientNetConfig", "EfficientNetForImageClassification",
                     {"image_size": IMG, "width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 64}),
    "levit": ("LevitConfig", "LevitForImageClassification",
              {"image_size": 64, "hidden_sizes": [16, 24, 32], "num_attention_heads": [1, 2, 2], "depths": [1, 1, 1],
               "key_dim": [8, 8, 8]}),
    "poolformer": ("PoolFormerConfig", "PoolFormerForImageClassification",
                   {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}),
}
VISION_COMMON = {"hidden_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "intermediate_size": FF,
                 "num_labels": 5, "image_size": IMG}  # image_size where the config has one: the processor's


def _cls(name: str):
    import transformers

    return getattr(transformers, name)


def _fields(config_cls, kwargs: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` over the ``common`` fields this config class takes."""
    import inspect

    accepted = set(inspect.signature(config_cls.__init__).parameters)
    open_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(config_cls.__init__).parameters.values())
    base = {k: v for k, v in common.items() if k in accepted or (open_kwargs and k in ("num_labels",))}
    return {**base, **kwargs}


def _save(model, savers=(), card: tuple[str, str] = ("transformers", "feature-extraction"), tags=()) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for save in savers:
            save(tmp)
        files = builders._read_dir(Path(tmp))
    files["README.md"] = builders._model_card(card[0], card[1], tags)
    return files


def _seeded(cls, config, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return cls(config).eval()


def decoder(name: str) -> dict[str, bytes]:
    config_cls, model_cls, kwargs = DECODERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = task_builders.bpe_tokenizer(tmp)
    eos = tokenizer.eos_token_id
    config_cls = _cls(config_cls)
    fields = _fields(config_cls, {**kwargs, "vocab_size": len(tokenizer), "bos_token_id": eos, "eos_token_id": eos,
                                  "pad_token_id": eos, "initializer_range": 0.2}, COMMON)
    model = _seeded(_cls(model_cls), config_cls(**fields))
    return _save(model, [tokenizer.save_pretrained], ("transformers", "text-generation"), (name,))


def encoder(name: str) -> dict[str, bytes]:
    config_cls, model_cls, kwargs = ENCODERS[name]
    labels = kwargs.get("num_labels")
    extra = {"id2label": {i: f"LABEL_{i}" for i in range(labels)}} if labels else {}
    config_cls = _cls(config_cls)
    fields = _fields(config_cls, {**kwargs, **extra, "vocab_size": len(builders._bert_vocab()), "pad_token_id": 0,
                                  "bos_token_id": 2, "eos_token_id": 3}, COMMON)
    model = _seeded(_cls(model_cls), config_cls(**fields))
    task = next((t for s, t in TEXT_TASKS.items() if model_cls.endswith(s)), "feature-extraction")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = builders._bert_tokenizer(tmp, 128)
        vocab = Path(tmp, "vocab.txt").read_bytes()
    files = _save(model, [tokenizer.save_pretrained], ("transformers", task), (name.split("-")[0],))
    files["vocab.txt"] = vocab
    if name.endswith("sentence-similarity"):  # a sentence-transformers layout, as task_builders.bert_head_repo's
        files["modules.json"] = json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2).encode()
        files["1_Pooling/config.json"] = json.dumps({
            "word_embedding_dimension": H, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}).encode()
        files["README.md"] = builders._model_card("sentence-transformers", "sentence-similarity", ("mpnet",))
    return files


def image_classifier(name: str) -> dict[str, bytes]:
    from transformers import ViTImageProcessor

    config_cls, model_cls, kwargs = VISION[name]
    config_cls = _cls(config_cls)
    labels = builders.VIT_LABELS
    fields = _fields(config_cls, {**kwargs, "id2label": labels, "label2id": {v: k for k, v in labels.items()}},
                     VISION_COMMON)
    fields.pop("num_labels", None)
    model = _seeded(_cls(model_cls), config_cls(**fields))
    size = kwargs.get("image_size", IMG)
    processor = ViTImageProcessor(size={"height": size, "width": size})
    return _save(model, [processor.save_pretrained], ("transformers", "image-classification"), (name,))


def detr() -> dict[str, bytes]:
    """DETR with its ResNet backbone built from config (no timm, no download), YOLOS-like tiny sizes."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    labels = task_builders.DETECTION_LABELS
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage4"])
    config = DetrConfig(backbone_config=backbone, d_model=H, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=NH, decoder_attention_heads=NH, encoder_ffn_dim=FF,
                        decoder_ffn_dim=FF, num_queries=10, id2label=labels,
                        label2id={v: k for k, v in labels.items()}, init_std=0.5)
    model = _seeded(DetrForObjectDetection, config)
    with torch.no_grad():  # as task_builders.yolos_repo: queries that differ, confident detections, real boxes
        model.model.query_position_embeddings.weight.normal_(0, 1.0)
        model.class_labels_classifier.bias[-1] = -3.0
        model.bbox_predictor.layers[-1].weight.mul_(0.05)
        model.bbox_predictor.layers[-1].bias.zero_()
    processor = DetrImageProcessor(size={"height": 64, "width": 64}, do_pad=True)
    return _save(model, [processor.save_pretrained], ("transformers", "object-detection"), ("detr",))


def siglip() -> dict[str, bytes]:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    tokenizer = task_builders.clip_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": H, "intermediate_size": FF, "num_hidden_layers": L,
            "num_attention_heads": NH, "max_position_embeddings": 32, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id}
    vision = {"hidden_size": H, "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": NH,
              "image_size": IMG, "patch_size": 8}
    model = _seeded(SiglipModel, SiglipConfig(text_config=text, vision_config=vision))
    processor = SiglipImageProcessor(size={"height": IMG, "width": IMG})
    return _save(model, [tokenizer.save_pretrained, processor.save_pretrained],
                 ("transformers", "zero-shot-image-classification"), ("siglip",))


def speech(config_name: str, model_name: str, task: str) -> Callable[[], dict[str, bytes]]:
    """A Wav2Vec2-family model (conv feature encoder + 2 layers) with task_builders' CTC vocabulary and
    feature extractor: the same as ``task_builders.wav2vec2_ctc_repo`` for another class."""

    def build() -> dict[str, bytes]:
        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

        vocab = task_builders.CTC_VOCAB
        extra = {"num_labels": 3} if task == "audio-classification" else {}
        config = _cls(config_name)(vocab_size=len(vocab), hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                                   intermediate_size=FF, conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2),
                                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                   feat_extract_norm="group", do_stable_layer_norm=False, pad_token_id=0,
                                   initializer_range=0.5, classifier_proj_size=16, **extra)
        model = _seeded(_cls(model_name), config)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(vocab)}))
            tokenizer = Wav2Vec2CTCTokenizer(str(Path(tmp, "vocab.json")), word_delimiter_token="|")
            extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                 do_normalize=True, return_attention_mask=False)
            savers = [extractor.save_pretrained] + ([tokenizer.save_pretrained] if task != "audio-classification" else [])
            return _save(model, savers, ("transformers", task), (config_name,))

    return build


def whisper() -> dict[str, bytes]:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    tokenizer = task_builders.unigram_tokenizer()
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, encoder_layers=L, decoder_layers=L,
                           encoder_attention_heads=NH, decoder_attention_heads=NH, encoder_ffn_dim=FF,
                           decoder_ffn_dim=FF, d_model=H, max_source_positions=1500, max_target_positions=64,
                           pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=1,
                           begin_suppress_tokens=None, suppress_tokens=None)
    model = _seeded(WhisperForConditionalGeneration, config)
    extractor = WhisperFeatureExtractor(feature_size=80)
    return _save(model, [tokenizer.save_pretrained, extractor.save_pretrained],
                 ("transformers", "automatic-speech-recognition"), ("whisper",))


def seq2seq(family: str) -> Callable[[], dict[str, bytes]]:
    def build() -> dict[str, bytes]:
        if family in ("t5", "bart"):
            return getattr(task_builders, f"{family}_repo")()
        tokenizer = task_builders.unigram_tokenizer()
        if family == "mt5":
            from transformers import MT5Config, MT5ForConditionalGeneration

            config = MT5Config(vocab_size=len(tokenizer), d_model=H, d_kv=8, d_ff=FF, num_layers=L,
                               num_decoder_layers=L, num_heads=NH, pad_token_id=0, eos_token_id=1,
                               decoder_start_token_id=0, tie_word_embeddings=False)
            model = _seeded(MT5ForConditionalGeneration, config)
        else:
            from transformers import MarianConfig, MarianMTModel

            config = MarianConfig(vocab_size=len(tokenizer), d_model=H, encoder_layers=L, decoder_layers=L,
                                  encoder_attention_heads=NH, decoder_attention_heads=NH, encoder_ffn_dim=FF,
                                  decoder_ffn_dim=FF, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                                  decoder_start_token_id=0, forced_eos_token_id=None)
            model = _seeded(MarianMTModel, config)
        return _save(model, [tokenizer.save_pretrained], ("transformers", "text2text-generation"), (family,))

    return build


def _dinov2() -> dict[str, bytes]:
    return task_builders.dinov2_repo()


# name -> (zoo's task, the task given to optimum-cli, builder)
ARCHS: dict[str, tuple[str, str, Callable[[], dict[str, bytes]]]] = {}
for _name in DECODERS:
    ARCHS[_name] = ("text-generation", "text-generation-with-past", lambda n=_name: decoder(n))
for _name, (_c, _m, _k) in ENCODERS.items():
    _task = next((t for s, t in TEXT_TASKS.items() if _m.endswith(s)), "feature-extraction")
    _task = "sentence-similarity" if _name.endswith("sentence-similarity") else _task
    ARCHS[_name] = (_task, "feature-extraction" if _task == "sentence-similarity" else _task,
                    lambda n=_name: encoder(n))
for _name in VISION:
    ARCHS[_name] = ("image-classification", "image-classification", lambda n=_name: image_classifier(n))
ARCHS.update({
    "dinov2": ("image-feature-extraction", "feature-extraction", _dinov2),
    "clip": ("zero-shot-image-classification", "zero-shot-image-classification", task_builders.clip_repo),
    "siglip": ("zero-shot-image-classification", "zero-shot-image-classification", siglip),
    "yolos": ("object-detection", "object-detection", task_builders.yolos_repo),
    "detr": ("object-detection", "object-detection", detr),
    "segformer": ("image-segmentation", "semantic-segmentation", task_builders.segformer_repo),
    "dpt": ("depth-estimation", "depth-estimation", task_builders.dpt_repo),
    "depth-anything": ("depth-estimation", "depth-estimation", task_builders.depth_anything_repo),
    "wav2vec2-ctc": ("automatic-speech-recognition", "automatic-speech-recognition",
                     speech("Wav2Vec2Config", "Wav2Vec2ForCTC", "automatic-speech-recognition")),
    "hubert-ctc": ("automatic-speech-recognition", "automatic-speech-recognition",
                   speech("HubertConfig", "HubertForCTC", "automatic-speech-recognition")),
    "wavlm-ctc": ("automatic-speech-recognition", "automatic-speech-recognition",
                  speech("WavLMConfig", "WavLMForCTC", "automatic-speech-recognition")),
    "wav2vec2-audio-classification": ("audio-classification", "audio-classification",
                                      speech("Wav2Vec2Config", "Wav2Vec2ForSequenceClassification",
                                             "audio-classification")),
    "whisper": ("automatic-speech-recognition", "automatic-speech-recognition-with-past", whisper),
    "t5": ("text2text-generation", "text2text-generation-with-past", seq2seq("t5")),
    "bart": ("text2text-generation", "text2text-generation-with-past", seq2seq("bart")),
    "mt5": ("text2text-generation", "text2text-generation-with-past", seq2seq("mt5")),
    "marian": ("text2text-generation", "text2text-generation-with-past", seq2seq("marian")),
})


# the 40 of the measured run (bench/README.md): every task, the popular families of each
SELECTION = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi", "gemma", "opt", "gpt_neox", "bloom", "falcon",
             "bert-fill-mask", "bert-text-classification", "bert-token-classification", "bert-question-answering",
             "bert-multiple-choice", "roberta-fill-mask", "distilbert-text-classification", "albert-question-answering",
             "electra-token-classification", "deberta-v2-text-classification", "mpnet-sentence-similarity",
             "vit", "convnext", "swin", "resnet", "mobilevit", "dinov2", "clip", "siglip", "yolos", "detr", "segformer",
             "dpt", "depth-anything", "wav2vec2-ctc", "hubert-ctc", "wav2vec2-audio-classification", "whisper", "t5")


def build(name: str) -> dict[str, bytes]:
    return ARCHS[name][2]()

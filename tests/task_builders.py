"""Tiny repos for the Hugging Face tasks (tests/test_tasks.py), built offline with seeded weights.

Decoders get a real byte-level BPE tokenizer trained here with the ``tokenizers`` library on a few
sentences (no pad token, as GPT-2's), saved in the repo layout ``save_pretrained`` writes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from builders import _WORDS, _bert_tokenizer, _bert_vocab, _model_card, _read_dir, _save_transformers, write_hf_cache

EOS = "<|endoftext|>"
TINY = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 37, "positions": 128}


def _corpus() -> list[str]:
    words = list(_WORDS)
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    lines += ["The quick brown fox jumps over the lazy dog.", "Once upon a time there was a little girl.",
              "What is the capital of the country where you were born?", "hello world"]
    return lines


def bpe_tokenizer(tmp: str, vocab_size: int = 400):
    """A GPT-2 style byte-level BPE tokenizer (``<|endoftext|>`` as bos/eos/unk, no pad token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=128)


# decoder_repo's families built like its Llama (grouped-query, 2 key/value heads): config class, model class, the
# config's other settings (head_dim where the family's default is not hidden / heads; Gemma's embeddings untied: tied,
# the tiny random Gemma repeats one token on every prompt whatever the seed or init scale, measured)
LLAMA_LIKE = {"llama": ("LlamaConfig", "LlamaForCausalLM", {}), "mistral": ("MistralConfig", "MistralForCausalLM", {}),
              "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}), "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}),
              "phi": ("PhiConfig", "PhiForCausalLM", {}), "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 8, "tie_word_embeddings": False})}


def decoder_repo(family: str = "gpt2", seed: int = 0, head: str = "causal-lm", *, hidden: int | None = None,
                 init: float = 0.2, generation: dict | None = None) -> dict[str, bytes]:
    """A tiny decoder-only LM (``gpt2``: GPT2LMHeadModel; ``llama``: LlamaForCausalLM with grouped-query
    attention, and the Llama-like ``mistral``, ``qwen2``, ``qwen3``, ``phi``, ``gemma`` (``LLAMA_LIKE``), each with 2
    key/value heads; ``falcon``: FalconForCausalLM, multi-query) with seeded weights, wide enough at init that greedy
    decoding does not repeat one token.
    ``hidden``/``init``: a wider model at a trained model's weight scale (transformers' default 0.02), whose
    MatMuls dominate its size (the int4 tests: 4-bit weights are measurable there). ``generation``: settings of
    its ``generation_config.json`` (a repetition penalty, an n-gram ban, ...)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = bpe_tokenizer(tmp)
        vocab = len(tokenizer)
        eos = tokenizer.eos_token_id
        if family == "gpt2":
            config = GPT2Config(vocab_size=vocab, n_embd=hidden or TINY["hidden"], n_layer=TINY["layers"],
                                n_head=TINY["heads"], n_positions=TINY["positions"], bos_token_id=eos, eos_token_id=eos,
                                initializer_range=init)
            cls = GPT2LMHeadModel
            if head == "sequence-classification":  # GPT2ForSequenceClassification: 3 labels, no pad token
                from transformers import GPT2ForSequenceClassification

                config.num_labels = 3
                cls = GPT2ForSequenceClassification
        elif family in LLAMA_LIKE:
            import transformers

            config_name, model_name, extra = LLAMA_LIKE[family]
            config = getattr(transformers, config_name)(
                vocab_size=vocab, hidden_size=hidden or TINY["hidden"], num_hidden_layers=TINY["layers"],
                num_attention_heads=TINY["heads"], num_key_value_heads=2,
                intermediate_size=(hidden * 11 // 4) if hidden else TINY["intermediate"],
                max_position_embeddings=TINY["positions"], bos_token_id=eos, eos_token_id=eos, initializer_range=init,
                **extra)
            cls = getattr(transformers, model_name)
        elif family == "falcon":  # falcon-7b's multi-query layout: one cached key/value head
            from transformers import FalconConfig, FalconForCausalLM

            config = FalconConfig(vocab_size=vocab, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
                                  num_attention_heads=TINY["heads"], multi_query=True, new_decoder_architecture=False,
                                  bos_token_id=eos, eos_token_id=eos, initializer_range=0.2)
            cls = FalconForCausalLM
        else:
            raise ValueError(f"family must be gpt2, falcon or one of {sorted(LLAMA_LIKE)}, not {family!r}")
        torch.manual_seed(seed)
        model = cls(config).eval()
        for key, value in (generation or {}).items():
            setattr(model.generation_config, key, value)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    task = "text-classification" if head == "sequence-classification" else "text-generation"
    files["README.md"] = _model_card("transformers", task, (family, "safetensors"))
    return files


def bert_head_repo(head: str, seed: int = 0) -> dict[str, bytes]:
    """A tiny BERT with a task head: ``fill-mask``, ``token-classification``, ``question-answering``, or
    ``sentence-similarity`` (a sentence-transformers layout: modules.json, mean pooling, Normalize)."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForMultipleChoice,
        BertForQuestionAnswering,
        BertForTokenClassification,
        BertModel,
    )

    classes = {"fill-mask": BertForMaskedLM, "token-classification": BertForTokenClassification,
               "question-answering": BertForQuestionAnswering, "sentence-similarity": BertModel,
               "multiple-choice": BertForMultipleChoice}
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    extra = {"num_labels": 5, "id2label": labels, "label2id": {v: k for k, v in labels.items()}} \
        if head == "token-classification" else {}
    config = BertConfig(vocab_size=len(_bert_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128, **extra)
    torch.manual_seed(seed)
    model = classes[head](config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _bert_tokenizer(tmp, 128)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    if head == "sentence-similarity":
        files["modules.json"] = json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2).encode()
        files["1_Pooling/config.json"] = json.dumps({
            "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}).encode()
        files["README.md"] = _model_card("sentence-transformers", "sentence-similarity", ("bert",))
    else:
        files["README.md"] = _model_card("transformers", head, ("bert", "safetensors"))
    return files


CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("abcdefghijklmnopqrstuvwxyz'")


def wav2vec2_ctc_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny Wav2Vec2ForCTC (two conv layers, two transformer layers) with its character vocabulary
    (vocab.json, Wav2Vec2CTCTokenizer) and feature extractor (preprocessor_config.json), seeded."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    config = Wav2Vec2Config(vocab_size=len(CTC_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="group",
                            do_stable_layer_norm=False, pad_token_id=0, initializer_range=0.5)
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp, "vocab.json")
        vocab.write_text(json.dumps({c: i for i, c in enumerate(CTC_VOCAB)}))
        tokenizer = Wav2Vec2CTCTokenizer(str(vocab), word_delimiter_token="|")
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                             do_normalize=True, return_attention_mask=False)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        extractor.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("transformers", "automatic-speech-recognition", ("wav2vec2",))
    return files


AUDIO_LABELS = {0: "speech", 1: "music", 2: "dog", 3: "siren"}


def wav2vec2_audio_classifier_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny Wav2Vec2ForSequenceClassification (the CTC model's encoder, mean pooling, four labels) with its
    feature extractor, seeded with a wide classifier so clips get different labels."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                            conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="group", do_stable_layer_norm=False,
                            classifier_proj_size=16, num_labels=len(AUDIO_LABELS), id2label=AUDIO_LABELS,
                            label2id={v: k for k, v in AUDIO_LABELS.items()}, initializer_range=0.5)
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(config).eval()
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    from zoo.converters.tasks.speech import synthetic_clip

    with torch.no_grad():  # centre the logits over a few clips (a bias, as training would set it): the clip decides
        calibration = [synthetic_clip(s, 16000, seed) for seed, s in enumerate((0.5, 0.8, 1.1, 1.4, 0.7, 1.9), start=100)]
        x = extractor(calibration, sampling_rate=16000, padding=True, return_tensors="pt")["input_values"]
        model.classifier.weight.mul_(8.0)
        model.classifier.bias.zero_()
        model.classifier.bias -= model(x).logits.mean(0)
    files = _save_transformers(model, [extractor.save_pretrained])
    files["README.md"] = _model_card("transformers", "audio-classification", ("wav2vec2",))
    return files


SOT = "<|startoftext|>"


def clip_tokenizer():
    """A CLIP-style tokenizer trained offline: byte-level BPE, ``<|startoftext|>`` ... ``<|endoftext|>``
    around every text, padded with ``<|endoftext|>`` as openai/clip-vit-base-patch32 is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[SOT, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus() + ["a photo of an astronaut, a cup of coffee, a cat, a rocket, a dog, a car."],
                            trainer=trainer)
    sot, eos = tok.token_to_id(SOT), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{SOT} $A {EOS}", special_tokens=[(SOT, sot), (EOS, eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SOT, eos_token=EOS, unk_token=EOS, pad_token=EOS,
                                   model_max_length=32)


def clip_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny CLIPModel (ViT 32 px / patch 8, two layers each side) with seeded weights, a real tokenizer
    (``clip_tokenizer``) and CLIP's image processor (resize 32, centre crop 32, CLIP mean/std)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = clip_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 32, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    files = _save_transformers(model, [tokenizer.save_pretrained, processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "zero-shot-image-classification", ("clip",))
    return files


DETECTION_LABELS = {0: "person", 1: "cat", 2: "cup"}


def yolos_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny YolosForObjectDetection (a ViT: no backbone download; 64 x 64 px, patch 16, 10 detection
    tokens, three labels) with YOLOS' image processor resizing to 64 x 64. Seeded; the detection tokens and
    position embeddings (zeros at init) drawn at random, the 'no object' bias lowered and the box layer
    scaled down, so the queries differ, several detections are confident and boxes have a real size, as a
    trained detector's."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    config = YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                         image_size=[64, 64], patch_size=16, num_detection_tokens=10, num_labels=3,
                         id2label=DETECTION_LABELS, label2id={v: k for k, v in DETECTION_LABELS.items()},
                         initializer_range=0.5)
    torch.manual_seed(seed)
    model = YolosForObjectDetection(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(k in name for k in ("cls_token", "detection_tokens", "position_embeddings")):
                param.normal_(0, 1.0)
        model.class_labels_classifier.layers[-1].bias[-1] = -3.0
        model.bbox_predictor.layers[-1].weight.mul_(0.05)  # boxes of a few pixels and more, not sigmoid-saturated slivers
        model.bbox_predictor.layers[-1].bias.zero_()
    processor = YolosImageProcessor(size={"height": 64, "width": 64}, do_pad=True)
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "object-detection", ("yolos",))
    return files


SEGMENTATION_LABELS = {0: "background", 1: "person", 2: "cat", 3: "sky"}


def segformer_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny SegformerForSemanticSegmentation (two stages, 64 x 64 px, four labels) with SegFormer's image
    processor (resize 64 x 64, ImageNet mean/std), seeded with a wide init so the masks hold several classes."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                             decoder_hidden_size=32, image_size=64, num_labels=len(SEGMENTATION_LABELS),
                             id2label=SEGMENTATION_LABELS, label2id={v: k for k, v in SEGMENTATION_LABELS.items()},
                             initializer_range=0.3)
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(config).eval()
    processor = SegformerImageProcessor(size={"height": 64, "width": 64})
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "image-segmentation", ("segformer",))
    return files


def mask2former_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny Mask2FormerForUniversalSegmentation (a Swin backbone of four one-block stages, embed dim 16, built from
    config; a pixel decoder and a transformer decoder of one and two layers, hidden 32, ten queries, the four labels
    above) with Mask2Former's image processor at 64 x 64 px; weights widened (std 0.2) so that the photographs'
    semantic maps hold two classes each (at init: one class on all four). Measured against onnxruntime, the largest
    difference over the output's largest value: 1e-7 at init, 1e-5 at 0.2, 2.6e-3 at 0.5 (float32 rounding
    amplified through the wide random layers, in every exporter: not a conversion error, but past 1e-4)."""
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, num_queries=10, num_labels=len(SEGMENTATION_LABELS),
                               id2label=SEGMENTATION_LABELS, label2id={v: k for k, v in SEGMENTATION_LABELS.items()},
                               use_pretrained_backbone=False, backbone=None)
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    _widen(model, 0.2)
    processor = Mask2FormerImageProcessor(size={"height": 64, "width": 64}, num_labels=len(SEGMENTATION_LABELS))
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "image-segmentation", ("mask2former",))
    return files


def dinov2_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny Dinov2Model (32 px, patch 8, two layers) with DINOv2's image processor (resize, centre crop 32,
    ImageNet mean/std) and a card saying ``pipeline_tag: image-feature-extraction``, seeded."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32,
                          patch_size=8, initializer_range=0.2)
    torch.manual_seed(seed)
    model = Dinov2Model(config).eval()
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "image-feature-extraction", ("dinov2",))
    return files


def resnet_classifier_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny ResNetForImageClassification (4 basic stages) whose config has no ``image_size`` (as
    microsoft/resnet-50's), with a ViT image processor at 32 x 32: the input size is the processor's."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    labels = {0: "cat", 1: "dog", 2: "bird"}
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic",
                          num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "image-classification", ("resnet",))
    return files


def _calibrate_depth_head(model, last_conv, size: int, seed: int) -> None:
    """Scale and shift the head's last convolution (before its ReLU) so that, on seeded images, its output
    has unit spread and is positive on ~95% of pixels: a random head is zero almost everywhere (DPT) or
    ~1e-7 (Depth Anything), and a check on such maps compares nothing."""
    import torch

    seen = []
    hook = last_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(pixel_values=torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(seed)))
        hook.remove()
        out = seen[0]
        scale = float(out.std()) or 1.0
        last_conv.weight.div_(scale)
        last_conv.bias.copy_((last_conv.bias - torch.quantile(out.flatten(), 0.05)) / scale)


def dpt_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny DPTForDepthEstimation (a ViT of 4 layers, 32 px, patch 8; its 4 hidden states reassembled and
    fused) with DPT's image processor at 32 x 32, seeded, the depth head calibrated (``_calibrate_depth_head``)."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                       neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16, head_in_index=-1,
                       initializer_range=0.2)
    torch.manual_seed(seed)
    model = DPTForDepthEstimation(config).eval()
    _calibrate_depth_head(model, model.head.head[4], 32, seed)
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "depth-estimation", ("dpt",))
    return files


def depth_anything_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny DepthAnythingForDepthEstimation (a DINOv2 backbone built from config: 4 layers, 32 px, patch 8)
    with the DPT image processor Depth Anything repos carry (keep_aspect_ratio, multiple of 8, ImageNet
    mean/std), seeded, the depth head calibrated."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, mlp_ratio=2, image_size=32,
                            patch_size=8, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            apply_layernorm=True, initializer_range=0.2)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=8, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16, head_hidden_size=8)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    _calibrate_depth_head(model, model.head.conv3, 32, seed)
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=True, ensure_multiple_of=8,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "depth-estimation", ("depth_anything",))
    return files


def unigram_tokenizer(vocab_size: int = 400):
    """A T5-style Unigram tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, Metaspace, ``</s>`` appended)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # a fixed vocabulary (the Unigram trainer's is not deterministic): every character, then whole words
    # ("▁word") and word pieces, scored so that longer pieces win
    text = _corpus() + ["translate English to German: summarize:"]
    words = sorted({w.strip(".,?:") for line in text for w in line.split()} - {""})
    chars = sorted({c for w in words for c in w})
    pieces = ["▁", *chars] + ["▁" + w for w in words] + sorted({w[:3] for w in words if len(w) > 4})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -10.0 / len(p)) for p in dict.fromkeys(pieces)][: vocab_size - 3]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=128)


def t5_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny T5ForConditionalGeneration (2 + 2 layers, d_model 32) with a Unigram tokenizer trained here."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = unigram_tokenizer()
        config = T5Config(vocab_size=len(tokenizer), d_model=TINY["hidden"], d_kv=8, d_ff=37, num_layers=TINY["layers"],
                          num_decoder_layers=TINY["layers"], num_heads=TINY["heads"], pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, initializer_factor=1.0, tie_word_embeddings=False)
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config).eval()
        with torch.no_grad():  # wide weights: greedy decoding of the random model does not repeat one token
            for param in model.parameters():
                if param.dim() >= 2:
                    param.normal_(0.0, 1.0)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("transformers", "text2text-generation", ("t5", "safetensors"))
    return files


def bart_repo(seed: int = 0, generation: dict | None = None) -> dict[str, bytes]:
    """A tiny BartForConditionalGeneration (2 + 2 layers, d_model 32) with the Unigram tokenizer above
    (``<pad>`` 0, ``</s>`` 1 as eos and decoder start, as BART starts the decoder from its eos); ``generation``:
    settings of its ``generation_config.json`` (facebook/bart-large-cnn's n-gram ban, minimum length, beams, ...)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = unigram_tokenizer()
        config = BartConfig(vocab_size=len(tokenizer), d_model=TINY["hidden"], encoder_layers=TINY["layers"],
                            decoder_layers=TINY["layers"], encoder_attention_heads=TINY["heads"],
                            decoder_attention_heads=TINY["heads"], encoder_ffn_dim=37, decoder_ffn_dim=37,
                            max_position_embeddings=TINY["positions"], pad_token_id=0, bos_token_id=1, eos_token_id=1,
                            decoder_start_token_id=1, forced_bos_token_id=None, forced_eos_token_id=None,
                            init_std=0.2)
        torch.manual_seed(seed)
        model = BartForConditionalGeneration(config).eval()
        for key, value in (generation or {}).items():
            setattr(model.generation_config, key, value)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("transformers", "text2text-generation", ("bart", "safetensors"))
    return files


def sentencepiece_model(vocab_size: int = 300, **ids: int) -> bytes:
    """A unigram sentencepiece model trained offline on the corpus above with the ``sentencepiece`` package (one
    thread: the same bytes every time); ``ids`` are its special ids (``pad_id``, ``eos_id``, ``unk_id``, ``bos_id``)."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus() + ["translate English to German: summarize:"]),
                                   model_writer=buf, vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
                                   num_threads=1, hard_vocab_limit=False, minloglevel=2, **ids)
    return buf.getvalue()


def _widen(model, std: float) -> None:
    """Weights wider than init (embeddings and linear layers; not Marian's sinusoidal positions): greedy decoding
    of a random model then varies instead of repeating one token."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "embed_positions" not in name:
                param.normal_(0.0, std)


def marian_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny MarianMTModel (2 + 2 layers, d_model 32) with the files Helsinki-NLP/opus-mt-* ship: ``source.spm``,
    ``target.spm`` (sentencepiece models trained here), ``vocab.json`` (``</s>`` 0, ``<unk>`` 1, the pieces,
    ``<pad>`` last), ``tokenizer_config.json``, and ``generation_config.json`` as the real repos carry it
    (``decoder_start_token_id`` = pad, ``bad_words_ids`` [[pad]], ``forced_eos_token_id`` 0, ``max_length`` 512,
    ``num_beams`` 4). The sinusoidal positions are not saved (transformers computes them at load, as for the real
    checkpoints); ``final_logits_bias`` is seeded non-zero, as a trained model's is, so an export that loses it
    fails, with the pad logit high enough that greedy decoding picks pad wherever ``bad_words_ids`` does not ban it.
    (The random decoder repeats a few tokens per prompt at every weight scale tried, 0.02-2.0; init's 0.02 varies most.)"""
    import sentencepiece as spm
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    spm_bytes = sentencepiece_model()
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in (sp.id_to_piece(i) for i in range(sp.get_piece_size())):
        if piece not in ("<unk>", "<s>", "</s>"):
            vocab.setdefault(piece, len(vocab))
    pad = vocab.setdefault("<pad>", len(vocab))
    config = MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=TINY["hidden"],
                          encoder_layers=TINY["layers"], decoder_layers=TINY["layers"],
                          encoder_attention_heads=TINY["heads"], decoder_attention_heads=TINY["heads"],
                          encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=TINY["positions"],
                          activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
                          pad_token_id=pad, eos_token_id=0, bos_token_id=0, decoder_start_token_id=pad,
                          forced_eos_token_id=0)
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():  # the pad logit high, as trained Marian models' is: bad_words_ids [[pad]] is what stops it
        model.final_logits_bias.normal_(0.0, 0.05)
        model.final_logits_bias[0, pad] = 0.5
    model.generation_config = GenerationConfig(bad_words_ids=[[pad]], bos_token_id=0, decoder_start_token_id=pad,
                                               eos_token_id=0, forced_eos_token_id=0, max_length=512, num_beams=4,
                                               pad_token_id=pad)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("source.spm", "target.spm"):
            (Path(tmp) / name).write_bytes(spm_bytes)
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2))
        tokenizer = MarianTokenizer(str(Path(tmp) / "source.spm"), str(Path(tmp) / "target.spm"),
                                    str(Path(tmp) / "vocab.json"), source_lang="en", target_lang="de")
        out = Path(tmp) / "repo"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        files = _read_dir(out)
    files["README.md"] = _model_card("transformers", "translation", ("marian", "safetensors"))
    return files


def mt5_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny MT5ForConditionalGeneration (2 + 2 layers, d_model 32, gated-gelu, untied head) with the files
    google/mt5-* ship: ``spiece.model`` (sentencepiece, ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, trained here),
    ``tokenizer_config.json`` and ``special_tokens_map.json`` but no ``tokenizer.json`` (transformers converts
    the sentencepiece model at load), a vocabulary padded past the tokenizer's (250112 rows for 250100 pieces in
    the real ones), and ``generation_config.json`` with the decoder start, eos and pad ids only."""
    import torch
    from transformers import GenerationConfig, MT5Config, MT5ForConditionalGeneration

    spm_bytes = sentencepiece_model(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    config = MT5Config(vocab_size=312, d_model=TINY["hidden"], d_kv=8, d_ff=37, num_layers=TINY["layers"],
                       num_decoder_layers=TINY["layers"], num_heads=TINY["heads"], feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(seed)
    model = MT5ForConditionalGeneration(config).eval()
    _widen(model, 0.5)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    files = _save_transformers(model)
    files["spiece.model"] = spm_bytes
    files["special_tokens_map.json"] = json.dumps(special).encode()
    files["tokenizer_config.json"] = json.dumps({**special, "extra_ids": 0, "additional_special_tokens": None,
                                                 "sp_model_kwargs": {}, "tokenizer_class": "T5Tokenizer"}).encode()
    files["README.md"] = _model_card("transformers", "text2text-generation", ("mt5", "safetensors"))
    return files


def in_process_pull(hub_cache: Path, repos: dict[str, dict[str, bytes]], capsys):
    """``(repo, *args, code=0, files=None) -> JSON`` of an in-process offline `zoo pull REPO --json` (the caller
    sets HF_HUB_OFFLINE): the repo's files (``files``, else ``repos[repo]``) are written into ``hub_cache`` first."""
    from zoo.cli import main as cli

    def run(repo: str, *args: str, code: int = 0, files: dict[str, bytes] | None = None) -> dict:
        write_hf_cache(hub_cache, repo, files or repos[repo])
        got = cli.main(["pull", repo, "--json", *args])
        captured = capsys.readouterr()
        assert got == code, captured.err[-3000:] + captured.out[-3000:]
        out = json.loads(captured.out.strip().splitlines()[-1])
        out["stderr"] = captured.err
        return out

    return run


WHISPER_SPECIAL = ["<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                   "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def whisper_tokenizer():
    """A Whisper-style tokenizer trained offline: GPT-2 byte-level BPE with ``<|endoftext|>``, then Whisper's
    special tokens appended after the BPE vocabulary as in openai/whisper-*, ``<|notimestamps|>`` last (the
    timestamp tokens would follow it: none here)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in WHISPER_SPECIAL])
    return WhisperTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
                                model_max_length=64)


def whisper_repo(seed: int = 0, *, language: str | None = None) -> dict[str, bytes]:
    """A tiny WhisperForConditionalGeneration (d_model 32, 2 + 2 layers, 80 mel bins, 30 s windows) with the
    tokenizer above, a real WhisperFeatureExtractor and a generation config as openai/whisper-* carry it
    (forced ids leaving the language open: detected; transcribe; no timestamps; suppressed tokens). Seeded,
    weights widened so greedy decoding of the random model does not repeat one token."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    tokenizer = whisper_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in [EOS, *WHISPER_SPECIAL]}
    eos = ids[EOS]
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
                           max_source_positions=1500, max_target_positions=64, pad_token_id=eos, bos_token_id=eos,
                           eos_token_id=eos, decoder_start_token_id=ids["<|startoftranscript|>"],
                           suppress_tokens=None, begin_suppress_tokens=None)
    generation = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        max_length=64, is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], return_timestamps=False,
        forced_decoder_ids=[[1, None], [2, ids["<|transcribe|>"]]] if language is None else None,
        language=language, suppress_tokens=WHISPER_SUPPRESSED, begin_suppress_tokens=[eos, WHISPER_FIRST])
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "embed_positions" not in name:
                param.normal_(0.0, 0.5)
    model.generation_config = generation
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
    files = _save_transformers(model, [tokenizer.save_pretrained, extractor.save_pretrained])
    files["README.md"] = _model_card("transformers", "automatic-speech-recognition", ("whisper",))
    return files


# ids the tiny model (seed 0) picks when nothing is suppressed (207 first on every clip, 267 and 31 often):
# generate() skips them as the config says, so a decode loop that ignores the config fails the check
WHISPER_SUPPRESSED = [31, 267]
WHISPER_FIRST = 207


def large_decoder_cache(hub_cache: Path, repo_id: str, *, hidden: int = 2048, vocab: int = 131072, layers: int = 1,
                        seed: int = 0) -> int:
    """A Llama decoder whose float32 weights exceed protobuf's 2 GiB (defaults: 2.36 GB, the untied embedding
    and LM head 2 x 1.07 GB), written into ``hub_cache`` as huggingface_hub leaves it. The weights go to disk
    once and are moved into the cache (never held as bytes), so building needs one copy of them in memory.
    The vocabulary is wider than the tokenizer's (ids above 400 are never fed). Returns the weights' bytes."""
    import gc
    import hashlib
    import os
    import shutil

    import torch
    from builders import write_hf_cache
    from transformers import LlamaConfig, LlamaForCausalLM

    hub_cache = Path(hub_cache)
    hub_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=hub_cache.parent) as tmp:
        tokenizer = bpe_tokenizer(tmp)
        eos = tokenizer.eos_token_id
        config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=16,
                             num_key_value_heads=8, intermediate_size=hidden * 11 // 4, max_position_embeddings=128,
                             bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=False, initializer_range=0.02)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
        model.save_pretrained(tmp, max_shard_size="100GB")
        tokenizer.save_pretrained(tmp)
        del model
        gc.collect()
        weights = Path(tmp) / "model.safetensors"
        small = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file() and p != weights}
        small["README.md"] = _model_card("transformers", "text-generation", ("llama", "safetensors"))
        digest = hashlib.sha256()
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        commit = hashlib.sha1(digest.hexdigest().encode() + json.dumps(sorted(small)).encode()).hexdigest()
        snapshot = write_hf_cache(hub_cache, repo_id, small, commit=commit, tree=False)
        blob = snapshot.parent.parent / "blobs" / digest.hexdigest()
        size = weights.stat().st_size
        shutil.move(str(weights), blob)
        (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    return size


def manifest_of(out: dict) -> dict:
    """The ``zoo.json`` of the artifact a ``zoo pull --json`` result (``in_process_pull``'s) names."""
    import json

    return json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())


def source_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A repo's files written under ``tmp_path/source``, for transformers' own ``from_pretrained`` (the reference)."""
    root = tmp_path / "source"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def shift_output(path: Path, output: str) -> None:
    """Rewire ``output`` to its own value shifted by one position along the sequence axis (same shape):
    the kind of off-by-one a broken cache export makes."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inner = f"{output}__unshifted"
    for node in graph.node:
        node.output[:] = [inner if o == output else o for o in node.output]
        node.input[:] = [inner if i == output else i for i in node.input]

    def const(name, v):
        return numpy_helper.from_array(np.array(v, np.int64), name)

    graph.initializer.extend([const("shift_s0", [0]), const("shift_s1", [1]), const("shift_end", [-1]),
                              const("shift_big", [2**62]), const("shift_ax", [2])])
    graph.node.extend([
        helper.make_node("Slice", [inner, "shift_s0", "shift_s1", "shift_ax"], [f"{inner}_first"]),
        helper.make_node("Slice", [inner, "shift_s0", "shift_end", "shift_ax"], [f"{inner}_head"]),
        helper.make_node("Concat", [f"{inner}_first", f"{inner}_head"], [output], axis=2),
    ])
    onnx.save(model, str(path))


def scale_output(path: Path, output: str, factor: float) -> None:
    """Rewire the graph output ``output`` of the ONNX file at ``path`` to itself times ``factor`` (same shape and
    dtype): the deliberately broken exports the generation checks must fail."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    inner = f"{output}__unscaled"
    for node in model.graph.node:
        node.output[:] = [inner if o == output else o for o in node.output]
        node.input[:] = [inner if i == output else i for i in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "zoo_test_factor"))
    model.graph.node.append(helper.make_node("Mul", [inner, "zoo_test_factor"], [output]))
    onnx.save(model, str(path))

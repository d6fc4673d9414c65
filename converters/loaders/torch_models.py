"""Build a PyTorch module from a registry record and local files, safely.

Weights come from safetensors whenever the repo has them; pickle files are
loaded only with ``torch.load(weights_only=True)``. Remote code is never run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zoo import errors
from zoo.registry.records import ModelRecord


@dataclass
class TorchModel:
    module: Any  # torch.nn.Module returning a tuple of tensors
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    classifier_outputs: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    tokenizer: Any = None  # transformers tokenizer for text models
    processor: Any = None  # the repo's feature extractor for audio models (parity inputs go through it)
    seq2seq: Any = None  # an encoder-decoder (tasks/seq2seq.Pair): ``module`` is its decoder, encoder.onnx goes beside
    notes: list[str] = field(default_factory=list)
    forked: Any = None  # generate()'s references computed in a forked child during the export (parity/forked.py)


def _require(module: str, extra: str = "torch"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise errors.MissingDependencyError(
            f"{module} is needed to convert this model but is not installed",
            hint=f"pip install 'zoo-hub[{extra}]'",
        ) from exc


def load_state_dict(root: Path, weights: list[str], weights_format: str, note: Callable[[str], None]) -> dict[str, Any]:
    """Tensors from safetensors, or from pickle through the weights-only unpickler
    (``build_model`` has run zoo's own checks of every file first)."""
    from zoo.safety import refuse_unsafe_pickle_env

    torch = _require("torch")
    state: dict[str, Any] = {}
    shards = [w for w in weights if not w.endswith(".index.json")]
    for name in shards:
        path = root / name
        try:
            if weights_format == "safetensors":
                from safetensors.torch import load_file

                state.update(load_file(str(path)))
            else:
                refuse_unsafe_pickle_env()
                note(f"no safetensors weights: loading {name} with torch.load(weights_only=True)")
                state.update(_tensors_of(torch.load(str(path), map_location="cpu", weights_only=True), name))
        except errors.ZooError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse failure means corrupt or hostile input
            if "weights_only" in str(exc) or type(exc).__name__ == "UnpicklingError":
                raise errors.UnsafeModelError(f"refusing {name}: torch.load(weights_only=True) rejected it: {str(exc).splitlines()[0][:300]}",
                                              hint="publish safetensors weights") from exc
            raise errors.InvalidModelError(
                f"cannot read weights {name}: {type(exc).__name__}: {str(exc)[:300]}",
                hint="the file is corrupt or not a weights file; delete it from the cache and pull again",
            ) from exc
    return state


def _tensors_of(obj: Any, name: str) -> dict[str, Any]:
    """The state dict in a loaded pickle: the object itself, or a checkpoint's ``state_dict``."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise errors.InvalidModelError(f"{name} holds a {type(obj).__name__}, not a state dict",
                                       hint="save the weights with torch.save(model.state_dict()) or as safetensors")
    return obj


def build_timm(record: ModelRecord, root: Path, weights: list[str], weights_format: str, note: Callable[[str], None]) -> TorchModel:
    timm = _require("timm")
    kwargs: dict[str, Any] = {}
    cfg = record.extra.get("timm_config") or {}
    if record.num_classes is not None or cfg.get("num_classes") is not None:
        kwargs["num_classes"] = cfg.get("num_classes", record.num_classes) or 0
    if cfg.get("global_pool"):
        kwargs["global_pool"] = cfg["global_pool"]
    from zoo.safety import check_timm_model_args

    check_timm_model_args(cfg.get("model_args"), f"{record.id}'s config.json")
    kwargs.update(cfg.get("model_args") or {})
    try:
        if cfg.get("fastai_head"):  # a fastai vision_learner on this timm body (zoo import of learn.save weights)
            from zoo.converters.loaders.fastai_models import build_vision_learner

            module = build_vision_learner(record.arch, list(cfg["fastai_head"]["widths"]))
            module.num_classes = cfg["fastai_head"]["widths"][-1]
        else:
            module = timm.create_model(record.arch, pretrained=False, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise errors.UnsupportedError(f"timm cannot build architecture {record.arch!r}: {exc}",
                                      hint="upgrade timm, or check config.json's architecture") from exc
    state = load_state_dict(root, weights, weights_format, note)
    _load_strict(module, state, record.id)
    module.eval()
    output = "logits" if module.num_classes else "features"
    labels = record.labels or _imagenet_labels(record, module.num_classes)
    return TorchModel(module, ["input"], [output], {"input": {0: "batch"}, output: {0: "batch"}},
                      classifier_outputs=[output] if module.num_classes else [], labels=labels)


def _imagenet_labels(record: ModelRecord, num_classes: int) -> list[str] | None:
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset({"num_classes": num_classes, "tag": record.tag or ""})
        return list(ImageNetInfo(subset).label_names()) if subset else None
    except Exception:  # noqa: BLE001 - labels are a nicety
        return None


def _load_strict(module: Any, state: dict[str, Any], model_id: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise errors.InvalidModelError(
            f"{model_id}: the weights do not fit the architecture: {str(exc).splitlines()[0][:300]}",
            hint="the weights file is corrupt or belongs to another model",
        ) from exc


def build_transformers(record: ModelRecord, root: Path, weights: list[str], weights_format: str, note: Callable[[str], None]) -> TorchModel:
    transformers = _require("transformers")
    torch = _require("torch")
    from zoo.converters.loaders.sp_compat import ensure_sentencepiece_proto
    from zoo.safety import check_remote_code

    ensure_sentencepiece_proto()  # a spiece.model-only tokenizer (mT5, T5 v1.1) loads under protobuf < 5

    check_remote_code(root, [p.name for p in root.iterdir()], record.id)  # again: the repo may differ from its description
    if weights_format == "pickle":
        note(f"no safetensors weights: transformers loads {weights[0]} with torch.load(weights_only=True)")
    from zoo.converters.tasks import SUPPORTED_TASKS, prepare_tokenizer

    io = record.extra.get("io") or {}
    auto_name = SUPPORTED_TASKS.get(record.task or "", "AutoModel")
    if io.get("files"):  # an encoder-decoder (tasks/seq2seq.py)
        auto_name = "AutoModelForSpeechSeq2Seq" if "input_features" in io["encoder"]["inputs"] else "AutoModelForSeq2SeqLM"
    if record.task == "image-segmentation" and (io.get("outputs") or [None])[0] == "class_queries_logits":
        auto_name = "AutoModelForUniversalSegmentation"  # Mask2Former (tasks/vision.py)
    auto = getattr(transformers, auto_name)
    try:
        model = auto.from_pretrained(str(root), trust_remote_code=False, local_files_only=True,
                                     use_safetensors=weights_format == "safetensors", attn_implementation="eager")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise errors.InvalidModelError(f"{record.id}: transformers cannot load the model: {str(exc)[:300]}",
                                       hint="check config.json and the weights files") from exc
    model.eval()
    input_names = [spec["name"] for spec in record.input_spec]
    if record.task == "zero-shot-image-classification":
        from zoo.converters.tasks import vision

        pre = vision.load_preprocess(root)
        prepare_tokenizer(pre.tokenizer, record.task, note)
        return TorchModel(vision.wrap(model, input_names), input_names, list(vision.OUTPUTS),
                          vision.dynamic_axes(input_names), processor=pre)
    if record.task == "object-detection":
        from zoo.converters.tasks import vision

        images = transformers.AutoImageProcessor.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        return TorchModel(_tuple_outputs(torch, model, input_names, vision.DETECTION_OUTPUTS), input_names,
                          list(vision.DETECTION_OUTPUTS), vision.detection_axes(), labels=record.labels, processor=images)
    if auto_name == "AutoModelForUniversalSegmentation":
        from zoo.converters.tasks import vision

        images = transformers.AutoImageProcessor.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        return TorchModel(_tuple_outputs(torch, model, input_names, vision.UNIVERSAL_OUTPUTS), input_names,
                          list(vision.UNIVERSAL_OUTPUTS), vision.universal_axes(), labels=record.labels, processor=images)
    if record.task == "depth-estimation":
        from zoo.converters.tasks.depth import OUTPUT

        images = transformers.AutoImageProcessor.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        return TorchModel(_tuple_outputs(torch, model, input_names, [OUTPUT]), input_names, [OUTPUT],
                          {"pixel_values": {0: "batch"}, OUTPUT: {0: "batch"}}, processor=images)

    if io.get("files"):
        return _seq2seq_model(transformers, record, root, model, io, note)
    input_names = [spec["name"] for spec in record.input_spec]
    is_text = input_names[0] == "input_ids"
    tokenizer = None
    if is_text:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        prepare_tokenizer(tokenizer, record.task, note)
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None \
                and record.task != "text-generation":
            # GPT2ForSequenceClassification & co. read the last real token by the pad id, and refuse a batch without one
            model.config.pad_token_id = tokenizer.pad_token_id
    if record.task == "text-generation":
        from zoo.converters.tasks import text_generation

        layers = int(record.extra["io"]["cache"]["num_layers"])
        names, outs, axes = text_generation.io_names(layers)
        # the generation check applies the rules the contract records (a record made before they were: the model's)
        rules = record.extra["io"].get("decoding") or text_generation.decoding(model.config,
                                                                               model.generation_config.to_dict())
        return TorchModel(text_generation.wrap(model, layers, rules), names, outs, axes, tokenizer=tokenizer)
    if record.task in ("automatic-speech-recognition", "audio-classification"):
        extractor = transformers.AutoFeatureExtractor.from_pretrained(str(root), trust_remote_code=False,
                                                                      local_files_only=True)
        names = [s["name"] for s in record.input_spec]
        clip = record.task == "audio-classification"  # one label per clip, not one id per frame
        axes = {**{n: {0: "batch", 1: "samples"} for n in names}, "logits": {0: "batch"} if clip else {0: "batch", 1: "frames"}}
        return TorchModel(_tuple_outputs(torch, model, names, ["logits"]), names, ["logits"], axes,
                          classifier_outputs=["logits"] if clip else [], labels=record.labels if clip else None,
                          processor=extractor)
    if record.task == "multiple-choice":
        axes = {**{n: {0: "batch", 1: "choices", 2: "sequence"} for n in input_names}, "logits": {0: "batch", 1: "choices"}}
        return TorchModel(_tuple_outputs(torch, model, input_names, ["logits"]), input_names, ["logits"], axes,
                          classifier_outputs=["logits"], tokenizer=tokenizer)
    if record.task in ("feature-extraction", "image-feature-extraction"):
        outputs = ["last_hidden_state"] + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])
    elif record.task == "question-answering":
        outputs = ["start_logits", "end_logits"]
    else:
        outputs = ["logits"]
    per_token = ("last_hidden_state", "start_logits", "end_logits") if is_text else ()
    if is_text and record.task in ("fill-mask", "token-classification"):
        per_token += ("logits",)
    dyn = {n: ({0: "batch", 1: "sequence"} if is_text else {0: "batch"}) for n in input_names}
    for out in outputs:
        dyn[out] = {0: "batch", 1: "sequence"} if out in per_token else {0: "batch"}
    if record.task == "sentence-similarity":
        from zoo.converters.tasks import heads

        module = heads.sentence_embedding(model, input_names, record.extra.get("sentence_transformers") or {})
        return TorchModel(module, input_names, ["sentence_embedding"],
                          {**{n: {0: "batch", 1: "sequence"} for n in input_names}, "sentence_embedding": {0: "batch"}},
                          tokenizer=tokenizer)

    classifiers = ["logits"] if record.task in ("text-classification", "image-classification", "token-classification",
                                                "fill-mask") else []
    return TorchModel(_tuple_outputs(torch, model, input_names, outputs), input_names, outputs, dyn,
                      classifier_outputs=classifiers, labels=record.labels, tokenizer=tokenizer)


def _seq2seq_model(transformers: Any, record: ModelRecord, root: Path, model: Any, io: dict[str, Any],
                   note: Callable[[str], None]) -> TorchModel:
    """An encoder-decoder: the decoder (with its self-attention cache) is the module the pipeline exports and
    checks elementwise; the pair (``seq2seq``) brings the encoder and the generation check."""
    from zoo.converters.tasks import prepare_tokenizer, seq2seq

    local = {"trust_remote_code": False, "local_files_only": True}
    tokenizer, extractor = None, None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(root), **local)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if "input_features" not in io["encoder"]["inputs"]:
            raise errors.InvalidModelError(f"{record.id}: the tokenizer cannot be loaded: {str(exc)[:300]}",
                                           hint="an encoder-decoder text model needs its tokenizer files") from exc
        note(f"the tokenizer cannot be loaded ({str(exc)[:120]}): generated ids cannot be read as text")
    if "input_features" in io["encoder"]["inputs"]:
        extractor = transformers.AutoFeatureExtractor.from_pretrained(str(root), **local)
    else:
        prepare_tokenizer(tokenizer, record.task, note)
    pair = seq2seq.make_pair(model, extractor if extractor is not None else tokenizer, io)
    decoder = io["decoder"]
    return TorchModel(pair.decoder, list(decoder["inputs"]), list(decoder["outputs"]), pair.decoder_axes,
                      tokenizer=tokenizer, processor=extractor, seq2seq=pair)


def _tuple_outputs(torch: Any, model: Any, input_names: list[str], outputs: list[str]) -> Any:
    """Positional inputs in, a tuple of named outputs out (clean ONNX names); eval() on the wrapper too: the
    TorchScript exporter restores the top module's mode recursively."""

    class TupleOutputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple:
            out = self.inner(**dict(zip(input_names, args)), return_dict=True)
            return tuple(out[name] for name in outputs)

    return TupleOutputs(model).eval()


def build_model(record: ModelRecord, root: Path, weights: list[str], weights_format: str, note: Callable[[str], None]) -> TorchModel:
    """Check every weights file (``zoo.safety``), then build: the checks run before
    any loader, transformers' own unpickling included."""
    from zoo.safety import check_weights, refuse_unsafe_pickle_env

    if weights_format == "pickle":
        refuse_unsafe_pickle_env()
    check_weights(root, weights)
    if record.library == "timm":
        return build_timm(record, root, weights, weights_format, note)
    if record.library == "transformers":
        return build_transformers(record, root, weights, weights_format, note)
    raise errors.UnsupportedError(f"{record.id}: library {record.library!r} is not supported")

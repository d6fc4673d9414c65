"""Tiny real model repos with seeded random weights, and a writer for the huggingface_hub cache layout.

Every builder returns ``dict[str, bytes]`` (path in repo -> content), deterministic for a given seed, so
the same seed gives the same bytes and the same commit. Heavy frameworks are imported inside builders.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from hubserver import (
    commit_for,
    file_etag,
    git_blob_sha1,
    is_lfs,
    lfs_pointer,
    sha256_hex,
)

__all__ = [
    "bert_repo",
    "commit_for",
    "directory_artifact",
    "git_blob_sha1",
    "is_lfs",
    "keras_repo",
    "tiny_keras_model",
    "pickle_only_repo",
    "sha256_hex",
    "timm_repo",
    "tiny_onnx",
    "vit_image_classifier_repo",
    "write_hf_cache",
]

# Fields of timm's registry cfg that describe preprocessing; config.json must carry the tag's values.
_TIMM_INPUT_FIELDS = (
    "input_size", "test_input_size", "fixed_input_size", "interpolation",
    "crop_pct", "test_crop_pct", "crop_mode", "mean", "std",
)  # fmt: skip

SST_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
VIT_LABELS = {0: "cat", 1: "dog", 2: "bird", 3: "fish", 4: "frog"}

_WORDS = """
a about above after again against all almost also always am an and another any are around as ask at
away back bad be beautiful because become been before began being below best better between big bird
black blue book both boy brown but buy by call came can car cat change child children city close cold
come could country cut day did different do does dog done door down draw during each early earth eat
end enough even ever every eye face fact family far fast father feel few film find fine first fish five
food for found four friend from full game gave get girl give go good got great green group grow had
half hand happy hard has have he head hear heard help her here high him his home horse hot hour house
how i idea if important in into is it its just keep kind knew know land large last late learn leave
left let life light like line little live long look love made make man many may me mean men might mind
model money more morning most mother move movie much music must my name near need never new next night
no not nothing now number of off often old on once one only open or order other our out over own page
paper part people picture place plant play point poor put question quick quickly read real really red
right river road room run said same saw say school sea second see seem sentence set she short should
show side simple since small so some something sometimes song soon sound start state still stop story
study such sun sure table take talk tell terrible than that the their them then there these they thing
think this those thought three through time to today together told too took top tree true try turn two
under until up us use very walk want war warm was watch water way we well went were what when where
which while white who why will with without woman word work world would write year yes yet you young
your zoo hello hi thanks please sorry awful excellent boring wonderful okay neutral positive negative fun funny sad slow
""".split()


def _bert_vocab(extra_words: tuple[str, ...] = ()) -> list[str]:
    """Specials, punctuation, digits, letters (and their ``##`` pieces), then common English words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    singles = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("0123456789abcdefghijklmnopqrstuvwxyz")
    pieces = [f"##{c}" for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    words = sorted((set(_WORDS) | set(extra_words)) - set(singles))
    return specials + singles + pieces + words


def _sample_sentence_words() -> tuple[str, ...]:
    """Every word of zoo's sample sentences: with them in the vocabulary, the benchmark encoder tokenises
    those sentences about as a real BERT vocabulary would (a token a word, not a token a letter)."""
    from zoo.converters.parity.samples import SAMPLE_SENTENCES

    return tuple(sorted({w for s in SAMPLE_SENTENCES for w in re.findall(r"[a-z0-9]+", s.lower())}))


def _read_dir(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _model_card(library: str, pipeline_tag: str, extra_tags: tuple[str, ...] = ()) -> bytes:
    tags = "".join(f"- {t}\n" for t in (library, pipeline_tag, *extra_tags))
    return (
        f"---\nlicense: apache-2.0\nlibrary_name: {library}\npipeline_tag: {pipeline_tag}\ntags:\n{tags}---\n\n"
        "# Tiny test model\n\nRandom weights for offline tests. Not for any real use.\n"
    ).encode()


# --- timm ------------------------------------------------------------------------------------


def _timm_model(name: str, seed: int):
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval()
    _randomize_norms(model)
    return model


def _randomize_norms(model) -> None:
    """Give normalisation layers seeded non-trivial affine parameters and statistics.

    Fresh timm models zero-initialise the last norm of each residual block
    (``zero_init_last``), which silences whole branches: a conversion bug there
    would be invisible to parity. Trained weights never look like that.
    """
    import torch

    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, norm_types):
                continue
            if getattr(module, "weight", None) is not None:
                module.weight.uniform_(0.5, 1.5)
            if getattr(module, "bias", None) is not None:
                module.bias.normal_(0.0, 0.1)
            if getattr(module, "running_mean", None) is not None:
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def _timm_config(name: str, directory: Path) -> None:
    """Rewrite config.json so pretrained_cfg carries the tag's registry preprocessing values."""
    import timm

    registry_cfg = timm.models.get_pretrained_cfg(name).to_dict()
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key in _TIMM_INPUT_FIELDS:
        if registry_cfg.get(key) is not None:
            value = registry_cfg[key]
            config["pretrained_cfg"][key] = list(value) if isinstance(value, tuple) else value
    path.write_text(json.dumps(config, indent=2) + "\n")


def timm_repo(name: str, seed: int = 0) -> dict[str, bytes]:
    """A timm hub repo (model.safetensors + config.json + README.md) for an ``arch.tag`` name."""
    from timm.models._hub import save_for_hf

    model = _timm_model(name, seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hf(model, tmp, safe_serialization=True)
        _timm_config(name, Path(tmp))
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("timm", "image-classification", ("transformers",))
    return files


def pickle_only_repo(name: str = "test_resnet.r160_in1k", seed: int = 0) -> dict[str, bytes]:
    """A timm repo whose weights exist only as ``pytorch_model.bin`` (torch.save of the state_dict)."""
    from timm.models._hub import save_for_hf

    model = _timm_model(name, seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hf(model, tmp, safe_serialization=False)
        _timm_config(name, Path(tmp))
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("timm", "image-classification")
    return files


# --- transformers ----------------------------------------------------------------------------


def _save_transformers(model, extra_savers=()) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for save in extra_savers:
            save(tmp)
        return _read_dir(Path(tmp))


def _bert_tokenizer(tmp: str, max_length: int = 128, extra_words: tuple[str, ...] = ()):
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab

    vocab_file = os.path.join(tmp, "vocab.txt")
    Path(vocab_file).write_text("\n".join(_bert_vocab(extra_words)) + "\n")
    # transformers 5 ignores vocab_file= (the tokenizer would silently have only the 5 specials).
    return BertTokenizerFast(vocab=dict(load_vocab(vocab_file)), model_max_length=max_length)


BERT_SIZES = {  # "tiny" for tests; "base" has BERT-base's shapes (110M parameters) for benchmarks
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37,
             "max_position_embeddings": 128},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "max_position_embeddings": 512, "vocab_size": 30522},
}


def bert_repo(head: str = "base", seed: int = 0, size: str = "tiny") -> dict[str, bytes]:
    """A BERT with seeded weights: ``head`` is "base" (BertModel) or "sequence-classification" (3 sentiment
    labels); ``size`` is a key of BERT_SIZES."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    heads = {"base": BertModel, "sequence-classification": BertForSequenceClassification}
    if head not in heads:
        raise ValueError(f"head must be one of {sorted(heads)}, got {head!r}")
    labels = {"num_labels": 3, "id2label": SST_LABELS, "label2id": {v: k for k, v in SST_LABELS.items()}}
    config = BertConfig(
        **{"vocab_size": len(_bert_vocab()), **BERT_SIZES[size]},
        **(labels if head == "sequence-classification" else {}),
    )
    torch.manual_seed(seed)
    model = heads[head](config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        extra = _sample_sentence_words() if size == "base" else ()  # the tiny repos' bytes stay as they were
        tokenizer = _bert_tokenizer(tmp, BERT_SIZES[size]["max_position_embeddings"], extra)
        files = _save_transformers(model, [tokenizer.save_pretrained])
        files["vocab.txt"] = Path(tmp, "vocab.txt").read_bytes()
    task = "text-classification" if head == "sequence-classification" else "feature-extraction"
    files["README.md"] = _model_card("transformers", task, ("bert", "safetensors"))
    return files


def vit_image_classifier_repo(seed: int = 0) -> dict[str, bytes]:
    """A tiny ViTForImageClassification (32x32 input, 5 labels) with its preprocessor_config.json."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=len(VIT_LABELS),
        id2label=VIT_LABELS,
        label2id={v: k for k, v in VIT_LABELS.items()},
    )
    torch.manual_seed(seed)
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    files = _save_transformers(model, [processor.save_pretrained])
    files["README.md"] = _model_card("transformers", "image-classification", ("vit", "safetensors"))
    return files


# --- the huggingface_hub cache ---------------------------------------------------------------


def _tree_cache_json(files: dict[str, bytes]) -> str:
    """``trees/<commit>.json`` as snapshot_download writes it (huggingface_hub._tree_cache format 1)."""
    entries = {}
    for path in sorted(files):
        data = files[path]
        if is_lfs(path, len(data)):
            info = {"size": len(data), "blob_id": git_blob_sha1(lfs_pointer(data))}
            info.update(lfs_sha256=sha256_hex(data), lfs_size=len(data))
        else:
            info = {"size": len(data), "blob_id": git_blob_sha1(data)}
        entries[path] = info
    return json.dumps({"format_version": 1, "files": entries}, indent=1)


def write_hf_cache(
    hub_cache: Path,
    repo_id: str,
    files: dict[str, bytes],
    commit: str | None = None,
    ref: str = "main",
    tree: bool = True,
) -> Path:
    """Write ``files`` into ``hub_cache`` exactly as huggingface_hub leaves a downloaded model repo.

    ``models--org--name/blobs/<etag>`` (sha256 for LFS files, git blob sha1 otherwise, as the server
    reports), ``snapshots/<commit>/<path>`` as relative symlinks into ``../../blobs``, ``refs/<ref>``
    holding the commit and, with ``tree``, the ``trees/<commit>.json`` listing snapshot_download writes
    (which lets the client notice a snapshot that is missing files). Returns the snapshot directory.
    """
    commit = commit or commit_for(files)
    storage = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    for path, data in files.items():
        blob = storage / "blobs" / file_etag(path, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        pointer = snapshot / path
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    if tree:
        (storage / "trees").mkdir(exist_ok=True)
        (storage / "trees" / f"{commit}.json").write_text(_tree_cache_json(files))
    tag = Path(hub_cache) / "CACHEDIR.TAG"
    if not tag.exists():
        tag.write_text(_cachedir_tag())
    return snapshot


def _cachedir_tag() -> str:
    try:
        from huggingface_hub._local_folder import CACHEDIR_TAG_CONTENT
    except ImportError:  # older/newer client: the standard's mandatory first line is enough
        return "Signature: 8a477f597d28d172789f06886806bc55\n"
    return CACHEDIR_TAG_CONTENT


# --- keras ------------------------------------------------------------------------------------


def keras_mobilenet_v2_weights(size: int = 96, seed: int = 0) -> tuple[str, bytes]:
    """(file name keras' cache looks for, legacy .h5 weights) of a seeded MobileNetV2 at ``size``.

    keras.applications.MobileNetV2(weights="imagenet") fetches this name into
    KERAS_HOME/models without a hash check, so the file placed there is what
    keras loads: the real loading path, offline. Norm layers get random
    statistics: fresh Keras models output the same softmax for every input.
    """
    import h5py
    import numpy as np

    from zoo.converters.loaders.keras_models import import_keras

    keras = import_keras()  # as zoo imports it (quiet, and keeping Triton out of a TensorFlow process)
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"), rng.normal(0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"), rng.uniform(0.5, 1.5, var.shape).astype("float32")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.h5"
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        data = path.read_bytes()
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}.h5", data


KERAS_LABELS = 5


def tiny_keras_model(seed: int):
    """A small CNN (32x32x3 -> 5 logits) with seeded weights and non-trivial norm statistics."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    keras.backend.clear_session()  # layer names (conv2d, conv2d_1...) start afresh: same config each build
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(KERAS_LABELS, name="logits")(x)
    model = keras.Model(inputs, outputs, name="tiny_cnn")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if i in (0, 3) else
                               rng.normal(0, 0.1, w.shape).astype("float32") for i, w in enumerate(layer.get_weights())])
    return model


def keras_repo(seed: int = 0, layout: str = "directory") -> dict[str, bytes]:
    """A tiny Keras 3 model as ``keras.saving.save_model(model, "hf://org/name")`` uploads it
    (``config.json``, ``metadata.json``, ``model.weights.h5`` and a model card), or, with
    ``layout="file"``, as one ``model.keras``. The save date is fixed so the bytes are stable."""
    import zipfile

    model = tiny_keras_model(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        with zipfile.ZipFile(path) as archive:
            members = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
    ids: dict[str, str] = {}  # keras writes id() of shared dtype policies: renumber them in order
    members["config.json"] = re.sub(rb'"shared_object_id": (\d+)', lambda m: b'"shared_object_id": '
                                    + ids.setdefault(m.group(1), str(len(ids) + 1)).encode(), members["config.json"])
    metadata = json.loads(members["metadata.json"])
    metadata["date_saved"] = "2025-01-01@00:00:00"
    members["metadata.json"] = json.dumps(metadata).encode()
    card = b"---\nlibrary_name: keras\nlicense: apache-2.0\n---\n\n# Tiny Keras test model\n\nRandom weights for offline tests.\n"
    if layout == "directory":
        return {**members, "README.md": card}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for name in sorted(members):
                archive.writestr(zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0)), members[name])
        return {"model.keras": path.read_bytes(), "README.md": card}


def directory_artifact(settings, files: dict[str, bytes], model: str = "zoo-test/dir"):
    """Publish and index a multi-file artifact in ``settings``' store and registry, as a conversion
    would (``files``: path -> bytes; the primary file is ``model.onnx``). Returns the Artifact."""
    from zoo.pipeline import index_artifact
    from zoo.registry.index import Registry
    from zoo.storage.artifacts import ArtifactStore

    store, registry = ArtifactStore(settings.home), Registry(settings)
    with store.staging() as staged:
        for name, data in files.items():
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_bytes(data)
        manifest = {"model": model, "revision": "r" * 40, "format": "onnx", "parity": {"passed": True}}
        art = store.publish(staged, "model.onnx", manifest, verified=True)
    index_artifact(registry, "k" * 64, art, manifest)
    return art


def tiny_onnx(path: Path, seed: int = 0) -> Path:
    """A small dense ONNX model (y = x @ W + b, x: [batch, 64]) with seeded weights: the cheapest source
    of a real conversion (``zoo convert`` imports onnx and onnxruntime only, no torch)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])], "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path

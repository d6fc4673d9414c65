"""zoo.converters.parity.samples: deterministic sample images, and preprocessing identical to timm's eval transform."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from zoo.converters.parity.samples import (
    SAMPLE_LICENSE,
    SAMPLE_SENTENCES,
    preprocess_image,
    preprocess_images,
    sample_images,
)
from zoo.errors import UnsupportedError, UsageError


def _digest(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_sample_images_are_deterministic_and_distinct():
    first, second = sample_images(), sample_images()
    assert [name for name, _ in first] == ["00-landscape", "01-stripes", "02-bubbles", "03-blocks"]
    assert [_digest(im) for _, im in first] == [_digest(im) for _, im in second]
    assert len({_digest(im) for _, im in sample_images(8)}) == 8
    for _, image in first:
        assert image.mode == "RGB" and image.size == (256, 256)


def test_sample_images_look_like_pictures_not_noise():
    for _, image in sample_images(4, size=128):
        pixels = np.asarray(image, dtype=np.float64)
        neighbour_step = np.abs(np.diff(pixels, axis=1)).mean()
        assert neighbour_step < 12  # smooth: noise would step ~85 per pixel
        assert pixels.std() > 20  # but not flat: real contrast between regions
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # texture, many colours


def test_sample_size_and_licence():
    (name, image), = sample_images(1, size=64)
    assert image.size == (64, 64)
    assert SAMPLE_LICENSE.startswith("CC0-1.0")
    assert 6 <= len(SAMPLE_SENTENCES) <= 8 and len(set(SAMPLE_SENTENCES)) == len(SAMPLE_SENTENCES)
    lengths = sorted(len(s.split()) for s in SAMPLE_SENTENCES)
    assert lengths[0] <= 3 and lengths[-1] >= 25


@pytest.mark.parametrize("config", [
    {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875},
    {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 0.875},
    {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 1.0},
    {"input_size": (3, 160, 160), "interpolation": "bilinear", "crop_pct": 0.95},
    {"input_size": (3, 192, 256), "interpolation": "bicubic", "crop_pct": 0.95},
    {"input_size": (3, 200, 150), "interpolation": "bilinear", "crop_pct": 0.9, "crop_mode": "squash"},
    {"input_size": (3, 160, 128), "interpolation": "bicubic", "crop_pct": 0.9, "crop_mode": "border"},
    {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 1.15},  # crop larger than resize: pads
])
def test_preprocess_matches_timm_eval_transform(config):
    import timm.data as data
    resolved = data.resolve_data_config(dict(config))
    transform = data.create_transform(**resolved, is_training=False)
    (_, square), (_, other) = sample_images(2)
    for image in (square, other.resize((300, 210))):
        expected = transform(image).numpy()[None]
        got = preprocess_image(image, **resolved)
        assert got.dtype == np.float32 and got.shape == expected.shape == (1, *resolved["input_size"])
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
def test_preprocess_matches_timm_for_a_real_model_config(arch):
    import timm
    config = timm.data.resolve_data_config({}, model=timm.create_model(arch, pretrained=False))
    transform = timm.data.create_transform(**config, is_training=False)
    images = sample_images(3)
    expected = np.stack([transform(image).numpy() for _, image in images])
    got = preprocess_images(images, **config)
    assert got.shape == (3, *config["input_size"])
    assert np.abs(got - expected).max() < 1e-4


def test_preprocess_accepts_arrays_and_greyscale_and_batches():
    (_, image), = sample_images(1, size=96)
    from_array = preprocess_image(np.asarray(image), input_size=(3, 64, 64))
    np.testing.assert_array_equal(from_array, preprocess_image(image, input_size=(3, 64, 64)))
    grey = preprocess_image(image.convert("L"), input_size=(1, 64, 64), mean=(0.5,), std=(0.5,))
    assert grey.shape == (1, 1, 64, 64)
    assert preprocess_images([image, image], input_size=(3, 32, 32)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"crop_mode": "random"}, UnsupportedError),
    ({"interpolation": "magic"}, UnsupportedError),
    ({"input_size": (4, 32, 32), "mean": (0,) * 4, "std": (1,) * 4}, UnsupportedError),
    ({"input_size": (3, 32, 32), "mean": (0.5,)}, UsageError),
])
def test_preprocess_rejects_what_it_cannot_replicate(kwargs, error):
    (_, image), = sample_images(1, size=32)
    with pytest.raises(error):
        preprocess_image(image, **kwargs)


def test_preprocess_images_needs_images():
    with pytest.raises(UsageError):
        preprocess_images([])


def test_sentences_at_the_export_length_fit_a_static_text_model(tmp_path):
    """A static-shape export (litert-torch's BERT tflite) takes only the export example's (batch 2, length 16):
    the real sentences come again at that length, padded or truncated by the tokenizer ([SEP] kept), and
    static_sets feeds them to such a file a batch at a time, so its fp16/int8 variants meet real text."""
    from types import SimpleNamespace

    from builders import bert_repo
    from task_builders import source_dir
    from transformers import AutoTokenizer

    from zoo.converters.parity.inputs import parity_input_sets
    from zoo.converters.parity.static_sets import static_sets
    from zoo.registry.records import ModelRecord

    tok = AutoTokenizer.from_pretrained(str(source_dir(tmp_path, bert_repo("base"))))
    names = ["input_ids", "token_type_ids", "attention_mask"]
    record = ModelRecord(id="zoo-test/tiny-bert", source="hf", name="zoo-test/tiny-bert", library="transformers",
                         input_spec=[{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in names])
    sets = parity_input_sets(record, tok)
    example = sets[0].feeds["input_ids"].shape
    step = next(s for s in sets if s.name == f"sample-sentences-s{example[1]}")
    assert step.kind == "sample" and {a.shape for a in step.feeds.values()} == {(len(SAMPLE_SENTENCES), example[1])}
    ids, mask = step.feeds["input_ids"], step.feeds["attention_mask"]
    assert (ids[:, -1][mask[:, -1] == 1] == tok.sep_token_id).all() and mask[:, -1].any()  # truncated, [SEP] last
    assert not mask.all()  # and padded rows
    longest = next(s for s in sets if s.name == "sample-sentences")
    assert longest.feeds["input_ids"].shape[1] > example[1]
    ctx = SimpleNamespace(info={"torch->tflite": {"io_contract": {"shapes": "static", "inputs": [
        {"name": n, "shape": list(example)} for n in names]}}})
    kept, skipped, _ = static_sets(ctx, sets, names)
    assert "sample-sentences" in skipped
    assert sum(s.kind == "sample" for s in kept) == len(SAMPLE_SENTENCES) // example[0]

"""Name parsing, timm catalog indexing and resolution, against the installed timm."""

from __future__ import annotations

import pytest

from zoo import errors
from zoo.registry.index import Registry
from zoo.registry.names import parse_name
from zoo.settings import Settings


@pytest.mark.parametrize(
    "text, source, name, revision",
    [
        ("resnet50", None, "resnet50", None),
        ("resnet50.a1_in1k", None, "resnet50.a1_in1k", None),
        ("timm:resnet50", "timm", "resnet50", None),
        ("timm/resnet50.a1_in1k", None, "timm/resnet50.a1_in1k", None),
        ("org/name@v1.0", None, "org/name", "v1.0"),
        ("hf:org/name@0123456789abcdef0123456789abcdef01234567", "hf", "org/name", "0123456789abcdef0123456789abcdef01234567"),
        ("hf-hub:org/name", "hf", "org/name", None),
        ("local:my-model", "local", "my-model", None),
    ],
)
def test_parse_name(text, source, name, revision):
    ref = parse_name(text)
    assert (ref.source, ref.name, ref.revision) == (source, name, revision)


@pytest.mark.parametrize(
    "text", ["", "   ", "../x", "/abs/path", "a/b/c", "x@", "foo:bar", "org/name@..", "res net", "resnet50@v1",
             "hf:resnet50", "local:a/b", "a\\b", "org/name@a b"],
)
def test_parse_name_rejects_malformed(text):
    with pytest.raises(errors.InvalidNameError) as info:
        parse_name(text)
    assert info.value.hint  # always says what to do


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    settings = Settings.from_env({"ZOO_HOME": str(tmp_path_factory.mktemp("zoo"))})
    reg = Registry(settings)
    assert reg.ensure_timm_catalog(quiet=True)
    return reg


def test_timm_catalog_is_indexed_whole(registry):
    import timm

    timm_records = registry.search(source="timm")
    assert len(timm_records) == len(timm.list_pretrained()) > 1500
    rec = registry.get("timm/resnet50.a1_in1k")
    assert rec.repo_id == "timm/resnet50.a1_in1k" and rec.is_default and rec.license == "apache-2.0"
    assert rec.preprocessing["input_size"] == [3, 224, 224] and rec.preprocessing["interpolation"] == "bicubic"
    assert rec.input_spec[0]["shape"] == ["batch", 3, 224, 224] and rec.num_classes == 1000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("resnet50", "timm/resnet50.a1_in1k"),  # timm's default tag
        ("resnet50.a1_in1k", "timm/resnet50.a1_in1k"),
        ("timm:resnet50.a1h_in1k", "timm/resnet50.a1h_in1k"),
        ("timm/resnet50.a1_in1k", "timm/resnet50.a1_in1k"),
        ("vit_base_patch16_224", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
        ("test_resnet", "timm/test_resnet.r160_in1k"),
    ],
)
def test_resolve(registry, text, expected):
    import timm

    rec = registry.resolve(parse_name(text))
    assert rec.id == expected
    if "." not in text.split(":")[-1]:  # bare arch: the same default tag timm picks
        assert rec.tag == timm.models.get_pretrained_cfg(text.split(":")[-1]).tag


def test_unknown_name_offers_candidates(registry):
    with pytest.raises(errors.ModelNotFoundError) as info:
        registry.resolve(parse_name("resnet5O"))
    assert "resnet50" in info.value.details["candidates"]


def test_ambiguous_prefix_lists_choices(registry):
    with pytest.raises(errors.AmbiguousNameError) as info:
        registry.resolve(parse_name("resnet50.a1"))
    assert {"timm:resnet50.a1_in1k", "timm:resnet50.a1h_in1k"} <= set(info.value.details["choices"])


def test_unindexed_repo_resolves_to_hf_stub(registry):
    rec = registry.resolve(parse_name("someorg/some-model"))
    assert (rec.source, rec.repo_id) == ("hf", "someorg/some-model")


def test_exit_codes_are_distinct_per_class():
    from zoo.errors import EXIT_CODES

    codes = [code for _, code in EXIT_CODES]
    assert len(codes) == len(set(codes))

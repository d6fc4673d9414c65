"""zoo.options.Options is the one definition of a conversion's options: the CLI's flags, the API's schema and
the cache and job keys all come from it, with the same bounds."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from zoo import errors
from zoo.errors import UsageError
from zoo.options import Options, add_arguments, from_arguments, option_fields


def _cli(*argv: str) -> Options:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def _api_schema() -> dict:
    from zoo.api.schemas import JobOptions

    return JobOptions.model_json_schema()["properties"]


def test_every_option_is_a_flag_and_a_schema_field():
    schema = _api_schema()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {a.dest for a in parser._actions}
    for f in option_fields():
        assert f.name in dests
        # the job's format is a field of the job itself; a local path (--inputs FILE) means nothing to the server
        assert (f.name in schema) is (f.name != "format" and f.metadata["api"])


@pytest.mark.parametrize("name", [f.name for f in option_fields() if f.metadata["ge"] is not None
                                  or f.metadata["le"] is not None])
def test_the_api_schema_has_the_same_bounds_as_the_cli(name):
    meta = next(f.metadata for f in option_fields() if f.name == name)
    prop = _api_schema()[name]
    numeric = next(p for p in prop.get("anyOf", [prop]) if p.get("type") in ("integer", "number"))
    assert numeric.get("minimum") == meta["ge"] and numeric.get("maximum") == meta["le"]
    if meta["le"] is not None:  # just outside the bound: refused by both, with a UsageError on the CLI side
        with pytest.raises(UsageError):
            _cli(f"--{name.replace('_', '-')}", str(meta["le"] + 1))
        from pydantic import ValidationError

        from zoo.api.schemas import JobOptions

        with pytest.raises(ValidationError):
            JobOptions(**{name: meta["le"] + 1})
        assert _cli(f"--{name.replace('_', '-')}", str(meta["le"])) == Options(**{name: meta["le"]})


def test_the_artifact_key_ignores_allow_mismatch_but_the_job_key_does_not():
    strict, lax = Options(format="onnx"), Options(format="onnx", allow_mismatch=True)
    assert strict.canonical() == lax.canonical()  # the same artifact either way
    assert strict.job_key_fields() != lax.job_key_fields()  # but never the same job


def test_canonical_resolves_defaults():
    assert Options().canonical() == Options(opset=18).canonical()


def test_from_mapping_refuses_unknown_and_bad_values():
    with pytest.raises(UsageError, match="unknown option"):
        Options.from_mapping({"colour": "red"})
    with pytest.raises(UsageError, match="exporter"):
        Options.from_mapping({"exporter": "magic"})
    with pytest.raises(UsageError, match="finite"):
        Options.from_mapping({"atol": float("inf")})
    assert Options.from_mapping(Options(format="pt2", atol=1e-3).public(), format="pt2") == Options(format="pt2", atol=1e-3)


def test_a_new_field_reaches_both_surfaces(monkeypatch):
    """The derivation is generic: a field added to Options appears as a flag and in the API schema."""
    import zoo.options as options_module

    @dataclasses.dataclass(frozen=True)
    class Extended(options_module.Options):
        seed: int | None = options_module.option(None, ge=0, le=9, help="a seed")

    monkeypatch.setattr(options_module, "Options", Extended)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--seed", "3"]).seed == 3
    from zoo.api import schemas

    model = schemas._job_options()
    assert model.model_json_schema()["properties"]["seed"]["anyOf"][0]["maximum"] == 9


def test_input_specs_repeat_on_the_cli_and_are_a_list_in_the_api():
    from zoo.api.schemas import JobOptions

    options = _cli("--input", "images:1x3x640x640:float32:0..1", "--input", "sr::int64:16000")
    assert options.input == ("images:1x3x640x640:float32:0..1", "sr::int64:16000")
    assert options.canonical()["input"] == list(options.input)  # they decide the check: part of the key
    assert JobOptions(input=list(options.input)).model_dump()["input"] == list(options.input)
    assert Options.from_mapping(options.public()) == options
    assert "input" not in Options().canonical()  # unset: every earlier request keeps its key
    with pytest.raises(UsageError, match="NAME:SHAPE"):
        _cli("--input", "just-a-name")


def test_an_inputs_file_is_keyed_by_its_bytes_not_its_path(tmp_path):
    import numpy as np

    first, second, other = tmp_path / "a.npz", tmp_path / "elsewhere.npz", tmp_path / "c.npz"
    np.savez(first, x=np.ones(3, np.float32))
    second.write_bytes(first.read_bytes())
    np.savez(other, x=np.zeros(3, np.float32))
    key = _cli("--inputs", str(first)).canonical()["inputs"]
    assert key.startswith("sha256:") and str(tmp_path) not in key
    assert _cli("--inputs", str(second)).canonical()["inputs"] == key
    assert _cli("--inputs", str(other)).canonical()["inputs"] != key
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "line.txt").write_text("hello")
    before = _cli("--samples", str(samples)).canonical()["samples"]
    (samples / "line.txt").write_text("hello again")
    assert _cli("--samples", str(samples)).canonical()["samples"] != before
    with pytest.raises(errors.NotFoundError):
        _cli("--inputs", str(tmp_path / "missing.npz"))


def test_local_paths_are_not_api_options():
    from pydantic import ValidationError

    from zoo.api.schemas import JobOptions

    properties = _api_schema()
    assert "input" in properties and "inputs" not in properties and "samples" not in properties
    with pytest.raises(ValidationError):
        JobOptions(inputs="/etc/passwd")

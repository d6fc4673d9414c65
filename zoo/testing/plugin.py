"""zoo's pytest plugin, loaded through the ``pytest11`` entry point ``zoo`` (``-p no:zoo`` turns it off).

- ``zoo_pull``: a function ``(name, format="onnx", **options) -> PulledArtifact``, cached like ``zoo pull``;
- ``@pytest.mark.zoo_formats("onnx", "tflite", model="resnet50")``: the test runs once per format;
  ``zoo_format`` is the format, ``zoo_model`` the model, ``zoo_artifact`` its verified artifact;
  ``--zoo-formats onnx,onnx-int8`` overrides the marker's formats for a run;
- every report ``zoo.testing`` makes during a test is attached to the test's report: a "zoo" section
  shown with a failure, and ``zoo[<model> -> <format>].*`` properties in the JUnit XML (``--junitxml``).

Loaded in every pytest process of an environment where zoo is installed, so it imports nothing heavy:
pytest, and ``zoo.testing.recorder`` (the standard library); the rest loads when a fixture is used.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from zoo.testing import recorder

_RECORDS = pytest.StashKey[list]()
_ATTACHED = pytest.StashKey[int]()
MARKER = "zoo_formats"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zoo", "zoo model parity")
    group.addoption("--zoo-formats", metavar="F1,F2", default=None,
                    help="formats for tests marked zoo_formats (overrides the marker's)")
    parser.addini("zoo_model", "the model of zoo_formats-marked tests that do not name one", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*formats, model=None): run the test once per format; the "
                                       "zoo_format, zoo_model and zoo_artifact fixtures give the format, the model "
                                       "and its verified artifact")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None or "zoo_format" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("--zoo-formats")
    formats = [f.strip() for f in option.split(",") if f.strip()] if option else list(marker.args)
    if not formats:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER}() names no format")
    metafunc.parametrize("zoo_format", formats, ids=formats)


@pytest.fixture
def zoo_format() -> str:
    """The format of this run of a zoo_formats-marked test ("onnx" elsewhere)."""
    return "onnx"


@pytest.fixture
def zoo_model(request: pytest.FixtureRequest) -> str:
    """The model named by the zoo_formats marker (``model=``), else by the ``zoo_model`` ini option."""
    marker = request.node.get_closest_marker(MARKER)
    model = (marker.kwargs.get("model") if marker else None) or request.config.getini("zoo_model")
    if not model:
        pytest.fail(f"name the model: @pytest.mark.{MARKER}(..., model=\"resnet50\"), or zoo_model = resnet50 "
                    "in the pytest ini options", pytrace=False)
    return model


@pytest.fixture
def zoo_pull() -> Callable[..., Any]:
    """``zoo_pull(name, format="onnx", **options)``: the verified artifact (a PulledArtifact)."""
    from zoo.testing.api import pull_artifact

    return pull_artifact


@pytest.fixture
def zoo_artifact(zoo_pull: Callable[..., Any], zoo_model: str, zoo_format: str) -> Any:
    """The verified artifact of ``zoo_model`` in ``zoo_format``."""
    return zoo_pull(zoo_model, zoo_format)


# --- reports onto the test's report ---------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_RECORDS] = recorder.start()
    item.stash[_ATTACHED] = 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    records = item.stash.get(_RECORDS, None)
    if records is not None:  # before the report is made: it copies the item's user_properties
        for record in records[item.stash[_ATTACHED]:]:
            item.user_properties.extend((f"zoo[{record['label']}].{k.removeprefix('zoo.')}", v)
                                        for k, v in record["properties"].items())
        item.stash[_ATTACHED] = len(records)
    outcome = yield
    report = outcome.get_result()
    if records and (report.failed or call.when == "call"):
        report.sections.append(("zoo", "\n".join(r["text"] for r in records)))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    recorder.stop()

"""The pieces of the web catalog that need no browser: the model card's sanitiser, the SVG pictures, the
catalog's read models on a real database, and the convert form made from the API's JobOptions schema.
(tests/test_web.py drives the pages themselves in Chromium.)"""

from __future__ import annotations

import re

import pytest

from zoo.api.card import render_card
from zoo.api.charts import formats_chart, parity_chart


# --- model cards ---------------------------------------------------------------------------------
@pytest.mark.parametrize("markdown, present, absent", [
    ("<script>alert(1)</script>", ["&lt;script&gt;alert(1)&lt;/script&gt;"], ["<script"]),
    ('<img src=x onerror="alert(1)">', ["&lt;img src=x onerror="], ["<img"]),
    ("<iframe src=//evil></iframe>\n\n<b onclick=x>hi</b>", ["&lt;iframe", "&lt;b onclick=x&gt;"], ["<iframe", "<b "]),
    ("[x](javascript:alert(1))", ["[x](javascript:alert(1))"], ["href=\"javascript", "<a "]),
    ("[x](JaVaScRiPt:alert(1))", [], ["href=\"JaVaScRiPt", "<a "]),
    ("[x](data:text/html,<script>1</script>)", [], ["href=\"data:", "<script"]),
    ("[x](vbscript:msgbox)", [], ["<a "]),
    ("![t](http://203.0.113.7/p.png)", ['class="card-image" href="http://203.0.113.7/p.png"', "[image: t]"], ["<img"]),
    ('![t](x.png "a\\" onerror=\\"y")', ["[image: t]"], ["<img", " onerror="]),
    ("[ok](https://example.org/a?b=1&c=2)", ['href="https://example.org/a?b=1&amp;c=2"', "nofollow noopener"], []),
    ("[rel](./docs/a.md) [up](../../etc/passwd) [abs](/etc/passwd) [net](//evil.org/x)",
     ['href="/org/m/resolve/abc/docs/a.md"'], ["passwd\"", "evil.org"]),
    ("[anchor](#usage)", ['href="#usage"'], []),
    ("---\nlicense: mit\nsecret: front\n---\n# Title", ["<h1>Title</h1>"], ["secret", "license"]),
    ("| a | b |\n|---|---|\n| 1 | <script> |", ["<table>", "&lt;script&gt;"], ["<script"]),
    ("`<script>`\n\n    <script>x</script>", ["<code>&lt;script&gt;</code>"], ["<script"]),
])
def test_cards_are_rendered_without_anything_that_runs_or_fetches(markdown, present, absent):
    html = render_card(markdown, files_url="/org/m/resolve/abc")
    for text in present:
        assert text in html, (text, html)
    for text in absent:
        assert text not in html, (text, html)
    for tag, attrs in _elements(html):
        assert tag not in ("script", "img", "iframe", "object", "embed", "style", "link", "meta", "form"), html
        assert not [k for k, _ in attrs if k.startswith("on") or k in ("src", "style")], html
        href = dict(attrs).get("href")
        assert href is None or re.match(r"^(https?://|mailto:|#|/org/m/resolve/abc/)", href), href


def _elements(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element the browser would build from ``html``: (tag, attributes)."""
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_relative_links_without_a_mirror_lead_nowhere():
    html = render_card("[file](config.json) ![img](a.png)", files_url=None)
    assert "href" not in html and "card-dead-link" in html and "[image: img]" in html


# --- pictures ------------------------------------------------------------------------------------
def _check(output: str, input_set: str, max_abs: float, mean_abs: float, passed: bool = True) -> dict:
    return {"output": output, "input_set": input_set, "max_abs_diff": max_abs, "mean_abs_diff": mean_abs,
            "atol": 1e-4, "rtol": 1e-4, "passed": passed}


def test_the_parity_picture_has_a_bar_per_output_and_a_dot_per_input_set_escaped():
    hostile = '<script>alert("x")</script>'
    report = {"checks": [_check("logits", "random-b1", 2e-6, 1e-7), _check("logits", "random-b3", 3e-6, 2e-7),
                         _check(hostile, "random-b1", 0.5, 0.1, passed=False), _check("nan", "s", "nan", "nan")]}
    svg = str(parity_chart(report))
    assert svg.count('<g class="pass">') == 1 and svg.count('<g class="fail">') == 1
    assert svg.count("<circle") == 3  # the NaN check has no figure to draw
    assert "<script" not in svg and "&lt;script&gt;" in svg
    # log scale: the failing output's 0.5 lies right of the passing one's 3e-6
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert xs[2] > xs[1] > xs[0]
    assert parity_chart({"checks": []}) is None and parity_chart({}) is None


def test_the_formats_picture_draws_sizes_and_latencies_that_were_measured():
    rows = [{"format": "onnx", "state": "verified", "artifact": {"size": 4_000_000}, "latency_ms": 2.5},
            {"format": "<b>pt2</b>", "state": "failed", "artifact": {"size": 2_000_000}, "latency_ms": None},
            {"format": "tf", "state": "not converted", "artifact": None, "latency_ms": None}]
    svg = str(formats_chart(rows))
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert len(widths) == 3 and widths[0] == pytest.approx(2 * widths[1])  # two sizes, one latency
    assert "&lt;b&gt;pt2&lt;/b&gt;" in svg and "<b>" not in svg
    assert formats_chart([rows[2]]) is None


# --- read models ---------------------------------------------------------------------------------
@pytest.fixture
def catalog_home(zoo_env, database_url, monkeypatch):
    """An index (Keras' applications and a few timm records, as timm's catalog writes them) with one verified
    and one failed artifact recorded, in SQLite and in PostgreSQL (JSON fields are read in SQL)."""
    import sqlalchemy as sa

    from zoo import db
    from zoo.registry.index import Registry
    from zoo.registry.records import ModelRecord
    from zoo.settings import get_settings

    monkeypatch.setenv("ZOO_DATABASE_URL", database_url)
    settings = get_settings()
    registry = Registry(settings)
    registry.ensure_keras_catalog()
    for name, task, default in [("resnet18.a1_in1k", "image-classification", True),
                                ("resnet18.tv_in1k", "image-classification", False),
                                ("ecaresnet18d.ra2_in1k", "image-classification", True),
                                ("vit_tiny.augreg_in21k", "feature-extraction", True)]:
        registry.upsert(ModelRecord(id=f"timm/{name}", source="timm", name=name, repo_id=f"timm/{name}",
                                    arch=name.split(".")[0], tag=name.split(".")[1], is_default=default, task=task,
                                    license="apache-2.0"))
    engine = db.get_engine(settings.database_url)
    rows = [("a" * 64, "timm/resnet18.a1_in1k", "onnx", True), ("b" * 64, "timm/resnet18.a1_in1k", "tflite", False),
            ("c" * 64, "keras/MobileNetV2", "tflite", True)]
    with engine.begin() as conn:
        conn.execute(sa.insert(db.artifacts), [
            {"key": key, "digest": key, "model_id": model, "revision": "r", "format": fmt, "primary_file": "m",
             "sha256": key, "size": 1, "verified": ok, "manifest": {}} for key, model, fmt, ok in rows])
    return settings


def test_search_models_matches_every_word_and_filters(catalog_home):
    from zoo.catalog import catalog_facets, search_models

    rows, total = search_models(catalog_home, "RESNET18 a1_in1k")  # every word, any case
    assert [r["id"] for r in rows] == ["timm/resnet18.a1_in1k"] and total == 1
    assert rows[0]["formats"] == ["onnx"]  # the failed tflite earns no badge
    assert rows[0]["license"] == "apache-2.0" and rows[0]["task"] == "image-classification"
    found, total = search_models(catalog_home, "resnet18")
    # names starting with the word come before names only containing it (ecaresnet18d sorts first by name)
    assert [r["name"] for r in found] == ["resnet18.a1_in1k", "resnet18.tv_in1k", "ecaresnet18d.ra2_in1k"]
    rows, total = search_models(catalog_home, None, fmt="tflite")
    assert [r["id"] for r in rows] == ["keras/MobileNetV2"] and total == 1
    rows, total = search_models(catalog_home, None, source="timm", task="image-classification", limit=2)
    assert len(rows) == 2 and total == 3 and {r["source"] for r in rows} == {"timm"}
    assert search_models(catalog_home, None, source="timm", offset=2)[0][0]["name"] == "resnet18.tv_in1k"
    assert search_models(catalog_home, "50%_")[1] == 0  # LIKE's wildcards are plain characters here
    facets = catalog_facets(catalog_home)
    assert dict(facets["formats"]) == {"onnx": 1, "tflite": 1}
    assert dict(facets["sources"])["timm"] == 4 and dict(facets["tasks"])["feature-extraction"] == 1


def test_the_matrix_lists_every_reachable_format_with_its_state(catalog_home):
    from zoo.catalog import format_matrix

    info = {"id": "keras/MobileNetV2", "name": "MobileNetV2", "source": "keras", "library": "keras",
            "artifacts": [
                {"format": "onnx", "verified": False, "size": 9, "parity": {"max_abs_diff": "nan",
                                                                           "divergence": {"note": "x"}}},
                {"format": "onnx", "verified": True, "size": 10, "parity": {
                    "max_abs_diff": 1e-6, "outputs": {"a": {"top1_agreement": 1.0}, "b": {"top1_agreement": 0.5}}},
                 "benchmark": {"latency_ms": 3.5}, "evaluation": {"accuracy_delta": -0.001}},
                {"format": "tflite", "verified": False, "size": 11, "parity": {"max_abs_diff": "inf",
                                                                              "divergence": {"note": "y"}}}]}
    rows = {r["format"]: r for r in format_matrix(info, catalog_home)}
    assert list(rows) == ["jax", "keras", "onnx", "onnx-fp16", "onnx-int8", "onnx-opt", "pt2", "tf", "tflite",
                          "tflite-fp16", "tflite-int8"]  # jax through onnx -> pt2
    onnx = rows["onnx"]
    assert onnx["state"] == "verified" and onnx["artifact"]["size"] == 10 and onnx["max_abs_diff"] == 1e-6
    assert onnx["top1_agreement"] == 0.5 and onnx["latency_ms"] == 3.5 and onnx["accuracy_delta"] == -0.001
    assert rows["tflite"]["state"] == "failed" and rows["tflite"]["divergence"] == {"note": "y"}
    assert rows["tflite"]["max_abs_diff"] == float("inf")
    assert rows["pt2"]["state"] == "not converted" and rows["pt2"]["artifact"] is None


def test_the_convert_form_is_made_from_the_job_options_schema():
    from dataclasses import fields

    from zoo.api.schemas import JobOptions
    from zoo.api.web import option_fields
    from zoo.options import Options

    form = {f["name"]: f for f in option_fields(JobOptions.model_json_schema())}
    # every option the API takes, and none of the client-side paths (--inputs FILE, --samples DIR)
    assert set(form) == {f.name for f in fields(Options) if f.metadata["api"]} - {"format"}
    assert {"inputs", "samples"}.isdisjoint(form)
    assert form["opset"]["kind"] == "integer" and form["opset"]["nullable"]
    assert (form["opset"]["minimum"], form["opset"]["maximum"]) == (9, 23)
    assert form["exporter"]["kind"] == "choice" and form["exporter"]["choices"] == ["auto", "dynamo", "torchscript"]
    assert form["allow_mismatch"]["kind"] == "boolean" and form["atol"]["kind"] == "number"
    assert form["atol"]["minimum"] == 0 and form["atol"]["help"]


def test_a_fetch_brings_the_model_card_along_but_never_fails_for_it(zoo_env):
    """The card comes with a pull (for the model page), outside the model's files and key; a card that
    cannot be fetched whole is left out and the pull goes on."""
    import os

    from hubserver import HubServer, Repo

    from zoo.catalog import model_card
    from zoo.registry.hf_source import fetch_snapshot
    from zoo.settings import Settings

    files = {"config.json": b'{"architecture": "resnet18"}', "model.safetensors": b"\0" * 64,
             "README.md": b"# A card\n\nhello"}
    with HubServer([Repo("org/carded", files), Repo("org/bad-card", files)]) as hub:
        settings = Settings.from_env({**os.environ, "HF_ENDPOINT": hub.endpoint, "ZOO_DOWNLOAD_RETRIES": "0"})
        snap = fetch_snapshot("org/carded", None, settings)
        assert "README.md" not in snap.files and (snap.root / "README.md").read_bytes() == files["README.md"]
        info = {"id": "org/carded", "source": "hf", "name": "org/carded", "repo_id": "org/carded", "revisions": []}
        assert model_card(info, settings) == {"text": "# A card\n\nhello", "revision": snap.commit, "truncated": False}
        hub.fault("org/bad-card", "README.md", "flip", times=-1)  # served corrupt: it fails its digest check
        bad = fetch_snapshot("org/bad-card", None, settings)
        assert bad.files == ["config.json", "model.safetensors"] and not (bad.root / "README.md").exists()
        assert model_card({**info, "id": "org/bad-card", "repo_id": "org/bad-card"}, settings) is None

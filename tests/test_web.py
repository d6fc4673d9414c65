"""The web catalog of ``zoo serve`` in a real browser: headless Chromium (Debian's) driven by Playwright,
against a real server (uvicorn, its worker pool, real conversions in job processes) holding timm's whole
catalog, a tiny timm model and a repo whose model card attacks the page.

One server and one browser serve the module, in order: the catalog is searched; a conversion is started
from the convert page and followed live to its download; another is canceled; then the model page must
show what those did (verified, failed with its first diverging node, not converted). Reads need a token
(ZOO_READ_AUTH=1): the browser signs in with HTTP Basic (a read token as the password), the pages' own
calls to /v1 carry the tab's token as a Bearer header. Screenshots of every page go to
test-artifacts/screenshots/. The last test stops the server and checks that its process never imported a
framework.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser import launch, shoot
from builders import timm_repo, write_hf_cache
from conftest import TIMM_REPO
from serverproc import ZooServer, job_processes
from test_api import FRAMEWORKS, make_home, read_sse, server_env

HOSTILE_REPO = "zoo-test/hostile-card"
HOSTILE_CARD = """---
license: mit
---
# A card that attacks its reader

<script>document.title = "pwned-script"; fetch("/pwned-script")</script>

<img src="/pwned-img.png" onerror="document.title = 'pwned-onerror'; fetch('/pwned-onerror')">

[click me](javascript:document.title='pwned-link') and ![tracker](http://203.0.113.7/pixel.png)

| figure | value |
|---|---|
| top-1 | 99% |
"""
HOSTILE_LABELS = ["<img src=/pwned-label.png onerror=\"document.title='pwned-label'\">",
                  "<script>document.title = 'pwned-label-script'</script>"]
REACHABLE = ["jax", "onnx", "onnx-fp16", "onnx-int8", "onnx-opt", "pt2", "tf", "tflite", "tflite-fp16",
             "tflite-int8"]  # from torch, the graph's


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@dataclass
class Web:
    server: ZooServer
    tokens: dict[str, str]
    sabotaged: dict  # the failed onnx-opt pull's divergence and the nodes that were broken

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, scope: str = "write") -> httpx.Client:
        return self.server.client(self.tokens[scope])


def _sabotaged_pull(settings) -> dict:
    """A real pull to onnx-opt whose ONNX export scales its largest weight by 1% (as tests/test_pull.py's
    sabotage does): parity fails, the artifact is quarantined and the locator names the broken node."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    import zoo.converters.edges.torch_onnx as torch_onnx
    from zoo import errors
    from zoo.options import Options
    from zoo.pipeline import pull

    real, broken = torch_onnx.export_onnx, []

    def sabotaged(tm, example, out_path, **kwargs):
        info = real(tm, example, out_path, **kwargs)
        model = onnx.load(str(out_path))
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
        broken.extend(n.name for n in model.graph.node if init.name in n.input)
        onnx.save(model, str(out_path))
        return info

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_onnx, "export_onnx", sabotaged)
        with pytest.raises(errors.ParityError) as failed:
            pull(TIMM_REPO, Options(format="onnx-opt", exporter="torchscript"), settings=settings)
    return {"divergence": failed.value.details["divergence"], "nodes": broken}


def _hold_hostile_repo(root: Path, tiny_repos: dict, settings) -> None:
    """A repo in the server's HF cache (and index) whose card attacks the page and whose pickle runs a command."""
    from zoo.registry.hf_source import file_infos
    from zoo.registry.index import Registry

    config = json.loads(tiny_repos[TIMM_REPO]["config.json"])
    config["label_names"] = ["tench", *HOSTILE_LABELS]  # shown on the page: must stay text
    config.setdefault("pretrained_cfg", {})["license"] = HOSTILE_LABELS[0]
    files = {**tiny_repos[TIMM_REPO], "README.md": HOSTILE_CARD.encode(), "config.json": json.dumps(config).encode(),
             "pytorch_model.bin": pickle.dumps({"weight": _Evil()}, protocol=2)}
    snap = write_hf_cache(root / "hf" / "hub", HOSTILE_REPO, files)
    Registry(settings).add_revision(HOSTILE_REPO, snap.name, file_infos(snap, ["config.json", "model.safetensors",
                                                                               "pytorch_model.bin"]))


@pytest.fixture(scope="module")
def web(tmp_path_factory, timm_index_db):
    from concurrent.futures import ThreadPoolExecutor

    from zoo import db
    from zoo.service.tokens import create_token
    from zoo.settings import Settings

    root = tmp_path_factory.mktemp("web")
    home = make_home(root, timm_index_db, {}, repos=())
    env = server_env(root, ZOO_READ_AUTH="1", ZOO_JOB_LEASE="3", OMP_NUM_THREADS="1")
    settings = Settings.from_env({**env, "ZOO_HOME": str(home)})
    server = ZooServer(home, env, workers=2)
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(server.start)  # the server starts while the models are made
        try:
            repos = {TIMM_REPO: timm_repo("test_resnet.r160_in1k")}  # not tiny_repos: those build Keras too
            write_hf_cache(root / "hf" / "hub", TIMM_REPO, repos[TIMM_REPO])
            sabotaged = _sabotaged_pull(settings)
            _hold_hostile_repo(root, repos, settings)
            engine = db.get_engine(settings.database_url)
            tokens = {scope: create_token(engine, scope)[0] for scope in ("read", "write")}
            db.dispose_engine(settings.database_url)
        finally:
            starting.result()
    try:
        yield Web(server, tokens, sabotaged)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def _context(web: Web, browser, **kwargs):
    """A browser profile signed in with a read token (HTTP Basic: what a person types into the prompt)."""
    return browser.new_context(viewport={"width": 1280, "height": 900}, **kwargs,
                               http_credentials={"username": "me", "password": web.tokens["read"]})


@pytest.fixture
def page(web, browser):
    context = _context(web, browser)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.problems = []  # script errors and CSP violations: a page that works has none
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    page.on("console", lambda msg: page.problems.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


def _model_page(web: Web, repo: str = TIMM_REPO) -> str:
    return f"{web.url}/models/{repo}"


# --- catalog -----------------------------------------------------------------------------------------
def test_search_as_you_type_over_the_whole_catalog(web, page):
    from playwright.sync_api import expect

    total = web.api("read").get("/v1/models", params={"limit": 1}).json()["count"]
    assert total > 1800  # timm's catalog and Keras' applications
    page.goto(web.url + "/")
    assert page.locator("#count").get_attribute("data-count") == str(total)
    page.evaluate("window.zooMarker = 'same document'")  # survives only if no navigation happens
    page.locator("#q").press_sequentially("test_resnet.r16", delay=30)
    expect(page).to_have_url(re.compile(r"\?q=test_resnet\.r16$"))  # the address follows the typing
    expect(page.locator("#count")).to_have_attribute("data-count", "1")
    assert page.locator("#results a.model-link").all_inner_texts() == ["test_resnet.r160_in1k"]
    assert page.evaluate("window.zooMarker") == "same document"
    # filters: a source (results update as the select changes), then pages through a larger result
    keras = web.api("read").get("/v1/models", params={"source": "keras", "limit": 1}).json()["count"]
    page.locator("#q").fill("")
    page.select_option("select[name=source]", "keras")
    expect(page.locator("#count")).to_have_attribute("data-count", str(keras))
    sources = page.locator("#results tbody td:nth-child(2)").all_inner_texts()
    assert sources and set(sources) == {"keras"}
    page.select_option("select[name=source]", "")
    expect(page.locator("#count")).to_have_attribute("data-count", str(total))
    page.select_option("select[name=task]", "feature-extraction")
    expect(page.locator("#count")).not_to_have_attribute("data-count", str(total))
    tasks = set(page.locator("#results tbody td:nth-child(3)").all_inner_texts())
    assert tasks == {"feature-extraction"}
    page.locator("a[rel=next]").click()
    page.wait_for_url(re.compile(r"page=2"))
    assert "page 2 of" in page.locator("#count").inner_text()
    shoot(page, "catalog")
    assert page.problems == []


def test_read_only_pages_work_without_javascript(web, browser):
    context = _context(web, browser, java_script_enabled=False)
    page = context.new_page()
    try:
        response = page.goto(web.url + "/")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        page.fill("#q", "test_resnet")
        page.press("#q", "Enter")  # a plain GET form
        page.wait_for_url(re.compile(r"q=test_resnet"))
        page.locator("a.model-link", has_text="test_resnet.r160_in1k").click()
        page.wait_for_url(_model_page(web))
        states = dict(zip(page.locator("#matrix tbody tr[data-state]").evaluate_all(
            "rows => rows.map(r => r.dataset.format)"), page.locator("#matrix tbody tr[data-state]").evaluate_all(
            "rows => rows.map(r => r.dataset.state)")))
        assert list(states) == REACHABLE and states["onnx-opt"] == "failed"
        # the failed format names the node the sabotage broke, found by zoo's divergence locator
        failure = page.locator("#matrix tr.failure[data-format=onnx-opt]").inner_text()
        node = web.sabotaged["divergence"]["onnx_node"]
        assert node in web.sabotaged["nodes"] and node in failure and "First diverging node" in failure
        shoot(page, "model-without-javascript")
        assert page.goto(web.url + "/jobs").status == 200
        # the convert form without JavaScript only reloads itself for the model: the token never leaves
        page.goto(web.url + "/convert")
        page.fill("#token", web.tokens["write"])
        page.fill("#model", "test_resnet")
        page.press("#model", "Enter")
        page.wait_for_url(re.compile(r"model=test_resnet"))
        assert web.tokens["write"] not in page.url and page.locator("input[name=format]").count() == len(REACHABLE)
        # errors are pages too, with what to do next
        for path, status in ((f"/models/{TIMM_REPO}x", 404), ("/models/..%2F..%2Fetc%2Fpasswd", 422),
                             ("/jobs/" + "0" * 32, 404), ("/download/" + "0" * 64, 404)):
            response = page.goto(web.url + path)
            assert response.status == status and response.headers["content-type"].startswith("text/html"), path
            assert page.locator(".error-panel .message").inner_text() and "root:" not in page.content()
    finally:
        context.close()


# --- convert ---------------------------------------------------------------------------------------------
def _open_convert(web: Web, page, **options: str) -> None:
    page.goto(f"{web.url}/convert?model={TIMM_REPO}&format=onnx")
    page.fill("#token", web.tokens["write"])
    page.select_option("#opt-exporter", "torchscript")  # the quicker exporter; the form comes from JobOptions
    for name, value in options.items():
        page.fill(f"#opt-{name}", value)


def test_a_conversion_started_from_the_page_streams_its_stages_to_a_verified_download(web, page):
    posted = []
    page.on("request", lambda r: posted.append(r.headers) if r.method == "POST" and r.url.endswith("/v1/jobs")
            else None)
    _open_convert(web, page)
    page.click("#start")
    run = page.locator("article.run").first
    # stages arrive while the job runs: export shows before the job has ended
    run.locator("li[data-stage=export]").wait_for(timeout=120_000)
    assert run.get_attribute("data-state") == "running"
    page.wait_for_selector("article.run[data-state=succeeded] a.dl", timeout=180_000)
    stages = run.locator("ol.stages li").evaluate_all("items => items.map(li => li.dataset.stage)")
    job_id = run.get_attribute("data-job")
    job = web.api().get(f"/v1/jobs/{job_id}").json()
    events = read_sse(web.api(), f"/v1/jobs/{job_id}/events")
    assert stages == [data["stage"] for _, kind, data in events if kind == "stage"]  # every stage, in order
    assert stages[:2] == ["resolve", "fetch"] and "parity" in stages and stages[-1] == "publish"
    href = run.locator("a.dl").get_attribute("href")
    shown = run.locator("code.sha").inner_text()
    assert href == f"/download/{shown}" and shown == job["result"]["sha256"] and job["result"]["verified"]
    with page.expect_download() as download:  # the browser itself downloads it, signed in with Basic
        run.locator("a.dl").click()
    body = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(body).hexdigest() == shown and len(body) == job["result"]["size"]
    assert body == web.api("read").get(job["result"]["artifact"]["url"]).content  # the API's bytes
    # the token went as a Bearer header, never as a cookie, and stays in this tab only
    assert posted and all(h.get("authorization") == f"Bearer {web.tokens['write']}" and "cookie" not in h
                          for h in posted)
    assert page.evaluate("document.cookie") == "" and page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('zoo.token')") == web.tokens["write"]
    other_tab = page.context.new_page()
    other_tab.goto(web.url + "/convert")
    assert other_tab.input_value("#token") == ""
    shoot(page, "convert")
    assert page.problems == []


def test_cancel_from_the_page_kills_the_conversion(web, page):
    _open_convert(web, page, opset="16")  # another request than the one above: a fresh conversion
    page.click("#start")
    run = page.locator("article.run").first
    run.locator("li[data-stage=load], li[data-stage=export]").first.wait_for(timeout=120_000)
    job_id = run.get_attribute("data-job")
    pids = job_processes(job_id)
    assert pids, "the job's process should be running"
    run.locator("button.cancel").click()
    page.wait_for_selector(f"article.run[data-job='{job_id}'][data-state=canceled]", timeout=60_000)
    job = web.api().get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "canceled" and job["result"] is None
    deadline = time.monotonic() + 30
    while job_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_processes(job_id) == []
    assert page.problems == []


# --- the model page ----------------------------------------------------------------------------------------
def test_the_model_page_shows_the_format_matrix_downloads_and_pictures(web, page, tmp_path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    model = web.api("read").get(f"/v1/models/{TIMM_REPO}").json()
    onnx = next(a for a in model["artifacts"] if a["format"] == "onnx" and a["verified"])
    page.goto(_model_page(web))
    rows = page.locator("#matrix tbody tr[data-state]")
    states = dict(zip(rows.evaluate_all("rs => rs.map(r => r.dataset.format)"),
                      rows.evaluate_all("rs => rs.map(r => r.dataset.state)")))
    assert states == {**{f: "not converted" for f in REACHABLE}, "onnx": "verified", "onnx-opt": "failed"}
    row = page.locator("#matrix tr[data-format=onnx][data-state]")
    cells = row.locator("td").all_inner_texts()
    diff = onnx["parity"]["max_abs_diff"]
    assert cells[1] == ("0" if diff == 0 else f"{diff:.2e}") and cells[2] == "100.0%"
    assert row.locator("a.dl").get_attribute("href") == f"/download/{onnx['sha256']}"
    assert row.locator("code.sha").inner_text() == onnx["sha256"]
    row.locator("button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == onnx["sha256"]
    # pictures: one error bar per output with a dot per input set; a size bar per artifact
    report = page.locator("details.report[data-format=onnx] svg.chart")
    assert report.locator("g.pass").count() == len(onnx["parity"]["outputs"])
    assert report.locator("circle").count() == len(onnx["parity"]["checks"])
    assert page.locator("#pictures svg.chart").first.locator("rect").count() == 2  # onnx, onnx-opt
    # revisions with sizes, digests and the safety verdict per file
    files = model["revisions"][0]["files"]
    for f in files:
        line = page.locator(f"#revisions tr[data-file='{f['path']}']")
        assert f["sha256"] in line.inner_text()
    assert "safe" in page.locator("#revisions tr[data-file='model.safetensors'] .badge").inner_text()
    # the Python snippet, run as a user would: it downloads the artifact and checks its sha256
    code = page.locator("details.get[data-format=onnx] figure.snippet", has_text="Python").locator("pre").inner_text()
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZOO_TOKEN": web.tokens["read"]})
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest() == onnx["sha256"]
    # the catalog's format filter finds it now, with its badge
    page.goto(web.url + "/?format=onnx")
    assert page.locator("#count").get_attribute("data-count") == "1"
    assert page.locator("#results .badge.verified").all_inner_texts() == ["onnx"]
    page.goto(_model_page(web))
    shoot(page, "model")
    assert page.problems == []


def test_a_hostile_model_card_shows_as_text_and_runs_nothing(web, page):
    requests = []
    dialogs = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    response = page.goto(_model_page(web, HOSTILE_REPO))
    page.wait_for_load_state("networkidle")
    # nothing ran: no title changed, no request for a pwned URL or the tracker, no dialog
    assert page.title() == f"{HOSTILE_REPO} · zoo" and dialogs == []
    assert not [u for u in requests if "pwned" in u or "203.0.113.7" in u], requests
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # the card shows the attack as text; markdown itself still renders
    card = page.locator("#card-body")
    text = card.inner_text()
    assert '<script>document.title = "pwned-script"' in text and "onerror=" in text
    assert card.locator("script, img, iframe, object, embed, [onerror]").count() == 0
    assert card.locator("a[href^='javascript']").count() == 0 and "image: tracker" in text
    assert card.locator("table").count() == 1
    # labels and licence from the repo's config: text too
    labels = page.locator("#facts details.labels")
    assert labels.locator("img, script").count() == 0
    assert [t.strip() for t in labels.locator("li").all_text_contents()][1:] == HOSTILE_LABELS
    assert HOSTILE_LABELS[0] in page.locator(".chips .licence").inner_text()
    assert page.locator("main img, main script").count() == 0
    # zoo's verdict on each file: the pickle that would run a command is refused
    verdict = page.locator("#revisions tr[data-file='pytorch_model.bin']").inner_text()
    assert "refused" in verdict and "system" in verdict
    shoot(page, "hostile-card")
    assert [p for p in page.problems if "pwned" in p] == []


# --- jobs --------------------------------------------------------------------------------------------
def test_the_jobs_page_updates_live(web, page):
    page.goto(web.url + "/jobs")
    page.evaluate("window.zooMarker = 'same document'")
    before = set(page.locator("#job-rows tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.job)"))
    assert "canceled" in page.locator("#job-rows").inner_text()
    # the page's conversion again: answered from the store at once, and the list shows it unasked
    answer = web.api().post("/v1/jobs", json={"model": TIMM_REPO, "format": "onnx",
                                              "options": {"exporter": "torchscript"}})
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["id"]
    assert job_id not in before
    page.locator(f"#job-rows tr[data-job='{job_id}'][data-state=succeeded]").wait_for(timeout=10_000)
    assert page.evaluate("window.zooMarker") == "same document"
    shoot(page, "jobs")
    page.locator(f"#job-rows tr[data-job='{job_id}'] a").first.click()
    page.wait_for_url(f"{web.url}/jobs/{job_id}")
    assert page.locator("#job-state").inner_text() == "succeeded"
    sha = answer.json()["result"]["sha256"]
    assert page.locator(".job-head code.sha").inner_text() == sha
    shoot(page, "job")
    assert page.problems == []


# --- access ------------------------------------------------------------------------------------------------
def test_read_auth_protects_the_pages_like_the_api(web, browser):
    basic = "Basic " + base64.b64encode(f"me:{web.tokens['read']}".encode()).decode()
    sha = web.api("read").get(f"/v1/models/{TIMM_REPO}").json()["artifacts"][0]["sha256"]  # the sabotaged one
    for path in ("/", f"/models/{TIMM_REPO}", "/jobs", "/convert", f"/models/{HOSTILE_REPO}", f"/download/{sha}"):
        refused = httpx.get(web.url + path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert refused.headers["content-type"].startswith("text/html") and "read token" in refused.text
        assert "A card that attacks" not in refused.text and "test_resnet" not in refused.text
        assert httpx.get(web.url + path, headers={"Authorization": basic}).status_code == 200, path
        bearer = httpx.get(web.url + path, headers={"Authorization": f"Bearer {web.tokens['read']}"})
        assert bearer.status_code == 200
    for bad in (b"me:zoo_000000000000_" + b"A" * 43, b"me:", b"no-colon", b"\xff\xfe:x"):
        wrong = "Basic " + base64.b64encode(bad).decode()
        assert httpx.get(web.url + "/", headers={"Authorization": wrong}).status_code == 401, bad
    assert httpx.get(web.url + "/", headers={"Authorization": "Basic %%%"}).status_code == 401
    # Basic credentials open the pages only: the API still takes bearer tokens alone, so credentials a
    # browser replays by itself can neither read through /v1 nor start a job
    assert httpx.get(web.url + "/v1/models", headers={"Authorization": basic}).status_code == 401
    write_basic = "Basic " + base64.b64encode(f"me:{web.tokens['write']}".encode()).decode()
    assert httpx.post(web.url + "/v1/jobs", json={"model": TIMM_REPO},
                      headers={"Authorization": write_basic}).status_code == 401
    # a browser without credentials is asked to sign in (headless, it cannot answer) and sees nothing
    from playwright.sync_api import Error as BrowserError

    context = browser.new_context()
    try:
        with pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            context.new_page().goto(web.url + "/")
    finally:
        context.close()


def test_the_page_server_never_imported_a_framework(web):
    """Every page above was served (and conversions ran in job processes only)."""
    assert web.server.stop() == 0
    modules = web.server.modules()
    assert "jinja2" in modules and "zoo.api.routes.pages" in modules and "markdown_it" in modules
    assert not {m.split(".")[0] for m in modules} & FRAMEWORKS

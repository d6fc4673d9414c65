"""The web catalog's pages, timed in a real browser (Navigation Timing), against a real ``zoo serve``.

- the catalog page with timm's whole pretrained catalog indexed (plus Keras' applications), and a search;
- the model page of a model holding artifacts in 8 formats (a tiny Keras model from tests/builders.py,
  pulled to every format the graph reaches from Keras: keras, onnx, onnx-fp16, onnx-int8, onnx-opt, pt2,
  tf, tflite: real conversions, done once into the bench's ZOO_HOME).

Each page is loaded ``--repeat`` times, each in a fresh browser context (no HTTP cache); per page the median
and the worst of: time to first byte (``responseStart - requestStart``), DOMContentLoaded and load
(``loadEventEnd``), from the navigation's start. The machine's load average is printed with the figures.

    .venv/bin/python bench/bench_pages.py                   # ZOO_HOME in .zoo-bench/pages (kept: conversions once)
    .venv/bin/python bench/bench_pages.py --repeat 20 --json /tmp/pages.json

Needs Debian's ``chromium`` (apt-get install -y chromium) and the ``dev`` extra (playwright).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import launch  # noqa: E402 - the tests' own Chromium launcher
from serverproc import ZooServer  # noqa: E402

KERAS_REPO = "zoo-test/tiny-keras"
FORMATS = ["keras", "onnx", "onnx-fp16", "onnx-int8", "onnx-opt", "pt2", "tf", "tflite"]
TIMING = """() => {
  const t = performance.getEntriesByType("navigation")[0];
  return {ttfb: t.responseStart - t.requestStart, first_byte: t.responseStart, dom: t.domContentLoadedEventEnd,
          load: t.loadEventEnd, bytes: t.transferSize};
}"""


def prepare(root: Path) -> dict[str, str]:
    """ZOO_HOME with timm's catalog indexed and the Keras model converted to every format (once)."""
    env = {**os.environ, "ZOO_HOME": str(root / "zoo"), "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    env.pop("HF_ENDPOINT", None)
    if not (root / "hf" / "hub" / f"models--{KERAS_REPO.replace('/', '--')}").is_dir():
        code = ("import sys; sys.path.insert(0, 'tests'); from pathlib import Path; "
                "from builders import keras_repo, write_hf_cache; "
                f"write_hf_cache(Path({str(root / 'hf' / 'hub')!r}), {KERAS_REPO!r}, keras_repo())")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "zoo", "list", "--limit", "1"], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # indexes timm's catalog (once per timm version)
    for fmt in FORMATS:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "zoo", "pull", f"hf:{KERAS_REPO}", "--format", fmt, "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        print(f"  pull {fmt:9} exit {proc.returncode} verified={out.get('verified')} cached={out.get('cached')} "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return env


def measure(browser, url: str, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url, wait_until="load")
        runs.append(page.evaluate(TIMING))
        context.close()
    out = {}
    for key in ("ttfb", "dom", "load"):
        values = sorted(r[key] for r in runs)
        out[f"{key}_median_ms"] = round(statistics.median(values), 1)
        out[f"{key}_max_ms"] = round(values[-1], 1)
    out["html_bytes"] = runs[-1]["bytes"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / ".zoo-bench" / "pages")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    env = prepare(args.root)
    server = ZooServer(Path(env["ZOO_HOME"]), env, workers=1).start()
    try:
        import httpx
        from playwright.sync_api import sync_playwright

        count = httpx.get(f"{server.url}/v1/models", params={"limit": 1}).json()["count"]
        model = httpx.get(f"{server.url}/v1/models/{KERAS_REPO}").json()
        print(f"index: {count} models; {KERAS_REPO}: verified formats {model['formats']}", file=sys.stderr)
        pages = {"catalog": "/", "catalog, search 'resnet'": "/?q=resnet",
                 f"model page ({len(model['formats'])} formats)": f"/models/{KERAS_REPO}"}
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for url in pages.values():  # warm: the server's first render compiles the templates
                measure(browser, server.url + url, 1)
            results = {name: measure(browser, server.url + url, args.repeat) for name, url in pages.items()}
            browser.close()
    finally:
        server.stop()
    report = {"models_indexed": count, "formats": model["formats"], "repeat": args.repeat,
              "load_average": os.getloadavg(), "cpus": os.cpu_count(), "pages": results}
    for name, r in results.items():
        print(f"{name:28} TTFB {r['ttfb_median_ms']:7.1f} ms (max {r['ttfb_max_ms']:.1f})   "
              f"DOMContentLoaded {r['dom_median_ms']:7.1f} ms   load {r['load_median_ms']:7.1f} ms "
              f"(max {r['load_max_ms']:.1f})   {r['html_bytes']} B")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

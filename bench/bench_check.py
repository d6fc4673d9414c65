"""Benchmark ``zoo check`` and measure accuracy deltas of converted formats, in two parts.

1. ``check``: ``zoo check`` over 5 models x 4 formats (onnx, onnx-fp16, onnx-int8, tflite) from a cold
   ``ZOO_HOME`` (weights in the HF cache, nothing converted), against the same 20 ``zoo pull`` commands
   run one by one in another cold ``ZOO_HOME``. Wall time of each, and zoo check's peak resident memory
   (the sum over its running checks' process trees, sampled) against its budget.
2. ``accuracy``: resnet50 (timm, 25.6 M parameters) and a BERT-base-sized classifier (110 M, 3 labels),
   both with seeded random weights, evaluated with ``zoo eval`` on generated labelled sets (images from
   zoo's own drawing code at several sizes; sentences from a word list) labelled with the source model's
   own predictions, so the source scores 100% and each format's delta is exactly the share of examples
   whose top-1 it changes.

No hub access: ``tests/builders.py`` makes the repos in a fresh HF cache. Usage::

    .venv/bin/python bench/bench_check.py check [--jobs 2] [--budget 6GiB] [--json OUT]
    .venv/bin/python bench/bench_check.py accuracy [--images 64] [--sentences 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

FORMATS = ["onnx", "onnx-fp16", "onnx-int8", "tflite"]
CHECK_MODELS = {  # repo id -> builder: five models that reach all four formats (see README's tflite notes)
    "timm/test_resnet.r160_in1k": lambda b: b.timm_repo("test_resnet.r160_in1k"),
    "timm/test_efficientnet.r160_in1k": lambda b: b.timm_repo("test_efficientnet.r160_in1k"),
    "timm/resnet18.a1_in1k": lambda b: b.timm_repo("resnet18.a1_in1k"),
    "timm/mobilenetv3_small_050.lamb_in1k": lambda b: b.timm_repo("mobilenetv3_small_050.lamb_in1k"),
    "zoo-test/tiny-keras": lambda b: b.keras_repo(),
}


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_"))}
    env.update(ZOO_HOME=str(root / "zoo"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def bench_check(args: argparse.Namespace) -> dict[str, Any]:
    import builders

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-check-"))
    for repo_id, build in CHECK_MODELS.items():
        builders.write_hf_cache(tmp / "hf" / "hub", repo_id, build(builders))
    # one by one, cold
    serial = tmp / "serial"
    serial.mkdir()
    (serial / "hf").symlink_to(tmp / "hf")
    load_before = _load()
    started = time.perf_counter()
    pulls = []
    for model in CHECK_MODELS:
        for fmt in FORMATS:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "zoo", "pull", model, "--format", fmt, "--allow-mismatch", "--json"],
                                  env=_env(serial), capture_output=True, text=True)
            pulls.append({"model": model, "format": fmt, "code": proc.returncode, "seconds": round(time.perf_counter() - t, 2)})
            print(f"pull {model} {fmt}: exit {proc.returncode} in {pulls[-1]['seconds']} s", file=sys.stderr)
    serial_s = time.perf_counter() - started
    # zoo check, cold
    parallel = tmp / "parallel"
    (parallel / "hf").parent.mkdir(parents=True, exist_ok=True)
    (parallel / "hf").symlink_to(tmp / "hf")
    manifest = tmp / "zoo.toml"
    manifest.write_text(f"formats = {json.dumps(FORMATS)}\n"
                        + "".join(f'[[models]]\nname = "{m}"\n' for m in CHECK_MODELS))
    load_mid = _load()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoo", "check", "--manifest", str(manifest), "--jobs", str(args.jobs),
                           "--memory-budget", args.budget, "--json"], env=_env(parallel), capture_output=True, text=True)
    check_s = time.perf_counter() - started
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"serial_pulls_s": round(serial_s, 1), "zoo_check_s": round(check_s, 1), "speedup": round(serial_s / check_s, 2),
            "check_exit": proc.returncode, "jobs": report["jobs"], "budget_mb": report["budget_mb"],
            "peak_rss_mb": report["peak_rss_mb"], "max_check_peak_mb": max(r.get("peak_rss_mb") or 0 for r in report["rows"]),
            "failed": [f"{r['model']} -> {r['target']}: {r['failures']}" for r in report["rows"] if not r["passed"]],
            "pull_failures": [p for p in pulls if p["code"] != 0], "cores": os.cpu_count(),
            "load_before": load_before, "load_mid": load_mid, "load_after": _load(), "dir": str(tmp)}


# --- accuracy deltas ----------------------------------------------------------------------------------------
def _image_set(root: Path, n: int) -> Path:
    """n images from zoo's sample drawing code (seeded, 5 sizes), labelled with the source's top-1."""
    from zoo.converters.parity.samples import sample_images

    unlabelled = root / "unlabelled"
    unlabelled.mkdir(parents=True, exist_ok=True)
    images = []
    for size in (192, 224, 256, 288, 320):
        images += [img for _, img in sample_images(n // 5 + 1, size=size)]
    (unlabelled / "0").mkdir(exist_ok=True)
    for i, img in enumerate(images[:n]):
        img.save(unlabelled / "0" / f"{i:03d}.png")
    return unlabelled


def bench_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    import builders

    from zoo.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-acc-"))
    models = {"timm/resnet50.a1_in1k": lambda: builders.timm_repo("resnet50.a1_in1k"),
              "zoo-test/bert-base-sst": lambda: builders.bert_repo("sequence-classification", size="base")}
    for repo_id, build in models.items():
        builders.write_hf_cache(tmp / "hf" / "hub", repo_id, build())
    env = _env(tmp)
    os.environ.update(env)
    settings = Settings.from_env(env)
    results: dict[str, Any] = {"load_before": _load(), "dir": str(tmp)}
    for repo_id, kind in (("timm/resnet50.a1_in1k", "image"), ("zoo-test/bert-base-sst", "text")):
        data = _labelled_set(tmp / repo_id.replace("/", "--"), repo_id, kind, settings, args)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "zoo", "eval", repo_id, "--format", ",".join(args.formats),
                               "--data", str(data), "--json", "--allow-mismatch"], env=env, capture_output=True, text=True)
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            results[repo_id] = {"error": proc.stderr[-2000:]}
            continue
        results[repo_id] = {"examples": out.get("dataset", {}).get("examples"), "source": out.get("source", {}).get("metrics"),
                            "formats": {r["format"]: {"error": r["error"]} if r.get("error") else
                                        {"metrics": r["metrics"], "delta": r["delta"], "agreement": r["agreement"],
                                         "verified": r["verified"]}
                                        for r in out.get("formats", [])},
                            "error": out.get("message"), "seconds": round(time.perf_counter() - started, 1),
                            "source_classes": _classes(data)}
        print(json.dumps({repo_id: results[repo_id]}), file=sys.stderr)
    results["load_after"] = _load()
    return results


def _classes(data: Path) -> int:
    """How many distinct classes the source predicted on the set (its labels): 1 means a degenerate model."""
    if data.is_dir():
        return sum(1 for p in data.iterdir() if p.is_dir())
    return len({json.loads(line)["label"] for line in data.read_text().splitlines() if line.strip()})


def _labelled_set(root: Path, repo_id: str, kind: str, settings: Any, args: argparse.Namespace) -> Path:
    """The generated set, labelled with the source model's own top-1 (computed through zoo's reference
    runner and preprocessing): the source scores 100% by construction."""
    import numpy as np

    from zoo.comparison import open_model
    from zoo.eval.data import load_data
    from zoo.eval.evaluate import Bench

    source, opened = open_model(repo_id, settings)
    labels = opened.labels or [str(i) for i in range(10_000)]
    if kind == "image":
        unlabelled = _image_set(root, args.images)
        data = load_data(unlabelled)
        data.examples = [type(e)(label=labels[0], image=e.image) for e in data.examples]
        bench = Bench(source, opened, data, settings)
        preds = np.argmax(bench.scores(opened.reference), axis=-1)
        out = root / "images"
        for example, pred in zip(data.examples, preds):
            (out / labels[pred]).mkdir(parents=True, exist_ok=True)
            os.link(example.image, out / labels[pred] / example.image.name)
        return out
    import random

    words = (REPO_ROOT / "tests" / "builders.py").read_text().split('_WORDS = """')[1].split('"""')[0].split()
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 40))) for _ in range(args.sentences)]
    root.mkdir(parents=True, exist_ok=True)
    unlabelled = root / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": s, "label": 0}) + "\n" for s in sentences))
    bench = Bench(source, opened, load_data(unlabelled), settings)
    preds = np.argmax(bench.scores(opened.reference), axis=-1)
    out = root / "sentences.jsonl"
    out.write_text("".join(json.dumps({"text": s, "label": int(p)}) + "\n" for s, p in zip(sentences, preds)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    check = sub.add_parser("check")
    check.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    check.add_argument("--budget", default="6GiB")
    check.add_argument("--json", type=Path)
    acc = sub.add_parser("accuracy")
    acc.add_argument("--images", type=int, default=64)
    acc.add_argument("--sentences", type=int, default=64)
    acc.add_argument("--formats", nargs="+", default=["onnx-fp16", "onnx-int8", "tflite"])
    acc.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = bench_check(args) if args.what == "check" else bench_accuracy(args)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

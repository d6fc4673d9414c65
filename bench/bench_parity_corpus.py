"""Parity on the third-party-style ONNX corpus (tests/parity_corpus.py), before and after: how many
conversions zoo verifies, rejects correctly, rejects falsely, verifies falsely, and how many times the
source model's own failure on zoo's inputs is reported as a parity failure.

    .venv/bin/python bench/bench_parity_corpus.py                     # this tree
    .venv/bin/python bench/bench_parity_corpus.py --compare 1c78b29   # a commit (before) and this tree (after)
    .venv/bin/python bench/bench_parity_corpus.py --compare 1c78b29 --after HEAD   # both from git
    .venv/bin/python bench/bench_parity_corpus.py --formats onnx-int8,onnx-fp16 --json OUT

Attempts: ``zoo convert MODEL.onnx --to FORMAT`` for every corpus model and format, and ``zoo parity
SOURCE CANDIDATE --dtype D`` for candidates made here (a detector whose int8 scores are off, a BERT whose
int8 states diverge at padding only or at real tokens). Each run uses a fresh ZOO_HOME. ``--compare REV``
runs the same commands with the zoo of ``git archive REV`` first (PYTHONPATH; same virtualenv).

The truth does not come from zoo: every artifact (published or quarantined) is run here on what a user
feeds the model (``parity_corpus.real_feeds``: photographs at the model's size, a second of speech at
16 kHz, real bytes, real tokens with padding) and compared with the source, per quantity the bench knows
the model to have (a detector's boxes and scores apart; a text encoder's real tokens only), at the
dtype's own tolerance (atol and rtol 1e-4 / 1e-2 / 1e-1 for fp32 / fp16 / int8, atol scaled by the
quantity's largest value). An artifact within it is good, else bad.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

FORMATS = ("onnx-opt", "onnx-fp16", "onnx-int8", "pt2")
DTYPES = {"onnx-opt": "float32", "onnx-fp16": "float16", "onnx-int8": "int8", "pt2": "float32"}
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 1e-1}
# output -> [(quantity, index along axis 1)] for outputs that pack several; the rest are one quantity
QUANTITIES = {"detector": {0: [("boxes", slice(0, 4)), ("scores", slice(4, None))]}}


# --- the truth ---------------------------------------------------------------------------------------------
def _runner(path: Path, names: list[str]) -> Any:
    if path.suffix == ".pt2":
        from zoo.converters.parity.runners import pt2_runner

        return pt2_runner(path, names)
    from zoo.converters.parity.runners import onnx_runner

    return onnx_runner(path)


def judge(model: str, source: Path, artifact: Path, dtype: str) -> tuple[bool, str]:
    """Whether ``artifact`` matches ``source`` on real inputs, per quantity, at ``dtype``'s tolerance."""
    import parity_corpus as pc

    worst = (0.0, "")
    for feeds in pc.real_feed_sets(model):
        good, why = _judge_one(model, source, artifact, dtype, feeds)
        if not good:
            return False, why
        worst = max(worst, why)
    return True, f"within {dtype} tolerance on real inputs (worst {worst[0]:.2f}x of it, on {worst[1]})"


def _judge_one(model: str, source: Path, artifact: Path, dtype: str, feeds: dict[str, Any]) -> tuple[bool, Any]:
    import numpy as np

    names = list(feeds)
    try:
        refs = _runner(source, names)(dict(feeds))
        outs = _runner(artifact, names)(dict(feeds))
    except Exception as exc:  # noqa: BLE001
        return False, f"does not run on real inputs: {type(exc).__name__}: {str(exc)[:120]}"
    tol = TOLERANCE[dtype]
    mask = feeds.get("attention_mask")
    worst = (0.0, "")
    for index, (r, c) in enumerate(zip(refs, outs)):
        r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
        if r.shape != c.shape:
            return False, f"output {index}: shape {c.shape} != {r.shape}"
        if mask is not None and r.shape[:2] == mask.shape:
            r, c = r[mask.astype(bool)], c[mask.astype(bool)]
        parts = QUANTITIES.get(model, {}).get(index, [("all", slice(None))])
        for label, part in parts:
            a, b = (r[:, part], c[:, part]) if part != slice(None) else (r, c)
            if np.isnan(a).any() != np.isnan(b).any() or not np.isfinite(b[np.isfinite(a)]).all():
                return False, f"output {index} {label}: NaN or inf where the source has none"
            allowed = tol * max(1.0, float(np.nanmax(np.abs(a)))) + tol * np.abs(a)
            excess = float(np.nanmax(np.abs(a - b) / allowed))
            worst = max(worst, (excess, f"output {index} {label}"))
            if excess > 1:
                return False, f"output {index} {label}: {excess:.1f}x the {dtype} tolerance on real inputs"
    return True, worst


# --- the attempts ------------------------------------------------------------------------------------------
def build(directory: Path) -> list[dict[str, Any]]:
    import parity_corpus as pc

    for name in pc.CORPUS:
        pc.write(name, directory)
    made = {
        "detector-int8": pc.quantized(directory / "detector.onnx", directory / "detector-int8.onnx"),
        "detector-broken-int8": pc.quantized(pc.write("detector-broken", directory, pc.detector(score_gain=1.3)),
                                             directory / "detector-broken-int8.onnx"),
        "bert-pad-int8": pc.quantized(pc.write("bert-pad", directory, pc.bert(padding_noise=3.0)),
                                      directory / "bert-pad-int8.onnx"),
        "bert-tokens-int8": pc.quantized(pc.write("bert-tokens", directory, pc.bert(ffn_gain=1.5)),
                                         directory / "bert-tokens-int8.onnx"),
    }
    import numpy as np

    tokens = directory / "tokens.npz"  # what a user with the model's tokenizer passes: real tokens, padded
    np.savez(tokens, **pc.real_feeds("bert"))
    cases = [{"model": n.split("-")[0], "candidate": p, "dtype": "int8", "extra": []} for n, p in made.items()]
    cases += [{"model": "bert", "candidate": made[n], "dtype": "int8", "extra": ["--inputs", str(tokens)]}
              for n in ("bert-pad-int8", "bert-tokens-int8")]
    return cases


def run_zoo(args: list[str], code: Path | None, home: Path) -> tuple[int, dict[str, Any], float]:
    env = {**os.environ, "ZOO_HOME": str(home / "zoo"), "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoo", *args, "--json"], capture_output=True, text=True, env=env,
                          cwd=home, timeout=1800)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else {"message": proc.stderr[-300:]}, time.perf_counter() - start


def classify(rc: int, out: dict[str, Any], truth: bool | None) -> str:
    report = out.get("parity") or out.get("report") or {}
    if rc == 0 and (out.get("verified") or report.get("passed")):
        return "verified" if truth else "falsely verified"
    if rc == 6:
        said = (report.get("error") or "") + out.get("message", "")
        if "reference raised" in said:
            return "source raised, told as parity failure"
        if "must be checked on real samples" in said:
            return "refused: no real samples"
        return "correctly rejected" if truth is False else "falsely rejected"
    if rc == 10:
        return "source raised, told as such"
    if rc == 8:
        return "conversion failed"
    return f"other error (exit {rc})"


def artifact_of(out: dict[str, Any]) -> Path | None:
    if out.get("path"):
        return Path(out["path"])
    quarantined = out.get("quarantined")
    if quarantined:
        manifest = json.loads((Path(quarantined) / "zoo.json").read_text())
        primary = manifest.get("primary") or next((f["path"] for f in manifest.get("files", [])), None)
        if primary:
            return Path(quarantined) / primary
        found = [p for p in Path(quarantined).iterdir() if p.suffix in (".onnx", ".pt2")]
        return found[0] if found else None
    return None


def run_all(label: str, code: Path | None, corpus: Path, formats: list[str], crafted: list[dict]) -> list[dict]:
    import parity_corpus as pc

    rows = []
    for model in pc.CORPUS:
        for fmt in formats:
            home = Path(tempfile.mkdtemp(prefix="bench-parity-"))
            try:
                rc, out, seconds = run_zoo(["convert", str(corpus / f"{model}.onnx"), "--to", fmt], code, home)
                artifact = artifact_of(out)
                truth, why = judge(model, corpus / f"{model}.onnx", artifact, DTYPES[fmt]) if artifact else (None, "no artifact")
            finally:
                shutil.rmtree(home, ignore_errors=True)
            rows.append({"run": label, "attempt": f"convert {model} --to {fmt}", "exit": rc, "seconds": round(seconds, 1),
                         "outcome": classify(rc, out, truth), "truth": truth, "why": why,
                         "message": (out.get("message") or "")[:200]})
            print(f"[{label}] {rows[-1]['attempt']}: {rows[-1]['outcome']} (exit {rc}, {seconds:.1f} s; truth: {why})",
                  file=sys.stderr)
    for case in crafted:
        home = Path(tempfile.mkdtemp(prefix="bench-parity-"))
        try:
            rc, out, seconds = run_zoo(["parity", str(corpus / f"{case['model']}.onnx"), str(case["candidate"]),
                                        "--dtype", case["dtype"], *case["extra"]], code, home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        truth, why = judge(case["model"], corpus / f"{case['model']}.onnx", case["candidate"], case["dtype"])
        given = " --inputs tokens.npz" if case["extra"] else ""
        rows.append({"run": label, "attempt": f"parity {case['model']} {case['candidate'].name}{given}", "exit": rc,
                     "seconds": round(seconds, 1), "outcome": classify(rc, out, truth), "truth": truth, "why": why,
                     "message": (out.get("message") or "")[:200]})
        print(f"[{label}] {rows[-1]['attempt']}: {rows[-1]['outcome']} (exit {rc}; truth: {why})", file=sys.stderr)
    return rows


def tree_of(rev: str, into: Path) -> Path:
    """``git archive REV`` laid out as the installed package (zoo, zoo.converters, zoo.registry, zoo.api)."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg"
    shutil.copytree(src / "zoo", pkg / "zoo")
    for folder, name in (("converters", "converters"), ("registry", "registry"), ("api", "api")):
        shutil.copytree(src / folder, pkg / "zoo" / name)
    return pkg


OUTCOMES = ("verified", "correctly rejected", "falsely rejected", "falsely verified",
            "source raised, told as parity failure", "source raised, told as such", "refused: no real samples",
            "conversion failed")


def summary(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {"attempted": len(rows)}
    for outcome in OUTCOMES:
        out[outcome] = sum(r["outcome"] == outcome for r in rows)
    out["other"] = len(rows) - sum(out[o] for o in OUTCOMES)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="REV", help="also run the zoo of this commit (before)")
    parser.add_argument("--after", metavar="REV", help="run the zoo of this commit as 'after' (default: this tree)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--json", type=Path, help="write every row and the summaries here")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    work = Path(tempfile.mkdtemp(prefix="bench-parity-corpus-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        crafted = build(corpus)
        runs = []
        if args.compare:
            runs.append((f"before ({args.compare})", tree_of(args.compare, work / "before")))
        runs.append((f"after ({args.after})", tree_of(args.after, work / "after")) if args.after else ("after (this tree)", None))
        rows, table = [], {}
        for label, code in runs:
            mine = run_all(label, code, corpus, formats, crafted)
            rows.extend(mine)
            table[label] = summary(mine)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| run | attempted | " + " | ".join(OUTCOMES) + " | other |")
    print("|---|" + "---|" * (len(OUTCOMES) + 2))
    for label, counts in table.items():
        print(f"| {label} | {counts['attempted']} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + f" | {counts['other']} |")
    if args.json:
        args.json.write_text(json.dumps({"summary": table, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Append the Hugging Face task families to docs/parity-matrix.md: one row per family and ONNX format.

Builds the tiny task repos the tests use (tests/task_builders.py: real architectures and real tokenizers,
image processors and feature extractors, seeded random weights) into an offline Hugging Face cache, pulls
each with ``zoo pull --format F --allow-mismatch --json`` and tabulates the task checks of its parity report
(generation, masked tokens, labels, detections, ...) beside the elementwise figures.

    .venv/bin/python scripts/task_matrix.py [--out docs/parity-matrix.md] [--families gpt2,t5]
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

from zoo.converters.parity.report import figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MARK = "## Task families, every ONNX format (generated)"
ONNX = ["onnx", "onnx-fp16", "onnx-int8", "onnx-opt"]


def families() -> dict[str, tuple[str, object, list[str]]]:
    """family -> (repo id, builder, formats)."""
    import task_builders as tb

    rows: dict[str, tuple[str, object, list[str]]] = {
        "gpt2 (text-generation)": ("zoo-test/tiny-gpt2", lambda: tb.decoder_repo("gpt2"), ONNX),
        "llama (text-generation)": ("zoo-test/tiny-llama", lambda: tb.decoder_repo("llama"), ONNX),
        "bert (fill-mask)": ("zoo-test/tiny-bert-fill-mask", lambda: tb.bert_head_repo("fill-mask"), ONNX),
        "bert (token-classification)": ("zoo-test/tiny-bert-token-classification",
                                        lambda: tb.bert_head_repo("token-classification"), ONNX),
        "bert (question-answering)": ("zoo-test/tiny-bert-question-answering",
                                      lambda: tb.bert_head_repo("question-answering"), ONNX),
        "bert (multiple-choice)": ("zoo-test/tiny-bert-multiple-choice", lambda: tb.bert_head_repo("multiple-choice"), ONNX),
        "bert (sentence-similarity)": ("zoo-test/tiny-bert-sentence-similarity",
                                       lambda: tb.bert_head_repo("sentence-similarity"), ONNX),
        "wav2vec2 (automatic-speech-recognition, CTC)": ("zoo-test/tiny-wav2vec2-ctc", tb.wav2vec2_ctc_repo, ONNX),
        "clip (zero-shot-image-classification)": ("zoo-test/tiny-clip", tb.clip_repo, ONNX),
        "yolos (object-detection)": ("zoo-test/tiny-yolos", tb.yolos_repo, ONNX),
        "segformer (image-segmentation)": ("zoo-test/tiny-segformer", tb.segformer_repo, ONNX),
        "dinov2 (image-feature-extraction)": ("zoo-test/tiny-dinov2", tb.dinov2_repo, ONNX),
    }
    rows.update({
        "falcon (text-generation, multi-query)": ("zoo-test/tiny-falcon", lambda: tb.decoder_repo("falcon"), ONNX),
        "gpt2-256 (text-generation, init 0.02)": ("zoo-test/gpt2-256", lambda: tb.decoder_repo("gpt2", hidden=256, init=0.02),
                                                   [*ONNX, "onnx-int4"]),
        "wav2vec2 (audio-classification)": ("zoo-test/tiny-wav2vec2-audio", tb.wav2vec2_audio_classifier_repo, ONNX),
        "dpt (depth-estimation)": ("zoo-test/tiny-dpt", tb.dpt_repo, ONNX),
        "depth-anything (depth-estimation)": ("zoo-test/tiny-depth-anything", tb.depth_anything_repo, ONNX),
        "t5 (text2text-generation)": ("zoo-test/tiny-t5", tb.t5_repo, ONNX),
        "bart (text2text-generation)": ("zoo-test/tiny-bart", tb.bart_repo, ONNX),
        "whisper (automatic-speech-recognition)": ("zoo-test/tiny-whisper", tb.whisper_repo, ONNX),
    })
    return rows


def task_summary(parity: dict) -> str:
    checks: dict[str, list[bool | None]] = {}
    for t in parity.get("tasks") or []:
        checks.setdefault(t["check"], []).append(t.get("passed"))
    parts = [f"{name} {sum(1 for r in results if r)}/{len(results)}" for name, results in checks.items()]
    failed = [t for t in parity.get("tasks") or [] if t.get("passed") is False]
    if failed:  # the first failing check says why
        parts.append(f"({failed[0]['check']}: {failed[0].get('reason') or ''})")
    return ", ".join(parts).replace("|", "/") or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "parity-matrix.md")
    parser.add_argument("--families", default="", help="comma-separated substrings of the families to run")
    args = parser.parse_args()
    from builders import write_hf_cache

    wanted = [f for f in args.families.split(",") if f]
    chosen = {k: v for k, v in families().items() if not wanted or any(w in k for w in wanted)}
    lines = ["| family | format | passed | task checks (passed/run) | max abs diff | atol | size | time |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZOO_HOME": f"{tmp}/zoo", "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
        for family, (repo, builder, formats) in chosen.items():
            write_hf_cache(Path(tmp) / "hf" / "hub", repo, builder())
            for fmt in formats:
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "zoo", "pull", f"hf:{repo}", "--format", fmt,
                                       "--allow-mismatch", "--json"], check=False, env=env, capture_output=True, text=True, timeout=1800)
                seconds = time.perf_counter() - start
                if proc.returncode != 0:
                    error = (proc.stderr.strip().splitlines() or ["?"])[-1].replace("|", "/")[:160]
                    lines.append(f"| {family} | {fmt} | exit {proc.returncode} | {error} | | | | {seconds:.1f} s |")
                else:
                    out = json.loads(proc.stdout.strip().splitlines()[-1])
                    p = json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["parity"]  # the full report
                    lines.append(f"| {family} | {fmt} | {'yes' if p['passed'] else 'NO'} | {task_summary(p)} | "
                                 f"{figure(p.get('max_abs_diff'), '.2e')} | {p.get('tolerance', {}).get('atol', '')} | "
                                 f"{out['size'] / 1e6:.2f} MB | {seconds:.1f} s |")
                print(lines[-1], file=sys.stderr, flush=True)
    text = args.out.read_text() if args.out.exists() else ""
    text = text.split(MARK)[0].rstrip() + "\n\n"
    text += f"""{MARK}

Generated by `scripts/task_matrix.py`. Each family is a tiny real architecture with seeded random weights and
the real tokenizer, image processor or feature extractor its tests use (`tests/task_builders.py`), pulled from an
offline Hugging Face cache with `zoo pull hf:REPO --format F`. "task checks" counts, per check, the input sets on
which the task's own comparison passed (greedy generation, masked tokens, labels, answer spans, detections, masks,
embeddings; `docs/tasks.md`). A format a family cannot take shows zoo's exit code and message.

""" + "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate docs/parity-matrix.md from a run of the parity matrix.

Builds the tiny model families the tests use (real architectures, seeded random
weights) into a temporary, offline Hugging Face cache, runs
``zoo parity --matrix`` for each, and writes one table per model.

    .venv/bin/python scripts/parity_matrix.py [--out docs/parity-matrix.md] [--rows DIR]
    .venv/bin/python scripts/parity_matrix.py --only NAME [--only NAME ...] --rows DIR   # a part, its rows kept
    .venv/bin/python scripts/parity_matrix.py --merge DIR [--merge DIR ...]              # the doc from kept rows
    .venv/bin/python scripts/parity_matrix.py --update DIR                               # those families' tables only

Runs split by family (``--only``, each with ``--rows``) can go side by side; ``--merge`` then writes the doc from
their rows, in the families' order (a family's rows from the last folder that has them). ``--update`` replaces,
in the doc as it stands (its written sections kept), the tables of the families whose rows DIR holds.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

FAMILIES = [  # (name given to zoo, repo id, builder)
    ("test_resnet", "timm/test_resnet.r160_in1k", "timm"),
    ("test_efficientnet", "timm/test_efficientnet.r160_in1k", "timm"),
    ("test_convnext", "timm/test_convnext.r160_in1k", "timm"),
    ("test_vit", "timm/test_vit.r160_in1k", "timm"),
    ("zoo-test/tiny-bert", "zoo-test/tiny-bert", "bert-base"),
    ("zoo-test/tiny-bert-sst", "zoo-test/tiny-bert-sst", "bert-sst"),
    ("zoo-test/tiny-vit-classifier", "zoo-test/tiny-vit-classifier", "vit-hf"),
    ("keras:MobileNetV2@96", None, "keras"),
    ("hf:zoo-test/tiny-keras", "zoo-test/tiny-keras", "keras-hf"),
    ("zoo-test/tiny-t5", "zoo-test/tiny-t5", "t5"),  # encoder-decoders: encoder.onnx + decoder.onnx, onnx only
    ("zoo-test/tiny-bart", "zoo-test/tiny-bart", "bart"),
    ("zoo-test/tiny-whisper", "zoo-test/tiny-whisper", "whisper"),
    ("zoo-test/tiny-marian", "zoo-test/tiny-marian", "marian"),
    ("zoo-test/tiny-mt5", "zoo-test/tiny-mt5", "mt5"),
    ("zoo-test/gpt2-256", "zoo-test/gpt2-256", "gpt2-256"),  # a decoder: the one family with onnx-int4
]


def build(kind: str, repo: str) -> dict[str, bytes]:
    from builders import bert_repo, keras_repo, timm_repo, vit_image_classifier_repo
    from task_builders import bart_repo, marian_repo, mt5_repo, t5_repo, whisper_repo

    seq2seq = {"t5": t5_repo, "bart": bart_repo, "whisper": whisper_repo, "marian": marian_repo, "mt5": mt5_repo}
    if kind in seq2seq:
        return seq2seq[kind]()
    if kind == "keras-hf":
        return keras_repo()
    if kind == "gpt2-256":
        from task_builders import decoder_repo

        return decoder_repo("gpt2", hidden=256, init=0.02)
    if kind == "timm":
        return timm_repo(repo.split("/", 1)[1])
    if kind == "bert-base":
        return bert_repo("base")
    if kind == "bert-sst":
        return bert_repo("sequence-classification")
    return vit_image_classifier_repo()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "parity-matrix.md")
    parser.add_argument("--only", action="append", help="run only this family (repeatable); prints its tables")
    parser.add_argument("--rows", type=Path, help="also write each family's rows (zoo parity --matrix --json) into this folder")
    parser.add_argument("--merge", type=Path, action="append", help="write the doc from rows kept by --rows (repeatable)")
    parser.add_argument("--update", type=Path, help="replace in --out the tables of the families whose rows this folder holds")
    args = parser.parse_args()
    if args.update:
        return update(args.update, args.out)
    if args.merge:
        return merge(args.merge, args.out)
    from builders import write_hf_cache

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZOO_HOME": f"{tmp}/zoo", "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1", "KERAS_HOME": f"{tmp}/keras",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
        sections = []
        for name, repo, kind in FAMILIES:
            if args.only and name not in args.only:
                continue
            if kind == "keras":  # seeded weights in keras' own cache, where keras.applications looks
                from builders import keras_mobilenet_v2_weights

                fname, data = keras_mobilenet_v2_weights(96)
                (Path(tmp) / "keras" / "models").mkdir(parents=True, exist_ok=True)
                (Path(tmp) / "keras" / "models" / fname).write_bytes(data)
            else:
                write_hf_cache(Path(tmp) / "hf" / "hub", repo, build(kind, repo))
            proc = subprocess.run([sys.executable, "-m", "zoo", "parity", "--matrix", name, "--json"], check=False, env=env,
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            rows = json.loads(proc.stdout)["rows"]  # a format a family cannot reach is a row with its error
            if args.rows:
                args.rows.mkdir(parents=True, exist_ok=True)
                rows_file(args.rows, name).write_text(proc.stdout)
            from zoo.comparison import matrix_markdown

            sections.append(matrix_markdown(name, rows))
            print(f"{name}: " + ", ".join(f"{r['format']} {'ok' if r.get('passed') else 'FAILED'}" for r in rows), file=sys.stderr)
    header = make_header()
    if args.only:  # a partial run: the tables only, for the caller to place
        print("\n\n".join(sections))
        return 0
    args.out.write_text(header + "\n\n".join(sections) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def rows_file(folder: Path, name: str) -> Path:
    return folder / (name.replace("/", "_").replace(":", "_") + ".json")


def merge(folders: list[Path], out: Path) -> int:
    """The doc from rows kept by earlier runs (``--rows``): each family's from the last folder holding it."""
    from zoo.comparison import matrix_markdown

    sections, missing = [], []
    for name, _, _ in FAMILIES:
        found = [rows_file(f, name) for f in folders if rows_file(f, name).is_file()]
        if not found:
            missing.append(name)
            continue
        sections.append(matrix_markdown(name, json.loads(found[-1].read_text())["rows"]))
    if missing:
        print(f"no rows for {', '.join(missing)}: run them with --only NAME --rows DIR", file=sys.stderr)
        return 2
    out.write_text(make_header() + "\n\n".join(sections) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def update(folder: Path, out: Path) -> int:
    """In ``out`` as it stands, each family's table (from its ``| NAME | chain |`` line to the blank line after it)
    replaced by the one its rows in ``folder`` make; every other line kept."""
    from zoo.comparison import matrix_markdown

    lines = out.read_text().splitlines()
    done = []
    for name, _, _ in FAMILIES:
        rows = rows_file(folder, name)
        if not rows.is_file():
            continue
        start = next((i for i, line in enumerate(lines) if line.startswith(f"| {name} | chain |")), None)
        if start is None:
            print(f"{out} has no table for {name}: run --merge with every family's rows", file=sys.stderr)
            return 2
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        lines[start:end] = matrix_markdown(name, json.loads(rows.read_text())["rows"]).strip().splitlines()
        done.append(name)
    if not done:
        print(f"no rows in {folder}", file=sys.stderr)
        return 2
    out.write_text("\n".join(lines) + "\n")
    print(f"updated {', '.join(done)} in {out}", file=sys.stderr)
    return 0


def make_header() -> str:
    tools = ("torch", "onnx", "onnxruntime", "timm", "transformers", "tensorflow", "keras", "tf2onnx", "onnx2tf",
             "litert-torch", "jax", "torchax")
    versions = ", ".join(f"{d} {importlib.metadata.version(d)}" for d in tools)
    return f"""# Parity matrix

Generated by `scripts/parity_matrix.py` on {datetime.date.today().isoformat()} ({versions}; {os.cpu_count()} CPUs).
Every model is a real architecture with seeded random weights (the test suite's tiny models); every row is
converted from the PyTorch source along the chain shown and checked end to end against it, on the same
inputs for every format (3 seeded random batches at batch 2, 1 and 3, text at sequence lengths 16, 7 and
33, plus zoo's sample images or sentences). Tolerance: atol x max(1, max|ref|) at the chain's dtype.
Time is the wall time of the conversion and check, every failed route before the winner included (torch
import included in the first row only). The Keras models (an application, a Hugging Face Keras 3 repo) start
from keras' model (tf2onnx, TFLiteConverter, ExportArchive, `.keras`, and `.pt2` through ONNX with zoo.onnx_torch).
A format with several routes (`tf`, `tflite` and its variants, `jax`) shows in brackets the tools and rung of the
route that won (`zoo.json` `conversion.routes`): for `tf` onnx2tf, then jax2tf; for `tflite` onnx2tf, litert-torch,
then jax2tf's SavedModel through TFLiteConverter; each with the source's dynamic axes, then with static shapes.

"""


if __name__ == "__main__":
    raise SystemExit(main())

"""A decoder LLM of about 1.1B parameters (fp32, over 4 GB of weights): `zoo pull --format onnx` against
`optimum-cli export onnx --task text-generation-with-past`, wall time and peak RSS, on the same repo.

    .venv/bin/python bench/bench_llm.py [--layers 22] [--rounds 2] [--cache DIR] [--optimum-python PATH] [--json FILE]

The model is TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads with 4 key/value heads, MLP 5632,
vocabulary 32000) with seeded random weights, saved with ``save_pretrained`` (safetensors) into an offline
Hugging Face cache with the byte-level BPE tokenizer the tests train. Each tool runs in its own process
under ``/usr/bin/time``; optimum runs from its own virtual environment (optimum-onnx pins transformers < 5;
bench/README.md says how to make it). zoo's run includes its parity check (greedy generation of 20 tokens
from 4 prompts, logits at every step); optimum's includes its default validation (one input set, logits and
present.* within atol 1e-5, a failure only warns). ``--layers 2`` makes a small smoke run.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
REPO = "zoo-bench/llama-1b"


def build(layers: int, out: Path) -> int:
    """Save the model and tokenizer into ``out``; returns the parameter count."""
    import torch
    from task_builders import bpe_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bpe_tokenizer(str(out))
    eos = tokenizer.eos_token_id
    config = LlamaConfig(vocab_size=32000, hidden_size=2048, num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=4, intermediate_size=5632, max_position_embeddings=2048,
                         bos_token_id=eos, eos_token_id=eos, initializer_range=0.02, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text("---\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n")
    return params


def timed(cmd: list[str], env: dict) -> dict:
    start = time.perf_counter()
    load = os.getloadavg()[0]
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *cmd], check=False, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    last = lines[-1].split() if lines else []
    measured = len(last) == 3 and last[0].isdigit()
    # CPU time (user + sys) as well as wall time: on a shared machine the wall time moves with the load, CPU much less
    return {"ok": proc.returncode == 0, "rc": proc.returncode, "seconds": round(wall, 1),
            "cpu_s": round(float(last[1]) + float(last[2]), 1) if measured else None,
            "peak_rss_mb": int(last[0]) // 1024 if measured else None,
            "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "stdout": proc.stdout, "stderr_tail": "\n".join(lines[-15:-1]), "stderr_all": proc.stderr}


def stages(stderr: str) -> dict[str, float]:
    """zoo's ``zoo: STAGE done in Ns`` lines."""
    found = {}
    for line in stderr.splitlines():
        words = line.split()
        if len(words) == 5 and words[0] == "zoo:" and words[2:4] == ["done", "in"] and words[4].endswith("s"):
            found[words[1]] = float(words[4][:-1])
    return found


def run_zoo(env: dict) -> dict:
    zoo = timed([sys.executable, "-m", "zoo", "pull", f"hf:{REPO}", "--format", "onnx", "--json"], env)
    zoo["stages_s"] = stages(zoo.pop("stderr_all"))
    if zoo["ok"]:
        out = json.loads(zoo["stdout"].strip().splitlines()[-1])
        zoo["verified"] = out["verified"]
        zoo["exporter"] = out.get("conversion", {}).get("exporter")
        zoo["files"] = {f["path"]: f["size"] for f in json.loads((Path(out["artifact_dir"]) / "zoo.json").read_text())["files"]} \
            if out.get("artifact_dir") else None
        zoo["parity"] = {k: out["parity"].get(k) for k in ("passed", "max_abs_diff", "summary")}
    print(f"zoo      {zoo['seconds']:7.1f} s  CPU {zoo['cpu_s']} s  peak RSS {zoo['peak_rss_mb']} MB  ok={zoo['ok']}  "
          f"load {zoo['load_average_before']}  stages {zoo['stages_s']}", flush=True)
    if not zoo["ok"]:
        print(zoo["stderr_tail"], file=sys.stderr)
    return {k: v for k, v in zoo.items() if k != "stdout"}


def run_optimum(python: str, snap: Path, out: Path, env: dict) -> dict:
    opt = timed([python, "-m", "optimum.commands.optimum_cli", "export", "onnx", "--model", str(snap),
                 "--task", "text-generation-with-past", str(out)], env)
    opt.pop("stderr_all")
    print(f"optimum  {opt['seconds']:7.1f} s  CPU {opt['cpu_s']} s  peak RSS {opt['peak_rss_mb']} MB  ok={opt['ok']}  "
          f"load {opt['load_average_before']}", flush=True)
    if not opt["ok"]:
        print(opt["stderr_tail"], file=sys.stderr)
    return {k: v for k, v in opt.items() if k != "stdout"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--optimum-python", default=str(ROOT / ".zoo-bench" / "optimum-venv" / "bin" / "python"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmp", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=1, help="zoo and optimum alternated this many times")
    parser.add_argument("--cache", type=Path, default=None,
                        help="build the model's Hugging Face cache here once and reuse it (default: a temporary one)")
    args = parser.parse_args()
    from builders import _read_dir, write_hf_cache

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        home = args.cache or tmp
        built = home / f"built-{args.layers}.json"
        if built.exists():
            meta = json.loads(built.read_text())
        else:
            src = tmp / "src"
            src.mkdir()
            params = build(args.layers, src)
            weights = sum(p.stat().st_size for p in src.glob("*.safetensors"))
            snap = write_hf_cache(home / "hf" / "hub", REPO, _read_dir(src))
            shutil.rmtree(src)
            meta = {"parameters": params, "weights_bytes": weights, "snapshot": str(snap)}
            built.write_text(json.dumps(meta))
        snap = Path(meta["snapshot"])
        print(f"model: {meta['parameters'] / 1e9:.2f}B parameters, {meta['weights_bytes'] / 1e9:.2f} GB of safetensors", flush=True)
        env = {**os.environ, "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        result = {"parameters": meta["parameters"], "weights_bytes": meta["weights_bytes"], "zoo": [], "optimum": []}
        have_optimum = Path(args.optimum_python).exists()
        if not have_optimum:
            print(f"no optimum venv at {args.optimum_python}: skipped (bench/README.md says how to make it)", file=sys.stderr)
        for i in range(args.rounds):  # alternated, each in a fresh ZOO_HOME / output folder, removed after
            result["zoo"].append(run_zoo({**env, "ZOO_HOME": str(tmp / f"zoo-{i}")}))
            shutil.rmtree(tmp / f"zoo-{i}", ignore_errors=True)
            if have_optimum:
                result["optimum"].append(run_optimum(args.optimum_python, snap, tmp / f"optimum-{i}", env))
                shutil.rmtree(tmp / f"optimum-{i}", ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Decode latency per token, batch 1, on the CPU: zoo's text-generation ONNX (with its KV cache) in a plain
onnxruntime loop against transformers eager (the same model's forward with its DynamicCache).

A Llama-style decoder with seeded random weights is built offline (tests/task_builders.py's tokenizer),
written into a fresh Hugging Face cache and pulled with the real `zoo pull` (offline, subprocess); both sides
then greedily decode the same prompt. Per-token figure: the median wall time of one decode step (prefill
excluded), over ``--new-tokens`` steps, the best of ``--repeat`` runs each. The tokens of the two loops must
be identical (the bench fails otherwise).

    .venv/bin/python bench/bench_decode.py                  # hidden 512, 8 layers, vocab 32000 (~ 50M params)
    .venv/bin/python bench/bench_decode.py --json bench/results-decode.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def build_repo(hidden: int, layers: int, vocab: int, seed: int = 0) -> dict[str, bytes]:
    import torch
    from builders import _model_card, _read_dir
    from task_builders import bpe_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = bpe_tokenizer(tmp)
        heads = max(1, hidden // 64)
        config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             num_key_value_heads=max(1, heads // 2), intermediate_size=int(hidden * 2.6875),
                             max_position_embeddings=2048, bos_token_id=tokenizer.eos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(seed)
        LlamaForCausalLM(config).eval().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = _read_dir(Path(tmp))
    files["README.md"] = _model_card("transformers", "text-generation", ("llama",))
    return files


def pull(repo: str, env: dict[str, str]) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoo", "pull", repo, "--json"], env=env, capture_output=True, text=True, check=False,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"zoo pull failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def ort_decode(path: str, ids, steps: int, threads: int) -> tuple[list[int], list[float]]:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    past = [n for n in inputs if n.startswith("past_key_values.")]
    outs = [o.name for o in session.get_outputs()]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
             **{n: np.zeros((1, inputs[n].shape[1], 0, inputs[n].shape[3]), np.float32) for n in past}}
    tokens, times = [], []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        got = dict(zip(outs, session.run(None, feeds)))
        if step:
            times.append(time.perf_counter() - t0)
        nxt = int(got["logits"][0, -1].argmax())
        tokens.append(nxt)
        mask = np.ones((1, feeds["attention_mask"].shape[1] + 1), np.int64)
        feeds = {"input_ids": np.array([[nxt]], np.int64), "attention_mask": mask,
                 **{n: got[n.replace("past_key_values.", "present.")] for n in past}}
    return tokens[:steps], times


def torch_decode(model, ids, steps: int) -> tuple[list[int], list[float]]:
    import inspect

    import torch

    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # transformers 5
    ids = torch.from_numpy(ids)
    cache, mask, tokens, times = None, torch.ones_like(ids), [], []
    current = ids
    with torch.no_grad():
        for step in range(steps + 1):
            t0 = time.perf_counter()
            out = model(input_ids=current, attention_mask=mask, use_cache=True, **{arg: cache})
            if step:
                times.append(time.perf_counter() - t0)
            cache = out[arg]
            nxt = int(out.logits[0, -1].argmax())
            tokens.append(nxt)
            current = torch.tensor([[nxt]])
            mask = torch.ones((1, mask.shape[1] + 1), dtype=torch.long)
    return tokens[:steps], times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both onnxruntime and torch (1: on a loaded machine torch's OpenMP threads "
                             "spin against other processes and its figure triples)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers
    from builders import write_hf_cache

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZOO_HOME": f"{tmp}/zoo", "HF_HOME": f"{tmp}/hf", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        repo = "bench/decoder"
        files = build_repo(args.hidden, args.layers, args.vocab)
        snapshot = write_hf_cache(Path(tmp) / "hf" / "hub", repo, files)
        out, pull_s = pull(repo, env)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(snapshot), attn_implementation="eager").eval()
        params = sum(p.numel() for p in model.parameters())
        ids = np.random.default_rng(0).integers(0, 400, (1, args.prompt_tokens)).astype(np.int64)
        ort_runs, torch_runs = [], []
        for _ in range(args.repeat):  # alternating, best run of each
            ort_tokens, ort_times = ort_decode(out["path"], ids, args.new_tokens, args.threads)
            torch_tokens, torch_times = torch_decode(model, ids, args.new_tokens)
            ort_runs.append(statistics.median(ort_times))
            torch_runs.append(statistics.median(torch_times))
            if ort_tokens != torch_tokens:
                raise SystemExit(f"the two decode loops disagree: {ort_tokens[:10]} vs {torch_tokens[:10]}")
        result = {"params": params, "hidden": args.hidden, "layers": args.layers, "vocab": args.vocab,
                  "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
                  "zoo_pull_s": round(pull_s, 2), "verified": out["verified"],
                  "onnxruntime_ms_per_token": round(min(ort_runs) * 1000, 3),
                  "transformers_eager_ms_per_token": round(min(torch_runs) * 1000, 3),
                  "speedup": round(min(torch_runs) / min(ort_runs), 2), "tokens_identical": True,
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "onnxruntime": __import__("onnxruntime").__version__}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Seq2seq decode latency per token, batch 1, on the CPU: zoo's encoder.onnx + decoder.onnx (self-attention
cache; cross-attention keys and values from the encoder's ``present.N.encoder.*``, computed once, as the
decoder's ``past_key_values.N.encoder.*``; converters/tasks/seq2seq.py) in a plain onnxruntime loop against
transformers eager ``generate()``-style decoding (the same wrappers in PyTorch).

A T5 (``--family t5``, a prompt through the offline Unigram tokenizer of tests/task_builders.py) or a Whisper
(``--family whisper``, a synthetic 2 s clip through a real WhisperFeatureExtractor: 1500 encoder frames) with
seeded random weights is built here. Per-token figure: the median wall time of one decoder step (encoder and
first step excluded) over ``--new-tokens`` steps, best of ``--repeat``. The two loops' tokens must be identical
(the bench fails otherwise).

    .venv/bin/python bench/bench_seq2seq.py --json bench/results-seq2seq.json --threads 1
    .venv/bin/python bench/bench_seq2seq.py --family whisper --json bench/results-seq2seq-whisper.json --threads 1

On a shared, loaded machine use one thread: with two, torch eager measured 94 ms per token (thread
contention) against 9 ms with one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def torch_runner(model: Any) -> tuple[Any, Any]:
    """``seq2seq_check.onnx_runner``'s callables over the PyTorch wrappers (seq2seq.wrap): the same loop in eager PyTorch."""
    import numpy as np
    import torch

    from zoo.converters.tasks.seq2seq import io_contract, wrap

    encoder, decoder = wrap(model)
    contract = io_contract(model.config)
    enc_ins, dec_ins, outs = contract["encoder"]["inputs"], contract["decoder"]["inputs"], contract["decoder"]["outputs"]
    enc_outs = contract["encoder"]["outputs"]

    def encode(feeds: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            return {n: t.numpy() for n, t in zip(enc_outs, encoder(*[torch.from_numpy(feeds[n]) for n in enc_ins]))}

    def decode(feeds: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            out = decoder(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in dec_ins])
        return {n: t.numpy() for n, t in zip(outs, out)}

    return encode, decode


def timed_loop(encode, decode, contract, feeds, steps):
    import numpy as np

    from zoo.converters.tasks import seq2seq_check

    times = []

    def timed(feeds):
        start = time.perf_counter()
        out = decode(feeds)
        times.append(time.perf_counter() - start)
        return out

    tokens, _, _ = seq2seq_check.greedy_loop(encode, timed, contract, feeds, steps)
    return np.asarray(tokens), statistics.median(times[1:])


def build_t5(args):
    import torch
    from task_builders import unigram_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = unigram_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=args.d_model, d_kv=args.d_model // 8, d_ff=4 * args.d_model,
                      num_layers=args.layers, num_decoder_layers=args.layers, num_heads=8, pad_token_id=0,
                      eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval(), tokenizer


def build_whisper(args):
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=1000, num_mel_bins=80, d_model=args.d_model, encoder_layers=args.layers,
                           decoder_layers=args.layers, encoder_attention_heads=8, decoder_attention_heads=8,
                           encoder_ffn_dim=4 * args.d_model, decoder_ffn_dim=4 * args.d_model,
                           max_source_positions=1500, max_target_positions=128, pad_token_id=0, bos_token_id=0,
                           eos_token_id=0, decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None)
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config).eval(), WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("t5", "whisper"), default="t5")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from zoo.converters.tasks import seq2seq, seq2seq_check

    torch.set_num_threads(args.threads)
    model, preprocess = (build_whisper if args.family == "whisper" else build_t5)(args)
    with tempfile.TemporaryDirectory() as tmp:
        contract = seq2seq.export(model, preprocess, Path(tmp))
        feeds = seq2seq.encoder_feeds(contract, preprocess, samples=1)
        o_enc, o_dec = seq2seq_check.onnx_runner(Path(tmp))
        t_enc, t_dec = torch_runner(model)
        best = {"onnxruntime": float("inf"), "torch_eager": float("inf")}
        tokens = {}
        for _ in range(args.repeat):
            for name, (e, d) in {"onnxruntime": (o_enc, o_dec), "torch_eager": (t_enc, t_dec)}.items():
                tokens[name], per = timed_loop(e, d, contract, feeds, args.new_tokens)
                best[name] = min(best[name], per)
    if not (tokens["onnxruntime"] == tokens["torch_eager"]).all():
        print("the two loops generated different tokens", file=sys.stderr)
        return 1
    params = sum(p.numel() for p in model.parameters())
    cross = "cached (encoder present.N.encoder.*)" if any(".encoder." in n for n in contract["decoder"]["inputs"]) \
        else "recomputed each step"
    result = {"model": f"{args.family} d_model {args.d_model}, {args.layers}+{args.layers} layers, "
                       f"{params / 1e6:.1f}M params", "cross_attention": cross,
              "threads": args.threads, "new_tokens": args.new_tokens,
              "ms_per_token": {k: round(v * 1000, 3) for k, v in best.items()},
              "speedup": round(best["torch_eager"] / best["onnxruntime"], 2)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

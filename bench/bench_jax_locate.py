"""What the torch -> jax locator costs and finds on full-sized models (issue 14, "Where it diverges").

For timm resnet50 (224 x 224, batch 1) and a BERT-base-sized encoder (12 layers, hidden 768, sequence 128), both with
seeded random weights (no hub here), one torchax lowering is broken on purpose: resnet50's convolutions with 2048
output channels 1% high (the first is ``layer4.0.conv3``), BERT's GELU 5% high (the first is layer 0's intermediate
activation). ``locate_jax`` then runs PyTorch and torchax's eager run of the module with hooks on every submodule;
the figures are its wall time, the PyTorch forward's for scale, the peak RSS growth, the modules compared and the
module it names.

    OMP_NUM_THREADS=2 nice .venv/bin/python bench/bench_jax_locate.py [--out bench/results-jax-locate.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np


def _break(op, wrong_of) -> None:
    from zoo.converters.edges.jax_export import import_torchax

    env = import_torchax().default_env()
    env._ops[op] = dataclasses.replace(env._ops[op], func=wrong_of(env._ops[op].func))


def _resnet():
    import timm
    import torch

    from zoo.converters.loaders.torch_models import TorchModel

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False).eval()
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}

    def wrong_of(conv):
        def wrong(*args, **kwargs):
            out = conv(*args, **kwargs)
            return out * 1.01 if args[1].shape[0] == 2048 else out
        return wrong

    return TorchModel(model, ["x"], ["logits"], {"x": {}}), feeds, (torch.ops.aten.convolution, wrong_of)


def _bert():
    import torch
    from transformers import BertConfig, BertModel

    from zoo.converters.loaders.torch_models import TorchModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(attn_implementation="eager")).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = bert

        def forward(self, input_ids, attention_mask):
            return (self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)

    rng = np.random.default_rng(0)
    mask = np.ones((1, 128), np.int64)
    mask[0, 100:] = 0
    feeds = {"input_ids": rng.integers(1000, 30000, (1, 128)).astype(np.int64), "attention_mask": mask}
    return (TorchModel(Encoder().eval(), ["input_ids", "attention_mask"], ["last_hidden_state"], {}), feeds,
            (torch.ops.aten.gelu, lambda gelu: lambda x, **kw: gelu(x, **kw) * 1.05))


def measure(name: str, build) -> dict:
    import torch

    from zoo.converters.parity.runners import torch_inputs
    from zoo.converters.parity.torchax_layers import locate_jax

    tm, feeds, (op, wrong_of) = build()
    start = time.perf_counter()
    with torch.no_grad():
        tm.module(*torch_inputs(feeds, tm.input_names))
    torch_s = time.perf_counter() - start
    _break(op, wrong_of)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    found = locate_jax(tm, Path("none.jax"), feeds, tm.input_names, atol=1e-4, rtol=1e-4)
    seconds = time.perf_counter() - start
    grows = found.get("grows_most") or {}
    return {"model": name, "locate_s": round(seconds, 2), "torch_forward_s": round(torch_s, 3),
            "peak_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024),
            "compared": found.get("compared"), "module": found.get("module"), "module_type": found.get("module_type"),
            "max_abs_diff": found.get("max_abs_diff"), "input_rel_diff": found.get("input_rel_diff"),
            "grows_most": grows.get("label"), "note": found.get("note")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results-jax-locate.json")
    parser.add_argument("--models", default="resnet50,bert-base")
    args = parser.parse_args()
    builders = {"resnet50": _resnet, "bert-base": _bert}
    rows = [measure(m, builders[m]) for m in args.models.split(",")]
    for row in rows:
        print(json.dumps(row))
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

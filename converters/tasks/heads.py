"""Heads that need more than the transformers model's own outputs inside the graph.

``sentence_embedding``: a sentence-transformers repo (``modules.json``: Transformer -> Pooling ->
optionally Normalize) as one graph whose output is the sentence embedding ``[batch, hidden]``: the pooling
``1_Pooling/config.json`` names (mean over real tokens, CLS token, max over real tokens) and the L2
normalisation run inside the ONNX model, as ``SentenceTransformer.encode`` would compute them.
"""

from __future__ import annotations

from typing import Any

from zoo import errors

POOLING_MODES = ("mean", "cls", "max")


def pooling_mode(st: dict[str, Any]) -> tuple[str, bool]:
    """(pooling mode, normalize) from the repo's modules.json and 1_Pooling/config.json."""
    modules = st.get("modules") or []
    kinds = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    normalize = any(k.endswith(".Normalize") for k in kinds)
    pooling = st.get("pooling") or {}
    chosen = [m for m in POOLING_MODES if pooling.get(f"pooling_mode_{m}_token" if m == "cls" else
                                                      f"pooling_mode_{m}_tokens" if m != "mean" else
                                                      "pooling_mode_mean_tokens")]
    if not pooling:
        chosen = ["mean"]  # sentence-transformers' default
    other = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and
             k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
    if len(chosen) != 1 or other:
        raise errors.UnsupportedError(
            f"sentence-transformers pooling {sorted(k for k, v in pooling.items() if v is True)} is not supported",
            hint="zoo puts one of mean, cls or max pooling (optionally normalised) inside the graph")
    unknown = [k for k in kinds if not k.endswith((".Transformer", ".Pooling", ".Normalize"))]
    if unknown:
        raise errors.UnsupportedError(f"sentence-transformers modules {unknown} are not supported",
                                      hint="zoo converts Transformer -> Pooling -> Normalize pipelines")
    return chosen[0], normalize


def sentence_embedding(model: Any, input_names: list[str], st: dict[str, Any]) -> Any:
    import torch

    mode, normalize = pooling_mode(st)

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            feeds = dict(zip(input_names, args))
            hidden = self.inner(**feeds, return_dict=True).last_hidden_state
            mask = feeds["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if mode == "cls":
                pooled = hidden[:, 0]
            elif mode == "max":
                pooled = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return SentenceEmbedding(model).eval()

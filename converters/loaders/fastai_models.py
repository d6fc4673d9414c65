"""fastai's ``vision_learner`` model rebuilt in plain PyTorch (fastai is never imported): a timm body
(``TimmBody``: the timm model without its classifier, returning feature maps) followed by fastai's standard
head (``create_head``: concat pooling, flatten, then BatchNorm1d / Dropout / Linear(bias=False) blocks with
ReLU between them). Module indices match fastai's, so ``learn.save()`` state dicts load strictly:
``0.model.*`` is the body, ``1.2`` / ``1.4`` / ``1.6`` / ``1.8`` the head's BatchNorm and Linear layers."""

from __future__ import annotations

import itertools
from typing import Any


def build_vision_learner(arch: str, widths: list[int], ps: list[float] | None = None) -> Any:
    """``widths``: the head's Linear sizes, input first: [2 * body features, 512, n_out] for the default head."""
    import timm
    import torch
    from torch import nn

    class TimmBody(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.forward_features(x)

    class AdaptiveConcatPool2d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ap, self.mp = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.mp(x), self.ap(x)], 1)

    class Flatten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.size(0), -1)

    body = TimmBody(timm.create_model(arch, pretrained=False, num_classes=0))
    n = len(widths) - 1
    ps = ps or [0.25] * (n - 1) + [0.5] if n > 1 else [0.5]
    layers: list[nn.Module] = [AdaptiveConcatPool2d(), Flatten()]
    for i, (ni, no) in enumerate(itertools.pairwise(widths)):
        layers += [nn.BatchNorm1d(ni), nn.Dropout(ps[i]), nn.Linear(ni, no, bias=False)]
        if i < n - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(body, nn.Sequential(*layers))


def head_widths(state: dict[str, Any], prefix: str = "1.") -> list[int]:
    """The head's Linear sizes read from a state dict (its 2-D weights under ``prefix``, in module order)."""
    linears = sorted((int(k[len(prefix):].split(".")[0]), tuple(v.shape)) for k, v in state.items()
                     if k.startswith(prefix) and k.endswith(".weight") and v.dim() == 2)
    if not linears:
        return []
    return [linears[0][1][1]] + [shape[0] for _, shape in linears]

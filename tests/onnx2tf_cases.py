"""Small CNNs with one layout-sensitive op in the middle, for onnx2tf: conv, ReLU, the op, conv, a pooled head
(1x3x32x32, TorchScript export at opset 17). onnx2tf 1.28.8 converts some of them wrong
(``bench/bench_onnx2tf_locate.py`` tries them all; ``tests/test_locate_onnx2tf.py`` checks the locator on the wrong ones):
``channel-std`` (the element count of a standardisation over the channels read from the NHWC tensor's H),
``cumsum-h`` (a cumulative sum down the rows), ``bicubic`` (TF's cubic kernel), ``reflect-pad`` (padded on the wrong
axes: the SavedModel raises, the ``.tflite`` file pads the batch)."""

from __future__ import annotations

from pathlib import Path

OPS = ["nearest-x1.5", "bilinear-align-corners", "bicubic", "softmax-channels", "channel-std", "pixel-shuffle",
       "group-norm", "cumsum-h", "avgpool-ceil", "reflect-pad", "argmax-channels", "flip-h"]


def build_op_model(kind: str, path: Path) -> Path:
    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            if kind == "nearest-x1.5":
                y = F.interpolate(y, scale_factor=1.5, mode="nearest")
            elif kind == "bilinear-align-corners":
                y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
            elif kind == "bicubic":
                y = F.interpolate(y, scale_factor=2, mode="bicubic", align_corners=False)
            elif kind == "softmax-channels":
                y = torch.softmax(y, dim=1)
            elif kind == "channel-std":
                y = (y - y.mean(1, keepdim=True)) / (y.std(1, keepdim=True) + 1e-5)
            elif kind == "pixel-shuffle":
                y = F.pixel_shuffle(torch.cat([y, y * 0.5, y * 2, -y], 1), 2)
            elif kind == "group-norm":
                y = F.group_norm(y, 2)
            elif kind == "cumsum-h":
                y = torch.cumsum(y, dim=2)
            elif kind == "avgpool-ceil":
                y = F.avg_pool2d(y, 3, stride=2, ceil_mode=True, count_include_pad=False)
            elif kind == "reflect-pad":
                y = F.pad(y, (2, 1, 1, 2), mode="reflect")
            elif kind == "argmax-channels":
                y = y * (y.argmax(1, keepdim=True).float() + 1)
            elif kind == "flip-h":
                y = y[:, :, torch.arange(y.shape[2] - 1, -1, -1)]
            y = self.c2(y)
            return y.flatten(1).mean(1, keepdim=True) + y.amax((2, 3))

    torch.manual_seed(0)
    torch.onnx.export(Net().eval(), (torch.randn(1, 3, 32, 32),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    return path

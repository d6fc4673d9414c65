"""Flax modules the tests train, save and import by name (``--arch flax:flax_modules:SmallCNN``), as a user's
own package would hold them. Imported only where a test names it."""

from __future__ import annotations

from flax import linen, nnx


class SmallCNN(nnx.Module):
    """A conv, batch norm (its running statistics are state a checkpoint must carry), dropout (off at
    inference) and a dense head; NHWC images."""

    def __init__(self, channels: int = 4, classes: int = 3, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(1, channels, kernel_size=(3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(channels, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.head = nnx.Linear(channels, classes, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn(self.conv(x)))
        return self.head(self.drop(h.mean(axis=(1, 2))))


class LinenMLP(linen.Module):
    hidden: int = 8
    classes: int = 3

    @linen.compact
    def __call__(self, x):
        return linen.Dense(self.classes)(linen.tanh(linen.Dense(self.hidden)(x)))


class LinenCNN(linen.Module):
    """A Linen conv, batch norm (its running statistics live in the ``batch_stats`` collection, beside
    ``params``) and a dense head; NHWC images. ``train`` is a field, so the module as imported (the default)
    runs in inference mode."""

    channels: int = 4
    classes: int = 3
    train: bool = False

    @linen.compact
    def __call__(self, x):
        h = linen.BatchNorm(use_running_average=not self.train)(linen.Conv(self.channels, (3, 3))(x))
        return linen.Dense(self.classes)(linen.relu(h).mean(axis=(1, 2)))

"""Real sample inputs for parity checks: images, their preprocessing, sentences.

Random tensors test that a conversion computes the same function; samples test
it on inputs shaped like the real thing (smooth regions, edges, saturated
colours, real words), where classifier top-1 agreement means something.

Licence: the generated samples are made by zoo's own code (images are drawn
procedurally, audio is synthesised, sentences were written for zoo), so no
third-party rights attach. They are dedicated to the public domain under CC0
1.0 (https://creativecommons.org/publicdomain/zero/1.0/); see
``SAMPLE_LICENSE``. The photographs (``sample_photos``, ``photos/``) are
public-domain or CC0 images that scikit-image ships, each named with its
source and licence in ``photos/README.md`` and ``PHOTOS``.

``preprocess_image`` replicates timm's eval transform
(``timm.data.create_transform(is_training=False, ...)``: resize, centre crop,
``ToTensor``, ``Normalize``) with numpy and PIL only, so the registry and the
API can prepare inputs without importing torch. PIL and numpy are imported
inside the functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from zoo.errors import UnsupportedError, UsageError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

SAMPLE_LICENSE = (
    "CC0-1.0: zoo's sample images and sentences are generated or written by zoo itself "
    "and dedicated to the public domain (https://creativecommons.org/publicdomain/zero/1.0/)."
)

SAMPLE_SENTENCES: list[str] = [
    "The kettle clicked off just as the rain started.",
    "Seven small boats drifted past the lighthouse before noon.",
    "Is the library open on Sundays?",
    "After three failed attempts, the team rewrote the parser from scratch and shipped it on Friday.",
    "Bright orange leaves covered the path, hiding the roots that had tripped two hikers that week.",
    "She measured the flour twice, because the recipe was old and the handwriting was hard to read.",
    "Quiet.",
    "Although the train was forty minutes late, nobody on the platform complained; the sunset over "
    "the river was worth the wait, and a violinist near the stairs played until the doors finally opened.",
]

# name -> (what it shows, licence); the files are in photos/, listed with their sources in photos/README.md
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("a person (astronaut Eileen Collins)", "public domain (NASA)"),
    "coffee": ("objects: a coffee cup, saucer and spoon", "CC0 (Rachel Michetti)"),
    "chelsea": ("an animal: a cat", "CC0 (Stefan van der Walt)"),
    "rocket": ("a scene: a rocket launch", "public domain (SpaceX)"),
}

# Defaults mirror timm (timm.data.constants): ImageNet mean/std, crop 0.875.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875
_THEMES = ("landscape", "stripes", "bubbles", "blocks")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


# --- images ------------------------------------------------------------------------
def sample_images(n: int = 4, size: int = 256) -> list[tuple[str, Image.Image]]:
    """``n`` deterministic RGB images, ``size`` x ``size``, as ``(name, image)``.

    Procedural scenes (landscape, stripes, bubbles, blocks, then again with new
    seeds): smooth gradients, soft-edged shapes in varied colours and a little
    texture, so they look like photographs to a convolution, not like noise.
    """
    import numpy as np
    from PIL import Image

    if n < 0 or size < 8:
        raise UsageError(f"sample_images needs n >= 0 and size >= 8, got n={n}, size={size}")
    images = []
    for index in range(n):
        theme = _THEMES[index % len(_THEMES)]
        rng = np.random.default_rng(7919 + index)
        pixels = _DRAW[theme](np, rng, size)
        pixels = _add_texture(np, rng, pixels)
        data = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
        images.append((f"{index:02d}-{theme}", Image.fromarray(data)))
    return images


def _grid(np: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (y) and column (x) coordinates in [0, 1]."""
    axis = np.linspace(0.0, 1.0, size)
    return np.meshgrid(axis, axis, indexing="ij")


def _colour(np: Any, rng: Any, low: float = 0.08, high: float = 0.95) -> np.ndarray:
    return rng.uniform(low, high, 3)


def _gradient(np: Any, rng: Any, size: int) -> np.ndarray:
    """A two-colour linear gradient in a random direction."""
    y, x = _grid(np, size)
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) / math.sqrt(2) + 0.5
    a, b = _colour(np, rng), _colour(np, rng)
    return a * (1 - t[..., None]) + b * t[..., None]


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
    weight = (mask * alpha)[..., None]
    img *= 1 - weight
    img += weight * colour


def _soft(np: Any, distance: np.ndarray, size: int) -> np.ndarray:
    """Inside-ness from a signed distance (negative inside), anti-aliased over ~1.5 px."""
    return np.clip(0.5 - distance * size / 1.5, 0.0, 1.0)


def _circle(np: Any, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    y, x = _grid(np, size)
    return _soft(np, np.hypot(y - cy, x - cx) - radius, size)


def _rect(np: Any, size: int, top: float, left: float, bottom: float, right: float) -> np.ndarray:
    y, x = _grid(np, size)
    distance = np.maximum(np.maximum(top - y, y - bottom), np.maximum(left - x, x - right))
    return _soft(np, distance, size)


def _draw_landscape(np: Any, rng: Any, size: int) -> np.ndarray:
    y, x = _grid(np, size)
    sky_top, horizon = _colour(np, rng, 0.3, 0.9), _colour(np, rng, 0.6, 1.0)
    img = sky_top * (1 - y[..., None]) + horizon * y[..., None]
    _paint(img, _circle(np, size, rng.uniform(0.12, 0.35), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.1)),
           np.array([1.0, rng.uniform(0.75, 0.95), rng.uniform(0.3, 0.6)]))
    for level in (0.5, 0.65, 0.8):
        ridge = level + 0.06 * np.sin(2 * math.pi * (rng.uniform(0.6, 2.0) * x + rng.uniform(0, 1)))
        _paint(img, _soft(np, ridge - y, size), _colour(np, rng, 0.05, 0.6))
    return img


def _draw_stripes(np: Any, rng: Any, size: int) -> np.ndarray:
    y, x = _grid(np, size)
    palette = [_colour(np, rng) for _ in range(int(rng.integers(3, 6)))]
    angle = rng.uniform(0, math.pi)
    frequency = rng.uniform(3, 7)
    u = (np.cos(angle) * x + np.sin(angle) * y) * frequency
    band, frac = np.floor(u).astype(int), u - np.floor(u)
    colours = np.stack(palette)
    edge = 1.5 * frequency / size  # blend into the next stripe over ~1.5 px
    weight = np.clip((frac - (1 - edge)) / edge, 0.0, 1.0)[..., None]
    img = colours[band % len(palette)] * (1 - weight) + colours[(band + 1) % len(palette)] * weight
    (top, bottom), (left, right) = sorted(rng.uniform(0.1, 0.9, 2)), sorted(rng.uniform(0.1, 0.9, 2))
    _paint(img, _rect(np, size, top, left, max(bottom, top + 0.15), max(right, left + 0.15)),
           _colour(np, rng), alpha=0.85)
    return img


def _draw_bubbles(np: Any, rng: Any, size: int) -> np.ndarray:
    y, x = _grid(np, size)
    centre, edge = _colour(np, rng), _colour(np, rng, 0.02, 0.4)
    r = np.clip(np.hypot(y - 0.5, x - 0.5) / 0.71, 0, 1)[..., None]
    img = centre * (1 - r) + edge * r
    for _ in range(int(rng.integers(6, 12))):
        mask = _circle(np, size, rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.04, 0.2))
        _paint(img, mask, _colour(np, rng), alpha=rng.uniform(0.5, 0.9))
    return img


def _draw_blocks(np: Any, rng: Any, size: int) -> np.ndarray:
    img = _gradient(np, rng, size)
    left = 0.0
    while left < 1.0:
        width = rng.uniform(0.1, 0.25)
        top = rng.uniform(0.2, 0.6)
        _paint(img, _rect(np, size, top, left + 0.01, 1.1, left + width - 0.01), _colour(np, rng, 0.1, 0.7))
        window = _colour(np, rng, 0.7, 1.0)
        for row in np.arange(top + 0.04, 0.95, 0.08):
            for col in np.arange(left + 0.03, left + width - 0.05, 0.06):
                if rng.uniform() < 0.6:
                    _paint(img, _rect(np, size, row, col, row + 0.035, col + 0.03), window, alpha=0.8)
        left += width
    return img


_DRAW = {"landscape": _draw_landscape, "stripes": _draw_stripes, "bubbles": _draw_bubbles,
         "blocks": _draw_blocks}


def _add_texture(np: Any, rng: Any, img: np.ndarray) -> np.ndarray:
    """Blurred grain (like film or foliage) plus faint per-pixel noise."""
    size = img.shape[0]
    grain = rng.standard_normal((size, size))
    for axis in (0, 1):  # a cheap 5-tap box blur, twice, makes the grain blotchy rather than speckled
        for _ in range(2):
            grain = sum(np.roll(grain, shift, axis=axis) for shift in range(-2, 3)) / 5.0
    grain = grain / (grain.std() + 1e-12)
    return img + 0.025 * grain[..., None] + 0.008 * rng.standard_normal(img.shape)


# --- photographs and audio ---------------------------------------------------------
def sample_photos(n: int = 4) -> list[tuple[str, Image.Image]]:
    """Up to four real photographs (people, objects, an animal, a scene) as ``(name, RGB image)``,
    at most 480 px on the longer side; see ``PHOTOS`` for what each shows and its licence."""
    from pathlib import Path

    from PIL import Image

    folder = Path(__file__).with_name("photos")
    out = []
    for name in list(PHOTOS)[:max(0, n)]:
        with Image.open(folder / f"{name}.jpg") as img:
            out.append((name, img.convert("RGB")))
    return out


def image_array(images: Iterable[Any], *, height: int, width: int, channels: int = 3, layout: str = "NCHW",
                low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """A float32 batch of ``images`` squashed to ``height`` x ``width`` (bilinear), pixel values mapped
    linearly from 0..255 to ``low..high``: the preprocessing of a model whose own is unknown."""
    import numpy as np
    from PIL import Image

    arrays = []
    for item in images:
        img = item[1] if isinstance(item, tuple) else item
        img = img.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
        pixels = np.asarray(img, dtype=np.float32).reshape(height, width, channels)
        arrays.append(low + pixels / np.float32(255) * np.float32(high - low))
    batch = np.stack(arrays).astype(np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if layout == "NCHW" else batch)


def sample_audio(n: int = 2, *, rate: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """``n`` deterministic speech-like signals, float32 ``[n, rate * seconds]`` in [-1, 1]: voiced
    syllables (a glottal pitch with vowel-like formant harmonics) under a syllable envelope, pauses
    and a little breath noise, so voice activity, spectrogram front ends and ASR models see speech-shaped audio."""
    import numpy as np

    length = int(round(rate * seconds))
    t = np.arange(length) / rate
    out = np.zeros((n, length), np.float64)
    for index in range(n):
        rng = np.random.default_rng(104729 + index)
        pitch = rng.uniform(95, 220) * (1 + 0.08 * np.sin(2 * math.pi * rng.uniform(2, 5) * t))
        phase = 2 * math.pi * np.cumsum(pitch) / rate
        formants = rng.uniform((500, 1200, 2400), (800, 1800, 3000))
        voice = sum(np.sin(k * phase) / k * sum(np.exp(-((k * pitch - f) / 180.0) ** 2) for f in formants)
                    for k in range(1, 30))
        syllables = np.clip(np.sin(2 * math.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
        pause = (t > rng.uniform(0.3, 0.5) * seconds) & (t < rng.uniform(0.55, 0.7) * seconds)
        signal = voice * syllables * ~pause + 0.01 * rng.standard_normal(length)
        out[index] = 0.5 * signal / (np.abs(signal).max() + 1e-12)
    return out.astype(np.float32)


# --- preprocessing -------------------------------------------------------------------
def preprocess_image(
    image: Image.Image | np.ndarray,
    *,
    input_size: Sequence[int] | int = (3, 224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
    crop_pct: float | None = DEFAULT_CROP_PCT,
    crop_mode: str | None = "center",
    **_ignored: Any,
) -> np.ndarray:
    """One image as a float32 ``(1, C, H, W)`` array, exactly as timm's eval
    transform would make it (``transforms_imagenet_eval``).

    Modes: "center" resizes the shorter side to ``floor(size / crop_pct)`` (for
    a non-square target, the side whose ratio is smaller) keeping the aspect
    ratio, then centre-crops; "squash" resizes both sides to
    ``floor(size / crop_pct)`` and centre-crops; "border" fits the longer side
    and pads with the mean colour. Extra keys of a timm data config (e.g.
    ``num_classes``) are accepted and ignored, so ``**data_config`` works.
    """
    import numpy as np
    from PIL import Image

    channels, height, width = _parse_input_size(input_size)
    mode = crop_mode or "center"  # timm treats None as "center" and a falsy crop_pct as the default
    pct = crop_pct or DEFAULT_CROP_PCT
    if interpolation not in _INTERPOLATIONS:
        raise UnsupportedError(f"interpolation {interpolation!r} is not supported",
                               hint=f"use one of {', '.join(_INTERPOLATIONS)}")
    if len(mean) != channels or len(std) != channels:
        raise UsageError(f"mean and std need {channels} values for {channels} channels, "
                         f"got {len(mean)} and {len(std)}")
    img = _as_pil(np, Image, image, "RGB" if channels == 3 else "L")
    resample = getattr(Image.Resampling, interpolation.upper())
    scale = (math.floor(height / pct), math.floor(width / pct))
    fill = 0
    if mode == "squash":
        img = _resize(img, scale, resample)
    elif mode == "center":
        if scale[0] == scale[1]:
            img = _resize(img, _shorter_side_size(img, scale[0]), resample)
        else:
            img = _resize(img, _keep_ratio_size(img, scale, longest=0.0), resample)
    elif mode == "border":
        img = _resize(img, _keep_ratio_size(img, scale, longest=1.0), resample)
        fill = tuple(round(255 * v) for v in mean)
    else:
        raise UnsupportedError(f"crop_mode {crop_mode!r} is not supported",
                               hint="use 'center', 'squash' or 'border'")
    pixels = np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels)
    pixels = _center_crop_or_pad(np, pixels, height, width, fill)
    # Same float32 arithmetic as ToTensor (x / 255) then Normalize ((x - mean) / std).
    array = pixels.astype(np.float32) / np.float32(255)
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])


def preprocess_images(images: Iterable[Any], **cfg: Any) -> np.ndarray:
    """A batch ``(N, C, H, W)``; ``images`` may be images or ``(name, image)``
    pairs as :func:`sample_images` returns them. ``cfg`` as :func:`preprocess_image`."""
    import numpy as np

    arrays = []
    for item in images:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            item = item[1]
        arrays.append(preprocess_image(item, **cfg))
    if not arrays:
        raise UsageError("preprocess_images got no images", hint="pass at least one, e.g. sample_images()")
    return np.concatenate(arrays, axis=0)


def _parse_input_size(input_size: Sequence[int] | int) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        return 3, input_size, input_size
    size = tuple(int(v) for v in input_size)
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"input_size must be (channels, height, width), got {input_size!r}")
    if size[0] not in (1, 3):
        raise UnsupportedError(f"images with {size[0]} channels are not supported",
                               hint="sample images are RGB (3 channels) or greyscale (1)")
    return size


def _as_pil(np: Any, image_module: Any, image: Any, mode: str) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = image_module.fromarray(np.asarray(image, dtype=np.uint8))
    if not isinstance(image, image_module.Image):
        raise UsageError(f"expected a PIL image or a uint8 HWC array, got {type(image).__name__}")
    return image if image.mode == mode else image.convert(mode)


def _resize(img: Image.Image, size_hw: tuple[int, int], resample: Any) -> Image.Image:
    """torchvision's F.resize on a PIL image: a no-op when the size already matches."""
    height, width = size_hw
    if (img.height, img.width) == (height, width):
        return img
    return img.resize((width, height), resample)


def _shorter_side_size(img: Image.Image, size: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``: shorter side to ``size``, longer side truncated."""
    h, w = img.height, img.width
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _keep_ratio_size(img: Image.Image, target_hw: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm ``ResizeKeepRatio.get_params`` without the random parts."""
    ratio_h, ratio_w = img.height / target_hw[0], img.width / target_hw[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(img.height / ratio), round(img.width / ratio)


def _center_crop_or_pad(np: Any, pixels: np.ndarray, height: int, width: int,
                        fill: int | tuple[int, ...]) -> np.ndarray:
    """torchvision ``CenterCrop`` / timm ``CenterCropOrPad`` on an HWC array."""
    h, w = pixels.shape[:2]
    if height > h or width > w:
        pad_top = (height - h) // 2 if height > h else 0
        pad_left = (width - w) // 2 if width > w else 0
        pad_bottom = (height - h + 1) // 2 if height > h else 0
        pad_right = (width - w + 1) // 2 if width > w else 0
        padded = np.empty((h + pad_top + pad_bottom, w + pad_left + pad_right, pixels.shape[2]), np.uint8)
        padded[...] = np.asarray(fill, dtype=np.uint8)
        padded[pad_top:pad_top + h, pad_left:pad_left + w] = pixels
        pixels = padded
        h, w = pixels.shape[:2]
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return pixels[top:top + height, left:left + width]

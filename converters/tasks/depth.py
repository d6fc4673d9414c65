"""depth-estimation (``*ForDepthEstimation``: DPT, Depth Anything, ...): ``pixel_values [batch, 3, H, W]`` ->
``predicted_depth [batch, H, W]``, the relative (inverse) depth map the head predicts.

Parity inputs: seeded random pixels at three batch sizes, then the real photographs through the repo's own
image processor (at the model's input size: a processor that keeps the aspect ratio is asked for the square
size the graph takes, and the report says so). The ``depth`` check (``depth_results``) reads what a user of
a depth map reads: per photograph, the largest difference relative to the map's range, and the ordering of
pixel pairs (which of two points is nearer), on pairs whose reference depths differ by at least 1% of the
range.
"""

from __future__ import annotations

from typing import Any

OUTPUT = "predicted_depth"
PAIRS = 20000  # pixel pairs drawn per photograph for the ordering check
PAIR_GAP = 0.01  # of the range: pairs closer than this are ties, not an ordering

_BOUNDS = {"float64": (1e-4, 0.9999), "float32": (1e-3, 0.999), "float16": (2e-2, 0.99), "bfloat16": (5e-2, 0.98)}


def bounds(precision: str) -> tuple[float, float]:
    """(largest difference over the map's range, share of pixel pairs ordered alike) for ``precision``."""
    return _BOUNDS.get(precision, (0.1, 0.95))


def _square(preproc: dict[str, Any] | None, config: dict[str, Any]) -> tuple[int, int]:
    size = (preproc or {}).get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    backbone = config.get("backbone_config") or {}
    side = config.get("image_size") or backbone.get("image_size") or 384
    return (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))


def input_spec(config: dict[str, Any], preproc: dict[str, Any] | None) -> list[dict[str, Any]]:
    h, w = _square(preproc, config)
    return [{"name": "pixel_values", "shape": ["batch", int(config.get("num_channels") or 3), h, w],
             "dtype": "float32", "layout": "NCHW"}]


def io_contract(config: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": ["pixel_values"], "outputs": [OUTPUT],
            "axes": {"pixel_values": ["batch", "channels", "height", "width"], OUTPUT: ["batch", "height", "width"]},
            "depth": "relative (inverse) depth, larger is nearer for DPT / Depth Anything; resize it to the image "
                     "(bicubic) as the image processor's post_process_depth_estimation does"}


def input_sets(record: Any, image_processor: Any) -> list[Any]:
    """Random pixels and the photographs at the graph's square size (``vision.image_sets``)."""
    from zoo.converters.tasks.vision import image_sets

    return image_sets(record, image_processor, square=True)


def depth_results(names: list[str], ran: list, precision: str) -> list[dict[str, Any]]:
    """Per real photograph: max |reference - candidate| over the reference map's range, and the share of
    pixel pairs (seeded, depths at least 1% of the range apart) that both maps order alike."""
    import numpy as np

    from zoo.converters.tasks.agreement import sample_pairs

    rel_bound, order_bound = bounds(precision)
    results = []
    for input_set, r, c in sample_pairs(names, ran, OUTPUT, 3):
        rng = np.random.default_rng(0)
        worst_rel, worst_order, pairs = 0.0, 1.0, 0
        for ref, cand in zip(r.astype(np.float64), c.astype(np.float64)):
            span = float(ref.max() - ref.min()) or 1.0
            worst_rel = max(worst_rel, float(np.abs(ref - cand).max()) / span)
            a, b = rng.integers(0, ref.size, PAIRS), rng.integers(0, ref.size, PAIRS)
            fr, fc = ref.ravel(), cand.ravel()
            far = np.abs(fr[a] - fr[b]) >= PAIR_GAP * span
            if far.any():
                alike = np.sign(fr[a] - fr[b])[far] == np.sign(fc[a] - fc[b])[far]
                worst_order = min(worst_order, float(alike.mean()))
                pairs += int(far.sum())
        reasons = []
        if worst_rel > rel_bound:
            reasons.append(f"depth differs by up to {worst_rel:.2e} of the map's range > {rel_bound}")
        if worst_order < order_bound:
            reasons.append(f"pixel pairs ordered alike {worst_order:.2%} < {order_bound:.1%}")
        results.append({"check": "depth", "input_set": input_set.name, "output": OUTPUT, "passed": not reasons,
                        "reason": "; ".join(reasons) or None,
                        "figures": {"images": int(r.shape[0]), "height": int(r.shape[1]), "width": int(r.shape[2]),
                                    "max_diff_of_range": worst_rel, "pair_order_agreement": worst_order,
                                    "pairs": pairs, "bounds": {"diff_of_range": rel_bound, "pair_order": order_bound}}})
    return results

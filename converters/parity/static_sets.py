"""The input sets a candidate of static shapes can take, and the rules that keep its task check honest.

A static-shape candidate (litert-torch's tflite, a static jax export) takes one shape only: ``static_sets`` feeds
it the sets of exactly that shape and re-batches those differing only in their batch; ``export_set`` picks what
the static rung traces (the real samples when they would not fit the first set); ``unchecked_samples`` fails a
report none of whose real samples reached the candidate, whatever the format.
"""

from __future__ import annotations

from typing import Any


def static_sets(ctx: Any, input_sets: list, input_names: list[str]) -> tuple[list, list[str], list[str]]:
    """The input sets a candidate can take: all of them, or, when an edge exported static shapes (its
    ``io_contract``), those of exactly the exported shapes, and those that differ only in their batch
    re-batched to the exported batch (so a static batch-2 model still sees batch 1 and 3 and the real
    samples, a chunk at a time). Returns (sets, names of the sets it cannot take, names re-batched)."""
    contracts = [v["io_contract"] for v in ctx.info.values() if isinstance(v, dict) and isinstance(v.get("io_contract"), dict)]
    recomputed = [c for c in contracts if c.get("self_cache") == "recomputed"]
    if recomputed:
        return _empty_past(input_sets, input_names, recomputed[0])
    static = [c for c in contracts if c.get("shapes") == "static"]
    if not static:
        return list(input_sets), [], []
    shapes = {i["name"]: tuple(i["shape"]) for i in static[0]["inputs"]}
    kept, skipped, rebatched = [], [], []
    for s in input_sets:
        got = {n: tuple(s.feeds[n].shape) for n in input_names}
        if all(got[n] == shapes.get(n) for n in input_names):
            kept.append(s)
            continue
        batches = {shapes[n][0] for n in input_names if shapes.get(n)}
        own = {got[n][0] for n in input_names if got[n]}
        if (len(batches) == 1 and len(own) == 1 and all(shapes.get(n) and got[n][1:] == shapes[n][1:] for n in input_names)
                and isinstance(next(iter(batches)), int)):
            kept.extend(rebatch(s, next(iter(batches)), next(iter(own))))
            rebatched.append(s.name)
        else:
            skipped.append(s.name)
    return kept, skipped, rebatched


def _empty_past(input_sets: list, input_names: list[str], contract: dict) -> tuple[list, list[str], list[str]]:
    """A decoder without a self-attention cache (an encoder-decoder's static tflite: tasks/seq2seq_lite.py) re-runs
    the tokens so far: it takes the sets whose self-attention past is empty (the real prompts), not a random cache;
    without an encoder mask (Whisper) only a cross-attention cache of the static encoder length."""
    past = [n for n in input_names if n.startswith("past_key_values.") and ".encoder." not in n]
    cross = [n for n in input_names if n.startswith("past_key_values.") and ".encoder." in n]
    fixed = None if "encoder_attention_mask" in input_names else contract.get("encoder_sequence")
    kept = [s for s in input_sets if all(s.feeds[n].shape[2] == 0 for n in past)
            and (fixed is None or all(s.feeds[n].shape[2] == fixed for n in cross))]
    return kept, [s.name for s in input_sets if s not in kept], []


def export_set(input_sets: list, input_names: list[str], rung: str) -> Any:
    """The input set an export traces: the first; on the static-shapes rung, the first real sample set when the
    samples would not fit the first set's shapes (CLIP's photographs against its label prompts: other image and
    text counts than the random sets), so the static candidate is checked on the samples and by its task check."""
    first = input_sets[0]
    samples = [s for s in input_sets if s.kind == "sample" and all(n in s.feeds for n in input_names)]
    if rung != "static shapes" or not samples:
        return first

    def fits(s: Any) -> bool:  # the same shapes, but for one shared batch (static_sets re-batches those)
        a, b = ([tuple(x.feeds[n].shape) for n in input_names] for x in (s, first))
        return all(x[1:] == y[1:] for x, y in zip(a, b)) and len({x[0] for x in a if x}) <= 1
    return first if any(fits(s) for s in samples) else samples[0]


def unchecked_samples(report: Any, input_sets: list, checked: list) -> None:
    """Fail ``report`` when the source has real samples and none of them reached the candidate (a static export
    of other shapes): its sample and task checks (labels, detections, masks, ...) could not run, and a candidate of
    any format is verified only with them. (A declared task whose check ran but compared nothing is failed by
    ``parity.tasks.run_task_checks`` itself.)"""
    samples = [s.name for s in input_sets if s.kind == "sample"]
    if samples and not any(s.kind == "sample" for s in checked):
        why = (f"the real samples ({', '.join(samples)}) do not fit the static shapes the candidate takes, so its "
               "sample and task checks could not run")
        report.passed = False
        report.error = f"{report.error}; {why}" if report.error else why


def rebatch(input_set: Any, batch: int, own: int) -> list:
    """``input_set`` (batch ``own``) as chunks of ``batch`` rows; the last chunk is filled with the set's
    first rows again (a copy of a row computes the same, so nothing is compared twice in effect)."""
    from zoo.converters.parity.report import InputSet

    chunks = []
    for start in range(0, own, batch):
        rows = [(start + i) % own for i in range(batch)]
        feeds = {k: (v[rows] if getattr(v, "ndim", 0) and v.shape[0] == own else v) for k, v in input_set.feeds.items()}
        chunks.append(InputSet(f"{input_set.name}[{start}:{min(start + batch, own)}]", feeds, kind=input_set.kind))
    return chunks

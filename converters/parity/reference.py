"""Run the source model on every input set before anything is converted.

A source that raises on the inputs parity would feed it says nothing about a conversion: the inputs do
not fit the model (an image size its strides cannot divide, a sample rate it has no branch for, a state
whose batch differs from the audio's). That is :class:`zoo.errors.SourceModelError` (exit 10, HTTP
424), naming the input set, the inputs that reach the failing node, how each was made and what to
pass instead; never "parity failed", and no converter runs first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from zoo import errors

if TYPE_CHECKING:
    from zoo.converters.parity.report import InputSet

_NODE = re.compile(r"Name:\s*'([^']+)'|node (?:name )?'([^']+)'", re.I)  # onnxruntime's and others' node names


def run_source(reference: Callable[[dict[str, Any]], Any], input_sets: list[InputSet], *, label: str,
               notes: Mapping[str, str] | None = None, model: Any = None) -> dict[str, list[Any]]:
    """The reference's outputs on every set (set name -> outputs), or a SourceModelError for the first set
    it raises on. ``model``: the source's ONNX ModelProto, to trace the failing node back to its inputs."""
    import numpy as np

    outputs: dict[str, list[Any]] = {}
    for input_set in input_sets:
        try:
            result = reference({k: np.array(v, copy=True) for k, v in input_set.feeds.items()})
        except Exception as exc:  # noqa: BLE001 - any failure of the source is the finding
            raise source_error(label, input_set, f"{type(exc).__name__}: {exc}", notes or {}, model) from exc
        if hasattr(result, "shape") or np.isscalar(result):
            result = [result]
        elif isinstance(result, Mapping):
            result = list(result.values())
        outputs[input_set.name] = [np.asarray(r) for r in result]
    return outputs


def suspect_inputs(error: str, names: list[str], model: Any = None) -> list[str]:
    """The inputs an error is about: those it names, then those that reach the node it names."""
    found = [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w.])", error)]
    if model is not None:
        from zoo.converters.parity.infer import inputs_reaching

        for match in _NODE.finditer(error):
            node = next(g for g in match.groups() if g)
            found.extend(inputs_reaching(model, node))
    return list(dict.fromkeys(found))


def source_error(label: str, input_set: InputSet, error: str, notes: Mapping[str, str],
                 model: Any = None) -> errors.SourceModelError:
    names = list(input_set.feeds)
    suspects = suspect_inputs(error, names, model) or names
    suspects.sort(key=lambda n: "given with --input" not in notes.get(n, ""))  # what the user set, first
    shapes = {n: f"{input_set.feeds[n].dtype}{list(input_set.feeds[n].shape)}" for n in names}
    described = "; ".join(f"{n} {shapes[n]}" + (f" ({notes[n]})" if n in notes else "") for n in suspects)
    example = " ".join(f"--input {n}:{'x'.join(str(d) for d in input_set.feeds[n].shape)}:{input_set.feeds[n].dtype}"
                       for n in suspects[:2])
    return errors.SourceModelError(
        f"the source model {label} itself fails on input set {input_set.name}, so nothing was converted: "
        f"{error[:700]}; the input(s) that reach the failure: {described}",
        hint=f"give the inputs the model expects: --input NAME:SHAPE[:DTYPE[:LOW..HIGH|values]] (now: {example}), "
             "real inputs with --inputs FILE.npz, or real samples with --samples DIR",
        input_set=input_set.name, inputs=suspects, shapes=shapes, made_up={n: notes[n] for n in names if n in notes})

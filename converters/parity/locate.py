"""Where a failed conversion first diverges, for every edge zoo can look inside, on the inputs that failed.

``locate`` picks the edge to look at and the input set to look with, then calls the edge's locator:

- a lossy variant (onnx -> onnx-fp16/int8, tflite -> tflite-fp16/int8): node by node against its own float input
  file (``nodediff``), with where the relative error grows most over its inputs';
- torch -> onnx: layer by layer with torch hooks (``divergence``);
- torch -> pt2, torch -> tflite (litert-torch): layer by layer with torch hooks against the program's nodes or the
  file's tensors (``layers``); onnx -> pt2 (zoo's compiler): node by node against onnxruntime (``layers``);
- torch -> jax (torchax + jax.export): module by module against torchax's eager run of the module, the function the
  export traced (``torchax_layers``); the serialised StableHLO keeps no intermediate values, so when the eager run
  matches, the report says the failure did not reproduce eagerly and how far the file is from that run.
- onnx -> tf, onnx -> tflite (onnx2tf): node by node against onnxruntime, every node output exposed and the graph
  converted again (``onnx2tf_layers``); after a torch -> onnx edge whose layers all match, on that edge's ONNX file.

jax2tf's jax -> tf has no locator (one XlaCallModule op, no intermediate values): the report says so plainly, and when
no earlier edge was found wrong, each file of the chain is run on the set so the note names the edge whose output
leaves tolerance first (``hops``, ``edge_out``). The input set is
the one that failed: the first failed task check's set (a detection, mask or CTC check on a photograph or a clip),
else the set of the worst output out of tolerance, so the locator runs on the feeds that show the error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VARIANTS = ("onnx-fp16", "onnx-int8", "tflite-int8", "tflite-fp16")
LAYERED = {("torch", "onnx"), ("torch", "pt2"), ("torch", "tflite"), ("torch", "jax")}
ONNX2TF = {("onnx", "tf"), ("onnx", "tflite")}


def failing_set(report: Any, sets: list) -> tuple[Any, str]:
    """The input set that shows the failure, and why it was chosen."""
    by_name = {s.name: s for s in sets}
    for task in report.tasks:
        if task.get("passed") is False and task.get("input_set") in by_name:
            return by_name[task["input_set"]], f"the {task['check']} check failed on {task['input_set']}"
    for check in report.worst(len(report.checks)):
        if not check.passed and check.input_set in by_name:
            return by_name[check.input_set], f"{check.output} left tolerance on {check.input_set}"
    return sets[0], f"no failing set was recorded: the first set, {sets[0].name}"


def locate(report: Any, edges: list[tuple[str, str]], hops: list[Path], sets: list, input_names: list[str],
           torch_model: Any, tolerance: Any, source_file: Path | None = None,
           output_names: list[str] | None = None) -> dict[str, Any] | None:
    """The parity report's ``divergence`` for a failed ``report`` of the chain ``edges`` (one file per edge in
    ``hops``; ``source_file``: the source's own file, an ONNX source's; ``output_names``: the source's, to run the
    chain's files by), or None when it passed. Never raises: a diagnostic must not turn a parity failure into a
    crash."""
    if report.passed or not sets or not hops:
        return None
    chosen, why = failing_set(report, sets)
    where = {"input_set": chosen.name, "why": why}
    last = edges[-1]
    before = hops[-2] if len(hops) >= 2 else source_file  # a variant of the source file itself (an .onnx source)
    if last[1] in VARIANTS and before is not None and Path(before).suffix == Path(hops[-1]).suffix:
        edge = f"{last[0]}->{last[1]}"
        return {**where, **_guarded(edge, lambda: _variant(Path(before), hops[-1], chosen.feeds, input_names, tolerance,
                                                           edge))}
    first = edges[0]
    edge = f"{first[0]}->{first[1]}"
    if first == ("onnx", "pt2") and source_file is not None and Path(source_file).suffix == ".onnx":
        from zoo.converters.parity.layers import locate_onnx_pt2

        return {**where, **_guarded(edge, lambda: locate_onnx_pt2(source_file, hops[0], chosen.feeds, input_names,
                                                                  atol=tolerance.atol, rtol=tolerance.rtol,
                                                                  scaled=tolerance.scaled))}
    k = next((i for i, e in enumerate(edges) if e in ONNX2TF), None)
    onnx_in = (hops[k - 1] if k else source_file) if k is not None else None
    if k is not None and (onnx_in is None or Path(onnx_in).suffix != ".onnx" or k >= len(hops)):
        k = None  # no ONNX file to hold the converted one against
    if first not in LAYERED or torch_model is None:
        if k == 0:
            return {**where, **_guarded(edges[0][0] + "->" + edges[0][1], lambda: _onnx2tf(
                Path(onnx_in), hops[0], edges[0][1], chosen.feeds, input_names, tolerance))}
        return {**where, "edge": edge, "node": None, "located": False,
                "note": f"zoo cannot compare intermediate tensors across {_edges_text(edges)}: only the final outputs "
                        "were compared (no locator for this route)"}
    found = _guarded(edge, lambda: _layered(first, torch_model, hops[0], chosen.feeds, input_names, tolerance))
    if k and (found is None or found.get("located") is False and not found.get("module")):  # torch -> onnx matched
        later_edge = f"{edges[k][0]}->{edges[k][1]}"
        inside = _guarded(later_edge, lambda: _onnx2tf(Path(onnx_in), hops[k], edges[k][1], chosen.feeds, input_names,
                                                       tolerance))
        inside["before"] = (f"every layer of the {edge} conversion matches" if found is None else found.get("note"))
        return {**where, **inside}
    later = _edges_text(edges[1:])
    if found is None:
        found = {"edge": edge, "module": None, "located": False,
                 "note": f"every layer of the {edge} conversion matches" + (f"; the difference comes from {later}, "
                         "which zoo cannot look inside" if later else "; it appears only in the final outputs")}
    elif later and found.get("located") is False and found.get("compared"):  # every layer of this edge matched
        found["note"] += f"; or it comes from {later}, which zoo cannot look inside"
    if later and found.get("located") is False and not found.get("module"):
        _which_edge(found, edges, hops, torch_model, chosen, input_names, output_names, tolerance)
    return {**where, **found}


def _which_edge(found: dict, edges: list, hops: list[Path], torch_model: Any, chosen: Any, input_names: list[str],
                output_names: list[str] | None, tol: Any) -> None:
    """When no edge could be looked inside far enough: each file of the chain checked against the source on the
    set that failed, by parity's own rule (``check_parity``), so the note says which edge's output is the first to
    leave tolerance (``hops``)."""
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.runners import artifact_runner, torch_runner

    try:
        reference = {chosen.name: torch_runner(torch_model)(chosen.feeds)}
        table = []
        for (a, b), hop in zip(edges, hops):
            report = check_parity(None, artifact_runner(Path(hop), input_names, output_names), [chosen],
                                  output_names=output_names, tolerance=tol, reference_outputs=reference)
            measured = [c.max_abs_diff for c in report.checks if c.max_abs_diff == c.max_abs_diff]  # not NaN
            table.append({"edge": f"{a}->{b}", "file": Path(hop).name, "max_abs_diff": max(measured, default=None),
                          "within": report.passed, "compared": len(measured)})
    except Exception as exc:  # noqa: BLE001 - the note stands without the table
        found["hops_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return
    found["hops"] = table
    first_out = next((h for h in table if not h["within"]), None)
    if first_out is None or first_out is table[0] or not all(h["compared"] for h in table):
        return
    before = table[table.index(first_out) - 1]
    found["edge_out"] = first_out["edge"]
    found["note"] = (f"every layer of the {found['edge']} conversion matches and its file's outputs are within tolerance "
                     f"of the source's on this set ({before['file']}: max abs diff {before['max_abs_diff']:.3g}); "
                     f"{first_out['edge']}'s file is the first out of it ({first_out['file']}: max abs diff "
                     f"{first_out['max_abs_diff']:.3g}): the error is in {first_out['edge']}, which keeps no "
                     "intermediate values zoo can compare")


def _variant(before: Path, after: Path, feeds: dict, input_names: list[str], tol: Any, edge: str) -> dict[str, Any]:
    from zoo.converters.parity.nodediff import locate_between

    return locate_between(before, after, feeds, input_names, atol=tol.atol, rtol=tol.rtol, scaled=tol.scaled, edge=edge)


def _layered(edge: tuple[str, str], tm: Any, path: Path, feeds: dict, input_names: list[str], tol: Any) -> dict | None:
    if edge == ("torch", "onnx"):
        from zoo.converters.parity.divergence import locate_divergence

        return locate_divergence(tm, path, feeds, atol=tol.atol, rtol=tol.rtol)
    if edge == ("torch", "jax"):
        from zoo.converters.parity.torchax_layers import locate_jax

        return locate_jax(tm, path, feeds, input_names, atol=tol.atol, rtol=tol.rtol)
    from zoo.converters.parity.layers import locate_litert, locate_pt2

    fn = locate_pt2 if edge == ("torch", "pt2") else locate_litert
    return fn(tm, path, feeds, input_names, atol=tol.atol, rtol=tol.rtol)


def _onnx2tf(onnx_path: Path, artifact: Path, target: str, feeds: dict, input_names: list[str], tol: Any) -> dict:
    import onnx

    from zoo.converters.parity.onnx2tf_layers import locate_onnx2tf

    outputs = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    return locate_onnx2tf(onnx_path, artifact, feeds, input_names, outputs, target=target, atol=tol.atol,
                          rtol=tol.rtol, scaled=tol.scaled)


def _guarded(edge: str, fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - best effort, said plainly
        return {"edge": edge, "node": None, "located": False,
                "note": f"zoo could not look inside the {edge} conversion: {type(exc).__name__}: {str(exc)[:200]}"}


def _edges_text(edges: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a}->{b}" for a, b in edges)


def describe(divergence: dict[str, Any] | None) -> list[str]:
    """The report's ``divergence`` as lines for people (the CLI's error, ``zoo.testing``'s assertion)."""
    if not divergence:
        return []
    on = f" (on {divergence['input_set']}: {divergence['why']})" if divergence.get("input_set") else ""
    lines = []
    if divergence.get("module"):
        node = divergence.get("onnx_node") or divergence.get("label") or divergence.get("node")
        diff = divergence.get("max_abs_diff")
        target = "ONNX node" if divergence.get("onnx_node") else f"{divergence.get('edge', 'the converted')} node"
        against = divergence.get("against") or f"{target} {node} ({divergence['op_type']})"
        lines.append(f"first diverging layer: {divergence['module']} ({divergence['module_type']}) -> {against}: "
                     f"{divergence['what']}"
                     f"{'' if diff is None else f', max abs diff {diff:.3g}'}{on}")
    elif divergence.get("node"):
        figures = (f"max rel diff {divergence['max_rel_diff']:.3g}, {divergence.get('elements_out', '?')} elements out "
                   "of tolerance" if divergence.get("max_rel_diff") is not None
                   else divergence.get("what") or "differs")  # a shape no layout explains, an op that raised
        lines.append(f"first diverging node of {divergence['edge']}: {divergence.get('label') or divergence['node']} "
                     f"({divergence['op_type']}): {figures}{on}")
        if divergence.get("note"):  # what qualifies the finding (a conversion that changed when its tensors were exposed)
            lines.append(divergence["note"])
    else:
        lines.append(f"{divergence.get('note') or divergence.get('error')}{on}")
    grows = divergence.get("grows_most")
    if grows:
        lines.append(f"the error grows most at node #{grows['index']} {grows.get('label') or grows['node']} "
                     f"({grows['op_type']}): relative error {grows['input_rel_diff']:.3g} in, {grows['max_rel_diff']:.3g} out")
    return lines

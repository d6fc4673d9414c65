"""``zoo diff A B [--json]``: per-node comparison of two artifacts of the same model (an fp32 ONNX file and
its fp16 or int8 variant, a .tflite file and its quantised one): every intermediate tensor the two share, in
A's graph order, with its largest absolute and relative error and how much of it each node adds over its inputs
(the node where it grows most is named), so a user sees where a variant loses accuracy.
Both run on the same seeded inputs made from A's input spec, or on ``--inputs FILE.npz``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.cli.output import print_json, say
from zoo.errors import EXIT_OK
from zoo.settings import Settings

SUFFIXES = (".onnx", ".tflite", ".pt2")
COMPARABLE = ({".onnx"}, {".tflite"}, {".onnx", ".pt2"})  # an ONNX file and the .pt2 zoo compiled from it, by ONNX names


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("diff", help="per-node comparison of two artifacts of one model (e.g. onnx and onnx-int8)",
                       description="Run both artifacts on the same inputs and compare every intermediate tensor they "
                                   "share by name, in the first one's graph order: the largest relative error per node.")
    d.add_argument("a", type=Path, help="an artifact file (.onnx, .tflite, .pt2) or a zoo artifact directory")
    d.add_argument("b", type=Path, help="the artifact to compare with A (same model, same kind of file)")
    d.add_argument("--inputs", type=Path, metavar="FILE.npz", help="the inputs, one array per input name "
                                                                    "(default: seeded random inputs from A's spec)")
    d.add_argument("--top", type=int, default=10, metavar="N", help="rows printed: the N worst (the JSON has all)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=cmd_diff)


def artifact_file(path: Path) -> Path:
    """The model file of ``path``: the file itself, or the primary file of a zoo artifact directory."""
    if path.is_dir():
        manifest = path / "zoo.json"
        candidates = [p for p in sorted(path.iterdir()) if p.suffix in SUFFIXES]
        if manifest.is_file():
            primary = json.loads(manifest.read_text()).get("primary")
            if primary and (path / primary).is_file():
                return path / primary
        if len(candidates) == 1:
            return candidates[0]
        raise errors.UsageError(f"{path} holds no single .onnx, .tflite or .pt2 file", hint="pass the file itself")
    if not path.is_file():
        raise errors.UsageError(f"{path} does not exist", hint="pass an artifact file or directory (zoo cache ls)")
    if path.suffix not in SUFFIXES:
        raise errors.UnsupportedFormatError(f"zoo diff compares .onnx, .tflite and .pt2 files, not {path.name}")
    return path


def input_spec(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    if path.suffix == ".onnx":
        from zoo.converters.parity.inputs import onnx_signature

        spec = onnx_signature(path)[0]
        return spec, [s["name"] for s in spec]
    if path.suffix == ".pt2":
        from zoo.converters.loaders.pt2_archive import pt2_signature

        spec = pt2_signature(path)[0]
        return spec, [s["name"] for s in spec]
    from zoo.converters.loaders.tflite_file import tflite_signature

    spec = tflite_signature(path)[0]
    return spec, [s["name"] for s in spec]


def make_feeds(spec: list[dict[str, Any]], inputs: Path | None) -> dict[str, Any]:
    import numpy as np

    if inputs is not None:
        with np.load(inputs, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    rng = np.random.default_rng(0)
    feeds = {}
    for item in spec:
        shape = [d if isinstance(d, int) and d > 0 else (1 if i == 0 else 16) for i, d in enumerate(item["shape"])]
        dtype = np.dtype(item["dtype"]) if item["dtype"] not in ("float", "int") else np.float32
        if dtype.kind in "iu":
            feeds[item["name"]] = rng.integers(0, 100, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[item["name"]] = np.ones(shape, bool)
        else:
            feeds[item["name"]] = rng.standard_normal(shape).astype(dtype)
    return feeds


def diff(a: Path, b: Path, inputs: Path | None = None) -> dict[str, Any]:
    from zoo.converters.parity.nodediff import compare, grows_most, values_of

    a, b = artifact_file(a), artifact_file(b)
    if not any({a.suffix, b.suffix} <= kinds for kinds in COMPARABLE) or a.suffix == b.suffix == ".pt2":
        raise errors.UsageError(f"{a.name} and {b.name} are kinds of file zoo diff cannot match node by node",
                                hint="compare two .onnx files, two .tflite files, or an .onnx file and the .pt2 made from it")
    spec, names = input_spec(a)
    other, _ = input_spec(b)
    if [(s["name"], len(s["shape"])) for s in spec] != [(s["name"], len(s["shape"])) for s in other]:
        raise errors.UsageError(f"{a.name} and {b.name} take different inputs, so they are not two artifacts of one model: "
                                f"{[(s['name'], s['shape']) for s in spec]} vs {[(s['name'], s['shape']) for s in other]}",
                                hint="compare a format with its variant (onnx with onnx-fp16/onnx-int8, tflite with tflite-int8)")
    feeds = make_feeds(spec, inputs)
    runs = []
    for path in (a, b):
        try:
            runs.append(values_of(path, feeds, names))
        except errors.ZooError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime's own message says what it could not do
            raise errors.InvalidModelError(f"cannot run {path.name} on the inputs: {type(exc).__name__}: {str(exc)[:300]}",
                                           hint="pass --inputs FILE.npz with arrays the model takes") from exc
    rows = compare(*runs)
    if not rows:
        raise errors.UsageError(f"{a.name} and {b.name} share no intermediate tensor by name",
                                hint="zoo diff compares two artifacts of the same model (a format and its variant)")
    worst = max(rows, key=lambda r: r["max_rel_diff"])
    return {"a": str(a), "b": str(b), "inputs": {k: list(v.shape) for k, v in feeds.items()}, "nodes": rows,
            "matched": len(rows), "worst": worst, "grows_most": grows_most(rows)}


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    result = diff(args.a, args.b, args.inputs)
    if args.json:
        print_json(result)
        return EXIT_OK
    say(f"{result['matched']} matched nodes, in {Path(result['a']).name}'s graph order; the {args.top} largest "
         f"relative errors:")
    top = sorted(result["nodes"], key=lambda r: -r["max_rel_diff"])[: max(args.top, 0)]
    order = {id(r): i for i, r in enumerate(result["nodes"])}
    for row in sorted(top, key=lambda r: order[id(r)]):
        say(f"  #{order[id(row)]:<5} {row['op_type']:<22} {row['node'][-48:]:<48} rel {row['max_rel_diff']:.3g}  "
             f"abs {row['max_abs_diff']:.3g}")
    grows = result["grows_most"]
    say(f"the error grows most at #{grows['index']} {grows['op_type']} {grows['node'][-48:]}: relative error "
        f"{grows['input_rel_diff']:.3g} in its inputs, {grows['max_rel_diff']:.3g} out")
    return EXIT_OK

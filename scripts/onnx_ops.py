"""The op inventory behind converters/onnx_torch/module.py: export every tiny family
the tests use (both torch.onnx exporters, tf2onnx for Keras) and list which
ONNX op types (with their domain and opset) appear in which files.

    .venv/bin/python scripts/onnx_ops.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def collect(path: Path) -> tuple[dict[str, int], set[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opsets = {(i.domain or "ai.onnx"): i.version for i in model.opset_import}
    ops: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            ops.add(f"{node.domain + '::' if node.domain else ''}{node.op_type}")
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else list(attr.graphs)):
                    walk(sub)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            ops.add(node.op_type)
    return opsets, ops


def main() -> int:
    from onnx_families import family_exports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the ONNX files here (default: a temporary directory)")
    args = parser.parse_args()
    seen: dict[str, list[str]] = collections.defaultdict(list)

    def record(name: str, exporter: str, path: Path) -> None:
        opsets, ops = collect(path)
        print(f"{name:24} {exporter:11} opset {opsets.get('ai.onnx')}: {len(ops)} op types", file=sys.stderr)
        for op in ops:
            seen[op].append(f"{name}/{exporter}")

    family_exports(root=args.keep, on_export=record)
    print("| op | files |\n|---|---|")
    for op in sorted(seen):
        print(f"| {op} | {', '.join(sorted(seen[op]))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The architecture as the code has it: layers that import only downwards, no import loops but the edge
registry's, no module taking another's private names, and a wheel that installs nothing but ``zoo``."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folders at the top of the repository and the import names they install as (pyproject's package-dir).
PACKAGE_DIRS = {"zoo": "zoo", "registry": "zoo.registry", "converters": "zoo.converters", "api": "zoo.api"}

# Lowest first; a module may import from its own layer and the layers below it, never above.
LAYERS = [
    ("ground", ["zoo", "zoo.errors", "zoo.settings", "zoo.hashing", "zoo.versions", "zoo.progress", "zoo.hooks",
                "zoo.db", "zoo.safety", "zoo.archives", "zoo.sandbox", "zoo.storage", "zoo.storage.*"]),
    ("registry and converters", ["zoo.registry", "zoo.registry.*", "zoo.converters", "zoo.converters.*"]),
    ("orchestrator", ["zoo.options", "zoo.sources", "zoo.sources.*", "zoo.pipeline", "zoo.ladder", "zoo.pullmemo", "zoo.catalog",
                      "zoo.comparison", "zoo.integrity", "zoo.remote", "zoo.eval", "zoo.eval.*", "zoo.check",
                      "zoo.check.manifest", "zoo.check.checks", "zoo.check.run", "zoo.check.reports", "zoo.testing",
                      "zoo.testing.api", "zoo.testing.sides", "zoo.testing.recorder"]),
    ("job service", ["zoo.service", "zoo.service.*"]),
    ("entry points", ["zoo.__main__", "zoo.cli", "zoo.cli.*", "zoo.api", "zoo.api.*", "zoo.runner", "zoo.worker",
                      "zoo.check.job", "zoo.testing.plugin"]),
]
# The one loop allowed: graph.py imports the edge modules to fill its registry; each imports graph's @edge.
ALLOWED_LOOP = {"zoo.converters.graph", "zoo.converters.edges.from_keras", "zoo.converters.edges.from_torch",
                "zoo.converters.edges.onnx_variants", "zoo.converters.edges.pt2", "zoo.converters.edges.tf",
                "zoo.converters.edges.litert", "zoo.converters.edges.jax_export",
                "zoo.converters.edges.from_jax", "zoo.converters.edges.jax_tf"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, name in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([name, *parts])] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, name taken from it or "", line) for every import, top-level or inside functions."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, "", node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return [(target, name, line) for raw, name, line in found if (target := _resolve(raw)) and target != module]


def _layer(module: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layout.py")


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_only_go_down_the_layers():
    wrong = []
    for module in MODULES:
        for target, _name, line in _imports(module):
            if _layer(target) > _layer(module):
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} ({LAYERS[_layer(module)][0]}) "
                             f"imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_no_module_takes_private_names_of_another():
    wrong = [f"{MODULES[m].relative_to(ROOT)}:{line}: {m} imports {name} from {target}"
             for m in MODULES for target, name, line in _imports(m)
             if name.startswith("_") and not name.endswith("__")]
    assert not wrong, "\n".join(wrong)


def _loops() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: {t for t, _, _ in _imports(m)} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_loop_but_the_edge_registry():
    loops = [sorted(c) for c in _loops() if not c <= ALLOWED_LOOP]
    assert not loops, f"import loops: {loops}"


def test_the_checker_sees_a_loop_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a ground module importing the CLI is both a loop and an upward import."""
    fake = tmp_path / "errors.py"
    fake.write_text(MODULES["zoo.errors"].read_text() + "\n\ndef _x():\n    from zoo.cli.main import main\n")
    monkeypatch.setitem(MODULES, "zoo.errors", fake)
    assert any("zoo.errors" in c and "zoo.cli.main" in c for c in _loops())
    assert any(t == "zoo.cli.main" and _layer(t) > _layer("zoo.errors") for t, _, _ in _imports("zoo.errors"))


def test_pyproject_lists_every_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in PACKAGE_DIRS.items()}
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert set(config["packages"]) == packages


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    import shutil

    out = tmp_path_factory.mktemp("wheel")
    tree = out / "src"  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                              ".zoo-bench", "*.onnx"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                           str(tree)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("zoo_hub-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_only_zoo(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"zoo"}, tops


def test_the_wheel_holds_every_module(wheel):
    names = set(wheel.namelist())
    missing = [m for m, p in MODULES.items()
               if "/".join(m.split(".")) + ("/__init__.py" if p.name == "__init__.py" else ".py") not in names]
    assert not missing, missing


def test_the_wheel_holds_the_web_pages(wheel):
    """zoo serve's templates and static files are package data: a wheel without them serves no pages."""
    names = set(wheel.namelist())
    shipped = [p for folder in ("templates", "static") for p in sorted((ROOT / "api" / folder).iterdir())]
    assert shipped and [p.name for p in shipped if f"zoo/api/{p.parent.name}/{p.name}" not in names] == []

"""The package's architecture, measured on its code: the import rule (pyproject.toml's import-linter
contracts), no import cycle, at most seven layers of modules, small modules, short functions in train/,
and no private name used across modules."""

import ast
import graphlib
import subprocess
import sys
from functools import cache
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "optbench"
BIN = Path(sys.executable).parent  # import-linter, pinned in requirements.txt, beside this interpreter
MAX_LAYERS, MAX_MODULE_LINES, MAX_TRAIN_FUNCTION_LINES = 7, 350, 60


@cache
def imports() -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    graph = grimp.build_graph("optbench", cache_dir=None)
    return {m: graph.find_modules_directly_imported_by(m) - {m} for m in graph.modules}


def layer_of_each_module() -> dict[str, int]:
    """A module imports nothing of the package: layer 1; else one above the highest module it imports."""
    layer = {}
    for module in graphlib.TopologicalSorter(imports()).static_order():  # CycleError names a cycle
        layer[module] = 1 + max((layer[m] for m in imports()[module]), default=0)
    return layer


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_imports_keep_the_contracts():
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_no_import_cycle_and_at_most_seven_layers():
    layer = layer_of_each_module()
    deepest = max(layer, key=layer.get)
    assert layer[deepest] <= MAX_LAYERS, f"{deepest} is at layer {layer[deepest]}: {sorted(imports()[deepest])}"


def test_no_module_is_over_350_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files("src/optbench")}
    assert {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_in_train_is_over_60_lines():
    long = {}
    for path in python_files("src/optbench/train"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_TRAIN_FUNCTION_LINES:
                    long[f"{path.name}:{node.name}"] = lines
    assert long == {}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def is_module(dotted: str) -> bool:
    path = ROOT / "src" / Path(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private_uses(path: Path) -> list[str]:
    """``from optbench.x import _y``, and ``m._y`` where ``m`` names a module of the package."""
    found, modules = [], set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optbench"):
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                elif is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name.startswith("optbench") and a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if is_private(node.attr):
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("folder", ["src", "benchmarks", "tests"])
def test_no_private_name_is_used_across_modules(folder):
    uses = {str(p.relative_to(ROOT)): private_uses(p) for p in python_files(folder)}
    assert {path: found for path, found in uses.items() if found} == {}

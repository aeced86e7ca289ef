"""The rules of the house that code review alone would let slip: layering, no import cycles, lazy imports.

The layer order is read from docs/ARCHITECTURE.md ("Layers"), so the page and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import edgeassist

PACKAGE = Path(edgeassist.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"
CORE = [
    "config",
    "hub",
    "engine",
    "chat",
    "reply",
    "store",
    "speech",
    "voice",
    "bench",
    "system",
    "synthetic",
    "errors",
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_layers_never_import_textual_or_the_cli() -> None:
    offenders = []
    for name in CORE:
        target = PACKAGE / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for f in files:
            if not f.exists():
                continue
            for mod in imported_modules(f):
                if (
                    mod.split(".")[0] in ("textual", "rich")
                    or mod.startswith("edgeassist.cli")
                    or mod.startswith("edgeassist.tui")
                ):
                    offenders.append(f"{f.relative_to(PACKAGE)} imports {mod}")
    assert offenders == []


def test_cli_start_up_imports_no_heavy_module() -> None:
    code = (
        "import sys; from edgeassist.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('llama_cpp', 'textual', 'faster_whisper', 'piper', 'sounddevice', 'huggingface_hub',"
        " 'numpy', 'gguf') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_every_subcommand_has_help() -> None:
    from edgeassist.cli import SUBCOMMANDS

    for name in SUBCOMMANDS:
        r = subprocess.run([sys.executable, "-m", "edgeassist", name, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        assert "usage: edgeassist " + name in r.stdout


# -- the import graph ------------------------------------------------------------------------------------

KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}
"""Imports that break the layer rule today, each with why and what removes it."""


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__`)."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module that `name` (a module, or a name inside one) lives in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Which edgeassist modules each module imports: every import statement anywhere in the file (in
    functions, under TYPE_CHECKING), relative ones resolved, and a string constant that names a module
    (what an importlib hook loads). `from a import b` counts as importing the module `a.b` when there is
    one, else `a`. Python also runs a package's `__init__` before a submodule; that is not counted, or
    every package that re-exports its submodules would be a cycle.
    """
    mods = module_files()
    graph: dict[str, frozenset[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(_owner(a.name, mods) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    full = f"{target}.{a.name}"
                    found.add(full if full in mods else _owner(target, mods))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in mods:
                found.add(node.value)
        graph[name] = frozenset(m for m in found if m is not None and m != name)
    return graph


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@cache
def layer_lists() -> dict[str, list[list[str]]]:
    """The ```layers blocks of docs/ARCHITECTURE.md, by name ("" for the package): top first, one list per line."""
    text = ARCHITECTURE.read_text()
    blocks = re.findall(r"^```layers[ \t]*(\S*)\n(.*?)^```", text, flags=re.M | re.S)
    return {name: [line.split() for line in body.splitlines() if line.strip()] for name, body in blocks}


def _rank(order: list[list[str]]) -> dict[str, int]:
    """Each layer's height: 0 at the bottom."""
    return {layer: len(order) - 1 - i for i, line in enumerate(order) for layer in line}


def _layer(module: str) -> str:
    """The top-level layer a module belongs to (`edgeassist.bench.measure` -> `bench`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_graph_sees_lazy_typing_and_string_imports() -> None:
    graph = import_graph()
    assert "edgeassist.engine.llama" in graph["edgeassist.engine.factory"]  # imported inside a function
    assert "edgeassist.config" in graph["edgeassist.tui.commands"]  # under TYPE_CHECKING
    assert "edgeassist.voice" in graph["edgeassist.bench.voice"]  # a plain import (no string hooks are left)


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer() -> None:
    layers = layer_lists()
    top = {layer for line in layers[""] for layer in line}
    engine = {m for line in layers["engine"] for m in line}
    missing = sorted(m for m in module_files() if _layer(m) not in top)
    assert missing == [], "add them to the Layers section of docs/ARCHITECTURE.md"
    engine_modules = {m.removeprefix("edgeassist.") for m in module_files() if _layer(m) == "engine"}
    assert engine_modules == engine, "docs/ARCHITECTURE.md, Inside the engine"


def test_each_layer_imports_only_layers_below_it() -> None:
    rank = _rank(layer_lists()[""])
    up = []
    for importer, imported in sorted((a, b) for a, targets in import_graph().items() for b in targets):
        low, high = _layer(importer), _layer(imported)
        if low != high and rank[high] >= rank[low] and (importer, imported) not in KNOWN_EXCEPTIONS:
            up.append(f"{importer} imports {imported} ({high} is not below {low})")
    assert up == []


def test_engine_modules_import_only_those_below_them() -> None:
    rank = _rank(layer_lists()["engine"])
    up = []
    for importer, targets in sorted(import_graph().items()):
        for imported in sorted(targets):
            a, b = importer.removeprefix("edgeassist."), imported.removeprefix("edgeassist.")
            if a in rank and b in rank and rank[b] >= rank[a]:
                up.append(f"{importer} imports {imported}")
    assert up == []


def test_known_exceptions_still_exist() -> None:
    """An exception that no longer happens is deleted, so the list stays the list of what is left to fix."""
    graph = import_graph()
    assert [pair for pair in KNOWN_EXCEPTIONS if pair[1] not in graph.get(pair[0], ())] == []


def test_palette_commands_match_the_app() -> None:
    """`tui.commands.ModelSwitcher` is what the palette asks of the app; the app must still offer it."""
    from edgeassist.tui.app import EdgeAssistApp

    assert isinstance(inspect.getattr_static(EdgeAssistApp, "model_name"), property)
    assert inspect.iscoroutinefunction(EdgeAssistApp.switch_model)
    assert list(inspect.signature(EdgeAssistApp.switch_model).parameters) == ["self", "name", "on_server"]
    assert isinstance(inspect.getattr_static(EdgeAssistApp, "server"), property)
    assert inspect.iscoroutinefunction(EdgeAssistApp.on_pull_changed)  # the palette's pulls report there
    assert "settings" in inspect.signature(EdgeAssistApp.__init__).parameters

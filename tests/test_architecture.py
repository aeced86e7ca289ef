"""The rules of the house that code review alone would let slip: layering and lazy imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgeassist

PACKAGE = Path(edgeassist.__file__).parent
CORE = ["config", "hub", "engine", "chat", "store", "speech", "voice", "bench", "system", "synthetic", "errors"]


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

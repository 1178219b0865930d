"""The package tree is the architecture: imports only point down the layers, and every public name resolves."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "llara_cli"
# Lowest first: a module may import from its own layer and the layers below it, never above.
LAYERS = ["storage", "data", "core", "runtime", "model", "encode", "index", "evaluation", "search", "training",
          "demo", "environment", "cli"]
FOUNDATION = {"errors", "choices", "_lazy"}  # root modules every layer may use
IMPORT = re.compile(r"^\s*(?:from|import) llara_cli\.(\w+)", re.M)
PACKAGE_FACES = ["llara_cli", *(f"llara_cli.{layer}" for layer in LAYERS if (PACKAGE / layer).is_dir())]


def layer_of(path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_package_is_a_known_layer():
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"place {sorted(packages - set(LAYERS))} in LAYERS"


def test_imports_only_point_down_the_layers():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        source_layer = layer_of(path)
        if source_layer in FOUNDATION or source_layer in {"__init__", "__main__"}:
            continue
        for target in IMPORT.findall(path.read_text()):
            if target in FOUNDATION or target == source_layer:
                continue
            if LAYERS.index(target) > LAYERS.index(source_layer):
                upward.append(f"{path.relative_to(REPO_ROOT)} imports llara_cli.{target}")
    assert upward == []


@pytest.mark.parametrize("face", PACKAGE_FACES)
def test_every_public_name_of_a_package_face_resolves(face):
    module = importlib.import_module(face)
    assert module.__all__, f"{face} exports nothing"
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert missing == []
    assert sorted(dir(module)) == sorted(set(dir(module)))


def test_importing_the_package_and_its_curated_names_loads_nothing_heavy():
    code = ("import sys, llara_cli, llara_cli.search, llara_cli.encode, llara_cli.index, llara_cli.model; "
            "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'jnius') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"

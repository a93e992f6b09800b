"""TensorFlow stays in the toolkit's training module; a device never imports the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("api", "services", "store", "domain", "inspection")


def top_level_modules_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after ``statement``."""
    probe = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in result.stdout.split()}


def test_device_inference_imports_neither_the_server_nor_tensorflow() -> None:
    loaded = top_level_modules_after("import device_sim.inference")
    assert "fleet" not in loaded
    assert "tensorflow" not in loaded


@pytest.mark.parametrize(
    "module", ["sensors", "bundle", "cli", "reference", "thresholds", "packaged", "register"]
)
def test_only_training_imports_tensorflow(module: str) -> None:
    assert "tensorflow" not in top_level_modules_after(f"import fleet.toolkit.{module}")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", SERVER_PACKAGES)
def test_the_server_never_imports_the_toolkit_or_tensorflow(package: str) -> None:
    for path in sorted((ROOT / "fleet" / package).rglob("*.py")):
        for name in imported_modules(path):
            assert not name.startswith(("fleet.toolkit", "tensorflow")), f"{path}: {name}"

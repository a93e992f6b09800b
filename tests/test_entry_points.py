"""``fleet`` and ``fleet-sim`` on the base install: one line naming the extra, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What `pip install tinyfleet` (no extras) lacks, made unimportable for one child process.
WITHOUT_SERVER_EXTRA = """
import importlib.abc, sys
BLOCKED = {{"fastapi", "sqlmodel", "sqlalchemy", "paho", "aiocoap", "structlog", "httpx",
            "uvicorn", "numpy", "scipy", "opendp", "tflite", "prometheus_client"}}

class ExtraBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, ExtraBlocker())
sys.argv = ["{command}", "--help"]
from fleet.entry import {function}
{function}()
"""


@pytest.mark.parametrize(("command", "function"), [("fleet", "fleet"), ("fleet-sim", "fleet_sim")])
def test_without_the_server_extra_a_command_names_the_extra_to_install(
    command: str, function: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER_EXTRA.format(command=command, function=function)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{command} needs the server extra")
    assert "pip install 'tinyfleet[server]'" in lines[0]


@pytest.mark.parametrize(("command", "function"), [("fleet", "fleet"), ("fleet-sim", "fleet_sim")])
def test_with_the_server_extra_a_command_runs(command: str, function: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.argv = ['{command}', '--help']\n"
            f"from fleet.entry import {function}\n{function}()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout

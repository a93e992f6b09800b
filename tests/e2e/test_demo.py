"""``fleet demo``, the README's main command, runs to the end in a fresh process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_rolls_a_signed_release_to_a_simulated_fleet(tmp_path: Path) -> None:
    done = subprocess.run(
        ["fleet", "demo", "--devices", "20", "--data-dir", str(tmp_path), "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("the fleet as the server sees it", 1)[1]
    assert "20  healthy on" in summary
    # The bad release stops in its canary wave; the good one goes through every wave.
    assert "rolled_back, wave 1/3" in done.stdout
    assert "completed, wave 3/3" in done.stdout

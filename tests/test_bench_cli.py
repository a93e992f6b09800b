"""Every benchmark answers ``--help`` with what it measures, and refuses a bad size, before
it starts anything (a broker, a server, a fleet)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(
    p.stem for p in (Path(__file__).parents[1] / "bench").glob("*.py") if p.stem != "arguments"
)
SIZED = ["coap", "delivery", "device_sim_connect", "device_sim_fleet", "telemetry"]


def _run(module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    bench = importlib.import_module(f"bench.{module}")
    monkeypatch.setattr("sys.argv", [f"{module}.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    return int(exit_.value.code or 0)


@pytest.mark.parametrize("module", BENCHES)
def test_help_prints_what_the_bench_measures(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(module, ["--help"], monkeypatch) == 0
    doc = importlib.import_module(f"bench.{module}").__doc__
    assert doc is not None
    assert doc.splitlines()[0] in capsys.readouterr().out


@pytest.mark.parametrize("module", SIZED)
def test_a_size_that_is_not_a_number_is_refused(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(module, ["many"], monkeypatch) == 2
    assert "invalid" in capsys.readouterr().err


def test_every_bench_is_checked() -> None:
    assert set(SIZED) < set(BENCHES) and "drift_power" in BENCHES

"""Console-script entry points that say which extra to install instead of a traceback.

``fleet`` and ``fleet-sim`` need the ``server`` extra (FastAPI, paho-mqtt, aiocoap, httpx,
...), while ``pip install tinyfleet`` brings only what ``fleet-sign`` needs. This module
imports nothing outside the standard library, so it runs on the base install and turns a
missing third-party module into one line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["fleet", "fleet_sim"]

# A missing module of our own is a broken install, not a missing extra: keep its traceback.
_OWN_PACKAGES = frozenset({"fleet", "signer", "schemas", "device_sim"})


def _launch(module_name: str, *, command: str, extra: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not missing or missing.partition(".")[0] in _OWN_PACKAGES:
            raise
        sys.stderr.write(
            f"{command} needs the {extra} extra (module {missing!r} is missing): "
            f"pip install 'tinyfleet[{extra}]'\n"
        )
        raise SystemExit(2) from None
    module.main()


def fleet() -> None:
    _launch("fleet.cli", command="fleet", extra="server")


def fleet_sim() -> None:
    _launch("device_sim.cli", command="fleet-sim", extra="server")

"""Which status counters the server still takes: a window below the newest one.

A device's counter rises with every message, but two replicas ingest a device's
messages independently, so a report can reach the store after a later one. Refusing
every counter below the newest would drop that late report, and with it, perhaps,
the one failure a rollout gate needed to see. The history's key (device, counter)
refuses a true replay; the window bounds how far back a counter may be to still
count as late rather than stale, so a report withheld for long cannot be slipped in.
"""

from __future__ import annotations

from fleet.domain.records import NO_COUNTER_YET

__all__ = ["WINDOW", "lowest_refused"]

# Well above the reports a device sends while one batch waits on another replica
# (a device reports a handful of states per install), small enough that a withheld
# report is stale long before it could mislead a gate.
WINDOW = 64


def lowest_refused(newest: int, window: int = WINDOW) -> int:
    """The highest counter no longer taken, given the newest accepted one.

    Every counter above the result is in the window; ``NO_COUNTER_YET`` while the
    device has reported nothing, so that its first counter, 0, is taken.
    """
    return max(NO_COUNTER_YET, newest - window)

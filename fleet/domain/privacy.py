"""The telemetry privacy mechanism, as the server's domain sees it.

The code is ``schemas.privacy``: devices noise with the same functions the server
debiases with, and a device never imports the server. Formulas: ``docs/telemetry.md``.
"""

from __future__ import annotations

from schemas.privacy import (
    DEFAULT_DAILY_BUDGET,
    SECONDS_PER_DAY,
    BudgetExceeded,
    Counts,
    NoiseSampler,
    NothingToReport,
    PrivacyError,
    Spend,
    cap_histogram,
    charge,
    daily_epsilon,
    discrete_laplace_sums,
    discrete_laplace_variance,
    epsilon_spent,
    noise_scale,
    opendp_discrete_laplace,
    privatise,
    report_epsilon,
    sensitivity,
    simulated_discrete_laplace,
)

__all__ = [
    "DEFAULT_DAILY_BUDGET",
    "SECONDS_PER_DAY",
    "BudgetExceeded",
    "Counts",
    "NoiseSampler",
    "NothingToReport",
    "PrivacyError",
    "Spend",
    "cap_histogram",
    "charge",
    "daily_epsilon",
    "discrete_laplace_sums",
    "discrete_laplace_variance",
    "epsilon_spent",
    "noise_scale",
    "opendp_discrete_laplace",
    "privatise",
    "report_epsilon",
    "sensitivity",
    "simulated_discrete_laplace",
]

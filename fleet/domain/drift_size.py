"""How big a drift is, for people: PSI and Jensen-Shannon distance, debiased for noise.

Neither is the test (:mod:`fleet.domain.drift` is): on noised histograms both have a
floor well above zero with no drift at all (PSI's median is about 0.19 at local
epsilon 4 and 500 devices). The debiased forms take off that floor, the plug-in's mean
over the detector's own Monte-Carlo null (``docs/telemetry.md``). Every function works
along the last axis, so the null computes them for all its replicates at once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import jensenshannon

__all__ = [
    "PSI_ALERT",
    "PSI_WARN",
    "debiased",
    "js_divergence",
    "psi",
    "released_proportions",
    "smoothed",
]

PSI_WARN = 0.1
PSI_ALERT = 0.25

Floats = npt.NDArray[np.float64]


def smoothed(counts: npt.ArrayLike) -> Floats:
    """``(c_b + 1/2) / (N + K/2)``: never 0, so ln and 1/p exist."""
    values = np.asarray(counts, dtype=np.float64)
    proportions: Floats = (values + 0.5) / (
        values.sum(axis=-1, keepdims=True) + 0.5 * values.shape[-1]
    )
    return proportions


def released_proportions(pooled: npt.ArrayLike, total: float) -> Floats:
    """Noised counts as proportions: each clipped to half a count, then renormalised."""
    clipped = np.maximum(np.asarray(pooled, dtype=np.float64), 0.5) / total
    projected: Floats = clipped / clipped.sum(axis=-1, keepdims=True)
    return projected


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> Floats:
    """``sum_b (c_b - r_b) ln(c_b / r_b)`` over positive proportions."""
    r, c = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    value: Floats = np.sum((c - r) * np.log(c / r), axis=-1)
    return value


def js_divergence(reference: npt.ArrayLike, current: npt.ArrayLike) -> Floats:
    """Jensen-Shannon divergence in bits; its square root is the JS distance (0 to 1)."""
    js_distance = jensenshannon(
        np.asarray(reference, dtype=np.float64),
        np.asarray(current, dtype=np.float64),
        base=2.0,
        axis=-1,
    )
    value: Floats = np.square(js_distance)
    return value


def debiased(plug_in: float, floor: float) -> float:
    """``max(0, plug-in - its no-drift mean)``."""
    return max(0.0, plug_in - floor)

"""Reference histograms for drift (docs/architecture.md §6), from the int8 model on held-out data.

The reference set runs through the int8 model as LiteRT runs it, and what a device
histograms is counted here the same way: the input summaries of each window
(:func:`input_summaries`), the predicted class, and the top-1 confidence or the anomaly
score. Bin edges are chosen here and shipped in the thresholds component:

* input summaries: ``BINS`` equal-mass bins between the reference's 1st and 99th
  percentiles, so underflow and overflow each hold about 1 % of the reference;
* top-1 confidence: ``BINS`` equal bins from chance (1 / classes) to 1;
* anomaly score: ``BINS`` log-spaced bins between the 1st and 99th percentiles.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fleet.domain.model_card import ModelReference, ReferenceHistogram
from fleet.toolkit.scoring import Outcomes
from fleet.toolkit.sensors import Task
from schemas.components import PREDICTED_HISTOGRAM, HistogramBins, InputSummary, Thresholds

__all__ = [
    "BINS",
    "ReferenceHistogram",
    "ReferenceProfile",
    "choose_input_bins",
    "choose_output_bins",
    "histogram",
    "input_summaries",
    "observed_histograms",
    "reference_profile",
]

BINS = 12
OUTER_QUANTILES = (0.01, 0.99)

Floats = npt.NDArray[np.float64]


def input_summaries(windows: npt.ArrayLike) -> dict[InputSummary, Floats]:
    """Each window's summaries, from windows shaped ``(n, samples, 3)``."""
    values = np.asarray(windows, dtype=np.float64)
    rms = np.sqrt(np.mean(np.square(values), axis=1))
    return {
        InputSummary.RMS_X: rms[:, 0],
        InputSummary.RMS_Y: rms[:, 1],
        InputSummary.RMS_Z: rms[:, 2],
        InputSummary.PEAK: np.max(np.abs(values), axis=(1, 2)),
    }


def histogram(values: npt.ArrayLike, bins: HistogramBins) -> npt.NDArray[np.int64]:
    """Counts per bin, underflow first and overflow last (``schemas.components``' rule)."""
    index = np.searchsorted(np.asarray(bins.edges), np.asarray(values), side="right")
    return np.bincount(index, minlength=bins.bin_count).astype(np.int64)


def _distinct(edges: Floats) -> tuple[float, ...]:
    distinct = np.unique(edges)
    if len(distinct) < 2:
        raise ValueError(f"the reference set is too uniform to bin: edges {edges}")
    return tuple(float(e) for e in distinct)


def choose_input_bins(
    summaries: dict[InputSummary, Floats], bins: int = BINS
) -> dict[InputSummary, HistogramBins]:
    quantiles = np.linspace(*OUTER_QUANTILES, bins + 1)
    return {
        name: HistogramBins(edges=_distinct(np.quantile(values, quantiles)))
        for name, values in summaries.items()
    }


def choose_output_bins(task: Task, statistic: npt.ArrayLike, bins: int = BINS) -> HistogramBins:
    if task is Task.VIBRATION:
        low, high = np.quantile(np.asarray(statistic, dtype=np.float64), OUTER_QUANTILES)
        return HistogramBins(edges=_distinct(np.geomspace(low, high, bins + 1)), scale="log")
    chance = 1.0 / len(task.labels)
    return HistogramBins(edges=_distinct(np.linspace(chance, 1.0, bins + 1)))


class ReferenceProfile(ModelReference):
    """The reference set and what the int8 model made of it (``ModelReference``), with
    the task as the toolkit's enumeration."""

    task: Task


def _normalised(counts: npt.NDArray[np.int64]) -> ReferenceHistogram:
    total = int(counts.sum())
    return ReferenceHistogram(
        counts=tuple(int(c) for c in counts),
        proportions=tuple(float(c) / total for c in counts),
    )


def observed_histograms(
    thresholds: Thresholds, summaries: dict[InputSummary, Floats], outcomes: Outcomes
) -> dict[str, npt.NDArray[np.int64]]:
    """Counts per histogram a device would report for these windows."""
    counts = {
        str(name): histogram(summaries[name], bins) for name, bins in thresholds.inputs.items()
    }
    counts[thresholds.output_histogram] = histogram(outcomes.statistic, thresholds.output)
    counts[PREDICTED_HISTOGRAM] = np.bincount(outcomes.predicted, minlength=len(thresholds.labels))
    return counts


def reference_profile(
    thresholds: Thresholds,
    summaries: dict[InputSummary, Floats],
    outcomes: Outcomes,
    *,
    task: Task,
    seed: int,
    float_accuracy: float,
    int8_accuracy: float,
) -> ReferenceProfile:
    counts = observed_histograms(thresholds, summaries, outcomes)
    return ReferenceProfile(
        task=task,
        seed=seed,
        size=len(outcomes.predicted),
        model_sha256=thresholds.model_sha256,
        float_accuracy=float_accuracy,
        int8_accuracy=int8_accuracy,
        histograms={name: _normalised(c) for name, c in counts.items()},
    )

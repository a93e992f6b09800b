"""What a model's outputs mean: a class and its confidence, or an anomaly score.

``device_sim.inference`` is the device's copy of these rules (a device never imports
the server); a test holds the two to the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleet.toolkit.host import HostModel

__all__ = ["Outcomes", "anomaly_scores", "outcomes", "top1"]

Floats = npt.NDArray[np.floating]


def top1(probabilities: Floats) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Each row's predicted class and that class's probability (ties: the lowest index)."""
    rows = np.asarray(probabilities, dtype=np.float32)
    return rows.argmax(axis=1).astype(np.int64), rows.max(axis=1)


def anomaly_scores(windows: Floats, reconstructions: Floats) -> npt.NDArray[np.float32]:
    """Mean squared reconstruction error per window, against the float window itself."""
    original = np.asarray(windows, dtype=np.float32).reshape(len(windows), -1)
    rebuilt = np.asarray(reconstructions, dtype=np.float32).reshape(len(windows), -1)
    scores: npt.NDArray[np.float32] = np.mean(np.square(original - rebuilt), axis=1)
    return scores


@dataclass(frozen=True)
class Outcomes:
    """What the int8 model said about each window."""

    predicted: npt.NDArray[np.int64]  # class index; for an autoencoder 1 = anomaly
    statistic: npt.NDArray[np.float32]  # top-1 confidence, or the anomaly score


def outcomes(host: HostModel, windows: Floats, *, max_score: float | None) -> Outcomes:
    """Run ``windows`` through ``host``: a classifier, or an autoencoder when ``max_score``
    (the anomaly threshold) is given."""
    outputs = host.predict(windows)
    if max_score is None:
        predicted, confidence = top1(outputs)
        return Outcomes(predicted, confidence)
    scores = anomaly_scores(windows, outputs)
    return Outcomes((scores > max_score).astype(np.int64), scores)

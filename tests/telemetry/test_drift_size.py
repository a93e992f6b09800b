"""PSI and Jensen-Shannon distance: known values, and the floor the debiasing removes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import distance

from fleet.domain.drift_size import debiased, js_divergence, psi, released_proportions, smoothed


def test_psi_known_values() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(psi([0.25, 0.75], [0.5, 0.5]))


def test_js_distance_known_values_in_bits() -> None:
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    # m = (0.75, 0.25): 0.5 * (0.5 log2(2/3) + 0.5 log2 2) + 0.5 * log2(4/3)
    expected = 0.25 * (math.log2(2 / 3) + 1) + 0.5 * math.log2(4 / 3)
    assert js_divergence([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert math.sqrt(expected) == pytest.approx(
        distance.jensenshannon([0.5, 0.5], [1.0, 0.0], base=2)
    )


def test_the_sizes_work_row_by_row() -> None:
    rows = np.array([[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(psi(np.array([0.5, 0.5]), rows), [0.0, 0.25 * math.log(3)])
    assert js_divergence(np.array([0.5, 0.5]), rows).shape == (2,)


def test_smoothing_and_projection_keep_proportions_positive_and_summing_to_one() -> None:
    assert smoothed([0, 2]) == pytest.approx([0.5 / 3, 2.5 / 3])
    projected = released_proportions([-3, 10, 0], 10)
    assert projected.sum() == pytest.approx(1.0) and (projected > 0).all()
    assert debiased(0.3, 0.19) == pytest.approx(0.11) and debiased(0.1, 0.19) == 0.0

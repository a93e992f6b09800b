"""The device-side mechanism: capping, the scale-epsilon relation, noise, accounting."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.device import Mechanism
from schemas.privacy import (
    BudgetExceeded,
    NothingToReport,
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

histograms = st.lists(st.integers(0, 50), min_size=2, max_size=16).filter(lambda h: sum(h) > 0)
caps = st.integers(1, 120)
seeds = st.integers(0, 2**32 - 1)


@given(histograms, caps, seeds)
def test_a_capped_histogram_holds_exactly_cap_counts_where_the_window_had_some(
    raw: list[int], cap: int, seed: int
) -> None:
    capped = cap_histogram(raw, cap, np.random.default_rng(seed))
    assert capped.sum() == cap
    assert (capped >= 0).all()
    assert not capped[np.asarray(raw) == 0].any()
    if sum(raw) >= cap:
        assert (capped <= np.asarray(raw)).all()


@given(histograms, histograms, caps, seeds)
def test_two_capped_histograms_of_one_device_differ_by_at_most_the_sensitivity(
    first: list[int], second: list[int], cap: int, seed: int
) -> None:
    size = min(len(first), len(second))
    if not (sum(first[:size]) and sum(second[:size])):
        return
    rng = np.random.default_rng(seed)
    a, b = cap_histogram(first[:size], cap, rng), cap_histogram(second[:size], cap, rng)
    assert np.abs(a - b).sum() <= sensitivity(cap)


def test_capping_is_unbiased_for_the_windows_proportions() -> None:
    raw = np.array([30, 0, 5, 65])
    rng = np.random.default_rng(1)
    for cap in (1, 10, 150):  # 150 > 100 inferences: with replacement
        mean = np.mean([cap_histogram(raw, cap, rng) for _ in range(4000)], axis=0)
        np.testing.assert_allclose(mean / cap, raw / raw.sum(), atol=0.03)


def test_an_empty_window_has_nothing_to_report() -> None:
    with pytest.raises(NothingToReport) as caught:
        cap_histogram([0, 0, 0], 4, np.random.default_rng(0))
    assert caught.value.code == "nothing_to_report"


@pytest.mark.parametrize(("epsilon", "cap"), [(1.0, 1), (4.0, 1), (4.0, 8), (8.0, 100)])
def test_opendp_agrees_that_scale_2c_over_epsilon_spends_epsilon(epsilon: float, cap: int) -> None:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    scale = noise_scale(Mechanism(name="discrete_laplace", epsilon=epsilon, cap=cap))
    assert scale == 2 * cap / epsilon
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    measurement = dp.m.make_laplace(*space, scale=scale)
    assert measurement.map(sensitivity(cap)) == pytest.approx(epsilon, rel=1e-9)


def test_opendp_noise_has_the_variance_the_server_assumes() -> None:
    scale = 2.0
    draws = np.concatenate(
        [opendp_discrete_laplace(np.zeros(12, np.int64), scale) for _ in range(2500)]
    )
    assert draws.dtype == np.int64
    assert abs(draws.mean()) < 0.15
    assert draws.var() == pytest.approx(discrete_laplace_variance(scale), rel=0.08)


def test_the_simulation_sampler_draws_the_discrete_laplace_pmf() -> None:
    scale = 1.5
    draws = simulated_discrete_laplace(np.random.default_rng(2))(np.zeros(200_000, np.int64), scale)
    a = math.exp(-1 / scale)
    for k in range(-4, 5):
        expected = (1 - a) / (1 + a) * a ** abs(k)
        assert np.mean(draws == k) == pytest.approx(expected, abs=0.004)


def test_a_sum_of_n_draws_has_n_times_the_variance() -> None:
    scale, n = 0.5, 500
    sums = discrete_laplace_sums(np.random.default_rng(3), np.full(20_000, n), scale)
    assert sums.var() == pytest.approx(n * discrete_laplace_variance(scale), rel=0.05)
    assert discrete_laplace_variance(50.0) == pytest.approx(2 * 50.0**2, rel=1e-3)


def test_privatise_caps_then_noises_and_none_only_caps() -> None:
    rng = np.random.default_rng(4)
    none = Mechanism(name="none", epsilon=1.0, cap=3)
    assert privatise([5, 5, 5], none, rng).sum() == 3
    laplace = Mechanism(name="discrete_laplace", epsilon=4.0, cap=3)
    noised = privatise([5, 5, 5], laplace, rng, simulated_discrete_laplace(rng))
    assert noised.shape == (3,)
    on_device = privatise([5, 5, 5], laplace, rng)  # OpenDP
    assert on_device.shape == (3,) and on_device.dtype == np.int64


def test_a_report_costs_epsilon_per_histogram_and_a_day_every_window() -> None:
    mechanism = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
    assert report_epsilon(mechanism, 6) == 24.0
    assert daily_epsilon(mechanism, 6, 3600) == 24.0 * 24
    assert daily_epsilon(mechanism, 1, 7 * 3600) == 4.0 * 4  # ceil(24 / 7) windows
    assert report_epsilon(Mechanism(name="none", epsilon=1.0, cap=1), 1) == math.inf


START = datetime(2026, 11, 23, tzinfo=UTC)


@settings(max_examples=60)
@given(
    st.lists(st.floats(0.1, 10.0), min_size=1, max_size=40),
    st.floats(1.0, 100.0),
    st.integers(1, 6),
)
def test_a_device_never_spends_more_than_its_budget_in_a_day(
    costs: list[float], budget: float, hours: int
) -> None:
    ledger: tuple[Spend, ...] = ()
    for index, cost in enumerate(costs):
        spend = Spend(START + timedelta(hours=hours * index), cost)
        before = epsilon_spent(ledger, spend.day)
        try:
            ledger = charge(ledger, spend, budget=budget)
        except BudgetExceeded as refused:
            assert before + cost > budget
            assert refused.code == "privacy_budget_exceeded"
        else:
            assert epsilon_spent(ledger, spend.day) <= budget
            assert all(s.day == spend.day for s in ledger)


def test_the_budget_starts_again_the_next_utc_day() -> None:
    ledger = charge((), Spend(START + timedelta(hours=23), 4.0), budget=4.0)
    with pytest.raises(BudgetExceeded):
        charge(ledger, Spend(START + timedelta(hours=23, minutes=30), 0.5), budget=4.0)
    ledger = charge(ledger, Spend(START + timedelta(days=1), 4.0), budget=4.0)
    assert ledger == (Spend(START + timedelta(days=1), 4.0),)


def test_the_domain_imports_neither_opendp_nor_io_nor_the_toolkit() -> None:
    code = (
        "import sys, schemas.privacy, fleet.domain.aggregation, fleet.domain.drift\n"
        "bad = ('opendp', 'fleet.toolkit', 'fleet.store', 'fleet.services', 'sqlmodel',"
        " 'fastapi', 'paho', 'aiocoap', 'httpx', 'tensorflow')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad or m.startswith(bad)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

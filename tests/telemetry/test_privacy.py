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
    COUNTERS,
    DEFAULT_DAILY_BUDGET,
    BudgetExceeded,
    NothingToReport,
    PrivacyError,
    Spend,
    cap_histogram,
    charge,
    counter_scale,
    counter_sensitivity,
    daily_epsilon,
    discrete_laplace_sums,
    discrete_laplace_variance,
    epsilon_spent,
    noise_scale,
    opendp_discrete_laplace,
    privatise,
    privatise_counters,
    report_epsilon,
    sensitivity,
    simulated_discrete_laplace,
    vectors_per_report,
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


def test_a_report_costs_epsilon_per_histogram_and_one_for_the_counters() -> None:
    mechanism = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
    assert vectors_per_report(6) == 7
    assert report_epsilon(mechanism, 6) == 28.0
    assert report_epsilon(mechanism, 6, counters=False) == 24.0
    assert daily_epsilon(mechanism, 6, 3600) == 28.0 * 24
    assert daily_epsilon(mechanism, 1, 7 * 3600) == 8.0 * 4  # ceil(24 / 7) windows
    assert report_epsilon(Mechanism(name="none", epsilon=1.0, cap=1), 1) == math.inf


def test_the_default_budget_lets_an_hourly_report_of_eight_vectors_at_epsilon_4_through() -> None:
    mechanism = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
    assert daily_epsilon(mechanism, 7, 3600) == DEFAULT_DAILY_BUDGET == 768.0
    assert DEFAULT_DAILY_BUDGET // report_epsilon(mechanism, 7) == 24  # 60 s windows stop


@pytest.mark.parametrize("epsilon", [1.0, 4.0, 8.0])
def test_opendp_agrees_that_counter_scale_spends_epsilon_on_the_indicators(epsilon: float) -> None:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    mechanism = Mechanism(name="discrete_laplace", epsilon=epsilon, cap=1)
    scale = counter_scale(mechanism)
    assert scale == len(COUNTERS) / epsilon
    assert counter_sensitivity() == len(COUNTERS) == 2
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    measurement = dp.m.make_laplace(*space, scale=scale)
    assert measurement.map(counter_sensitivity()) == pytest.approx(epsilon, rel=1e-9)
    assert counter_scale(Mechanism(name="none", epsilon=epsilon, cap=1)) == 0.0


@given(st.dictionaries(st.sampled_from(COUNTERS), st.integers(0, 10_000)))
def test_counters_without_noise_are_indicators_of_every_name(values: dict[str, int]) -> None:
    none = Mechanism(name="none", epsilon=1.0, cap=1)
    indicators = privatise_counters(values, none)
    assert list(indicators) == list(COUNTERS)
    assert indicators == {name: int(values.get(name, 0) > 0) for name in COUNTERS}


def test_counters_carry_noise_of_the_stated_scale() -> None:
    """20,000 reports each with one error and no reboot: per counter the mean is within
    4 sigma of the indicator and the variance within 4 sigma of v(n / epsilon)."""
    mechanism = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
    noise = simulated_discrete_laplace(np.random.default_rng(5))
    draws = np.array(
        [
            list(privatise_counters({"inference_errors": 3}, mechanism, noise).values())
            for _ in range(20_000)
        ]
    )
    v = discrete_laplace_variance(counter_scale(mechanism))
    a = math.exp(-1 / counter_scale(mechanism))
    # The law's fourth moment, 2(1-a)/(1+a) * sum k^4 a^k: the sample variance's own
    # variance is (E[k^4] - v^2) / n.
    fourth = 2 * a * (1 + 11 * a + 11 * a**2 + a**3) / ((1 - a) ** 4 * (1 + a))
    n = len(draws)
    for column, indicator in zip(draws.T, (1, 0), strict=True):
        assert abs(column.mean() - indicator) < 4 * math.sqrt(v / n)
        assert abs(column.var() - v) < 4 * math.sqrt((fourth - v**2) / n)


def test_unknown_or_negative_counters_are_refused() -> None:
    mechanism = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
    with pytest.raises(PrivacyError, match="unknown counters"):
        privatise_counters({"watchdog": 1}, mechanism)
    with pytest.raises(PrivacyError, match="negative"):
        privatise_counters({"reboots": -1}, mechanism)
    on_device = privatise_counters({"reboots": 1}, mechanism)  # OpenDP
    assert list(on_device) == list(COUNTERS)


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

"""Drift of released telemetry against the model card's reference, per window.

Reads only released aggregates (``fleet.services.telemetry`` stores nothing else) and the
reference histograms registered with the release's model. Per window: every stream
(histogram x cohort) is tested over the last ``W`` windows with the noise-aware statistic
(``fleet.domain.drift``), Benjamini-Hochberg decides the alert and names streams, and the
alert state steps, giving open/close events for the audit log. Monte-Carlo nulls are
seeded from the stream and its windows, so the same aggregates always give the same
report.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from fleet.domain.aggregation import Release
from fleet.domain.drift import (
    DEFAULT_ALERT_ALPHA,
    DEFAULT_FDR,
    DEFAULT_REPLICATES,
    DEFAULT_WINDOWS,
    AlertEvent,
    AlertState,
    Decision,
    GateVerdict,
    NoiseSetup,
    NullDistribution,
    StreamKey,
    StreamTest,
    assess_stream,
    benjamini_hochberg,
    calibrate,
    decide,
    enough_data,
    gate,
)
from fleet.domain.model_card import ModelReference
from fleet.store import UnitOfWork

__all__ = [
    "HISTORY",
    "WindowDrift",
    "assess_release",
    "drift_gate",
    "drift_gate_in",
    "judgeable",
    "reference_of",
]

HISTORY = 48  # windows replayed to know the alert state of the newest one


@dataclass(frozen=True)
class WindowDrift:
    window_start: datetime
    decision: Decision
    alert_open: bool
    event: AlertEvent | None


def reference_of(uow: UnitOfWork, release_digest: str) -> ModelReference | None:
    """The reference histograms registered with the release's model, if any."""
    release = uow.releases.get(release_digest)
    if release is None:
        return None
    manifest = release.manifest()
    models = [c for c in manifest.components if c.kind == "model"]
    stored = uow.model_cards.get(models[0].sha256) if models else None
    return stored.reference if stored is not None else None


def _setup(released: Release) -> NoiseSetup:
    return NoiseSetup(
        released.reporters, released.mechanism.cap, released.local_scale, released.central_scale
    )


class _Nulls:
    """Seeded, cached Monte-Carlo nulls: same stream and setups, same null."""

    def __init__(self, replicates: int) -> None:
        self._replicates = replicates
        self._cache: dict[tuple[str, tuple[int, ...], tuple[NoiseSetup, ...]], NullDistribution]
        self._cache = {}

    def get(
        self, histogram: str, reference: tuple[int, ...], setups: tuple[NoiseSetup, ...]
    ) -> NullDistribution:
        key = (histogram, reference, setups)
        if key not in self._cache:
            seed = hashlib.sha256(repr(key).encode()).digest()[:8]
            rng = np.random.default_rng(int.from_bytes(seed, "big"))
            self._cache[key] = calibrate(reference, setups, rng, self._replicates)
        return self._cache[key]


def judgeable(reference: ModelReference) -> frozenset[str]:
    """Histograms some amount of field data could judge: ``N_eff`` tends to ``N_ref``.

    A reference bin with (nearly) no count can fail Cochran's rule at any current size;
    such a histogram is never judged, so the rollout gate leaves it out rather than hold
    every rollout on it (it still shows, as not judged, in the drift report).
    """
    return frozenset(
        name for name, h in reference.histograms.items() if enough_data(h.counts, sum(h.counts))
    )


def _tests(
    cohorts: Mapping[str, Sequence[Release]],
    reference: ModelReference,
    nulls: _Nulls,
    only: frozenset[str] | None = None,
) -> list[StreamTest]:
    """Each cohort's streams over its given windows (oldest first, at most W)."""
    tests = []
    for cohort, recent in cohorts.items():
        setups = tuple(_setup(r) for r in recent)
        for name, ref in sorted(reference.histograms.items()):
            if only is not None and name not in only:
                continue
            if not all(name in r.histograms for r in recent):
                continue
            observed = [r.histograms[name].counts for r in recent]
            null = nulls.get(name, ref.counts, setups)
            tests.append(assess_stream(StreamKey(name, cohort), ref.counts, observed, setups, null))
    return tests


def assess_release(
    uow: UnitOfWork,
    release_digest: str,
    *,
    windows: int = DEFAULT_WINDOWS,
    replicates: int = DEFAULT_REPLICATES,
    history: int = HISTORY,
    reference: ModelReference | None = None,
) -> list[WindowDrift]:
    """One entry per released window of the release (all cohorts), oldest first.

    The last ``history`` windows; the first entries' alert state starts closed.
    ``reference`` defaults to the one registered with the release's model.
    """
    with uow:
        reference = reference or reference_of(uow, release_digest)
        released = uow.telemetry.find(release_digest, limit=(history + windows) * 16)
    if reference is None or not released:
        return []
    by_window: dict[datetime, list[Release]] = defaultdict(list)
    for r in released:
        by_window[r.key.window_start].append(r)
    starts = sorted(by_window)
    nulls, state, report = _Nulls(replicates), AlertState(), []
    for index in range(max(0, len(starts) - history), len(starts)):
        start = starts[index]
        cohorts: dict[str, list[Release]] = defaultdict(list)
        for earlier in starts[max(0, index - windows + 1) : index + 1]:
            for r in by_window[earlier]:
                cohorts[r.key.cohort].append(r)
        decision = decide(_tests(cohorts, reference, nulls))
        state, event = state.step(decision)
        report.append(WindowDrift(start, decision, state.open, event))
    return report


def drift_gate(
    uow: UnitOfWork,
    new_release: str,
    control_release: str,
    *,
    windows: int = DEFAULT_WINDOWS,
    replicates: int = DEFAULT_REPLICATES,
    reference: ModelReference | None = None,
) -> GateVerdict:
    """The rollout gate over the last ``windows`` windows both releases were released in.

    The new release is judged against its model's reference; the control cohort (devices
    still on the old release) against the same reference, in the same windows.
    """
    with uow:
        return drift_gate_in(
            uow,
            new_release,
            control_release,
            windows=windows,
            replicates=replicates,
            reference=reference,
        )


def drift_gate_in(
    uow: UnitOfWork,
    new_release: str,
    control_release: str,
    *,
    windows: int = DEFAULT_WINDOWS,
    replicates: int = DEFAULT_REPLICATES,
    reference: ModelReference | None = None,
) -> GateVerdict:
    """:func:`drift_gate` inside a unit of work the caller has already entered.

    The rollout engine judges its gates inside the tick's transaction; on SQLite that
    holds the write lock, so a second unit of work would wait for it until it timed out.
    """
    reference = reference or reference_of(uow, new_release)
    new = uow.telemetry.find(new_release, limit=HISTORY)
    control = uow.telemetry.find(control_release, limit=HISTORY)
    if reference is None:
        return gate(decide([]), new="new", control="control")
    shared = sorted({r.key.window_start for r in new} & {r.key.window_start for r in control})
    recent = set(shared[-windows:])
    cohorts = {
        "new": [r for r in new if r.key.window_start in recent],
        "control": [r for r in control if r.key.window_start in recent],
    }
    cohorts = {name: releases for name, releases in cohorts.items() if releases}
    tests = _tests(cohorts, reference, _Nulls(replicates), only=judgeable(reference))
    verdict = gate(_gate_decision(tests), new="new", control="control")
    return replace(verdict, windows=len(recent))


def _gate_decision(tests: Sequence[StreamTest]) -> Decision:
    """Named streams for the gate: strong evidence for the new release, weak for control.

    Both cohorts are a share of the fleet, so a shift both show can reach BH's level in
    one and just miss it in the other. Holding therefore needs the new release's stream
    named at the alert level (BH at ``DEFAULT_ALERT_ALPHA``) while the control's own test
    does not reject even at ``q`` uncorrected; anything weaker is not a reason to hold.
    """
    judged = [t for t in tests if t.judged]
    new = [t for t in judged if t.stream.cohort == "new"]
    strong = benjamini_hochberg([t.p_value for t in new], DEFAULT_ALERT_ALPHA)
    flagged = {t.stream for t, hit in zip(new, strong, strict=True) if hit}
    flagged |= {t.stream for t in judged if t.stream.cohort != "new" and t.p_value <= DEFAULT_FDR}
    return Decision(alert=any(strong), flagged=frozenset(flagged), tests=tuple(tests))

"""Released telemetry aggregates (only those with at least k reporters exist) and drift."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import ContextDep, ViewerDep
from fleet.api.models.common import Digest, PageLimit, problem_responses
from fleet.api.models.telemetry import (
    AggregateList,
    AggregatePublic,
    DriftReport,
    PrivacyAccountPublic,
    WindowDriftPublic,
)
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services import queries
from fleet.services.drift import HISTORY, assess_release
from fleet.services.privacy_accounting import privacy_account

__all__ = ["router"]

router = APIRouter(
    prefix=f"{API_PREFIX}/telemetry", tags=["telemetry"], route_class=StrictJsonRoute
)

ModelVersion = Annotated[
    str | None,
    Query(pattern=r"^[\x21-\x7e]{1,64}$", description="only this model version"),
]


@router.get("/aggregates", responses=problem_responses(401, 422))
def aggregates(
    context: ContextDep,
    _: ViewerDep,
    release: Annotated[Digest, Query(description="the release's digest")],
    model: ModelVersion = None,
    limit: PageLimit = 100,
) -> AggregateList:
    """Released cohort aggregates of a release, oldest window first (the newest `limit`).

    A window with fewer than `min_reporters` distinct reporters was never released, so
    it does not appear; counts carry central DP noise on top of the devices' local noise.
    """
    k = context.telemetry_min_reporters
    found = queries.telemetry_aggregates(
        context.new_uow(), release, model_version=model, limit=limit
    )
    return AggregateList(
        min_reporters=k,
        items=[AggregatePublic.from_release(r) for r in found if r.reporters >= k],
    )


@router.get("/drift", responses=problem_responses(401, 422))
def drift(
    context: ContextDep,
    _: ViewerDep,
    release: Annotated[Digest, Query(description="the release's digest")],
    history: Annotated[int, Query(ge=1, le=HISTORY, description="newest windows")] = 12,
) -> DriftReport:
    """Per released window: each stream's noise-aware statistic and Monte-Carlo p-value
    (summed over the last 3 windows), debiased PSI and Jensen-Shannon distance, whether
    Benjamini-Hochberg names it, and the release's alert state. Empty without a
    registered reference for the release's model. See docs/telemetry.md."""
    windows = assess_release(context.new_uow(), release, history=history)
    return DriftReport(
        release_digest=release, windows=[WindowDriftPublic.from_drift(w) for w in windows]
    )


@router.get("/privacy", responses=problem_responses(401, 404, 422))
def privacy(
    context: ContextDep,
    _: ViewerDep,
    release: Annotated[Digest, Query(description="the release's digest")],
) -> PrivacyAccountPublic:
    """Privacy accounting of a release's telemetry, from the thresholds component it
    ships: epsilon per report (histograms x epsilon), reports per day
    (ceil(86400 / window_seconds)), epsilon per device per day by basic composition, and
    the daily budget devices enforce by default. Computed, not measured: no telemetry
    row names a device. 404 for an unknown release or one without thresholds."""
    account = privacy_account(context.new_uow(), context.blobs, release)
    return PrivacyAccountPublic.from_account(account)

"""Models: the card the server read from each uploaded ``.tflite``, and its reference.

A card is made when the model is uploaded as an artifact (or when a release names it);
the toolkit's ``fleet model register`` adds the reference histograms drift is judged by.
"""

from __future__ import annotations

from fastapi import APIRouter

from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import Digest, problem_responses
from fleet.api.models.models import ModelPublic
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.domain.model_card import ModelReference
from fleet.services.models import get_model, register_reference

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["models"], route_class=StrictJsonRoute)


@router.get("/{sha256}", responses=problem_responses(401, 404, 422))
def get_one(sha256: Digest, context: ContextDep, _: ViewerDep) -> ModelPublic:
    """The model card of an uploaded model, and its reference histograms if registered."""
    return ModelPublic.from_record(get_model(context.new_uow(), sha256))


@router.put("/{sha256}/reference", responses=problem_responses(401, 403, 404, 422))
def put_reference(
    sha256: Digest, reference: ModelReference, context: ContextDep, caller: OperatorDep
) -> ModelPublic:
    """Register the reference histograms measured through this model (a bundle's
    ``reference.json``); its ``model_sha256`` must name the model."""
    stored = register_reference(
        context.new_uow(),
        context.blobs,
        sha256,
        reference,
        actor=caller.name,
        now=context.clock(),
    )
    return ModelPublic.from_record(stored)

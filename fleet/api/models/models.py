"""A model version as the server knows it: its card and its drift reference."""

from __future__ import annotations

from datetime import datetime

from fleet.api.models.common import Digest, ResponseModel
from fleet.domain.model_card import ModelCard, ModelReference, StoredModel

__all__ = ["ModelPublic"]


class ModelPublic(ResponseModel):
    sha256: Digest
    card: ModelCard
    reference: ModelReference | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: StoredModel) -> ModelPublic:
        return cls(
            sha256=record.sha256,
            card=record.card,
            reference=record.reference,
            created_at=record.created_at,
        )

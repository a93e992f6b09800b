"""Model cards: what the server read from each ``.tflite`` artifact, and its reference."""

from __future__ import annotations

from sqlmodel import col, update

from fleet.domain.model_card import ModelCard, ModelReference, StoredModel
from fleet.store.errors import NotFound
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import ModelCardRow

__all__ = ["SqlModelCardRepository"]


class SqlModelCardRepository(SqlRepository):
    def add(self, model: StoredModel) -> None:
        reference = None if model.reference is None else model.reference.model_dump(mode="json")
        self._insert(
            [
                ModelCardRow(
                    sha256=model.sha256,
                    card=model.card.model_dump(mode="json"),
                    reference=reference,
                    created_at=model.created_at,
                )
            ]
        )

    def get(self, sha256: str) -> StoredModel | None:
        row = self._session.get(ModelCardRow, sha256)
        return None if row is None else _stored(row)

    def set_reference(self, sha256: str, reference: ModelReference) -> None:
        result = self._session.exec(
            update(ModelCardRow)
            .where(col(ModelCardRow.sha256) == sha256)
            .values(reference=reference.model_dump(mode="json"))
        )
        if result.rowcount == 0:
            raise NotFound(f"no model card for {sha256}")


def _stored(row: ModelCardRow) -> StoredModel:
    return StoredModel(
        sha256=row.sha256,
        card=ModelCard.model_validate(row.card),
        created_at=row.created_at,
        reference=None if row.reference is None else ModelReference.model_validate(row.reference),
    )

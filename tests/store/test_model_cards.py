"""Model cards round-trip through the store on both backends, reference and all."""

from __future__ import annotations

import pytest

from fleet.domain.model_card import ModelReference, ReferenceHistogram, StoredModel
from fleet.domain.records import Artifact
from fleet.inspection import inspect_model
from fleet.store import NotFound, SqlUnitOfWork
from tests.fleet.tflite_builder import build, tiny_classifier
from tests.store.builders import NOW, digest

CARD = inspect_model(build(tiny_classifier()))
SHA = digest("model")
REFERENCE = ModelReference(
    task="gesture",
    seed=3,
    size=4,
    model_sha256=SHA,
    float_accuracy=1.0,
    int8_accuracy=0.75,
    histograms={"predicted": ReferenceHistogram(counts=(1, 3), proportions=(0.25, 0.75))},
)


def test_a_card_and_its_reference_round_trip(uow: SqlUnitOfWork) -> None:
    stored = StoredModel(sha256=SHA, card=CARD, created_at=NOW)
    with uow:
        uow.artifacts.add(
            Artifact(sha256=SHA, length=CARD.flash_bytes, media_type="x", created_at=NOW)
        )
        uow.model_cards.add(stored)
        uow.commit()
    with uow:
        assert uow.model_cards.get(SHA) == stored
        uow.model_cards.set_reference(SHA, REFERENCE)
        uow.commit()
    with uow:
        again = uow.model_cards.get(SHA)
        assert again is not None and again.reference == REFERENCE and again.card == CARD
        assert uow.model_cards.get(digest("other")) is None


def test_a_reference_needs_a_card(uow: SqlUnitOfWork) -> None:
    with uow, pytest.raises(NotFound):
        uow.model_cards.set_reference(SHA, REFERENCE)

"""Rate settings are checked when the server reads them, not at the first request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet.ratelimit import parse_rate
from fleet.settings import Settings


@pytest.mark.parametrize(
    "field", ["api_rate_per_token", "api_rate_per_address", "device_message_rate"]
)
def test_a_rate_that_is_not_one_is_refused_naming_it(field: str) -> None:
    with pytest.raises(ValidationError, match="'fast' is not a rate such as '100/second'"):
        Settings.model_validate({field: "fast"})


def test_the_defaults_are_rates() -> None:
    settings = Settings()
    assert parse_rate(settings.api_rate_per_token).amount == 100
    assert parse_rate(settings.device_message_rate).amount == 120

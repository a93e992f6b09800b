"""Field types shared by every wire document."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["DeviceId", "Digest", "KeyId", "Name", "PositiveCount", "SafeInt", "WireModel"]

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
KeyId = Digest
# Device ids become MQTT topic levels and CoAP path segments: no '/', '+', '#' or spaces.
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]
Count = Annotated[int, Field(ge=0, le=2**53 - 1)]
# A bound written on the attribute (`x: Count = Field(ge=1)`) loses to the alias's ge=0.
PositiveCount = Annotated[int, Field(ge=1, le=2**53 - 1)]
# I-JSON's exact integer range: what RFC 8785 can write and a double can hold.
SafeInt = Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]


class WireModel(BaseModel):
    """Strict, immutable, closed: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

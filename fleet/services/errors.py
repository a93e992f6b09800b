"""Why a use case refuses; each class has a stable ``code`` the API and transports map.

Exception tree::

    ServiceError                  (service_error)
    ├── NotFoundError             (not_found)          a named thing does not exist
    ├── ConflictError             (conflict)           it exists already, or clashes
    ├── InvalidInput              (invalid_input)      well-formed but unacceptable input
    │   └── ClassMismatch         (device_class_mismatch) release for another class
    ├── ReleaseRejected           (code of the refusal) the release does not verify, or
    │   │                                               names artifacts the server lacks
    │   └── ReleaseIncompatible   (release_incompatible) its model does not fit its
    │                                                   firmware or device class
    ├── ModelRefused              (a RejectCode)       a model that inspection refuses
    └── ArtifactTooLarge          (artifact_too_large)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ArtifactTooLarge",
    "ClassMismatch",
    "ConflictError",
    "InvalidInput",
    "ModelRefused",
    "NotFoundError",
    "ReleaseIncompatible",
    "ReleaseRejected",
    "ServiceError",
]


class ServiceError(Exception):
    code = "service_error"

    def __init__(
        self, detail: str, *, code: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = dict(extra or {})  # more members for the problem document


class NotFoundError(ServiceError):
    code = "not_found"


class ConflictError(ServiceError):
    code = "conflict"


class InvalidInput(ServiceError):
    code = "invalid_input"


class ClassMismatch(InvalidInput):
    code = "device_class_mismatch"


class ReleaseRejected(ServiceError):
    code = "release_rejected"


class ReleaseIncompatible(ReleaseRejected):
    code = "release_incompatible"


class ModelRefused(ServiceError):
    code = "model_rejected"


class ArtifactTooLarge(ServiceError):
    code = "artifact_too_large"

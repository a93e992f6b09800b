"""Why a use case refuses; each class has a stable ``code`` the API and transports map.

Exception tree::

    ServiceError                  (service_error)
    ├── NotFoundError             (not_found)          a named thing does not exist
    ├── ConflictError             (conflict)           it exists already, or clashes
    ├── InvalidInput              (invalid_input)      well-formed but unacceptable input
    │   └── ClassMismatch         (device_class_mismatch) release for another class
    ├── ReleaseRejected           (code of the refusal) the release does not verify, or
    │                                                   names artifacts the server lacks
    └── ArtifactTooLarge          (artifact_too_large)
"""

from __future__ import annotations

__all__ = [
    "ArtifactTooLarge",
    "ClassMismatch",
    "ConflictError",
    "InvalidInput",
    "NotFoundError",
    "ReleaseRejected",
    "ServiceError",
]


class ServiceError(Exception):
    code = "service_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


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


class ArtifactTooLarge(ServiceError):
    code = "artifact_too_large"

"""Errors of the simulated device's transports and its simulated power supply.

Exception tree; each ``Exception`` carries a stable ``code`` reported as a status
``error_code``::

    DeviceSimError                   (device_error)
    └── DownloadFailed               (download_failed)       retries exhausted, HTTP error
        ├── DownloadTimeout          (download_timeout)      overall deadline: slow retrieval
        └── ArtifactUnavailable      (artifact_unavailable)  the server has no such blob

    PowerLoss (BaseException)        the simulated process stops where it stands

Trust refusals (a bad signature, an artifact that is too long or has the wrong digest)
are ``signer.errors.Refusal`` and keep their own codes. ``PowerLoss`` derives from
``BaseException`` so no ``except Exception`` on the way up can swallow it: like a real
power cut, it ends the device's process and only the state file survives.
"""

from __future__ import annotations

__all__ = [
    "ArtifactUnavailable",
    "DeviceSimError",
    "DownloadFailed",
    "DownloadTimeout",
    "PowerLoss",
]


class DeviceSimError(Exception):
    code = "device_error"


class DownloadFailed(DeviceSimError):
    code = "download_failed"


class DownloadTimeout(DownloadFailed):
    code = "download_timeout"


class ArtifactUnavailable(DownloadFailed):
    code = "artifact_unavailable"


class PowerLoss(BaseException):
    """The simulated device lost power; restart it from its state file."""

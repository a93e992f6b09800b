"""Why a device (or the server on its behalf) refuses a document or an artifact.

Exception tree; every class has a stable ``code`` reported on the wire::

    Refusal                              (refused)
    ├── MalformedDocument                (malformed)          cannot be parsed or is over its cap
    ├── SignatureRefusal                 a role's threshold of signatures is not met
    │   ├── SignatureInvalid             (signature_invalid)  a trusted key's sig fails: tampered
    │   ├── WrongRoleKey                 (wrong_role_key)     signed by a key of another role
    │   ├── UntrustedKey                 (untrusted_key)      signed by a key the root does not list
    │   │                                                     (unknown, or revoked by a rotation)
    │   └── ThresholdNotMet              (threshold_not_met)  valid, but too few distinct keys
    ├── RootRotationRefused              (root_rotation_refused) new root lacks old or new threshold
    ├── RootVersionError                 (root_version)       not exactly trusted version + 1
    ├── RootExpired                      (root_expired)
    ├── WrongDevice                      (wrong_device)       director manifest for another device
    ├── WrongDeviceClass                 (wrong_device_class) release for another hardware class
    ├── SequenceReplayed                 (sequence_replayed)  sequence not above the last accepted
    ├── DirectorExpired                  (director_expired)   freeze attack, or a stale manifest
    ├── SecurityFloorViolation           (below_security_floor) rollback attack
    ├── ReleaseDigestMismatch            (release_digest_mismatch) mix-and-match
    ├── ConstraintUnmet                  the release's signed Constraints do not hold here
    │   ├── FirmwareTooOld               (firmware_too_old)   running firmware below the minimum
    │   ├── OpsUnsupported               (ops_unsupported)    a required op the resolver lacks
    │   ├── RamInsufficient              (ram_insufficient)   declared RAM need above the device's
    │   └── FlashInsufficient            (flash_insufficient) declared flash, or the components'
    │                                                         total length, above the device's
    └── ArtifactRefusal
        ├── ArtifactTooLong              (artifact_too_long)  more bytes than declared: endless data
        ├── ArtifactTooShort             (artifact_too_short)
        └── ArtifactDigestMismatch       (artifact_digest_mismatch)

Context is keyword-only and every message says what was expected and what arrived.
"""

from __future__ import annotations

__all__ = [
    "ArtifactDigestMismatch",
    "ArtifactRefusal",
    "ArtifactTooLong",
    "ArtifactTooShort",
    "ConstraintUnmet",
    "DirectorExpired",
    "FirmwareTooOld",
    "FlashInsufficient",
    "MalformedDocument",
    "OpsUnsupported",
    "RamInsufficient",
    "Refusal",
    "ReleaseDigestMismatch",
    "RootExpired",
    "RootRotationRefused",
    "RootVersionError",
    "SecurityFloorViolation",
    "SequenceReplayed",
    "SignatureInvalid",
    "SignatureRefusal",
    "ThresholdNotMet",
    "UntrustedKey",
    "WrongDevice",
    "WrongDeviceClass",
    "WrongRoleKey",
]


class Refusal(Exception):
    code = "refused"


class MalformedDocument(Refusal):
    code = "malformed"


class SignatureRefusal(Refusal):
    code = "signature_refused"

    def __init__(self, message: str, *, role: str, valid: int, threshold: int) -> None:
        super().__init__(f"{role}: {message} ({valid} valid of {threshold} needed)")
        self.role = role
        self.valid = valid
        self.threshold = threshold


class SignatureInvalid(SignatureRefusal):
    code = "signature_invalid"


class WrongRoleKey(SignatureRefusal):
    code = "wrong_role_key"


class UntrustedKey(SignatureRefusal):
    code = "untrusted_key"


class ThresholdNotMet(SignatureRefusal):
    code = "threshold_not_met"


class RootRotationRefused(Refusal):
    code = "root_rotation_refused"


class RootVersionError(Refusal):
    code = "root_version"


class RootExpired(Refusal):
    code = "root_expired"


class WrongDevice(Refusal):
    code = "wrong_device"


class WrongDeviceClass(Refusal):
    code = "wrong_device_class"


class SequenceReplayed(Refusal):
    code = "sequence_replayed"


class DirectorExpired(Refusal):
    code = "director_expired"


class SecurityFloorViolation(Refusal):
    code = "below_security_floor"


class ReleaseDigestMismatch(Refusal):
    code = "release_digest_mismatch"


class ConstraintUnmet(Refusal):
    code = "constraint_unmet"


class FirmwareTooOld(ConstraintUnmet):
    code = "firmware_too_old"


class OpsUnsupported(ConstraintUnmet):
    code = "ops_unsupported"


class RamInsufficient(ConstraintUnmet):
    code = "ram_insufficient"


class FlashInsufficient(ConstraintUnmet):
    code = "flash_insufficient"


class ArtifactRefusal(Refusal):
    code = "artifact_refused"


class ArtifactTooLong(ArtifactRefusal):
    code = "artifact_too_long"


class ArtifactTooShort(ArtifactRefusal):
    code = "artifact_too_short"


class ArtifactDigestMismatch(ArtifactRefusal):
    code = "artifact_digest_mismatch"

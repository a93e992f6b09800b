"""tinyfleet's wire contract: signed-document models, DSSE envelopes and canonical JSON.

Shared by the server (``fleet``), the offline signer (``signer``) and the simulated
devices (``device_sim``). Pure: no IO, no crypto (signing lives in ``signer``).
"""

from schemas.canonical import canonical_bytes, model_bytes, strict_loads
from schemas.common import WireModel
from schemas.device import (
    ComponentVersion,
    DeviceState,
    Mechanism,
    StatusReport,
    TelemetryReport,
    TelemetryWindow,
)
from schemas.director import Action, Calibration, Delivery, DirectorManifest
from schemas.documents import DOCUMENT_KINDS, decode_payload, kind_of, wrap_model
from schemas.dsse import Envelope, Signature, pae, payload_type
from schemas.errors import DocumentError, DocumentTooLarge, DuplicateKeyError, WrongPayloadType
from schemas.release import (
    Component,
    ComponentKind,
    Constraints,
    FirmwareDeclaration,
    ReleaseManifest,
    TensorDeclaration,
)
from schemas.root import PublicKey, Role, RoleKeys, RootMetadata
from schemas.timestamps import Timestamp, format_timestamp, parse_timestamp

__all__ = [
    "DOCUMENT_KINDS",
    "Action",
    "Calibration",
    "Component",
    "ComponentKind",
    "ComponentVersion",
    "Constraints",
    "Delivery",
    "DeviceState",
    "DirectorManifest",
    "DocumentError",
    "DocumentTooLarge",
    "DuplicateKeyError",
    "Envelope",
    "FirmwareDeclaration",
    "Mechanism",
    "PublicKey",
    "ReleaseManifest",
    "Role",
    "RoleKeys",
    "RootMetadata",
    "Signature",
    "StatusReport",
    "TelemetryReport",
    "TelemetryWindow",
    "TensorDeclaration",
    "Timestamp",
    "WireModel",
    "WrongPayloadType",
    "canonical_bytes",
    "decode_payload",
    "format_timestamp",
    "kind_of",
    "model_bytes",
    "pae",
    "parse_timestamp",
    "payload_type",
    "strict_loads",
    "wrap_model",
]

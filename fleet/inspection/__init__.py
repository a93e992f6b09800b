"""Model inspection: what a ``.tflite`` file needs from a device, or why it is refused."""

from fleet.inspection.errors import ModelRejected, RejectCode
from fleet.inspection.limits import DEFAULT_LIMITS, InspectionLimits
from fleet.inspection.tflite_model import inspect_model

__all__ = ["DEFAULT_LIMITS", "InspectionLimits", "ModelRejected", "RejectCode", "inspect_model"]

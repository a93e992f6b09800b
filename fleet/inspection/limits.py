"""Caps on what a model may declare: they bound inspection's time and memory."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "InspectionLimits"]


@dataclass(frozen=True, slots=True)
class InspectionLimits:
    """Defaults sit far above MCU models (MLPerf Tiny's have < 100 tensors and < 1 MB)
    and far below what would make inspection slow: the planner is quadratic in tensors.
    """

    max_file_bytes: int = 16 * 1024 * 1024
    max_subgraphs: int = 64
    max_operator_codes: int = 256
    max_buffers: int = 4096
    max_tensors: int = 1024
    max_operators: int = 1024
    max_operator_tensors: int = 64
    max_graph_io: int = 64
    max_rank: int = 8
    max_quantization_params: int = 16384
    max_name_bytes: int = 1024
    max_tensor_bytes: int = 256 * 1024 * 1024


DEFAULT_LIMITS = InspectionLimits()

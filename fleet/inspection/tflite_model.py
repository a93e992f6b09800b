"""Inspect a ``.tflite`` model with the pure-Python ``tflite`` parser — never TensorFlow.

:func:`inspect_model` reads what a release needs to know about a model (operators,
input/output contract, quantisation, flash and tensor-arena need) and refuses anything
it cannot vouch for with :class:`~fleet.inspection.errors.ModelRejected`. Hostile input
is expected: every offset is checked against the file (``FlatView``), every declared
count against :class:`~fleet.inspection.limits.InspectionLimits`, and the flatbuffers
runtime's own exceptions are mapped in one place (``flatbuffer_errors``).
"""

from __future__ import annotations

from tflite.Model import Model

from fleet.domain.arena import (
    HOST_64BIT,
    Buffer,
    TflmOverheads,
    align_up,
    estimate_arena,
    tflm_lifetimes,
)
from fleet.domain.model_card import ArenaEstimate, ModelCard, NumericKind, TensorSpec
from fleet.inspection import _schema as fb
from fleet.inspection._flatbuf import FlatView, flatbuffer_errors
from fleet.inspection._kernels import operator_demand
from fleet.inspection._reader import Graph, TensorInfo, read_graph
from fleet.inspection._runnable import check_runnable
from fleet.inspection.errors import ModelRejected, RejectCode
from fleet.inspection.limits import DEFAULT_LIMITS, InspectionLimits

__all__ = ["inspect_model"]


def inspect_model(
    data: bytes,
    *,
    limits: InspectionLimits = DEFAULT_LIMITS,
    overheads: TflmOverheads = HOST_64BIT,
) -> ModelCard:
    """The model card of a ``.tflite`` file, or ModelRejected saying why there is none."""
    _check_header(data, limits)
    view = FlatView(data)
    with flatbuffer_errors("the model"):
        model = view.table(Model.GetRootAs(data, 0), "model")
        version = int(model.Version())
        if version != fb.SCHEMA_VERSION:
            raise ModelRejected(
                RejectCode.UNSUPPORTED_SCHEMA,
                f"schema version {version}; only version {fb.SCHEMA_VERSION} is supported",
            )
        graph = read_graph(view, model, len(data), limits)
    check_runnable(graph)
    return _card(graph, version, len(data), overheads)


def _check_header(data: bytes, limits: InspectionLimits) -> None:
    if len(data) > limits.max_file_bytes:
        raise ModelRejected(
            RejectCode.TOO_LARGE,
            f"model is {len(data)} bytes; the cap is {limits.max_file_bytes} bytes",
        )
    if len(data) < 8:
        raise ModelRejected(RejectCode.MALFORMED, f"model is only {len(data)} bytes long")
    if data[4:8] != fb.FILE_IDENTIFIER:
        raise ModelRejected(
            RejectCode.WRONG_IDENTIFIER,
            f"file identifier is {bytes(data[4:8])!r}, expected {fb.FILE_IDENTIFIER!r}",
        )


def _card(graph: Graph, version: int, file_size: int, overheads: TflmOverheads) -> ModelCard:
    tensors = graph.tensors
    float_tensors = tuple(t.name for t in tensors if t.dtype in fb.FLOAT_TYPES)
    if not float_tensors:
        kind = NumericKind.INTEGER
    elif any(t.dtype in fb.QUANTIZED_TYPES for t in tensors):
        kind = NumericKind.MIXED
    else:
        kind = NumericKind.FLOAT
    return ModelCard(
        schema_version=version,
        flash_bytes=file_size,
        builtin_ops=tuple(sorted({op.kind.name for op in graph.operators if not op.kind.custom})),
        custom_ops=tuple(sorted({op.kind.name for op in graph.operators if op.kind.custom})),
        operator_count=len(graph.operators),
        tensor_count=len(tensors),
        inputs=tuple(_spec(tensors[i]) for i in graph.inputs),
        outputs=tuple(_spec(tensors[i]) for i in graph.outputs),
        numeric_kind=kind,
        float_tensors=float_tensors,
        arena=_arena(graph, overheads),
    )


def _spec(tensor: TensorInfo) -> TensorSpec:
    return TensorSpec(
        name=tensor.name,
        shape=tensor.shape,
        shape_signature=tensor.signature,
        dtype=tensor.dtype,
        quantization=tensor.quantization,
    )


def _arena(graph: Graph, overheads: TflmOverheads) -> ArenaEstimate:
    tensors = graph.tensors
    lifetimes = tflm_lifetimes(
        len(tensors),
        graph.inputs,
        graph.outputs,
        [(op.inputs, op.outputs) for op in graph.operators],
    )
    planned = [
        Buffer(align_up(t.nbytes), *lifetimes[i])
        for i, t in enumerate(tensors)
        if not t.resident and not t.variable
    ]
    head, temporaries, tail = estimate_arena(
        tensor_count=len(tensors),
        planned=planned,
        operators=[operator_demand(op, tensors) for op in graph.operators],
        inputs=[tensors[i].channels for i in graph.inputs],
        outputs=[tensors[i].channels for i in graph.outputs],
        variable_bytes=sum(align_up(t.nbytes) for t in tensors if t.variable),
        overheads=overheads,
    )
    return ArenaEstimate(
        head=head,
        prepare_peak=temporaries,
        tail_margin=tail,
        total=max(head, temporaries) + tail,
    )

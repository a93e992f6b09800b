"""Hostile ``.tflite`` uploads: each is refused with ModelRejected, quickly and cheaply.

The valid starting point is a hand-built model (no TensorFlow needed); every variant
corrupts one thing. ``refused`` also bounds the time and memory each inspection takes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import flatbuffers
import numpy as np
import pytest
from flatbuffers import number_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite.Buffer import BufferAddData, BufferEnd, BufferStart
from tflite.BuiltinOperator import BuiltinOperator
from tflite.Model import Model
from tflite.TensorType import TensorType

from fleet.inspection import InspectionLimits, ModelRejected, RejectCode, inspect_model
from fleet.inspection._flatbuf import flatbuffer_errors
from tests.fleet.tflite_builder import FLOAT32, INT32, Graph, Op, T, build, tiny_classifier

TIME_LIMIT_S = 1.0
MEMORY_LIMIT_BYTES = 4 * 1024 * 1024

VALID = build(tiny_classifier())


def refused(
    data: bytes, code: RejectCode | None = None, limits: InspectionLimits | None = None
) -> ModelRejected:
    """The ModelRejected that inspecting ``data`` raises, within time and memory bounds."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ModelRejected) as info:
            inspect_model(data, limits=limits or InspectionLimits())
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT_S, f"inspection took {elapsed:.2f} s"
    assert peak < MEMORY_LIMIT_BYTES, f"inspection allocated {peak} bytes"
    if code is not None:
        assert info.value.code == code, info.value
    return info.value


def variant(**changes: object) -> Graph:
    return dataclasses.replace(tiny_classifier(), **changes)


def with_tensor(index: int, **changes: object) -> Graph:
    graph = tiny_classifier()
    graph.tensors[index] = dataclasses.replace(graph.tensors[index], **changes)
    return graph


def patched(data: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def _vector_length_at(table: Any, slot: int) -> int:
    """File offset of the length word of vector ``slot`` in a generated tflite table."""
    tab = table._tab
    return int(tab.Vector(tab.Offset(slot))) - 4


def _subgraph(data: bytes = VALID) -> Any:
    return Model.GetRootAs(data, 0).Subgraphs(0)


def _root_table(data: bytes = VALID) -> int:
    return int(struct.unpack_from("<I", data, 0)[0])


def other_schema_flatbuffer(identifier: bytes | None) -> bytes:
    """A well-formed flatbuffer whose root is a tflite Buffer table, not a Model."""
    b = flatbuffers.Builder(64)
    payload = b.CreateByteVector(b"\x03\x00\x00\x00 not a model at all")
    BufferStart(b)
    BufferAddData(b, payload)
    b.Finish(BufferEnd(b), file_identifier=identifier)
    return bytes(b.Output())


# ---- envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"TFL", b"\x00" * 7], ids=["empty", "3 bytes", "7 bytes"])
def test_refuses_files_too_short_to_hold_a_header(data: bytes) -> None:
    refused(data, RejectCode.MALFORMED)


@pytest.mark.parametrize("identifier", [b"TFL2", b"tfl3", b"\x00\x00\x00\x00"])
def test_refuses_a_wrong_file_identifier(identifier: bytes) -> None:
    error = refused(VALID[:4] + identifier + VALID[8:], RejectCode.WRONG_IDENTIFIER)
    assert "TFL3" in error.message


def test_refuses_random_bytes() -> None:
    noise = random.Random(7).randbytes(4096)
    refused(noise, RejectCode.WRONG_IDENTIFIER)
    refused(noise[:4] + b"TFL3" + noise[8:])


def test_refuses_a_flatbuffer_of_another_schema() -> None:
    refused(other_schema_flatbuffer(None), RejectCode.WRONG_IDENTIFIER)
    refused(other_schema_flatbuffer(b"TFL3"))


def test_refuses_a_file_over_the_size_cap() -> None:
    error = refused(VALID, RejectCode.TOO_LARGE, InspectionLimits(max_file_bytes=512))
    assert str(len(VALID)) in error.message


def test_refuses_every_truncation() -> None:
    for length in range(len(VALID)):
        refused(VALID[:length])


# ---- offsets ----------------------------------------------------------------------------


@pytest.mark.parametrize("root", [0xFFFFFFF0, len(VALID), len(VALID) - 2, 0])
def test_refuses_a_root_offset_outside_the_file(root: int) -> None:
    refused(patched(VALID, 0, "<I", root), RejectCode.MALFORMED)


@pytest.mark.parametrize("soffset", [0x7FFFFFFF, -0x7FFFFFFF, 1])
def test_refuses_a_root_vtable_outside_the_file_or_inside_the_table(soffset: int) -> None:
    refused(patched(VALID, _root_table(), "<i", soffset), RejectCode.MALFORMED)


def test_refuses_a_vtable_with_an_odd_or_tiny_size() -> None:
    root = _root_table()
    vtable = root - struct.unpack_from("<i", VALID, root)[0]
    refused(patched(VALID, vtable, "<H", 7), RejectCode.MALFORMED)
    refused(patched(VALID, vtable, "<H", 2), RejectCode.MALFORMED)


def test_refuses_an_absurd_vector_length() -> None:
    at = _vector_length_at(_subgraph(), 4)  # SubGraph.tensors
    error = refused(patched(VALID, at, "<I", 0xFFFFFFFF), RejectCode.TOO_LARGE)
    assert "4294967295" in error.message


def test_refuses_a_vector_that_overruns_the_file() -> None:
    at = _vector_length_at(_subgraph(), 4)
    refused(patched(VALID, at, "<I", 1000), RejectCode.MALFORMED)


def test_refuses_a_huge_string_length() -> None:
    name_slot = 10  # Tensor.name
    tensor = _subgraph().Tensors(0)
    at = _vector_length_at(tensor, name_slot)
    refused(patched(VALID, at, "<I", 0x7FFFFFFF), RejectCode.TOO_LARGE)


def test_refuses_a_name_that_is_not_utf8() -> None:
    tensor = _subgraph().Tensors(0)
    at = _vector_length_at(tensor, 10) + 4
    refused(patched(VALID, at, "<B", 0xFF), RejectCode.MALFORMED)


def test_refuses_declared_counts_over_the_caps() -> None:
    refused(VALID, RejectCode.TOO_LARGE, InspectionLimits(max_tensors=4))
    refused(VALID, RejectCode.TOO_LARGE, InspectionLimits(max_operators=1))
    refused(VALID, RejectCode.TOO_LARGE, InspectionLimits(max_operator_codes=1))


# ---- schema and graph -------------------------------------------------------------------


def test_refuses_another_schema_version() -> None:
    error = refused(build(tiny_classifier(), version=2), RejectCode.UNSUPPORTED_SCHEMA)
    assert "version 2" in error.message


@pytest.mark.parametrize("count", [0, 2])
def test_refuses_anything_but_one_subgraph(count: int) -> None:
    error = refused(build(tiny_classifier(), subgraphs=count), RejectCode.SUBGRAPHS)
    assert f"{count} subgraphs" in error.message


@pytest.mark.parametrize(
    ("graph", "needle"),
    [
        (variant(operators=[Op(7, [0, 1, 2], [3]), Op(1, [3], [4])]), "operator code 7"),
        (variant(operators=[Op(0, [0, 1, 99], [3]), Op(1, [3], [4])]), "tensor 99"),
        (variant(operators=[Op(0, [0, 1, -2], [3]), Op(1, [3], [4])]), "tensor -2"),
        (variant(operators=[Op(0, [0, 1, 2], [-1]), Op(1, [3], [4])]), "tensor -1"),
        (variant(inputs=[5]), "tensor 5"),
        (with_tensor(3, buffer=40), "buffer 40"),
    ],
    ids=["opcode", "input", "negative input", "omitted output", "graph input", "buffer"],
)
def test_refuses_dangling_references(graph: Graph, needle: str) -> None:
    error = refused(build(graph), RejectCode.BAD_REFERENCE)
    assert needle in error.message


@pytest.mark.parametrize(
    ("graph", "code"),
    [
        (with_tensor(3, shape=[1, -4]), RejectCode.DYNAMIC_SHAPE),
        (with_tensor(3, shape=[1, 0]), RejectCode.DYNAMIC_SHAPE),
        (with_tensor(0, signature=[1, 8, 1]), RejectCode.MALFORMED),
        (with_tensor(3, shape=[65536, 65536, 65536]), RejectCode.TOO_LARGE),
        (with_tensor(3, shape=[1] * 100), RejectCode.TOO_LARGE),
        (with_tensor(3, dtype=TensorType.STRING), RejectCode.UNSUPPORTED_DTYPE),
        (with_tensor(0, quant=(float("nan"), 0)), RejectCode.MALFORMED),
        (with_tensor(4, quant=(-1.0, 0)), RejectCode.MALFORMED),
        (
            variant(opcodes=[(BuiltinOperator.CUSTOM, None), (BuiltinOperator.SOFTMAX, None)]),
            RejectCode.MALFORMED,
        ),
        (variant(opcodes=[(-5, None), (BuiltinOperator.SOFTMAX, None)]), RejectCode.MALFORMED),
    ],
    ids=[
        "negative dim",
        "zero-sized output",
        "signature rank",
        "absurd size",
        "rank 100",
        "string activation",
        "nan scale",
        "negative scale",
        "custom without code",
        "negative builtin code",
    ],
)
def test_refuses_tensors_and_operators_it_cannot_plan(graph: Graph, code: RejectCode) -> None:
    refused(build(graph), code)


def test_dynamic_shape_message_names_the_tensor_and_dimension() -> None:
    error = refused(build(with_tensor(3, shape=[1, -4])), RejectCode.DYNAMIC_SHAPE)
    assert "'logits'" in error.message
    assert "[1, -4]" in error.message and "dimension 1" in error.message


def test_accepts_a_dynamic_batch_in_the_signature_and_keeps_both_shapes() -> None:
    # What the converter writes for a Keras Input without batch_size: TFLM runs [1, ...].
    graph = tiny_classifier()
    for index in (0, 3, 4):
        tensor = graph.tensors[index]
        graph.tensors[index] = dataclasses.replace(tensor, signature=[-1, *tensor.shape[1:]])
    card = inspect_model(build(graph))
    assert card.inputs[0].shape == (1, 8) and card.inputs[0].shape_signature == (-1, 8)
    assert card.outputs[0].shape == (1, 4) and card.outputs[0].shape_signature == (-1, 4)
    assert card.arena == inspect_model(VALID).arena


def _resize(shape_from_input: bool) -> Graph:
    """int8 [1, 4, 4, 1] -> RESIZE_BILINEAR -> [1, 8, 8, 1], size a constant or an input."""
    size = (
        T("size", [2], dtype=INT32)
        if shape_from_input
        else T("size", [2], dtype=INT32, data=np.array([8, 8], np.int32).tobytes())
    )
    return Graph(
        tensors=[
            T("image", [1, 4, 4, 1], quant=(0.05, 0), signature=[-1, 4, 4, 1]),
            size,
            T("resized", [1, 8, 8, 1], quant=(0.05, 0), signature=[-1, 8, 8, 1]),
        ],
        operators=[Op(0, [0, 1], [2])],
        inputs=[0, 1] if shape_from_input else [0],
        outputs=[2],
        opcodes=[(BuiltinOperator.RESIZE_BILINEAR, None)],
    )


def test_refuses_an_operator_that_resizes_its_output_at_run_time() -> None:
    inspect_model(build(_resize(shape_from_input=False)))
    error = refused(build(_resize(shape_from_input=True)), RejectCode.DYNAMIC_SHAPE)
    assert "operator 0 (RESIZE_BILINEAR)" in error.message
    assert "size from tensor 1 ('size')" in error.message
    assert "computed at run time" in error.message


def test_zero_sized_output_message_names_operator_and_tensor() -> None:
    error = refused(build(with_tensor(3, shape=[1, 0])), RejectCode.DYNAMIC_SHAPE)
    assert "operator 0 (FULLY_CONNECTED)" in error.message and "'logits'" in error.message


# ---- everything the flatbuffers runtime raises is mapped ---------------------------------


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda: struct.unpack_from("<I", b"\x00", 0),
        lambda: number_types.enforce_number(-1, number_types.UOffsetTFlags),
        lambda: np.frombuffer(b"\x00", dtype="<i4", count=4),
        lambda: [][1],
        lambda: struct.pack("<I", 1 << 40),
    ],
    ids=["struct.error", "TypeError", "ValueError", "IndexError", "OverflowError"],
)
def test_every_runtime_error_becomes_malformed(raise_it: Callable[[], object]) -> None:
    with pytest.raises(ModelRejected) as info, flatbuffer_errors("a field"):
        raise_it()
    assert info.value.code == RejectCode.MALFORMED
    assert "a field" in info.value.message


def test_model_rejected_passes_through_unchanged() -> None:
    original = ModelRejected(RejectCode.SUBGRAPHS, "two")
    with pytest.raises(ModelRejected) as info, flatbuffer_errors("a field"):
        raise original
    assert info.value is original


# ---- fuzzing ----------------------------------------------------------------------------

_OVERWRITES = st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(VALID) - 4), st.one_of(_OVERWRITES, st.integers(0, 2**32 - 1))
        ),
        min_size=1,
        max_size=4,
    )
)
def test_corrupted_words_give_a_card_or_model_rejected(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for at, value in edits:
        struct.pack_into("<I", data, at, value)
    started = time.perf_counter()
    with contextlib.suppress(ModelRejected):
        inspect_model(bytes(data))
    assert time.perf_counter() - started < TIME_LIMIT_S


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 7)), max_size=8))
def test_bit_flips_give_a_card_or_model_rejected(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for at, bit in flips:
        data[at] ^= 1 << bit
    with contextlib.suppress(ModelRejected):
        inspect_model(bytes(data))


def test_a_model_at_the_caps_is_inspected_quickly() -> None:
    """1,000 tensors alive all at once: the quadratic planner's worst case stays fast."""
    count = 1000
    tensors = [T(f"t{i}", [1, 16 + i % 7]) for i in range(count)]
    graph = Graph(
        tensors=[*tensors, T("sum", [1, 16])],
        operators=[Op(0, list(range(0, 60)), [count])],
        inputs=list(range(60)),
        outputs=[count],
        opcodes=[(BuiltinOperator.ADD_N, None)],
    )
    started = time.perf_counter()
    card = inspect_model(build(graph))
    assert time.perf_counter() - started < 2 * TIME_LIMIT_S
    assert card.tensor_count == count + 1


# ---- purity -----------------------------------------------------------------------------


def test_inspection_and_domain_never_import_a_framework() -> None:
    probe = (
        "import sys\n"
        "import fleet.inspection, fleet.domain.arena, fleet.domain.model_card\n"
        "import fleet.domain.compatibility\n"
        "banned = ('tensorflow', 'ai_edge_litert', 'tflite_micro', 'keras', 'fastapi',"
        " 'sqlmodel', 'sqlalchemy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_float_tensors_inside_an_int8_model_are_reported() -> None:
    card = inspect_model(build(with_tensor(3, dtype=FLOAT32, quant=None)))
    assert card.float_tensors == ("logits",)
    assert card.numeric_kind == "mixed"

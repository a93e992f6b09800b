"""The greedy arena planner and TFLM lifetimes: worked examples and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.domain.arena import (
    ARENA_ALIGNMENT,
    HOST_64BIT,
    Buffer,
    OperatorDemand,
    align_up,
    estimate_arena,
    plan_greedy,
    tflm_lifetimes,
)


@st.composite
def buffers(draw: st.DrawFn) -> list[Buffer]:
    found = []
    for _ in range(draw(st.integers(0, 24))):
        first = draw(st.integers(-1, 12))
        last = draw(st.integers(first, 14))
        found.append(Buffer(draw(st.integers(0, 4096)), first, last))
    return found


def live_peak(planned: list[Buffer]) -> int:
    """Largest sum of sizes alive at one scope: a lower bound for any valid plan."""
    scopes = {b.first_use for b in planned}
    return max(
        (sum(b.size for b in planned if b.first_use <= t <= b.last_use) for t in scopes),
        default=0,
    )


@given(buffers())
def test_buffers_alive_together_never_share_bytes(planned: list[Buffer]) -> None:
    offsets = plan_greedy(planned).offsets
    for i, a in enumerate(planned):
        for j in range(i + 1, len(planned)):
            b = planned[j]
            if a.overlaps_in_time(b) and a.size and b.size:
                apart = offsets[i] + a.size <= offsets[j] or offsets[j] + b.size <= offsets[i]
                assert apart, (i, j, offsets)


@given(buffers())
def test_head_lies_between_the_live_peak_and_the_sum_of_sizes(planned: list[Buffer]) -> None:
    plan = plan_greedy(planned)
    ends = [o + b.size for o, b in zip(plan.offsets, planned, strict=True)]
    assert plan.head_bytes == max(ends, default=0)
    assert live_peak(planned) <= plan.head_bytes <= sum(b.size for b in planned)
    assert all(offset >= 0 for offset in plan.offsets)


@given(buffers())
def test_a_buffer_alive_with_no_other_sits_at_offset_zero(planned: list[Buffer]) -> None:
    offsets = plan_greedy(planned).offsets
    for i, a in enumerate(planned):
        if not any(a.overlaps_in_time(b) for j, b in enumerate(planned) if j != i):
            assert offsets[i] == 0


def test_plans_the_dense_autoencoder_as_tflm_does() -> None:
    # 64 -> 32 -> 8 -> 32 -> 64 int8, sizes aligned to 16; TFLM reports a 96-byte head.
    planned = [Buffer(64, 0, 1), Buffer(32, 1, 2), Buffer(16, 2, 3), Buffer(32, 3, 4)]
    plan = plan_greedy([*planned, Buffer(64, 4, 4)])
    assert plan.offsets == (0, 64, 0, 64, 0)
    assert plan.head_bytes == 96


def test_fills_a_gap_between_live_buffers_before_growing() -> None:
    plan = plan_greedy([Buffer(200, 0, 1), Buffer(150, 1, 2), Buffer(120, 2, 3), Buffer(60, 2, 2)])
    # 150 must clear the 200 (alive at scope 1); 120 reuses the 200's place; 60 fits the
    # 80-byte gap between the 120 and the 150, both alive at scope 2.
    assert plan.offsets == (0, 200, 0, 120)
    assert plan.head_bytes == 350


def test_lifetimes_follow_tflm_allocation_scopes() -> None:
    # t0 -> op A -> t1 -> op B (reads t0 too, bias omitted as -1) -> t2; t3 untouched.
    lifetimes = tflm_lifetimes(4, [0], [2], [([0], [1]), ([1, 0, -1], [2])])
    assert lifetimes == [(0, 2), (1, 2), (2, 2), (-1, -1)]


def test_outputs_live_to_the_last_scope_even_when_produced_early() -> None:
    lifetimes = tflm_lifetimes(3, [0], [1, 2], [([0], [1]), ([0], [2])])
    assert lifetimes[1] == (1, 2)


def test_buffer_refuses_negative_size_and_reversed_lifetime() -> None:
    with pytest.raises(ValueError, match="size"):
        Buffer(-1, 0, 0)
    with pytest.raises(ValueError, match="after"):
        Buffer(1, 3, 2)


def test_tail_adds_up_tflms_persistent_structures() -> None:
    # One int8 DEPTHWISE_CONV_2D over 16 channels, tensors input, filter, bias, output:
    # TFLM's host build reports a 1120-byte tail for exactly this model.
    dw = OperatorDemand("DEPTHWISE_CONV_2D", (1, 16, 16, 1), requantized_channels=16)
    tail = HOST_64BIT.tail(
        tensor_count=4, operators=[dw], inputs=[1], outputs=[1], variable_bytes=0
    )
    objects = align_up(488) + 4 * 24 + 64  # allocator and planner, eval tensors, node
    kernel = align_up(28) + 80 + 2 * 64  # options, OpDataConv, multipliers and shifts
    graph_io = 2 * 16 + 2 * (64 + 24 + 8)  # pointer tables, persistent TfLiteTensors
    assert tail == objects + kernel + graph_io + ARENA_ALIGNMENT
    assert 1120 <= tail <= 1120 * 1.05


def test_tail_counts_variables_whole_and_unlisted_kernels_at_their_bound() -> None:
    counts = {"tensor_count": 5, "inputs": [0], "outputs": [0]}
    known = HOST_64BIT.tail(**counts, operators=[OperatorDemand("RESHAPE")], variable_bytes=0)
    bigger = HOST_64BIT.tail(**counts, operators=[OperatorDemand("RESHAPE")], variable_bytes=112)
    unknown = HOST_64BIT.tail(**counts, operators=[OperatorDemand("custom:X")], variable_bytes=0)
    assert known % 16 == 0
    assert bigger == known + 112
    # Unlisted: OpData at the 128-byte bound, options at 40 (RESHAPE's are 36).
    assert unknown - known == HOST_64BIT.default_op_data + align_up(40) - align_up(36)


def test_prepare_temporaries_grow_with_quantisation_channels() -> None:
    def prepare(*channels: int) -> int:
        return HOST_64BIT.prepare(OperatorDemand("X", channels), earlier_scratch=0)

    reserve = 16 * 12  # the scratch-request table TFLM keeps at the head
    assert prepare(0, 0) == reserve + 128
    assert prepare(1, 1) == reserve + 2 * align_up(64 + 24 + 8, 8)
    assert prepare(1, 640) - prepare(1, 1) >= 639 * 4
    later = HOST_64BIT.prepare(OperatorDemand("X", (0, 0)), earlier_scratch=3)
    assert later == prepare(0, 0) + 3 * 16


def test_scratch_buffers_are_planned_in_their_operators_scope() -> None:
    # input (0,1) -> MEAN with a 256-byte accumulator -> output (1,1)
    planned = [Buffer(8000, 0, 1), Buffer(64, 1, 1)]
    mean = OperatorDemand("MEAN", (1, 0, 1), scratch=(256, 16, 8))
    head, _, _ = estimate_arena(
        tensor_count=3,
        planned=planned,
        operators=[mean],
        inputs=[1],
        outputs=[1],
        variable_bytes=0,
        overheads=HOST_64BIT,
    )
    assert head == 8000 + 64 + 256 + 16 + 16

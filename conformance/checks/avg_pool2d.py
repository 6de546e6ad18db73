"""torch.nn.functional.avg_pool2d on quantized tensors against reference.ops.avg_pool2d:
NCHW kernel, NHWC kernel (vector lanes 16 on AVX512 / 8 on AVX2, scalar tail through
quantize_val), ceil_mode, count_include_pad, divisor_override, C == 1 / H*W == 1 routing;
and the reference's fast kernel (`reference.fast.avg_pool2d`) against the same plain definition."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.ops import avg_pool2d
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._pool_cases import PoolCase, pool_inputs, pool_labels, pool_output_hw


def reference(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return avg_pool2d(case.x, **case.kwargs, profile=profile)


def fast_kernel(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return fast.avg_pool2d(case.x, **case.kwargs, profile=profile)


def oracle(case: PoolCase) -> QTensor:
    k = case.kwargs
    return oracles.avg_pool2d(case.x, k["kernel_size"], k["stride"], k["padding"], k["ceil_mode"],
                              k["count_include_pad"], k["divisor_override"], case.threads)


def call(case: PoolCase) -> TargetCall:
    k = case.kwargs
    return TargetCall("avg_pool2d", dict(
        **tensor_arguments(case.x), kernel_size=list(k["kernel_size"]), stride=list(k["stride"]),
        padding=list(k["padding"]), ceil_mode=k["ceil_mode"], count_include_pad=k["count_include_pad"],
        divisor_override=k["divisor_override"], threads=case.threads,
    ))


@st.composite
def cases(draw: st.DrawFn) -> PoolCase:
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kwargs = {
        "kernel_size": kernel,
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2))),
        "ceil_mode": draw(st.booleans()),
        "count_include_pad": draw(st.booleans()),
        "divisor_override": draw(st.one_of(st.none(), st.integers(1, 12))),
    }
    source = draw(pool_inputs())
    x = source.q
    # torch cannot allocate a negative size; an empty output compares nothing.
    assume(min(pool_output_hw(x, kwargs)) > 0)
    return PoolCase(source, kwargs, draw(st.integers(1, 2)))


def label(case: PoolCase) -> Iterator[str]:
    yield from pool_labels(case.x, pool_output_hw(case.x, case.kwargs))
    yield "count_include_pad" if case.kwargs["count_include_pad"] else "exclude_pad"
    if case.kwargs["divisor_override"] is not None:
        yield "divisor_override"
    if case.kwargs["ceil_mode"]:
        yield "ceil"


EXAMPLES = (
    # acc = 1, mult = 0.5 in 12 NHWC channels with zp 1: vector lanes give 1, the scalar
    # tail 2 on 2.13 (1 on 2.14); AVX512 runs all 12 channels scalar, AVX2 the last 4.
    PoolCase(
        QTensorCase(
            QTensor(
                np.tile(np.array([2, 1], np.uint8), (1, 12, 1, 1)), 0.1, 1, QDtype.quint8,
                memory_format=MemoryFormat.channels_last,
            )
        ),
        {"kernel_size": (1, 2), "stride": (1, 2), "padding": (0, 0), "ceil_mode": False, "count_include_pad": True,
         "divisor_override": None},
    ),
    # H*W == 1, C = 3, padding 1: a 2x2 output written as NHWC into an NCHW tensor.
    PoolCase(
        QTensorCase(QTensor(np.array([10, 21, 30], np.uint8).reshape(1, 3, 1, 1), 0.1, 3, QDtype.quint8)),
        {"kernel_size": (2, 2), "stride": (1, 1), "padding": (1, 1), "ceil_mode": False, "count_include_pad": True,
         "divisor_override": None},
    ),
)

CHECK = register(
    OpCheck(
        name="avg_pool2d",
        op="aten::avg_pool2d",
        cases=cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        call=call,
        budget={"smoke": 1, "default": 3.4, "thorough": 1},  # default: >= 10^6 outputs
    )
)

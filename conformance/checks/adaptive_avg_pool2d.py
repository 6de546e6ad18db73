"""torch.nn.functional.adaptive_avg_pool2d on quantized tensors against
reference.ops.adaptive_avg_pool2d: NCHW kernel (raw integers averaged), NHWC kernel (8-lane
FBGEMM Quantize + quantize_val tail), float32 window bounds, C == 1 / H*W == 1 routing; and
the reference's fast kernel (`reference.fast.adaptive_avg_pool2d`) against the same plain definition."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.ops import adaptive_avg_pool2d
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._pool_cases import PoolCase, pool_inputs, pool_labels


def reference(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return adaptive_avg_pool2d(case.x, case.kwargs["output_size"], profile)


def fast_kernel(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return fast.adaptive_avg_pool2d(case.x, case.kwargs["output_size"], profile)


def oracle(case: PoolCase) -> QTensor:
    return oracles.adaptive_avg_pool2d(case.x, case.kwargs["output_size"], case.threads)


def call(case: PoolCase) -> TargetCall:
    return TargetCall("adaptive_avg_pool2d", dict(**tensor_arguments(case.x),
                                                  output_size=list(case.kwargs["output_size"]), threads=case.threads))


@st.composite
def cases(draw: st.DrawFn) -> PoolCase:
    source = draw(pool_inputs())
    output_size = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return PoolCase(source, {"output_size": output_size}, draw(st.integers(1, 2)))


def label(case: PoolCase) -> Iterator[str]:
    yield from pool_labels(case.x, case.kwargs["output_size"])
    height, width = case.x.shape[2:]
    oh, ow = case.kwargs["output_size"]
    if height % oh or width % ow:
        yield "uneven-windows"
    if oh > height or ow > width:
        yield "upsampling"


EXAMPLES = (
    # acc = -1, mult 0.5 in 9 NHWC channels, zp 1: 8 vector lanes (FBGEMM Quantize,
    # 2.13 cvt(fma(-1, 0.5, 1)) = 0, 2.14 cvt(-0.5) + 1 = 1) and one quantize_val tail.
    PoolCase(
        QTensorCase(
            QTensor(
                np.tile(np.array([0, 1], np.uint8), (1, 9, 1, 1)), 0.1, 1, QDtype.quint8,
                memory_format=MemoryFormat.channels_last,
            )
        ),
        {"output_size": (1, 1)},
    ),
    # H*W == 1, C = 2, output 2x1: NHWC memory read back as NCHW.
    PoolCase(
        QTensorCase(QTensor(np.array([5, 9], np.uint8).reshape(1, 2, 1, 1), 0.1, 0, QDtype.quint8)),
        {"output_size": (2, 1)},
    ),
)

CHECK = register(
    OpCheck(
        name="adaptive_avg_pool2d",
        op="aten::adaptive_avg_pool2d",
        cases=cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        call=call,
        budget={"smoke": 1, "default": 2.2, "thorough": 1},  # default: >= 10^6 outputs
    )
)

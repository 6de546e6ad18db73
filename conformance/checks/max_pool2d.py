"""torch.nn.functional.max_pool2d / quantized::max_pool2d on quantized tensors against
reference.ops.max_pool2d (exact integer max; NHWC routing incl. the H*W == 1 output), and the
reference's fast kernel (`reference.fast.max_pool2d`) against the same plain definition."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference.ops import max_pool2d
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments
from ._pool_cases import PoolCase, pool_inputs, pool_labels, pool_output_hw


def reference(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return max_pool2d(case.x, **case.kwargs, profile=profile)


def fast_kernel(case: PoolCase, profile: NumericsProfile) -> QTensor:
    return fast.max_pool2d(case.x, **case.kwargs, profile=profile)


def oracle(case: PoolCase) -> QTensor:
    k = case.kwargs
    # both entry points: aten::max_pool2d (odd first stride) and quantized::max_pool2d
    return oracles.max_pool2d(case.x, k["kernel_size"], k["stride"], k["padding"], k["dilation"], k["ceil_mode"],
                              case.threads, quantized_op=not k["stride"][0] % 2)


def call(case: PoolCase) -> TargetCall:
    k = case.kwargs
    return TargetCall("max_pool2d", dict(
        **tensor_arguments(case.x), kernel_size=list(k["kernel_size"]), stride=list(k["stride"]),
        padding=list(k["padding"]), dilation=list(k["dilation"]), ceil_mode=k["ceil_mode"], threads=case.threads,
    ))


@st.composite
def cases(draw: st.DrawFn) -> PoolCase:
    source = draw(pool_inputs())
    x = source.q
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kwargs = {
        "kernel_size": kernel,
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2))),
        "dilation": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "ceil_mode": draw(st.booleans()),
    }
    assume(min(pool_output_hw(x, kwargs)) > 0)  # torch refuses empty outputs
    return PoolCase(source, kwargs, draw(st.integers(1, 2)))


def label(case: PoolCase) -> Iterator[str]:
    yield from pool_labels(case.x, pool_output_hw(case.x, case.kwargs))
    if case.kwargs["ceil_mode"]:
        yield "ceil"
    if max(case.kwargs["dilation"]) > 1:
        yield "dilation"


def informative(case: PoolCase, out: QTensor) -> int:
    """A max equal to the dtype's lowest value says nothing; every other one does."""
    return int(np.count_nonzero(out.int_repr > out.dtype.qmin))


EXAMPLES = (
    # H*W == 1 with C > 1 upsampled by padding: torch returns NHWC memory read as NCHW.
    PoolCase(
        QTensorCase(QTensor(np.array([10, 20, 30], np.uint8).reshape(1, 3, 1, 1), 0.5, 3, QDtype.quint8)),
        {"kernel_size": (2, 2), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "ceil_mode": False},
    ),
)

CHECK = register(
    OpCheck(
        name="max_pool2d",
        op="quantized::max_pool2d",
        cases=cases(),
        reference=reference,
        torch=oracle,
        fast=fast_kernel,
        label=label,
        examples=EXAMPLES,
        informative=informative,
        call=call,
        budget={"smoke": 1, "default": 4.2, "thorough": 1},  # default: >= 10^6 outputs
    )
)

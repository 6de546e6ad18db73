"""Tensor.dequantize of per-tensor and per-channel QTensors against reference.ops.dequantize."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from quantspec.reference.ops import dequantize
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

from .. import oracles
from ..strategies import QTensorCase, qtensors
from ..targets import TargetCall
from . import OpCheck, register, tensor_arguments


def reference(case: QTensorCase, profile: NumericsProfile) -> np.ndarray:
    return dequantize(case.q)


def oracle(case: QTensorCase) -> np.ndarray:
    return oracles.dequantize(case.q)


def call(case: QTensorCase) -> TargetCall:
    return TargetCall("dequantize", dict(**tensor_arguments(case.q), axis=case.q.axis))


def label(case: QTensorCase) -> Iterator[str]:
    yield case.q.dtype.label
    yield "per-channel" if case.q.per_channel else "per-tensor"
    yield case.q.memory_format.value


EXAMPLES = (
    # qint32: q - zp leaves int32 (2^31 - 1 - (-5)); per-tensor wraps it, per-channel does not.
    QTensorCase(QTensor(np.array([2**31 - 1, -(2**31)], np.int32), 0.5, -5, QDtype.qint32)),
    QTensorCase(
        QTensor(
            np.array([[2**31 - 1], [-(2**31)]], np.int32),
            np.array([0.5, 0.25]),
            np.array([-5, 7]),
            QDtype.qint32,
            axis=0,
        )
    ),
    QTensorCase(
        QTensor(np.zeros((1, 3, 2, 2), np.uint8) + 200, 0.1, 3, QDtype.quint8, memory_format=MemoryFormat.channels_last)
    ),
)

CHECK = register(
    OpCheck(
        name="dequantize",
        op="aten::dequantize",
        cases=qtensors(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=EXAMPLES,
        call=call,
    )
)

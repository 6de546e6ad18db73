"""`quantspec.reference.ops.cat`, fast: each input's requantization looked up in a table of
its 256 possible integers, written straight into the output's memory (NHWC for the NHWC
kernel's channels_last output).

Exact: every path of the plain op is element-wise in each input's integer (the NHWC kernel's
vector blocks and scalar tail each apply one formula per element; the generic path's
dequantize and `quantize_per_tensor` too), so the formula evaluated on all 256 integers of
the input's dtype and looked up per element gives the plain op's integers.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from ..ops.cat import (
    NHWC_VECTOR_CHANNELS,
    checked_arguments,
    copied_unchanged,
    nhwc_scalar_tail,
    nhwc_vector_blocks,
    takes_nhwc_kernel_path,
)
from ..ops.dequantize import dequantize
from ..ops.quantize_per_tensor import quantize_per_tensor
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor


def cat(
    tensors: Sequence[QTensor],
    dim: int,
    output_scale: Optional[float] = None,
    output_zero_point: Optional[int] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantspec.reference.ops.cat` (same arguments and result), fast.

    >>> a = QTensor(np.array([[[[2]]]], np.uint8), 0.25, 0, "quint8")
    >>> b = QTensor(np.array([[[[7]]]], np.uint8), 1.0, 1, "quint8")
    >>> cat([a, b], 1, 1.0, 1).int_repr.ravel().tolist()  # ops.cat's case
    [2, 7]
    """
    tensors, axis, out, profile = checked_arguments(tensors, dim, output_scale, output_zero_point, profile)
    qparams = (out.scale, out.zero_point)
    if takes_nhwc_kernel_path(tensors, axis):
        n, _, height, width = tensors[0].shape
        memory = np.empty((n, height, width, sum(t.shape[1] for t in tensors)), out.dtype.storage)
        start = 0
        for t in tensors:
            block = memory[..., start : start + t.shape[1]]
            start += t.shape[1]
            nhwc = t.int_repr.transpose(0, 2, 3, 1)
            if copied_unchanged(t, out):
                block[...] = nhwc  # std::memcpy
                continue
            vector_channels = t.shape[1] // NHWC_VECTOR_CHANNELS * NHWC_VECTOR_CHANNELS
            vector, scalar = _nhwc_tables((t.scale, t.zero_point), qparams, t.dtype, profile)
            levels = nhwc.view(np.uint8)
            for table, channels in ((vector, slice(None, vector_channels)), (scalar, slice(vector_channels, None))):
                if block[..., channels].size:
                    block[..., channels] = table.take(levels[..., channels])
        return QTensor(memory.transpose(0, 3, 1, 2), *qparams, out.dtype, memory_format=MemoryFormat.channels_last)
    parts = [_generic_table((t.scale, t.zero_point), qparams, t.dtype, profile).take(t.int_repr.view(np.uint8))
             for t in tensors]
    channels_last = all(t.memory_format is MemoryFormat.channels_last for t in tensors)
    memory_format = MemoryFormat.channels_last if channels_last else MemoryFormat.contiguous
    return QTensor(np.concatenate(parts, axis=axis), *qparams, out.dtype, memory_format=memory_format)


def _levels(qparams: tuple[float, int], dtype: QDtype) -> QTensor:
    """All 256 integers of `dtype`, indexed by their byte (uint8 view)."""
    return QTensor(np.arange(256, dtype=np.uint8).view(dtype.storage), *qparams, dtype)


@functools.lru_cache(maxsize=256)
def _nhwc_tables(
    qparams: tuple[float, int], out_qparams: tuple[float, int], dtype: QDtype, profile: NumericsProfile
) -> tuple[np.ndarray, np.ndarray]:
    """The NHWC kernel's vector-block and scalar-tail results for every integer (read-only)."""
    levels, out = _levels(qparams, dtype), _levels(out_qparams, dtype)
    tables = nhwc_vector_blocks(levels, out), nhwc_scalar_tail(levels, out, profile)
    for table in tables:
        table.setflags(write=False)
    return tables


@functools.lru_cache(maxsize=256)
def _generic_table(
    qparams: tuple[float, int], out_qparams: tuple[float, int], dtype: QDtype, profile: NumericsProfile
) -> np.ndarray:
    """The generic path's result (dequantize, then `quantize_per_tensor`) for every integer (read-only)."""
    table = quantize_per_tensor(dequantize(_levels(qparams, dtype)), *out_qparams, dtype, profile).int_repr
    table.setflags(write=False)
    return table

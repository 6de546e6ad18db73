"""Conversions between torch quantized tensors and the reference's `QTensor`."""

from __future__ import annotations

import numpy as np
import torch

from reference.qtensor import MemoryFormat, QDtype, QTensor

TORCH_QDTYPES = {QDtype.quint8: torch.quint8, QDtype.qint8: torch.qint8, QDtype.qint32: torch.qint32}
QDTYPES = {value: key for key, value in TORCH_QDTYPES.items()}


def from_torch(tensor: torch.Tensor) -> QTensor:
    """A torch quantized tensor as a QTensor (integers, qparams, memory format)."""
    if not tensor.is_quantized:
        raise TypeError(f"expected a quantized torch tensor, got dtype {tensor.dtype}")
    memory_format = (
        MemoryFormat.channels_last
        if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
        else MemoryFormat.contiguous
    )
    ints = tensor.int_repr().numpy().copy()
    dtype = QDTYPES[tensor.dtype]
    if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return QTensor(ints, tensor.q_scale(), tensor.q_zero_point(), dtype, memory_format=memory_format)
    return QTensor(
        ints,
        tensor.q_per_channel_scales().numpy().astype(np.float64),
        tensor.q_per_channel_zero_points().numpy().astype(np.int64),
        dtype,
        axis=tensor.q_per_channel_axis(),
        memory_format=memory_format,
    )


def to_torch(q: QTensor) -> torch.Tensor:
    """A QTensor as a torch quantized tensor with the same integers, qparams and layout."""
    ints = torch.from_numpy(np.ascontiguousarray(q.int_repr))
    dtype = TORCH_QDTYPES[q.dtype]
    if q.per_channel:
        tensor = torch._make_per_channel_quantized_tensor(
            ints, torch.from_numpy(np.asarray(q.scale, np.float64)), torch.from_numpy(np.asarray(q.zero_point, np.int64)), q.axis
        )
    else:
        tensor = torch._make_per_tensor_quantized_tensor(ints, q.scale, q.zero_point)
    if tensor.dtype != dtype:
        raise AssertionError(f"torch made {tensor.dtype} from {q.int_repr.dtype} integers, expected {dtype}")
    if q.memory_format is MemoryFormat.channels_last:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor

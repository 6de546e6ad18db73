"""Conversions between torch tensors and the reference's values, and their bit-for-bit comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor

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
            ints,
            torch.from_numpy(np.asarray(q.scale, np.float64)),
            torch.from_numpy(np.asarray(q.zero_point, np.int64)),
            q.axis,
        )
    else:
        tensor = torch._make_per_tensor_quantized_tensor(ints, q.scale, q.zero_point)
    if tensor.dtype != dtype:
        raise AssertionError(f"torch made {tensor.dtype} from {q.int_repr.dtype} integers, expected {dtype}")
    if q.memory_format is MemoryFormat.channels_last:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


@dataclass(frozen=True)
class BitComparison:
    """How a reference value and torch's compare, bit for bit.

    `header` names the first difference that is not element-wise (kind, dtype, shape, or
    for quantized values axis, scale bits, zero points); "" when there is none. `differs`
    marks the elements whose bits differ (`int_repr` for quantized values, the raw bits of
    float arrays: NaN payloads and the sign of zero count); None when the two cannot be
    lined up element by element (other kinds, dtypes or shapes).
    """

    header: str
    differs: Optional[np.ndarray]

    @property
    def equal(self) -> bool:
        return not self.header and self.differs is not None and not self.differs.any()


def compare_bits(reference: Any, torch_value: Any) -> BitComparison:
    """Compare a reference value with torch's, both as reference values (QTensor or ndarray)."""
    if isinstance(reference, QTensor) and isinstance(torch_value, QTensor):
        return BitComparison(
            _qtensor_header(reference, torch_value), _differing_elements(reference.int_repr, torch_value.int_repr)
        )
    if isinstance(reference, np.ndarray) and isinstance(torch_value, np.ndarray):
        return BitComparison(_array_header(reference, torch_value), _differing_elements(reference, torch_value))
    return BitComparison(f"reference gave {_kind(reference)}, torch {_kind(torch_value)}", None)


def compare_with_torch(reference: Any, tensor: torch.Tensor) -> BitComparison:
    """`compare_bits` of a reference value and a torch tensor (quantized or not)."""
    return compare_bits(reference, from_torch(tensor) if tensor.is_quantized else tensor.detach().numpy())


def _qtensor_header(reference: QTensor, torch_value: QTensor) -> str:
    pairs = {
        "dtype": (reference.dtype.label, torch_value.dtype.label),
        "shape": (reference.shape, torch_value.shape),
        "axis": (reference.axis, torch_value.axis),
    }
    for name, (r, t) in pairs.items():
        if r != t:
            return f"{name}: reference {r}, torch {t}"
    scales = np.asarray(reference.scale, np.float64), np.asarray(torch_value.scale, np.float64)
    if not np.array_equal(scales[0].view(np.uint64), scales[1].view(np.uint64)):
        return f"scale: reference {reference.scale!r}, torch {torch_value.scale!r}"
    if not np.array_equal(np.asarray(reference.zero_point), np.asarray(torch_value.zero_point)):
        return f"zero_point: reference {reference.zero_point!r}, torch {torch_value.zero_point!r}"
    return ""


def _array_header(reference: np.ndarray, torch_value: np.ndarray) -> str:
    if reference.dtype != torch_value.dtype or reference.shape != torch_value.shape:
        return f"reference {reference.dtype}{reference.shape}, torch {torch_value.dtype}{torch_value.shape}"
    return ""


def _differing_elements(reference: np.ndarray, torch_value: np.ndarray) -> Optional[np.ndarray]:
    if reference.dtype != torch_value.dtype or reference.shape != torch_value.shape:
        return None
    if reference.dtype.kind == "f":  # compare bits: NaN payloads and -0.0 count
        bits = np.dtype(f"u{reference.dtype.itemsize}")
        return reference.view(bits) != torch_value.view(bits)
    return reference != torch_value


def _kind(value: Any) -> str:
    return "a quantized tensor" if isinstance(value, QTensor) else type(value).__name__

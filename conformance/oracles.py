"""Calling torch for a check: the engine pinned (fbgemm unless `oracle_engine` says otherwise),
torch's known notices silenced.

Only conformance (and production) import torch; checks get their torch results through
these helpers so that every oracle call runs the same way. The op functions below (one torch
call each, on QTensors) are what both the checks' `torch` side and the torch target
(`targets.TorchTarget`) run.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from quantspec.production.bridge import TORCH_QDTYPES, from_torch, to_torch
from quantspec.production.environment import ENGINE, known_deprecations_silenced, quantized_engine, torch_threads
from quantspec.reference.qtensor import QDtype, QTensor

__all__ = [
    "from_torch", "to_torch", "torch_dtype", "float_tensor", "oracle", "oracle_engine",
    "quantize_per_tensor", "quantize_per_channel", "dequantize", "add", "mul", "linear", "conv2d", "avg_pool2d",
    "adaptive_avg_pool2d", "max_pool2d", "cat", "relu", "clamp", "hardswish", "hardsigmoid", "mean",
]

# The quantized engine every `oracle()` call runs torch under.
_ORACLE_ENGINE: contextvars.ContextVar[str] = contextvars.ContextVar("quantspec_oracle_engine", default=ENGINE)


@contextlib.contextmanager
def oracle_engine(name: str) -> Iterator[None]:
    """Run the checks inside the block against torch's `name` engine ("qnnpack", ...): each
    check's torch side (prepack and call: the runner wraps the whole `check.torch(case)` in
    `oracle()`) runs under it. Pair it with a numerics profile of the same engine, which the
    reference side reads (`run_checks(..., numerics=get_profile("torch2.13-avx2-qnnpack"))`)."""
    token = _ORACLE_ENGINE.set(name)
    try:
        yield
    finally:
        _ORACLE_ENGINE.reset(token)


@contextlib.contextmanager
def oracle() -> Iterator[None]:
    """Run torch with the oracle engine pinned (fbgemm unless inside `oracle_engine`) and its
    known deprecation notices silenced."""
    with quantized_engine(_ORACLE_ENGINE.get()), known_deprecations_silenced():
        yield


def torch_dtype(dtype: QDtype) -> torch.dtype:
    """The torch quantized dtype of a QDtype."""
    return TORCH_QDTYPES[dtype]


def float_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 torch tensor sharing nothing with `x` (torch must not see a read-only view)."""
    if x.dtype != np.float32:
        raise TypeError(f"expected a float32 array, got {x.dtype}")
    return torch.from_numpy(np.array(x, copy=True))


# --- torch's ops on QTensors: one call each, shared by the checks and the torch target ----------
# Each mirrors the reference op of the same name (without its profile); `threads` is torch's
# intra-op thread count for the ops whose integers can depend on the split. Call them inside
# `oracle()` (the runner and the torch target do).


def _bias(bias: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    return None if bias is None else torch.from_numpy(np.array(bias, np.float32, copy=True))


def quantize_per_tensor(x: np.ndarray, scale: float, zero_point: int, dtype: QDtype) -> QTensor:
    """torch.quantize_per_tensor of a float32 array."""
    return from_torch(torch.quantize_per_tensor(float_tensor(x), scale, zero_point, torch_dtype(dtype)))


def quantize_per_channel(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                         dtype: QDtype) -> QTensor:
    """torch.quantize_per_channel of a float32 array (float64 scales, int64 zero points)."""
    scales = torch.from_numpy(np.array(scale, np.float64, copy=True))
    zero_points = torch.from_numpy(np.array(zero_point, np.int64, copy=True))
    return from_torch(torch.quantize_per_channel(float_tensor(x), scales, zero_points, axis, torch_dtype(dtype)))


def dequantize(q: QTensor) -> np.ndarray:
    """Tensor.dequantize: float32, logical order."""
    return np.array(to_torch(q).dequantize().numpy(), copy=True)


def add(a: QTensor, b: QTensor, scale: float, zero_point: int, relu: bool, threads: int) -> QTensor:
    """quantized::add (add_relu)."""
    op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    with torch_threads(threads):
        return from_torch(op(to_torch(a), to_torch(b), scale, zero_point))


def mul(a: QTensor, b: QTensor, scale: float, zero_point: int, relu: bool, threads: int) -> QTensor:
    """quantized::mul (mul_relu)."""
    op = torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul
    with torch_threads(threads):
        return from_torch(op(to_torch(a), to_torch(b), scale, zero_point))


def linear(x: QTensor, weight: QTensor, bias: Optional[np.ndarray], scale: float, zero_point: int,
           relu: bool) -> QTensor:
    """quantized::linear_prepack, then quantized::linear (linear_relu)."""
    packed = torch.ops.quantized.linear_prepack(to_torch(weight), _bias(bias))
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    return from_torch(op(to_torch(x), packed, scale, zero_point))


def conv2d(x: QTensor, weight: QTensor, bias: Optional[np.ndarray], stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int], groups: int, scale: float, zero_point: int, relu: bool) -> QTensor:
    """quantized::conv2d_prepack, then quantized::conv2d (conv2d_relu)."""
    packed = torch.ops.quantized.conv2d_prepack(to_torch(weight), _bias(bias), list(stride), list(padding),
                                                list(dilation), groups)
    op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
    return from_torch(op(to_torch(x), packed, scale, zero_point))


def avg_pool2d(x: QTensor, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               ceil_mode: bool, count_include_pad: bool, divisor_override: Optional[int], threads: int) -> QTensor:
    """torch.nn.functional.avg_pool2d."""
    with torch_threads(threads):
        return from_torch(torch.nn.functional.avg_pool2d(to_torch(x), tuple(kernel_size), tuple(stride),
                                                         tuple(padding), ceil_mode, count_include_pad,
                                                         divisor_override))


def adaptive_avg_pool2d(x: QTensor, output_size: Sequence[int], threads: int) -> QTensor:
    """torch.nn.functional.adaptive_avg_pool2d."""
    with torch_threads(threads):
        return from_torch(torch.nn.functional.adaptive_avg_pool2d(to_torch(x), tuple(output_size)))


def max_pool2d(x: QTensor, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], ceil_mode: bool, threads: int, quantized_op: bool = False) -> QTensor:
    """torch.nn.functional.max_pool2d (aten::max_pool2d), or quantized::max_pool2d when
    `quantized_op`: the two entry points of the same kernel."""
    with torch_threads(threads):
        if quantized_op:
            y = torch.ops.quantized.max_pool2d(to_torch(x), list(kernel_size), list(stride), list(padding),
                                               list(dilation), ceil_mode)
        else:
            y = torch.nn.functional.max_pool2d(to_torch(x), tuple(kernel_size), tuple(stride), tuple(padding),
                                               tuple(dilation), ceil_mode)
    return from_torch(y)


def cat(tensors: Sequence[QTensor], dim: int, scale: Optional[float], zero_point: Optional[int],
        threads: int) -> QTensor:
    """quantized::cat into (scale, zero_point); torch.cat (the first input's qparams) when scale is None."""
    inputs = [to_torch(t) for t in tensors]
    with torch_threads(threads), warnings.catch_warnings():
        if scale is None:
            # torch.cat warns when qparams differ; requantizing them is what is checked.
            warnings.filterwarnings("ignore", message="All inputs of this cat operator must share")
            return from_torch(torch.cat(inputs, dim))
        return from_torch(torch.ops.quantized.cat(inputs, dim, scale, zero_point))


def relu(q: QTensor) -> QTensor:
    """torch.relu (aten::relu)."""
    return from_torch(torch.relu(to_torch(q)))


def clamp(q: QTensor, low: Optional[float], high: Optional[float], hardtanh: bool = False) -> QTensor:
    """torch.clamp, or torch.nn.functional.hardtanh (the same kernel; it refuses low > high)."""
    if hardtanh:
        return from_torch(torch.nn.functional.hardtanh(to_torch(q), low, high))
    return from_torch(torch.clamp(to_torch(q), low, high))


def hardswish(q: QTensor, scale: float, zero_point: int, threads: int) -> QTensor:
    """quantized::hardswish."""
    with torch_threads(threads):
        return from_torch(torch.ops.quantized.hardswish(to_torch(q), scale, zero_point))


def hardsigmoid(q: QTensor, threads: int) -> QTensor:
    """torch.nn.functional.hardsigmoid (fixed output qparams)."""
    with torch_threads(threads):
        return from_torch(torch.nn.functional.hardsigmoid(to_torch(q)))


def mean(q: QTensor, dims: Sequence[int], keepdim: bool, threads: int) -> QTensor:
    """torch.mean over `dims`."""
    with torch_threads(threads):
        return from_torch(torch.mean(to_torch(q), tuple(dims), keepdim))

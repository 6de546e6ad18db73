"""Folding BatchNorm into the preceding convolution, in torch's float32 order of operations."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._arguments import ArgumentError, flag, real_number
from .numerics import f32


def fold_conv_bn(
    conv_weight: np.typing.ArrayLike,
    conv_bias: Optional[np.typing.ArrayLike],
    running_mean: np.typing.ArrayLike,
    running_var: np.typing.ArrayLike,
    bn_weight: Optional[np.typing.ArrayLike],
    bn_bias: Optional[np.typing.ArrayLike],
    eps: float = 1e-5,
    transpose: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The folded (weight, bias) of conv followed by eval-mode BatchNorm.

    torch's graph-mode pass (`fuse_conv_bn_jit` -> `_jit_pass_fold_convbn`,
    torch/csrc/jit/passes/fold_conv_bn.cpp `computeUpdatedConvWeightAndBias`) and eager
    `torch.nn.utils.fusion.fuse_conv_bn_weights` run the same float32 tensor ops:

    `r = rsqrt(var + f32(eps))` = `f32(1 / f32(sqrt(f32(var + eps))))` (ATen's rsqrt is a
    correctly rounded sqrt, then a division); `W' = f32(W * f32(gamma * r))` with
    `gamma * r` broadcast over output channels (dim 0, or dim 1 for transposed convs);
    `b' = f32(f32(f32(f32(b - mean) * r) * gamma) + beta)`. A missing conv bias is 0, a
    missing gamma 1 and beta 0 (the JIT pass's zeros_like/ones_like). All inputs must
    be float32 (the pass keeps the conv's dtype).

    Hand-worked, one channel: var 3.99999, eps 1e-5 -> f32(3.99999 + 1e-5) = 4.0 (float32),
    sqrt 2, r 0.5; gamma 3 -> scale 1.5; W [2] -> [3]; b 1, mean 0.5, beta 0.25:
    (1 - 0.5) * 0.5 = 0.25, * 3 = 0.75, + 0.25 = 1.0.

    >>> w, b = fold_conv_bn(np.full((1, 1, 1, 1), 2, np.float32), np.ones(1, np.float32),
    ...                     np.full(1, 0.5, np.float32), np.full(1, 3.99999, np.float32),
    ...                     np.full(1, 3, np.float32), np.full(1, 0.25, np.float32))
    >>> w.ravel().tolist(), b.tolist()
    ([3.0], [1.0])
    """
    eps = _checked_eps(eps)
    transpose = flag(transpose, "transpose")
    weight = _float32(conv_weight, "conv_weight")
    if weight.ndim < 2:
        raise ValueError(f"conv_weight needs at least 2 dims (out, in, ...), got shape {weight.shape}")
    channels = weight.shape[1] if transpose else weight.shape[0]
    mean = _channel_vector(running_mean, "running_mean", channels)
    var = _channel_vector(running_var, "running_var", channels)
    gamma = np.ones(channels, np.float32) if bn_weight is None else _channel_vector(bn_weight, "bn_weight", channels)
    beta = np.zeros(channels, np.float32) if bn_bias is None else _channel_vector(bn_bias, "bn_bias", channels)
    bias = np.zeros(channels, np.float32) if conv_bias is None else _channel_vector(conv_bias, "conv_bias", channels)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rsqrt = f32(np.float32(1) / f32(np.sqrt(f32(var + np.float32(eps)))))
        per_channel = f32(gamma * rsqrt)
        shape = [1] * weight.ndim
        shape[1 if transpose else 0] = -1
        folded_weight = f32(weight * per_channel.reshape(shape))
        folded_bias = f32(f32(f32(f32(bias - mean) * rsqrt) * gamma) + beta)
    return folded_weight, folded_bias


def _checked_eps(eps: float) -> float:
    """BatchNorm's eps: a finite real number >= 0."""
    value = real_number(eps, "eps")
    if not (np.isfinite(value) and value >= 0):
        raise ArgumentError(f"eps must be finite and >= 0, got {value!r}")
    return value


def _float32(values: np.typing.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got dtype {array.dtype}")
    return array


def _channel_vector(values: np.typing.ArrayLike, name: str, channels: int) -> np.ndarray:
    array = _float32(values, name)
    if array.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) to match the conv's channels, got {array.shape}")
    return array

"""`quantspec.reference.ops.linear`, fast: one exact float32 BLAS GEMM (`gemm.exact_matmul`), the
FBGEMM pair saturation or pytorch_qnnpack's int32 bias added to its sums before their wrap."""

from __future__ import annotations

import numpy as np

from .._arguments import ArgumentError, flag, integer
from ..ops._validate import check_qtensor, checked_bias, output_qparams
from ..ops.linear import check_linear_inputs
from ..profile import DEFAULT_PROFILE, NumericsProfile, as_profile, specified_library
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import quantize_bias_qnnpack
from . import onednn
from .gemm import (
    PreparedWeights,
    centered_f32,
    exact_matmul,
    pair_saturation_correction,
    pairs_can_saturate,
    prepare_weights,
)
from .requantize import requantize_u8acc32
from .threads import useful_workers


def linear(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
    *,
    prepared: PreparedWeights | None = None,
    workers: int = 1,
) -> QTensor:
    """`quantspec.reference.ops.linear` (same arguments and result), fast.

    `prepared`: `prepare_linear_weight(weight)`, for callers that run one weight many times
    (torch's `linear_prepack`); `workers`: threads for the GEMM (see `exact_matmul`), which
    do not change the result.

    >>> x = QTensor(np.array([[200, 10]], np.uint8), 0.5, 10, "quint8")
    >>> w = QTensor(np.array([[3, -2]], np.int8), 0.25, 0, "qint8")
    >>> linear(x, w, np.float32([1.0]), 1.0, 5).int_repr.tolist()  # ops.linear's case
    [[77]]
    """
    check_qtensor(x, "x")
    check_qtensor(weight, "weight")
    flag(relu, "relu")
    profile = as_profile(profile)
    integer(workers, "workers", minimum=1)
    out_features, in_features = check_linear_inputs(x, weight)
    library = specified_library(profile.linear_library, "quantized::linear", profile)
    bias32 = checked_bias(bias, out_features)
    out = output_qparams(output_scale, output_zero_point, QDtype.quint8)
    if prepared is not None:
        if not isinstance(prepared, PreparedWeights):
            kind = type(prepared).__name__
            raise ArgumentError(f"prepared must be prepare_linear_weight's result or None, got {kind}")
        prepared.check_formed_from(weight)
    if library == "onednn":
        return onednn.linear(x, weight, bias32, out, relu, prepared)

    if prepared is None:
        prepared = prepare_linear_weight(weight)
    rows = x.int_repr.reshape(1, -1, in_features)  # (G=1, M, K)
    centered = centered_f32(rows, x.zero_point)
    a_max_abs = int(np.abs(centered).max(initial=0))
    square_norm = int(np.square(centered, dtype=np.float64).sum(axis=2).max(initial=0))  # exact, < 2^53
    correction, float_bias = None, bias32
    if library == "qnnpack":  # its int32 bias joins the exact sums (wrapped once with them)
        bias_q = quantize_bias_qnnpack(bias32, x.scale, weight.scale, profile)
        correction = None if bias_q is None else np.broadcast_to(bias_q.astype(np.int64), (rows.shape[1], out_features))
        float_bias = None
    elif profile.gemm_pairs_saturate and pairs_can_saturate(int(rows.max(initial=0)), prepared.pairs):
        correction = pair_saturation_correction(rows, prepared.pairs)  # vpaddd wraps: wrap(wrap(S) + c) = wrap(S + c)
    workers = useful_workers(rows.shape[1] * in_features * out_features, workers)
    acc = exact_matmul(centered, prepared.gemm, a_max_abs, square_norm, correction, workers)  # (M, N) float32

    params = prepared.requant_params(x.scale, out.scale, library)
    ints = requantize_u8acc32(acc, float_bias, params, out.zero_point, relu, per_tensor_bias_fma=True)
    shape = x.shape[:-1] + (out_features,)
    return QTensor(ints.reshape(shape), out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.contiguous)


def prepare_linear_weight(weight: QTensor) -> PreparedWeights:
    """The (N, K) weight as the GEMM operand: one group, rows minus their zero points."""
    check_qtensor(weight, "weight")
    raw = weight.int_repr[None]
    return PreparedWeights(prepare_weights(raw, weight.zero_point), raw, source=weight)

"""quantized::linear / linear_relu: quint8 activations x qint8 weights -> quint8 (fbgemm)."""

from __future__ import annotations

import numpy as np

from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import MemoryFormat, QDtype, QTensor
from ._gemm import GemmWeights, centered_f32, exact_matmul, pair_saturation_correction, prepare_weights, useful_workers
from ._registry import register_op
from ._requantize import checked_bias, requant_params, requantize_u8acc32


@register_op("quantized::linear")
def linear(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
    *,
    prepared: GemmWeights | None = None,
    workers: int = 1,
) -> QTensor:
    """`torch.ops.quantized.linear(x, linear_prepack(weight, bias), output_scale, output_zero_point)`.

    Mirrors ATen `PackedLinearWeight::apply_impl` (fbgemm): `fbgemmPacked` with
    `PackAWithRowOffset` and `ReQuantizeOutput<relu, TENSOR|OUT_CHANNEL, float>`.

    Formula, for every row i of x (all leading dims flattened) and output feature j:
      acc[i, j] = wrap_int32(sum_k (x[i, k] - x_zp) * (w[j, k] - w_zp[j]))
    exact, except without VNNI (`profile.gemm_pairs_saturate`), where each pair of raw
    products x[i, 2p] w[j, 2p] + x[i, 2p+1] w[j, 2p+1] saturates to int16 first.
    Then `requantize_u8acc32` with float32 `atws = f32(x_scale * w_scale[j])`,
    `mult = f32(atws / out_scale)`; the per-tensor bias step is one fma on every release
    (GEMM requantization): `cvt_rne(f32(fma32(bias, f32(1.0 / double(atws)), f32(acc)) * mult))`.
    `prepared`: `prepare_linear_weight(weight)`, for callers that run one weight many times;
    `workers`: threads for the GEMM (see `exact_matmul`), which do not change the result.

    Hand-worked: x = [[200, 10]] (scale 0.5, zp 10), w = [[3, -2]] (scale 0.25, zp 0),
    bias [1.0], output scale 1.0, zp 5:
      acc = (200-10)*3 + (10-10)*(-2) = 570
      atws = 0.5*0.25 = 0.125, mult = 0.125, rcp = 8.0
      xf = fma(1.0, 8.0, 570.0) = 578.0; 578 * 0.125 = 72.25 -> 72; 72 + 5 = 77

    >>> x = QTensor(np.array([[200, 10]], np.uint8), 0.5, 10, "quint8")
    >>> w = QTensor(np.array([[3, -2]], np.int8), 0.25, 0, "qint8")
    >>> linear(x, w, np.float32([1.0]), 1.0, 5).int_repr.tolist()
    [[77]]
    """
    out_features, in_features = _check_linear_inputs(x, weight)
    bias32 = checked_bias(bias, out_features)
    out = QTensor(np.zeros((0,), np.uint8), output_scale, output_zero_point, QDtype.quint8)  # validates qparams

    if prepared is None:
        prepared = prepare_linear_weight(weight)
    rows = x.int_repr.reshape(1, -1, in_features)  # (G=1, M, K)
    centered = centered_f32(rows, x.zero_point)
    a_max_abs = int(np.abs(centered).max(initial=0))
    square_norm = int(np.square(centered, dtype=np.float64).sum(axis=2).max(initial=0))  # exact, < 2^53
    correction = None
    if profile.gemm_pairs_saturate:  # vpaddd/vpsubd wrap: wrap(wrap(S) + c) = wrap(S + c)
        correction = pair_saturation_correction(rows, weight.int_repr[None])
    workers = useful_workers(rows.shape[1] * in_features * out_features, workers)
    acc = exact_matmul(centered, prepared, a_max_abs, square_norm, correction, workers)  # (M, N) float32

    params = requant_params(x.scale, weight.scale, out.scale, out_features)
    ints = requantize_u8acc32(acc, bias32, params, out.zero_point, relu, per_tensor_bias_fma=True)
    shape = x.shape[:-1] + (out_features,)
    return QTensor(ints.reshape(shape), out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.contiguous)


@register_op("quantized::linear_relu")
def linear_relu(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    output_scale: float,
    output_zero_point: int,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantized::linear_relu`: `linear(..., relu=True)`; the lower clamp is the output zero point.

    Hand-worked: the `linear` example with bias -100.0: xf = fma(-100, 8, 570) = -230;
    -230 * 0.125 = -28.75 -> -29; -29 + 5 = -24 -> clamped to zp 5.

    >>> x = QTensor(np.array([[200, 10]], np.uint8), 0.5, 10, "quint8")
    >>> w = QTensor(np.array([[3, -2]], np.int8), 0.25, 0, "qint8")
    >>> linear_relu(x, w, np.float32([-100.0]), 1.0, 5).int_repr.tolist()
    [[5]]
    """
    return linear(x, weight, bias, output_scale, output_zero_point, relu=True, profile=profile)


def prepare_linear_weight(weight: QTensor) -> GemmWeights:
    """The (N, K) weight as the GEMM operand: one group, rows minus their zero points."""
    return prepare_weights(weight.int_repr[None], weight.zero_point)


def _check_linear_inputs(x: QTensor, weight: QTensor) -> tuple[int, int]:
    """Validate dtypes, qschemes and shapes; return (out_features, in_features)."""
    if x.dtype is not QDtype.quint8 or x.per_channel:
        raise ValueError(f"linear expects a per-tensor quint8 activation, got {x!r}")
    if weight.dtype is not QDtype.qint8:
        raise ValueError(f"linear expects a qint8 weight, got {weight.dtype.label}")
    if weight.int_repr.ndim != 2:
        raise ValueError(f"linear weight must be 2-d (out_features, in_features), got shape {weight.shape}")
    if weight.per_channel and weight.axis != 0:
        raise ValueError(f"per-channel linear weights must use axis 0, got axis {weight.axis}")
    if x.int_repr.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x's last dim must equal in_features {weight.shape[1]}, got x shape {x.shape}")
    return weight.shape[0], weight.shape[1]

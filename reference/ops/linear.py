"""quantized::linear / linear_relu: quint8 activations x qint8 weights -> quint8 (fbgemm, qnnpack).

The plain definition. `quantspec.reference.fast.linear` computes the same integers quickly
(and is checked equal to this one); the interpreter runs that one. The x86 engine packs
FBGEMM's weight; the onednn engine oneDNN's (`NumericsProfile.linear_library`), specified for
its AVX2 kernels.
"""

from __future__ import annotations

import numpy as np

from .._arguments import flag
from ..numerics import (
    dot_u8i8acc32_onednn_gemm_ref,
    dot_u8i8acc32_ref,
    dot_u8u8acc32_qnnpack_ref,
    requant_scales_onednn_ref,
    requant_scales_qnnpack_ref,
    requant_scales_ref,
    requantize_u8acc32_onednn_ref,
    requantize_u8acc32_qnnpack_ref,
    requantize_u8acc32_ref,
)
from ..profile import DEFAULT_PROFILE, EngineRefusedError, NumericsProfile, as_profile, specified_library
from ..qtensor import MemoryFormat, QDtype, QTensor
from ..quantize_kernels import quantize_bias_qnnpack
from ._registry import register_op
from ._validate import check_qtensor, checked_bias, output_qparams


@register_op("quantized::linear")
def linear(
    x: QTensor,
    weight: QTensor,
    bias: np.ndarray | None,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`torch.ops.quantized.linear(x, linear_prepack(weight, bias), output_scale, output_zero_point)`.

    fbgemm (and x86): ATen `PackedLinearWeight::apply_impl`: `fbgemmPacked` with
    `PackAWithRowOffset` and `ReQuantizeOutput<relu, TENSOR|OUT_CHANNEL, float>`, whose
    reference is `fbgemm::matmul_u8i8acc32_ref` + `requantize_u8acc32_ref`. For every row i
    of x (all leading dims flattened) and output feature j:
      acc[i, j] = dot_u8i8acc32_ref(x[i], x_zp, w[j], w_zp[j], profile.gemm_pairs_saturate)
    (without VNNI each pair of raw products saturates to int16 first), then
      out[i, j] = requantize_u8acc32_ref(acc, bias, requant_scales_ref(x_scale, w_scale, out_scale), ...)
    with the per-tensor bias fused into one fma on every release (the GEMM output stage).

    qnnpack (`PackedLinearWeightsQnnp::apply_impl`, qlinear.cpp -> `q8gemm`): the bias is
    quantized to int32 and joins the exact sum, then one float32 multiply:
      acc[i, j] = dot_u8u8acc32_qnnpack_ref(x[i], x_zp, w[j], w_zp[j], quantize_bias_qnnpack(bias, ...))
      out[i, j] = requantize_u8acc32_qnnpack_ref(acc, requant_scales_qnnpack_ref(x_scale, w_scale, out_scale), ...)
    torch recomputes the int32 bias and the scales only when the input scale differs from
    the previous call's; the reference is stateless (docs/spec.md, Engines).

    onednn, AVX2 (`PackedLinearWeightsOnednn::apply_impl` -> ideep `matmul_forward` -> oneDNN
    `gemm_x8s8s32x_matmul_t`, `gemm:jit`): symmetric weights only (else EngineRefusedError, as
    torch's prepack refuses); pairs saturate within the GEMM's K blocks; the float bias is added
    after the scale multiply and the zero point before rounding:
      acc[i, j] = dot_u8i8acc32_onednn_gemm_ref(x[i], x_zp, w)[j]
      out[i, j] = requantize_u8acc32_onednn_ref(acc, bias, requant_scales_onednn_ref(..., "linear", ...), zp, relu)

    Hand-worked: x = [[200, 10]] (scale 0.5, zp 10), w = [[3, -2]] (scale 0.25, zp 0),
    bias [1.0], output scale 1.0, zp 5:
      acc = (200-10)*3 + (10-10)*(-2) = 570
      atws = 0.5*0.25 = 0.125, mult = 0.125, rcp = 8.0
      xf = fma(1.0, 8.0, 570.0) = 578.0; 578 * 0.125 = 72.25 -> 72; 72 + 5 = 77
    x = [[1]], w = [[1]], all scales 1, zero points 0, bias 0.5: fbgemm 1 + 0.5 = 1.5 -> 2;
    qnnpack quantizes the bias first, rne(0.5) = 0: acc = 1 -> 1.

    >>> from quantspec.reference.profile import get_profile
    >>> x = QTensor(np.array([[200, 10]], np.uint8), 0.5, 10, "quint8")
    >>> w = QTensor(np.array([[3, -2]], np.int8), 0.25, 0, "qint8")
    >>> linear(x, w, np.float32([1.0]), 1.0, 5).int_repr.tolist()
    [[77]]
    >>> one, w_one = QTensor(np.uint8([[1]]), 1.0, 0, "quint8"), QTensor(np.int8([[1]]), 1.0, 0, "qint8")
    >>> linear(one, w_one, np.float32([0.5]), 1.0, 0).int_repr.tolist()
    [[2]]
    >>> qnnpack = get_profile("torch2.13-avx2-qnnpack")
    >>> linear(one, w_one, np.float32([0.5]), 1.0, 0, profile=qnnpack).int_repr.tolist()
    [[1]]

    x = [[6]] (scale 1, zp 0), w = [[1]] (scale 0.25), output scale 1, zp 11: fbgemm
    rne(6 * 0.25 = 1.5) = 2, + 11 = 13; onednn 1.5 + 11 = 12.5 -> 12 (the zp before rounding).

    >>> six, quarter = QTensor(np.uint8([[6]]), 1.0, 0, "quint8"), QTensor(np.int8([[1]]), 0.25, 0, "qint8")
    >>> onednn = get_profile("torch2.13-avx2-onednn")
    >>> linear(six, quarter, None, 1.0, 11).int_repr.tolist()
    [[13]]
    >>> linear(six, quarter, None, 1.0, 11, profile=onednn).int_repr.tolist()
    [[12]]
    """
    check_qtensor(x, "x")
    check_qtensor(weight, "weight")
    flag(relu, "relu")
    profile = as_profile(profile)
    out_features, _ = check_linear_inputs(x, weight)
    library = specified_library(profile.linear_library, "quantized::linear", profile)
    bias32 = checked_bias(bias, out_features)
    out = output_qparams(output_scale, output_zero_point, QDtype.quint8)
    w_zp = np.broadcast_to(np.asarray(weight.zero_point, np.int64), (out_features,))
    if library == "onednn":
        refuse_asymmetric_onednn_weight(w_zp)
        acc = dot_u8i8acc32_onednn_gemm_ref(x.int_repr, x.zero_point, weight.int_repr)
        scales = requant_scales_onednn_ref(x.scale, weight.scale, out.scale, "linear", weight.per_channel)
        ints = requantize_u8acc32_onednn_ref(acc, bias32, scales, out.zero_point, relu)
    elif library == "qnnpack":
        bias_q = quantize_bias_qnnpack(bias32, x.scale, weight.scale, profile)
        acc = dot_u8u8acc32_qnnpack_ref(x.int_repr, x.zero_point, weight.int_repr, w_zp, bias_q)
        requant = requant_scales_qnnpack_ref(x.scale, weight.scale, out.scale)
        ints = requantize_u8acc32_qnnpack_ref(acc, requant, out.zero_point, relu)
    else:
        acc = dot_u8i8acc32_ref(x.int_repr, x.zero_point, weight.int_repr, w_zp, profile.gemm_pairs_saturate)
        scales = requant_scales_ref(x.scale, weight.scale, out.scale)
        ints = requantize_u8acc32_ref(acc, bias32, scales, weight.per_channel, out.zero_point, relu, True)
    return QTensor(ints, out.scale, out.zero_point, QDtype.quint8, memory_format=MemoryFormat.contiguous)


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


def refuse_asymmetric_onednn_weight(w_zero_points: np.ndarray) -> None:
    """torch's onednn prepack (linear and conv) refuses a weight zero point other than 0 ("ONEDNN only
    supports symmetric quantization"); so does the reference, with EngineRefusedError."""
    if np.any(w_zero_points):
        raise EngineRefusedError(
            "the onednn engine supports symmetric weights only (zero point 0), "
            f"got weight zero points {np.unique(w_zero_points).tolist()}"
        )


def check_linear_inputs(x: QTensor, weight: QTensor) -> tuple[int, int]:
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

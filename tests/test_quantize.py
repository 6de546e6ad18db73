"""Hand-worked examples of quantize_per_tensor, quantize_per_channel and dequantize.

Every expected value below is worked out by hand in the comment next to it, from the
formulas in the op docstrings (float32 steps, rounding order per release). The last
group re-checks the same examples against torch when it is installed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from quantspec.reference import (
    MemoryFormat,
    QDtype,
    QTensor,
    dequantize,
    get_profile,
    quantize_per_channel,
    quantize_per_tensor,
)

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")
P214 = get_profile("torch2.14-avx512_vnni-fbgemm")
NAN, INF = np.nan, np.inf

# (x, scale, zp, dtype, expected on 2.13, expected on 2.14)
PER_TENSOR = [
    # The release tie example, scale 1 (inv = 1.0f), zp 1:
    #   2.13 fma(x, 1, 1) = [1.5, 2.5, 3.5, 0.5] -> rne [2, 2, 4, 0]
    #   2.14 rne(x) = [0, 2, 2, -0] -> + 1 -> [1, 3, 3, 1]
    ([0.5, 1.5, 2.5, -0.5], 1.0, 1, "quint8", [2, 2, 4, 0], [1, 3, 3, 1]),
    # Same ties, zp 0 (even): both orders agree: rne [0, 2, 2, 0] (-0.5 -> -0 -> 0).
    ([0.5, 1.5, 2.5, -0.5], 1.0, 0, "qint8", [0, 2, 2, 0], [0, 2, 2, 0]),
    # quint8 zp 200, scale 0.5 (inv 2.0f): NaN, +inf, -inf, 1.0
    #   2.13: fma gives NaN/+inf/-inf/202; min(., 2147483520) turns NaN and +inf into
    #         2147483520 -> clamp 255; -inf -> cvt INT32_MIN -> clamp 0; 202.
    #   2.14: x*2 = NaN/+inf/-inf/2; min -> 2147483520, 2147483520, -inf; cvt ->
    #         2147483520 + 200 wraps to -2147483576 -> 0 (NaN and +inf alike);
    #         INT32_MIN + 200 = -2147483448 -> 0; 2 + 200 = 202.
    ([NAN, INF, -INF, 1.0], 0.5, 200, "quint8", [255, 255, 0, 202], [0, 0, 0, 202]),
    # qint8 zp -100, scale 0.5: -inf
    #   2.13: fma = -inf -> INT32_MIN -> clamp -128
    #   2.14: cvt(-inf) = INT32_MIN; + (-100) wraps to 2147483548 -> clamp 127
    ([-INF], 0.5, -100, "qint8", [-128], [127]),
    # qint32 (scalar quantize_val), zp 1, scale 1: 0.5
    #   2.13: rne(f32(1 + 0.5)) = rne(1.5) = 2;  2.14: f32(1 + rne(0.5)) = 1 + 0 = 1
    ([0.5], 1.0, 1, "qint32", [2], [1]),
    # qint32 NaN/inf: clamp<double, int32> passes NaN, the cast gives INT32_MIN;
    # +-inf clamp to the ends. The same on both releases.
    ([NAN, INF, -INF], 1.0, 0, "qint32", [-(2**31), 2**31 - 1, -(2**31)], [-(2**31), 2**31 - 1, -(2**31)]),
    # qint32 zp 2^24 + 1 = 16777217, float(zp) = 16777216 (float32 spacing is 2 there):
    #   x = 3.0: 2.13 f32(16777216 + 3) = 16777219 -> tie, even -> 16777220; rne = 16777220
    #            2.14 f32(16777216 + rne(3)) = 16777220 as well
    ([3.0], 1.0, 2**24 + 1, "qint32", [16777220], [16777220]),
    # scale 0.1 (float 0.100000001490116), inv = f32(1/0.1f) = 10.0f exactly
    # (1/0.100000001490116 = 9.99999985..., nearest float32 is 10.0):
    #   x = 0.25: 2.13 fma(0.25, 10, 3) = 5.5 -> rne 6;  2.14 rne(2.5) = 2, + 3 = 5
    ([0.25], 0.1, 3, "quint8", [6], [5]),
    # The double-rounding trap of fma via float64: scale = 6041845 * 2^-23 (a float32),
    # inv = f32(1 / scale) = 11646897 * 2^-23, x = 6041937 * 2^-24, zp 128 (quint8):
    #   x * inv = 6041937 * 11646897 * 2^-47 = (2^46 + 2^30 + 1) * 2^-47 = 1/2 + 2^-17 + 2^-47.
    #   2.13: fma32 = f32(128.5 + 2^-17 + 2^-47): float32 spacing at 128 is 2^-16, so this is
    #         just above the midpoint of 128.5 and 128.5 + 2^-16 -> 128.5 + 2^-16 -> rne 129.
    #         (f64(x * inv + 128) drops 2^-47, lands on the midpoint, ties to even 128.5 -> 128.)
    #   2.14: f32(x * inv) = 1/2 + 2^-17 -> rne 1 -> + 128 = 129.
    #   -x: 127.5 - 2^-17 - 2^-47 -> 127.5 - 2^-17 (a float32) -> 127 (2.14: rne(-(1/2 + 2^-17)) = -1).
    ([6041937 * 2**-24, -6041937 * 2**-24, 0.0], 6041845 * 2**-23, 128, "quint8", [129, 127, 128], [129, 127, 128]),
]


@pytest.mark.parametrize("x, scale, zp, dtype, expected_213, expected_214", PER_TENSOR)
def test_quantize_per_tensor_hand_worked(x, scale, zp, dtype, expected_213, expected_214) -> None:
    values = np.array(x, np.float32)
    assert quantize_per_tensor(values, scale, zp, dtype, P213).int_repr.tolist() == expected_213
    assert quantize_per_tensor(values, scale, zp, dtype, P214).int_repr.tolist() == expected_214


def test_quantize_per_tensor_keeps_qparams_and_shape() -> None:
    q = quantize_per_tensor(np.zeros((2, 3), np.float32), 0.25, 7, "quint8")
    assert (q.shape, q.scale, q.zero_point, q.dtype, q.axis) == ((2, 3), 0.25, 7, QDtype.quint8, None)
    assert q.int_repr.tolist() == [[7, 7, 7], [7, 7, 7]]  # 0 * 4 + 7


# (x, scales, zps, axis, dtype, expected on 2.13, expected on 2.14)
PER_CHANNEL = [
    # ch0 scale 0.5 (inv 2) zp 0: 0.25 -> t = 0.5; 2.13 rne(0 + 0.5) = 0, 2.14 0 + rne(0.5) = 0
    # ch1 scale 2 (inv 0.5) zp 1: 3.0 -> t = 1.5; 2.13 rne(1 + 1.5) = rne(2.5) = 2,
    #                                              2.14 1 + rne(1.5) = 1 + 2 = 3
    ([[0.25], [3.0]], [0.5, 2.0], [0, 1], 0, "qint8", [[0], [2]], [[0], [3]]),
    # quint8, scale 1: NaN passes clamp<double> and casts to INT32_MIN, whose low byte is 0;
    # +inf -> 255, -inf -> 0. ch1 zp 255: 0.5 -> 2.13 rne(255.5) = 256 -> 255;
    # 2.14 255 + rne(0.5) = 255. Along axis 1 (columns).
    ([[NAN, 0.5], [INF, -INF]], [1.0, 1.0], [3, 255], 1, "quint8", [[0, 255], [255, 0]], [[0, 255], [255, 0]]),
]


@pytest.mark.parametrize("x, scales, zps, axis, dtype, expected_213, expected_214", PER_CHANNEL)
def test_quantize_per_channel_hand_worked(x, scales, zps, axis, dtype, expected_213, expected_214) -> None:
    values = np.array(x, np.float32)
    q213 = quantize_per_channel(values, scales, zps, axis, dtype, P213)
    assert q213.int_repr.tolist() == expected_213
    assert quantize_per_channel(values, scales, zps, axis, dtype, P214).int_repr.tolist() == expected_214
    assert (q213.axis, q213.scale.tolist(), q213.zero_point.tolist()) == (axis, scales, zps)


def _bits(values) -> list[int]:
    return np.asarray(values, np.float32).view(np.uint32).tolist()


# (QTensor, expected float32 values)
DEQUANTIZE = [
    # per-tensor, scale 0.5, zp 3: float(q - zp) * 0.5f: [0-3, 3-3, 255-3] * 0.5 = [-1.5, 0, 126]
    (QTensor(np.array([0, 3, 255], np.uint8), 0.5, 3, "quint8"), [-1.5, 0.0, 126.0]),
    # qint32 per-tensor, scale 0.5, zp -5, q = 2^31 - 1: q - zp = 2^31 + 4 wraps to
    # -2^31 + 4 -> float32 -2147483648.0 -> * 0.5 = -1073741824.0
    (QTensor(np.array([2**31 - 1], np.int32), 0.5, -5, "qint32"), [-1073741824.0]),
    # qint32 per-channel, same numbers: float(q) - float(zp) = 2147483648 + 5 rounds to
    # 2147483648.0 in float32 (no wrap) -> double * 0.5 = 1073741824.0
    (QTensor(np.array([2**31 - 1], np.int32), [0.5], [-5], "qint32", axis=0), [1073741824.0]),
    # per-channel, scale 0.1 (double): (q - zp) = 1 -> double 1 * 0.1 = 0.1 -> float32
    # 0.1f; per-tensor would also give 0.1f here (float(0.1) * 1).
    (QTensor(np.array([[4], [1]], np.int8), [0.1, 3.0], [3, 0], "qint8", axis=0), [[0.1], [3.0]]),
    # huge scale 3e38, q - zp = 2: float32 product overflows to +inf
    (QTensor(np.array([5], np.uint8), 3e38, 3, "quint8"), [INF]),
]


@pytest.mark.parametrize("q, expected", DEQUANTIZE)
def test_dequantize_hand_worked(q, expected) -> None:
    out = dequantize(q)
    assert out.dtype == np.float32
    assert _bits(out) == _bits(expected)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(scale=0.0), ValueError, "scale must be finite and positive, got 0.0"),
        (dict(scale=float("nan")), ValueError, "scale must be finite and positive, got nan"),
        (dict(scale=-1.0), ValueError, "scale must be finite and positive, got -1.0"),
        (dict(zero_point=256), ValueError, "zero_point 256 is outside quint8's range [0, 255]"),
        (dict(zero_point=1.5), ValueError, "zero_point must be an integer scalar, got 1.5"),
        (dict(int_repr=np.array([300])), ValueError, "outside quint8's [0, 255]"),
        (dict(int_repr=np.array([1.0])), TypeError, "int_repr must hold integers"),
        (dict(dtype="uint8"), ValueError, "unknown quantized dtype 'uint8'"),
        (dict(memory_format=MemoryFormat.channels_last), ValueError, "channels_last needs a 4-d tensor"),
    ],
)
def test_qtensor_rejects_bad_values(kwargs, error, message) -> None:
    args = dict(int_repr=np.array([1], np.uint8), scale=1.0, zero_point=0, dtype="quint8")
    args.update(kwargs)
    with pytest.raises(error, match=_literal(message)):
        QTensor(**args)


@pytest.mark.parametrize(
    "scales, zps, axis, message",
    [
        ([1.0], [0, 0], 0, "need 2 scales and zero points"),
        ([1.0, 0.0], [0, 0], 0, "scales must be finite and positive; scales[1] = "),
        ([1.0, 1.0], [0, 300], 0, "zero_points[1] = 300 is outside quint8's range"),
        ([1.0, 1.0], [0, 0], 2, "axis 2 is out of range for a tensor of shape (2, 3)"),
    ],
)
def test_per_channel_qparams_are_validated(scales, zps, axis, message) -> None:
    with pytest.raises(ValueError, match=_literal(message)):
        quantize_per_channel(np.zeros((2, 3), np.float32), scales, zps, axis, "quint8")


def test_quantize_refuses_float64_arrays() -> None:
    # narrowing float64 -> float32 is a rounding torch would not do silently
    with pytest.raises(TypeError, match="x must be a float32 array, got dtype float64"):
        quantize_per_tensor(np.zeros(3), 1.0, 0, "quint8")


def test_quantize_per_tensor_validates_qparams() -> None:
    with pytest.raises(ValueError, match=_literal("zero_point 128 is outside qint8's range [-128, 127]")):
        quantize_per_tensor(np.zeros(3, np.float32), 1.0, 128, "qint8")
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        quantize_per_tensor(np.zeros(3, np.float32), float("inf"), 0, "qint8")


def _literal(text: str) -> str:
    return re.escape(text)


# --- the same examples in torch ----------------------------------------------------------------


def _running_profile():
    pytest.importorskip("torch")
    from quantspec.production.environment import detect_profile

    return detect_profile()


@pytest.mark.parametrize("x, scale, zp, dtype, expected_213, expected_214", PER_TENSOR)
def test_torch_agrees_with_the_hand_worked_per_tensor_examples(x, scale, zp, dtype, expected_213, expected_214) -> None:
    profile = _running_profile()
    from quantspec.conformance.checks.quantize_per_tensor import oracle
    from quantspec.conformance.oracles import oracle as pinned_engine
    from quantspec.conformance.strategies import FloatArrayCase

    with pinned_engine():
        got = oracle(FloatArrayCase(np.array(x, np.float32), scale, zp, QDtype.parse(dtype))).int_repr.tolist()
    assert got == (expected_213 if profile.torch_release == "2.13" else expected_214)


@pytest.mark.parametrize("x, scales, zps, axis, dtype, expected_213, expected_214", PER_CHANNEL)
def test_torch_agrees_with_the_hand_worked_per_channel_examples(
    x, scales, zps, axis, dtype, expected_213, expected_214
) -> None:
    profile = _running_profile()
    from quantspec.conformance.checks.quantize_per_channel import oracle
    from quantspec.conformance.oracles import oracle as pinned_engine
    from quantspec.conformance.strategies import FloatArrayCase

    case = FloatArrayCase(np.array(x, np.float32), np.array(scales), np.array(zps), QDtype.parse(dtype), axis=axis)
    with pinned_engine():
        got = oracle(case).int_repr.tolist()
    assert got == (expected_213 if profile.torch_release == "2.13" else expected_214)


@pytest.mark.parametrize("q, expected", DEQUANTIZE)
def test_torch_agrees_with_the_hand_worked_dequantize_examples(q, expected) -> None:
    _running_profile()
    from quantspec.conformance.checks.dequantize import oracle
    from quantspec.conformance.oracles import oracle as pinned_engine
    from quantspec.conformance.strategies import QTensorCase

    with pinned_engine():
        assert _bits(oracle(QTensorCase(q))) == _bits(expected)

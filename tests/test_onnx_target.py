"""The onnxruntime target (conformance/onnx_target.py): skipped without the onnx extra."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from quantspec.conformance.onnx_target import OnnxRuntimeTarget, quantize_bias
from quantspec.conformance.targets import UnsupportedCase, load_target
from quantspec.reference.profile import get_profile

PROFILE = get_profile("torch2.13-avx2-fbgemm")


@pytest.fixture(scope="module")
def onnx_target() -> OnnxRuntimeTarget:
    return load_target("onnxruntime", PROFILE)


def reference(op: str, **arguments):
    return getattr(load_target("reference", PROFILE), op)(**arguments)


def test_quantize_agrees_off_ties(onnx_target):
    x = np.array([0.3, 1.7, -2.2, 100.4, -0.9, 3.0], np.float32)
    out = onnx_target.quantize_per_tensor(x, 0.5, 7, "quint8")
    np.testing.assert_array_equal(out, reference("quantize_per_tensor", x=x, scale=0.5, zero_point=7, dtype="quint8"))


def test_quantize_tie_adds_zero_point_after_rounding(onnx_target):
    # ORT: rne(x / scale) + zp = [0, 2, 2, -0] + 1; torch 2.13: rne(x * inv + zp) = rne([1.5, 2.5, 3.5, 0.5]).
    x = np.array([0.5, 1.5, 2.5, -0.5], np.float32)
    assert onnx_target.quantize_per_tensor(x, 1.0, 1, "quint8").tolist() == [1, 3, 3, 1]
    assert reference("quantize_per_tensor", x=x, scale=1.0, zero_point=1, dtype="quint8").tolist() == [2, 2, 4, 0]


def test_qint32_is_unsupported(onnx_target):
    with pytest.raises(UnsupportedCase):
        onnx_target.quantize_per_tensor(np.zeros(2, np.float32), 1.0, 0, "qint32")


def test_bias_is_quantized_half_to_even():
    # scale 0.5 * 0.5 = 0.25: 0.125 / 0.25 = 0.5 -> 0; 0.375 / 0.25 = 1.5 -> 2
    assert quantize_bias(np.array([0.125, 0.375], np.float32), 0.5, 0.5).tolist() == [0, 2]


def conv_arguments(channels: int, groups: int, kernel: int) -> dict:
    """x = 255 (zero point 0) and w = 127 everywhere: every u8*s8 pair sum (64770) is past int16."""
    return dict(x=np.full((1, channels, kernel, kernel), 255, np.uint8), x_scale=1.0, x_zero_point=0,
                weight=np.full((channels, channels // groups, kernel, kernel), 127, np.int8), weight_scale=1.0,
                weight_zero_point=0, bias=None, stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=groups,
                scale=2048.0, zero_point=0, relu=False)


def test_gemm_conv_saturates_pairs_like_fbgemm(onnx_target):
    # Measured: ORT's AVX2 U8S8 GEMM saturates the pair 255*127 + 255*127 to 32767 as fbgemm does.
    arguments = conv_arguments(channels=2, groups=1, kernel=1)
    assert onnx_target.conv2d(**arguments).ravel().tolist() == [16, 16]  # rne(32767 / 2048)
    assert reference("conv2d", **arguments).ravel().tolist() == [16, 16]


def qgemm_accumulator(x: np.ndarray, weight: np.ndarray) -> list:
    """QGemm (transB=1) without y_scale outputs float32 x_scale * w_scale * acc: scales 1 give the
    int32 accumulator (exact in float32 below 2^24)."""
    from onnx import helper

    from quantspec.conformance.onnx_target import MICROSOFT, run_node

    constants = {"x_scale": np.float32(1), "x_zero_point": np.uint8(0), "w": weight, "w_scale": np.float32(1),
                 "w_zero_point": np.int8(0)}
    node = helper.make_node("QGemm", ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point"], ["y"],
                            domain=MICROSOFT, transB=1)
    return run_node(node, {"x": x}, constants, np.float32).ravel().tolist()


def test_qgemm_accumulates_in_fbgemm_s_saturated_pairs():
    from quantspec.reference.numerics import dot_u8i8acc32_ref

    # K = 835, x = 255, w = 127: pairs (0, 1) .. (832, 833) each 2 * 32385 = 64770 -> 32767, the lone
    # last product 255 * 127 = 32385: 417 * 32767 + 32385 = 13696224 (exactly 835 * 32385 = 27041475).
    x, weight = np.full((1, 835), 255, np.uint8), np.full((1, 835), 127, np.int8)
    assert qgemm_accumulator(x, weight) == [13696224] == dot_u8i8acc32_ref(x, 0, weight, 0, True).ravel().tolist()
    # x = 255 at k = 833, 834 only: fbgemm's pairs (832, 833) and (834) give 32385 + 32385 = 64770; pairing
    # (833, 834) would saturate to 32767.
    x = np.zeros((1, 835), np.uint8)
    x[0, 833:] = 255
    assert qgemm_accumulator(x, weight) == [64770] == dot_u8i8acc32_ref(x, 0, weight, 0, True).ravel().tolist()


def test_linear_bias_quantized_first_differs_by_255_at_a_tiny_output_scale(onnx_target):
    # ORT: acc 1 + rne(-0.6 / 1) = 0 -> 0 * (1 / 1e-9) = 0 -> 0. torch: fma(-0.6f, 1, 1) = 0.39999998,
    # * f32(1 / 1e-9) ~ 4e8 -> saturated to 255.
    arguments = dict(x=np.uint8([[1]]), x_scale=1.0, x_zero_point=0, weight=np.int8([[1]]), weight_scale=1.0,
                     weight_zero_point=0, bias=np.float32([-0.6]), scale=1e-9, zero_point=0, relu=False)
    assert both(onnx_target, "linear", **arguments) == ([0], [255])


def test_depthwise_conv_accumulates_exactly(onnx_target):
    # fbgemm's depthwise 3x3 saturates four tap pairs (4 * 32767 + 32385 = 163453), ORT's depthwise
    # kernel sums 9 * 32385 = 291465 exactly: rne(163453 / 2048) = 80 against rne(291465 / 2048) = 142.
    arguments = conv_arguments(channels=2, groups=2, kernel=3)
    assert onnx_target.conv2d(**arguments).ravel().tolist() == [142, 142]
    assert reference("conv2d", **arguments).ravel().tolist() == [80, 80]


# --- the ops wired since: one minimal input per measured cause (docs/targets.md) -------------


def both(onnx_target, op: str, **arguments) -> tuple[list, list]:
    """(ORT's output, the reference's) as flat lists."""
    return (getattr(onnx_target, op)(**arguments).ravel().tolist(),
            reference(op, **arguments).ravel().tolist())


def pooled(x: list, scale: float, zero_point: int, **arguments) -> dict:
    """A (1, 1, 1, W) quint8 input held NCHW, pooled with the given arguments."""
    return dict(x=np.array(x, np.uint8).reshape(1, 1, 1, -1), scale=scale, zero_point=zero_point, dtype="quint8",
                channels_last=False, threads=1, **arguments)


def test_dequantize_per_tensor_agrees(onnx_target):
    x = np.array([0, 3, 7, 200, 255], np.uint8)
    arguments = dict(x=x, scale=0.3, zero_point=7, axis=None, dtype="quint8", channels_last=False)
    ort, ours = both(onnx_target, "dequantize", **arguments)
    assert ort == ours  # f32(0.3) * (q - 7) in both


def test_dequantize_per_channel_rounds_the_scale_to_float32_first(onnx_target):
    # torch: f32(3 * 0.3 in double) = f32(0.8999999999999999) = 0.9f;
    # ORT: 3 * f32(0.3) = 3 * 0.30000001192 = 0.90000003576 -> float32 0.90000004.
    arguments = dict(x=np.array([[3]], np.uint8), scale=np.array([0.3]), zero_point=np.array([0]), axis=0,
                     dtype="quint8", channels_last=False)
    ort, ours = both(onnx_target, "dequantize", **arguments)
    assert ours == [float(np.float32(0.9))] and ort == [float(np.float32(0.90000004))]


def test_dequantize_per_channel_qint32_wraps_in_ort(onnx_target):
    # torch per-channel: f32(2^31 - 1) - f32(-5) = 2^31 (float, no wrap) * 0.5 = 2^30;
    # ORT: int32 (2^31 - 1) - (-5) wraps to -2^31 + 4, * 0.5 -> -2^30 (float32).
    arguments = dict(x=np.array([[2**31 - 1]], np.int32), scale=np.array([0.5]), zero_point=np.array([-5]), axis=0,
                     dtype="qint32", channels_last=False)
    assert both(onnx_target, "dequantize", **arguments) == ([-(2.0**30)], [2.0**30])


def test_quantize_per_channel_adds_the_zero_point_after_rounding(onnx_target):
    # channel 1: 3.0 / 2.0 = 1.5; ORT rne(1.5) + 1 = 3, torch 2.13 rne(1.5 + 1) = 2.
    arguments = dict(x=np.array([[0.25], [3.0]], np.float32), scale=np.array([0.5, 2.0]), zero_point=np.array([0, 1]),
                     axis=0, dtype="qint8")
    assert both(onnx_target, "quantize_per_channel", **arguments) == ([0, 3], [0, 2])


def test_average_pool_divides_an_overhanging_ceil_window_by_the_whole_kernel(onnx_target):
    # ceil_mode: the second window [2, 4) of W = 3 overhangs; torch divides 8 by the 1 element
    # inside, QLinearAveragePool (count_include_pad) by kernel_shape's 2.
    arguments = pooled([0, 0, 8], 1.0, 0, kernel_size=[1, 2], stride=[1, 2], padding=[0, 0], ceil_mode=True,
                       count_include_pad=True, divisor_override=None)
    assert both(onnx_target, "avg_pool2d", **arguments) == ([0, 4], [0, 8])


def test_average_pool_sums_dequantized_floats(onnx_target):
    # window [2, 7], scale 0.3: torch's integer sum 9 / 2 = 4.5 -> rne 4; ORT sums float32
    # 0.6 + 2.1000001 = 2.7000003, / 2 = 1.3500001, / 0.3 = 4.5000005 -> 5.
    arguments = pooled([2, 7, 4], 0.3, 0, kernel_size=[1, 2], stride=[1, 2], padding=[0, 0], ceil_mode=False,
                       count_include_pad=True, divisor_override=None)
    assert both(onnx_target, "avg_pool2d", **arguments) == ([5], [4])


def test_divisor_override_is_unsupported(onnx_target):
    arguments = pooled([1, 2], 1.0, 0, kernel_size=[1, 2], stride=[1, 2], padding=[0, 0], ceil_mode=False,
                       count_include_pad=True, divisor_override=3)
    with pytest.raises(UnsupportedCase):
        onnx_target.avg_pool2d(**arguments)


@pytest.mark.parametrize("channels_last", [False, True])
def test_global_average_pool_adds_the_zero_point_after_rounding(onnx_target, channels_last):
    # (4 - 1) + (1 - 1) = 3, * (0.1 / (0.1 * 2)) = 1.5: ORT (MLAS) rne(1.5) + 1 = 3, torch rne(1.5 + 1) = 2.
    arguments = dict(pooled([4, 1], 0.1, 1, output_size=[1, 1]), channels_last=channels_last)
    assert both(onnx_target, "adaptive_avg_pool2d", **arguments) == ([3], [2])
    mean = dict(pooled([4, 1], 0.1, 1, dims=[2, 3], keepdim=True), channels_last=channels_last)
    assert both(onnx_target, "mean", **mean) == ([3], [2])


def test_concat_requantizes_with_the_zero_point_after_rounding(onnx_target):
    # 6 * 0.25 = 1.5 into scale 1, zp 1: ORT's lookup table rne(1.5) + 1 = 3, torch 2.13 rne(1.5 + 1) = 2;
    # an input already in the output's qparams is copied by both.
    arguments = dict(tensors=[np.array([6], np.uint8).reshape(1, 1, 1, 1), np.array([9], np.uint8).reshape(1, 1, 1, 1)],
                     scales=[0.25, 1.0], zero_points=[0, 1], dtype="quint8", channels_last=[False, False], dim=1,
                     scale=1.0, zero_point=1, threads=1)
    assert both(onnx_target, "cat", **arguments) == ([3, 9], [2, 9])


def test_add_rounds_with_the_zero_point_inside_where_torch_s_vector_block_adds_it_after(onnx_target):
    # a = b = 1, scales 1, zps 0, output scale 4, zp 1: 0.25 * 1 + 0.25 * 1 = 0.5 in output quanta.
    # ORT folds the output zp into its float sum: rne(fma(1, 0.25, fma(1, 0.25, 1 - 0))) = rne(1.5) = 2.
    # torch's 64-element vector block rounds, then adds zp: rne(2 * 0.25) + 1 = 0 + 1 = 1; its scalar
    # tail (the 65th element, 2.13) adds zp in float before rounding: rne(1 + 0.5) = 2, as ORT.
    ones = np.ones(65, np.uint8)
    arguments = dict(a=ones, a_scale=1.0, a_zero_point=0, b=ones, b_scale=1.0, b_zero_point=0, scale=4.0,
                     zero_point=1, dtype="quint8", relu=False, a_channels_last=False, b_channels_last=False, threads=1)
    ort, ours = both(onnx_target, "add", **arguments)
    assert ort == [2] * 65 and ours == [1] * 64 + [2]


def test_add_loses_the_output_zero_point_in_its_folded_fixed_part(onnx_target):
    # Scales 1, output scale 2^-25: ratios sa/so = sb/so = 2^25. ORT folds the zero points into one
    # float32: fixed = f32(1 - (2^25 * 1 + 2^25 * 0)) = f32(-33554431) = -33554432 (float32 steps by 4
    # there), then fma(1, 2^25, fma(0, 2^25, fixed)) = 0 -> 0. torch: (1 - 1) * 1 + (0 - 0) * 1 = 0 real,
    # 0 * 2^25 = 0 -> rne(0) with zp 1 = 1.
    arguments = dict(a=np.array([1], np.uint8), a_scale=1.0, a_zero_point=1, b=np.array([0], np.uint8), b_scale=1.0,
                     b_zero_point=0, scale=2.0**-25, zero_point=1, dtype="quint8", relu=False, a_channels_last=False,
                     b_channels_last=False, threads=1)
    assert both(onnx_target, "add", **arguments) == ([0], [1])


def test_mul_rounds_with_the_zero_point_inside(onnx_target):
    # (1 - 0) * (1 - 0) = 1, times 0.5 * 1 / 1 = 0.5 output quanta, zp 1. ORT: rne(0.5 + 1) = rne(1.5) = 2;
    # torch (vector and scalar lambdas alike): rne(0.5) + 1 = 0 + 1 = 1.
    one = np.array([1], np.uint8)
    arguments = dict(a=one, a_scale=0.5, a_zero_point=0, b=one, b_scale=1.0, b_zero_point=0, scale=1.0, zero_point=1,
                     dtype="quint8", relu=False, a_channels_last=False, b_channels_last=False, threads=1)
    assert both(onnx_target, "mul", **arguments) == ([2], [1])


def test_mul_overflows_where_torch_s_scalar_tail_saturates(onnx_target):
    # 255 * 255 * 2^20 = 6.8e10 > 2^31: both vector paths convert to INT32_MIN (-> 0); torch's
    # scalar tail (the 65th element) saturates to 255, ORT's does not.
    full = np.full(65, 255, np.uint8)
    arguments = dict(a=full, a_scale=1.0, a_zero_point=0, b=full, b_scale=1.0, b_zero_point=0, scale=2.0**-20,
                     zero_point=0, dtype="quint8", relu=False, a_channels_last=False, b_channels_last=False, threads=1)
    ort, ours = both(onnx_target, "mul", **arguments)
    assert ort == [0] * 65 and ours == [0] * 64 + [255]


def test_max_pool_is_exact_where_torch_scrambles_hw1(onnx_target):
    # C = 3, H = W = 1, padding 1: torch writes its NHWC result into an NCHW tensor.
    arguments = dict(x=np.array([10, 20, 30], np.uint8).reshape(1, 3, 1, 1), scale=0.5, zero_point=3,
                     dtype="quint8", channels_last=False, kernel_size=[2, 2], stride=[1, 1], padding=[1, 1],
                     dilation=[1, 1], ceil_mode=False, threads=1)
    ort, ours = both(onnx_target, "max_pool2d", **arguments)
    assert ort == [10] * 4 + [20] * 4 + [30] * 4 and ours == [10, 20, 30] * 4


def test_relu_as_qlinear_leaky_relu_agrees(onnx_target):
    arguments = dict(x=np.array([0, 1, 2, 3, 200], np.uint8), scale=0.5, zero_point=2, dtype="quint8",
                     channels_last=False)
    assert both(onnx_target, "relu", **arguments) == ([2, 2, 2, 3, 200],) * 2  # max(q, zp)


def test_qlinear_matmul_linear_agrees_without_bias_and_refuses_a_bias():
    from quantspec.conformance.onnx_target import OnnxRuntimeQLinearMatMulTarget

    target = OnnxRuntimeQLinearMatMulTarget()
    # x - 1 = [1, 2], rows of w: [1, 1] -> 3, [2, -1] -> 0; * 0.5 * 0.5 / 0.25 = 1: [3, 0] + zp 5 = [8, 5]
    arguments = dict(x=np.array([[2, 3]], np.uint8), x_scale=0.5, x_zero_point=1,
                     weight=np.array([[1, 1], [2, -1]], np.int8), weight_scale=0.5, weight_zero_point=0, bias=None,
                     scale=0.25, zero_point=5, relu=False)
    assert target.linear(**arguments).tolist() == [[8, 5]] == reference("linear", **arguments).tolist()
    with pytest.raises(UnsupportedCase):
        target.linear(**{**arguments, "bias": np.zeros(2, np.float32)})


# --- linear as the MatMulInteger graph (OnnxRuntimeMatMulIntegerTarget) ---------------------


@pytest.fixture(scope="module")
def matmul_integer_target():
    from quantspec.conformance.onnx_target import OnnxRuntimeMatMulIntegerTarget

    return OnnxRuntimeMatMulIntegerTarget()


def test_matmul_integer_linear_per_tensor(matmul_integer_target):
    # x - 1 = [1, 2]; rows of w: [1, 1] -> 3, [2, -1] -> 0; x_scale * w_scale = 0.25 -> [0.75, 0].
    # No bias: / 0.25 = [3, 0], + zp 5 = [8, 5]. Bias [0.25, -0.5]: [1.0, -0.5] / 0.25 = [4, -2] -> [9, 3].
    arguments = dict(x=np.array([[2, 3]], np.uint8), x_scale=0.5, x_zero_point=1,
                     weight=np.array([[1, 1], [2, -1]], np.int8), weight_scale=0.5, weight_zero_point=0, bias=None,
                     scale=0.25, zero_point=5, relu=False)
    assert both(matmul_integer_target, "linear", **arguments) == ([8, 5],) * 2
    biased = {**arguments, "bias": np.array([0.25, -0.5], np.float32)}
    assert both(matmul_integer_target, "linear", **biased) == ([9, 3],) * 2


def test_matmul_integer_linear_per_channel(matmul_integer_target):
    # x - 1 = [1, 3]; w - [1, -2] per row = [[2, 0], [0, 2]] -> acc [2, 6]; x_scale * w_scale =
    # 0.5 * [0.5, 0.25] = [0.25, 0.125] -> [0.5, 0.75]. No bias: / 0.25 = [2, 3], + 5 = [7, 8].
    # Bias [0.75, -1.0]: [1.25, -0.25] / 0.25 = [5, -1] -> [10, 4]; relu clamps at zp 5: [10, 5].
    arguments = dict(x=np.array([[2, 4]], np.uint8), x_scale=0.5, x_zero_point=1,
                     weight=np.array([[3, 1], [-2, 0]], np.int8), weight_scale=np.array([0.5, 0.25]),
                     weight_zero_point=np.array([1, -2]), bias=None, scale=0.25, zero_point=5, relu=False)
    assert both(matmul_integer_target, "linear", **arguments) == ([7, 8],) * 2
    biased = {**arguments, "bias": np.array([0.75, -1.0], np.float32), "relu": True}
    assert both(matmul_integer_target, "linear", **biased) == ([10, 5],) * 2


def test_matmul_integer_graph_has_the_documented_nodes(matmul_integer_target, monkeypatch):
    from quantspec.conformance import onnx_target

    graphs = []

    def recording(nodes, x, constants, output_dtype):
        graphs.append(([node.op_type for node in nodes], constants))
        return run_graph(nodes, x, constants, output_dtype)

    run_graph = onnx_target.run_graph
    monkeypatch.setattr(onnx_target, "run_graph", recording)
    arguments = dict(x=np.array([[2, 4]], np.uint8), x_scale=0.1, x_zero_point=1,
                     weight=np.array([[3, 1], [-2, 0]], np.int8), weight_scale=np.array([0.3, 0.7]),
                     weight_zero_point=np.array([1, -2]), bias=None, scale=0.25, zero_point=5, relu=False)
    matmul_integer_target.linear(**arguments)
    matmul_integer_target.linear(**{**arguments, "bias": np.zeros(2, np.float32)})
    assert [ops for ops, _ in graphs] == [["MatMulInteger", "Cast", "Mul", "QuantizeLinear"],
                                          ["MatMulInteger", "Cast", "Mul", "Add", "QuantizeLinear"]]
    # the scales' product is one float32 multiply, as the quantizer's Mul node of float32 scales:
    # 0.1f * 0.3f = 0.030000001, where f32(0.1 * 0.3 in double) would be 0.03f, one ulp lower
    product = graphs[0][1]["xw_scale"]
    assert product.dtype == np.float32 and product.tolist() == [np.float32(0.1) * np.float32(0.3),
                                                                np.float32(0.1) * np.float32(0.7)]


def test_matmul_integer_rounds_twice_where_fbgemm_multiplies_once(matmul_integer_target):
    # acc = 13 at x_scale 1, w_scale 0.1, out scale 0.2: 13 * 0.1 / 0.2 = 6.5 in reals.
    # fbgemm: mult = f32(0.1f / 0.2f) = 0.5 (0.2f is exactly 2 * 0.1f): 6.5 -> rne 6.
    # ORT: f32(13 * 0.1f) = f32(1.3000000194) = 1.3000000715; / 0.2f (0.2000000030) = 6.5000002608
    # -> f32 6.5000005 -> rne 7.
    arguments = dict(x=np.array([[13]], np.uint8), x_scale=1.0, x_zero_point=0, weight=np.array([[1]], np.int8),
                     weight_scale=0.1, weight_zero_point=0, bias=None, scale=0.2, zero_point=0, relu=False)
    assert both(matmul_integer_target, "linear", **arguments) == ([7], [6])


def test_matmul_integer_saturates_where_fbgemm_overflows_to_int32_min(matmul_integer_target):
    # acc = 255 * 127 = 32385, / 2^-20: 3.4e10 > 2^31. fbgemm's cvtps_epi32 gives INT32_MIN -> 0;
    # QuantizeLinear saturates to 255.
    arguments = dict(x=np.array([[255]], np.uint8), x_scale=1.0, x_zero_point=0, weight=np.array([[127]], np.int8),
                     weight_scale=1.0, weight_zero_point=0, bias=None, scale=2.0**-20, zero_point=0, relu=False)
    assert both(matmul_integer_target, "linear", **arguments) == ([255], [0])

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


def test_depthwise_conv_accumulates_exactly(onnx_target):
    # fbgemm's depthwise 3x3 saturates four tap pairs (4 * 32767 + 32385 = 163453), ORT's depthwise
    # kernel sums 9 * 32385 = 291465 exactly: rne(163453 / 2048) = 80 against rne(291465 / 2048) = 142.
    arguments = conv_arguments(channels=2, groups=2, kernel=3)
    assert onnx_target.conv2d(**arguments).ravel().tolist() == [142, 142]
    assert reference("conv2d", **arguments).ravel().tolist() == [80, 80]

"""fold_conv_bn: hand-worked folds, float32 rounding order, bad input, and torch's JIT pass."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.fold import fold_conv_bn


def f32s(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def test_hand_worked_two_channels() -> None:
    # Channel 0: var 0.99999, eps 1e-5 -> f32(1.0) -> r = 1; gamma 2 -> W * 2; b: (1 - 0) * 1 * 2 + 0.5 = 2.5.
    # Channel 1: var 15.99999 + 1e-5 -> 16 (float32) -> r = 0.25; gamma 4 -> W * 1; b: (1 - 2) * 0.25 * 4 + 0 = -1.
    weight = np.array([[[[1.0]], [[3.0]]], [[[2.0]], [[-1.0]]]], np.float32)  # (2, 2, 1, 1)
    w, b = fold_conv_bn(weight, f32s(1.0, 1.0), f32s(0.0, 2.0), f32s(0.99999, 15.99999), f32s(2.0, 4.0), f32s(0.5, 0.0))
    assert w.reshape(2, 2).tolist() == [[2.0, 6.0], [2.0, -1.0]]
    assert b.tolist() == [2.5, -1.0]


def test_missing_bias_and_affine_default_to_zero_and_one() -> None:
    # No conv bias: (0 - mean) * r; no gamma/beta: * 1 + 0. var 3 + eps 1 = 4 -> r = 0.5; mean 6 -> -3.
    w, b = fold_conv_bn(np.ones((1, 1, 2, 2), np.float32), None, f32s(6.0), f32s(3.0), None, None, eps=1.0)
    assert w.ravel().tolist() == [0.5] * 4 and b.tolist() == [-3.0]


def test_rsqrt_is_sqrt_then_divide_in_float32() -> None:
    # var + eps = 6: sqrt(6) rounds to float32 first, then 1 / that rounds again. A correctly
    # rounded 1/sqrt(6) narrowed once is one ulp away; ATen's rsqrt gives the two-step value.
    _, b = fold_conv_bn(np.ones((1, 1, 1, 1), np.float32), f32s(1.0), f32s(0.0), f32s(6.0), None, None, eps=0.0)
    two_step = np.float32(1.0) / np.sqrt(np.float32(6.0))
    one_step = np.float32(1.0 / np.sqrt(6.0))
    assert two_step != one_step
    assert b.tolist() == [float(two_step)]


def test_transposed_conv_scales_dim_1() -> None:
    # ConvTranspose weights are (in, out, kh, kw): the per-output-channel factor runs along dim 1.
    weight = np.ones((3, 2, 1, 1), np.float32)
    w, _ = fold_conv_bn(weight, None, f32s(0, 0), f32s(1, 1), f32s(2, 5), None, eps=0.0, transpose=True)
    assert w[:, :, 0, 0].tolist() == [[2.0, 5.0]] * 3


def test_bad_input() -> None:
    weight = np.ones((2, 1, 1, 1), np.float32)
    ones = np.ones(2, np.float32)
    with pytest.raises(TypeError, match="float32"):
        fold_conv_bn(weight.astype(np.float64), None, ones, ones, None, None)
    with pytest.raises(ValueError, match=r"running_var must have shape \(2,\)"):
        fold_conv_bn(weight, None, ones, np.ones(3, np.float32), None, None)
    with pytest.raises(ValueError, match="at least 2 dims"):
        fold_conv_bn(np.ones(2, np.float32), None, ones, ones, None, None)


DEFAULT_NAN, INF, NEG_INF = 0xFFC00000, 0x7F800000, 0xFF800000  # x86: invalid ops give the sign-set QNaN


def _zero_and_negative_variance_fold() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    params = {
        "weight": np.array([[1, 1], [1, 0], [1, 1], [1, 1]], np.float32).reshape(4, 2, 1, 1),
        "bias": f32s(1, 1, 1, 1), "mean": f32s(0, 0, 0, 0), "var": f32s(-4.0, 0.0, -0.0, 4.0),
        "gamma": f32s(1, 2, -1, 1), "beta": f32s(0, 0, 0, 0),
    }
    w, b = fold_conv_bn(*params.values(), eps=0.0)
    return params, w, b


def test_zero_and_negative_variance_give_inf_and_the_default_nan() -> None:
    # eps 0. Channel 0: sqrt(-4) is the default NaN; every later product keeps that NaN.
    # Channel 1: var +0: 1 / sqrt(0) = +inf, gamma 2 -> +inf; W 1 -> +inf, W 0 -> 0 * inf = NaN;
    #   b = (1 - 0) * inf * 2 + 0 = +inf.
    # Channel 2: -0.0 + 0.0 = +0 (round to nearest), so +inf too; gamma -1 -> -inf; b = -inf.
    # Channel 3: r = 1 / sqrt(4) = 0.5: W 0.5, b (1 - 0) * 0.5 * 1 + 0 = 0.5 (0x3f000000).
    _, w, b = _zero_and_negative_variance_fold()
    assert w.reshape(4, 2).view(np.uint32).tolist() == [
        [DEFAULT_NAN, DEFAULT_NAN], [INF, DEFAULT_NAN], [NEG_INF, NEG_INF], [0x3F000000, 0x3F000000]
    ]
    assert b.view(np.uint32).tolist() == [DEFAULT_NAN, INF, NEG_INF, 0x3F000000]


def test_zero_and_negative_variance_match_torch_bits() -> None:
    torch = pytest.importorskip("torch")
    from torch.jit._recursive import wrap_cpp_module

    params, w, b = _zero_and_negative_variance_fold()
    conv, bn = torch.nn.Conv2d(2, 4, 1), torch.nn.BatchNorm2d(4, eps=0.0)
    with torch.no_grad():
        for tensor, name in ((conv.weight, "weight"), (conv.bias, "bias"), (bn.running_mean, "mean"),
                             (bn.running_var, "var"), (bn.weight, "gamma"), (bn.bias, "beta")):
            tensor.copy_(torch.from_numpy(params[name]))
    folded = wrap_cpp_module(torch._C._jit_pass_fold_convbn(torch.jit.script(torch.nn.Sequential(conv, bn).eval())._c))
    folded_conv = getattr(folded, "0")
    assert np.array_equal(folded_conv.weight.detach().numpy().view(np.uint32), w.view(np.uint32))
    assert np.array_equal(folded_conv.bias.detach().numpy().view(np.uint32), b.view(np.uint32))


def test_matches_torch_jit_fold_pass() -> None:
    torch = pytest.importorskip("torch")
    from torch.jit._recursive import wrap_cpp_module

    class ConvBN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 8, 3, groups=2, bias=True)
            self.bn = torch.nn.BatchNorm2d(8, eps=1e-3)

        def forward(self, x):
            return self.bn(self.conv(x))

    rng = np.random.default_rng(5)
    model = ConvBN().eval()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.from_numpy(rng.standard_normal(8).astype(np.float32)))
        model.bn.running_var.copy_(torch.from_numpy((rng.random(8) * 10.0 ** rng.uniform(-6, 2, 8)).astype(np.float32)))
        model.bn.weight.copy_(torch.from_numpy(rng.standard_normal(8).astype(np.float32)))
        model.bn.bias.copy_(torch.from_numpy(rng.standard_normal(8).astype(np.float32)))
    params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if v.dtype == torch.float32}
    folded = wrap_cpp_module(torch._C._jit_pass_fold_convbn(torch.jit.script(model)._c))
    w, b = fold_conv_bn(
        params["conv.weight"], params["conv.bias"], params["bn.running_mean"], params["bn.running_var"],
        params["bn.weight"], params["bn.bias"], eps=1e-3,
    )
    assert np.array_equal(w.view(np.uint32), folded.conv.weight.detach().numpy().view(np.uint32))
    assert np.array_equal(b.view(np.uint32), folded.conv.bias.detach().numpy().view(np.uint32))
    # Eager fusion (torch.nn.utils.fusion) runs the same float32 steps.
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    eager_w, eager_b = fuse_conv_bn_weights(
        model.conv.weight, model.conv.bias, model.bn.running_mean, model.bn.running_var, 1e-3,
        model.bn.weight, model.bn.bias,
    )
    assert np.array_equal(w.view(np.uint32), eager_w.detach().numpy().view(np.uint32))
    assert np.array_equal(b.view(np.uint32), eager_b.detach().numpy().view(np.uint32))


RESNET20 = "/work/shared/data/models/resnet20-12fca82f.th"


def test_resnet20_quantize_jit_weights_and_input_qparams_match_reference() -> None:
    """Whole model (CIFAR ResNet-20, real checkpoint): torch's quantize_jit with
    get_default_qconfig('fbgemm') against the reference's calibration decisions.

    Checked per conv, in graph order: the folded float bias, the per-channel weight
    qparams (PerChannelMinMaxObserver, qint8 symmetric) and the int8 weights
    (quantize_per_channel of the folded weight); and the input's activation qparams
    (HistogramObserver(reduce_range=True) fed the same calibration batches). Intermediate
    activations' qparams need the tensors torch's observers saw: not checked here.
    """
    torch = pytest.importorskip("torch")
    import os

    if not os.path.exists(RESNET20):
        pytest.skip(f"{RESNET20} not available")
    from quantspec.production.quantize import quantize_jit
    from quantspec.production.zoo.cifar_resnet import cifar_resnet20, load_checkpoint
    from quantspec.reference.observers import HistogramObserver, PerChannelMinMaxObserver
    from quantspec.reference.ops import quantize_per_channel

    model = load_checkpoint(cifar_resnet20(), RESNET20).eval()
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((2, 3, 32, 32)).astype(np.float32) * s for s in (1.0, 2.5)]

    def calibrate(prepared) -> None:
        for batch in calibration:
            prepared(torch.from_numpy(batch.copy()))

    converted = quantize_jit(model, calibrate=calibrate)
    convs = [n for n in converted.graph.nodes() if n.kind() in ("quantized::conv2d", "quantized::conv2d_relu")]
    modules = dict(model.named_modules())
    conv_names = [name for name, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(conv_names) == 19
    for node, name in zip(convs, conv_names):
        conv, bn = modules[name], modules[name.replace("conv", "bn")]
        params = [t.detach().numpy() for t in (conv.weight, bn.running_mean, bn.running_var, bn.weight, bn.bias)]
        weight, bias = fold_conv_bn(params[0], None, *params[1:], eps=bn.eps)
        observer = PerChannelMinMaxObserver(dtype="qint8", qscheme="per_channel_symmetric")
        observer.observe(weight)
        scales, zero_points = observer.calculate_qparams()
        expected = quantize_per_channel(weight, scales.astype(np.float64), zero_points, 0, "qint8")
        packed = converted._c.getattr(list(node.inputs())[1].node().s("name"))
        torch_weight, torch_bias = packed.unpack()
        assert np.array_equal(torch_weight.q_per_channel_scales().numpy(), scales.astype(np.float64)), name
        assert np.array_equal(torch_weight.q_per_channel_zero_points().numpy(), zero_points), name
        assert np.array_equal(torch_weight.int_repr().numpy(), expected.int_repr), name
        assert np.array_equal(torch_bias.detach().numpy().view(np.uint32), bias.view(np.uint32)), name
    quantize_input = list(convs[0].inputs())[0].node()
    torch_scale, torch_zp = [i.toIValue() for i in list(quantize_input.inputs())[1:3]]
    observer = HistogramObserver(reduce_range=True)
    for batch in calibration:
        observer.observe(batch)
    scale, zero_point = observer.calculate_qparams()
    assert (float(scale[0]), int(zero_point[0])) == (torch_scale, torch_zp)

"""The graph-mode PTQ tutorial says `convert_jit(..., debug=True)` has "numerics identical to
the final quantized model". It does not: the debug graph runs each conv as a float32
`aten::conv2d` on dequantized int8 values and then `quantize_per_tensor`, where the int8
model accumulates exactly in int32 and requantizes in FBGEMM's float32 arithmetic. Both
approximate the same real number, so they can disagree only where it lies within float32
rounding error of a .5 boundary, and then by one step (docs/models.md, "debug=True",
benchmarks/debug_mode.py measures it on the zoo)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from quantspec.production.quantize import quantize_jit
from quantspec.production.verify import capture_intermediates
from quantspec.reference.numerics import cvt_rne, f32, fma32

nn = torch.nn

# Bound on |float32 approximation of t - exact t|, in output steps: t < 256 and each route
# takes a handful of float32 roundings (2^-24 relative) plus a 144-term float32 sum whose
# terms are each below 256 steps, so 1e-3 step is far above the error and far below the
# typical distance of t from a boundary.
FLOAT32_ERROR = 1e-3


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3)).eval()


@pytest.fixture(scope="module")
def converted() -> tuple[nn.Module, torch.jit.ScriptModule, torch.jit.ScriptModule]:
    """The float net, its int8 and its debug conversion, calibrated alike (single thread,
    same batches: the observers see the same values)."""
    model = conv_net()
    generator = torch.Generator().manual_seed(1)
    data = [torch.randn(2, 3, 32, 32, generator=generator) for _ in range(2)]
    torch.set_num_threads(1)

    def calibrate(prepared: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> None:
        for batch in batches:
            prepared(batch)

    real = quantize_jit(model, None, calibrate, [data])
    debug = quantize_jit(model, None, calibrate, [data], debug=True)
    return model, real, debug


def activations(module: torch.jit.ScriptModule, x: torch.Tensor) -> list[tuple[torch._C.Node, torch.Tensor]]:
    """(producing node, value) of every per-tensor quantized value of the top-level graph."""
    captured = capture_intermediates(module, [x])
    result = []
    for node in module.graph.nodes():
        for output in node.outputs():
            value = captured.get(output.debugName())
            if isinstance(value, torch.Tensor) and value.is_quantized and value.qscheme() == torch.per_tensor_affine:
                result.append((node, value))
    return result


def debug_conv_inputs(debug: torch.jit.ScriptModule, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(quantized activation, per-channel quantized weight) that each aten::conv2d of the debug
    graph dequantizes, in graph order."""
    captured = capture_intermediates(debug, [x])
    return [
        (
            captured[node.inputsAt(0).node().inputsAt(0).debugName()],
            captured[node.inputsAt(1).node().inputsAt(0).debugName()],
        )
        for node in debug.graph.nodes()
        if node.kind() == "aten::conv2d"
    ]


def float_op(quantize: torch._C.Node) -> str:
    """Kind of the float op whose result a debug-graph quantize_per_tensor rounds (through relu)."""
    producer = quantize.inputsAt(0).node()
    return producer.inputsAt(0).node().kind() if producer.kind() in ("aten::relu", "aten::relu_") else producer.kind()


def exact_t(conv: nn.Conv2d, x_q: torch.Tensor, w_q: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """t = (s_x * s_w[c] * acc + bias) / s_out + zp in float64: acc is an exact integer sum
    and s_x * (x - zp) an exact float64 product, so t is the real number both models round."""
    x = (x_q.int_repr().double() - x_q.q_zero_point()) * x_q.q_scale()
    w_ints = w_q.int_repr().double() - w_q.q_per_channel_zero_points().double().view(-1, 1, 1, 1)
    acc_scaled = torch.nn.functional.conv2d(x, w_ints, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    w_scales = w_q.q_per_channel_scales().double().view(1, -1, 1, 1)
    value = acc_scaled * w_scales + conv.bias.detach().double().view(1, -1, 1, 1)
    return (value / out.q_scale() + out.q_zero_point()).numpy()


def test_hand_worked_resnet18_node_rounds_apart() -> None:
    # The worked node of docs/models.md, "debug=True" (resnet18, first conv of layer1.0):
    # acc = 22418, s_x = 0.04443393647670746, s_w = 0.0029063483234494925,
    # bias = -2.6249923706054688, s_out = 0.03601054474711418, zp = 0.
    # Exact: s_x * s_w * acc = 2.89507165..., + bias = 0.27007928628...,
    # t = 0.27007928628 / 0.03601054475 = 7.50000557: 5.6e-6 step above the boundary 7.5.
    s_x, s_w, bias = 0.04443393647670746, 0.0029063483234494925, -2.6249923706054688
    s_out, acc = 0.03601054474711418, 22418
    t = (s_x * s_w * acc + bias) / s_out
    assert abs(t - 7.5000056) < 1e-7
    # int8 route (FBGEMM requantization, per-channel bias): atws = f32(s_x * s_w),
    # mult = f32(atws / s_out), xf = f32(f32(acc) + f32(bias / atws)), out = cvt(f32(xf * mult)).
    atws = f32(np.float32(s_x) * np.float32(s_w))
    mult = f32(atws / np.float32(s_out))
    xf = f32(f32(acc) + f32(np.float32(bias) / atws))
    assert int(cvt_rne(f32(xf * mult))) == 8  # 7.5000024: stays above the boundary
    # debug route: torch's float32 conv returned y = 0.27007794 for this element (its float32
    # sum of 144 products is 1.35e-6 = 3.7e-5 step below the exact 0.2700793, more than t's
    # 5.6e-6 step margin); quantize_per_tensor (2.13.0) rounds fma(y, f32(1 / s_out), zp).
    y = np.float32(0.27007794)
    assert abs(float(y) - (s_x * s_w * acc + bias)) / s_out > abs(t - 7.5)
    assert int(cvt_rne(fma32(y, f32(np.float32(1.0) / np.float32(s_out)), np.float32(0.0)))) == 7


def test_debug_and_int8_differ_at_a_float_conv_by_one_step_at_a_rounding_boundary(converted) -> None:
    model, real, debug = converted
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    first_differences = []
    for seed in range(4):
        x = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(seed))
        real_values, debug_values = activations(real, x), activations(debug, x)
        # same graph positions, shapes and qparams in both models (same calibration)
        assert [(v.shape, v.q_scale(), v.q_zero_point()) for _, v in real_values] == [
            (v.shape, v.q_scale(), v.q_zero_point()) for _, v in debug_values
        ]
        differing = [
            i
            for i, ((_, r), (_, d)) in enumerate(zip(real_values, debug_values))
            if not torch.equal(r.int_repr(), d.int_repr())
        ]
        if not differing:
            continue
        first = differing[0]
        real_node, real_out = real_values[first]
        debug_node, debug_out = debug_values[first]
        # the int8 model's quantized conv is, in the debug graph, a float conv then one quantize
        assert real_node.kind() in ("quantized::conv2d", "quantized::conv2d_relu")
        assert debug_node.kind() == "aten::quantize_per_tensor" and float_op(debug_node) == "aten::conv2d"
        conv_index = sum(1 for node, _ in real_values[:first] if node.kind().startswith("quantized::conv2d"))
        x_q, w_q = debug_conv_inputs(debug, x)[conv_index]
        # its input is the same in both models (this is where the models first part)
        assert torch.equal(x_q.int_repr(), real_values[first - 1][1].int_repr())
        t = exact_t(convs[conv_index], x_q, w_q, real_out)
        steps = real_out.int_repr().numpy().astype(int) - debug_out.int_repr().numpy().astype(int)
        distance = np.abs(t - np.floor(t) - 0.5)
        assert set(np.abs(steps[steps != 0]).tolist()) == {1}
        assert distance[steps != 0].max() < FLOAT32_ERROR
        assert not steps[distance >= FLOAT32_ERROR].any()
        first_differences.append(int(np.count_nonzero(steps)))
    assert first_differences, "debug and int8 models agreed on every batch: the measured claim did not fail here"

"""The onednn engine on AVX2 (docs/spec.md, Engines: oneDNN): hand-worked minimal inputs where
oneDNN's conv2d/linear differ from FBGEMM's, the kernel choice, fast == plain, and (with torch)
the reference against torch's kernels under torch.backends.quantized.engine = "onednn"."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from qtensors import q_s8, q_u8

from quantspec.reference import fast
from quantspec.reference.fast import onednn as FAST_ONEDNN
from quantspec.reference.numerics import onednn_gemm_k_blocks
from quantspec.reference.ops import conv2d, linear
from quantspec.reference.ops.conv2d import onednn_conv_kernel
from quantspec.reference.profile import EngineNotSpecifiedError, EngineRefusedError, get_profile
from quantspec.reference.qtensor import QTensor

ONEDNN = get_profile("torch2.13-avx2-onednn")
FBGEMM = get_profile("torch2.13-avx2-fbgemm")


def _both(op, *args):
    """The op's integers under (fbgemm, onednn), AVX2 profiles."""
    return tuple(op(*args, profile=p).int_repr.ravel().tolist() for p in (FBGEMM, ONEDNN))


# --- minimal inputs (NumPy only) -------------------------------------------------------------------


def test_linear_adds_the_zero_point_before_rounding():
    # acc 6, scale 1 * 0.25: FBGEMM rne(1.5) = 2, + 11 = 13; oneDNN 1.5 + 11 = 12.5 -> rne 12.
    assert _both(linear, q_u8([[6]]), q_s8([[1]], 0.25), None, 1.0, 11) == ([13], [12])


def test_linear_adds_the_float_bias_after_the_scale():
    # x 1, scales 1 * 0.7 (float32 0.69999999), bias float32 0.8 (0.80000001), output scale 1, zp 0.
    # FBGEMM: rcp = f32(1 / 0.69999999) = 1.4285715; xf = fma(0.8, 1.4285715, 1) = f32(2.1428572)
    #   = 2.142857; * 0.69999999 = 1.4999999 -> 1.
    # oneDNN: 1 * 0.69999999 + 0.80000001 = f32(1.5) = 1.5 exactly; * 1 + 0 = 1.5 -> rne 2.
    assert _both(linear, q_u8([[1]]), q_s8([[1]], 0.7), np.float32([0.8]), 1.0, 0) == ([1], [2])


def test_linear_pairs_restart_at_each_k_block():
    # K = 257: oneDNN's GEMM sums K in blocks [0, 129) and [129, 257), so k = 129, 130 form a pair:
    # 255*127 + 255*127 = 64770 -> int16 32767; * 1/1000 = 32.767 -> 33. FBGEMM pairs (128, 129)
    # and (130, 131): 0 + 32385 twice, no saturation: 64770 * 0.001 = 64.77 -> 65.
    assert onednn_gemm_k_blocks(257) == [(0, 129), (129, 257)]
    a = np.zeros((1, 257), np.uint8)
    a[0, 129:131] = 255
    assert _both(linear, q_u8(a), q_s8(np.full((1, 257), 127)), None, 1000.0, 0) == ([65], [33])


def test_conv_pairs_input_channels_within_a_tap():
    # A 1x2 kernel over one channel: FBGEMM's K = (kh, kw, c) pairs the two taps, 255*127*2 =
    # 64770 -> 32767 -> 32.767 -> 33; oneDNN pairs channels of one tap (one channel: no pair):
    # 64770 -> 64.77 -> 65.
    x, w = q_u8(np.full((1, 1, 1, 2), 255)), q_s8(np.full((1, 1, 1, 2), 127))
    assert _both(conv2d, x, w, None, (1, 1), (0, 0), (1, 1), 1, 1000.0, 0) == ([33], [65])


def test_conv_skips_taps_outside_the_image():
    # Depthwise 3x3, pad 1, one pixel, a = 255 = a_zp, w = 127: FBGEMM reads the 8 padding taps as
    # 255 and saturates pairs (ops.conv2d: acc -128012 -> 0.001 * -128012 = -128 + 128 = 0); oneDNN
    # adds only the centre tap, (255 - 255) * 127 = 0 -> 0 + 128 = 128.
    x, w = q_u8(np.full((1, 8, 1, 1), 255), 1.0, 255), q_s8(np.full((8, 1, 3, 3), 127))
    assert _both(conv2d, x, w, None, (1, 1), (1, 1), (1, 1), 8, 1000.0, 128) == ([0] * 8, [128] * 8)


@pytest.mark.parametrize(
    "channels, out_channels, groups, kernel",
    [(16, 32, 1, "jit"), (3, 5, 1, "jit"), (16, 16, 16, "depthwise"), (16, 16, 4, "jit"), (16, 8, 2, "jit"),
     (10, 20, 5, "ref"), (12, 18, 3, "ref"), (8, 16, 8, "ref")],
)
def test_kernel_choice(channels, out_channels, groups, kernel):
    # jit_uni_x8s8s32x init_conf: one group, or C/G and OC/G both multiples of 4; ic = oc = 1 per
    # group is depthwise; the rest is ref:any.
    assert onednn_conv_kernel(channels, out_channels, groups) == kernel


def test_only_exact_sums_where_the_kernel_is_not_jit():
    # ref:any (C/G = 2, OC/G = 2): a pair of channels 255*127*2 = 64770 is not saturated -> 65;
    # the same conv with C/G = OC/G = 4 (jit) saturates the pair (c0, c1) -> 32767 -> 33.
    for c_per_g, expected in ((2, 65), (4, 33)):
        x = np.zeros((1, 2 * c_per_g, 1, 1), np.uint8)
        x[0, :2] = 255
        w = np.zeros((2 * c_per_g, c_per_g, 1, 1), np.int8)
        w[0, :2] = 127
        out = conv2d(q_u8(x), q_s8(w), None, (1, 1), (0, 0), (1, 1), 2, 1000.0, 0, profile=ONEDNN)
        assert out.int_repr[0, 0, 0, 0] == expected


def _ref_and_jit_pair(c_per_g: int):
    """x = 50 on channel 0 (else 0), w[0, 0] = 1 (else 0), two groups of c_per_g channels each:
    c_per_g 2 runs `ref:any`, 4 runs the jit kernel; acc = 50 at output channel 0."""
    x = np.zeros((1, 2 * c_per_g, 1, 1), np.uint8)
    x[0, 0] = 50
    w = np.zeros((2 * c_per_g, c_per_g, 1, 1), np.int8)
    w[0, 0] = 1
    return q_u8(x, 0.1), q_s8(w, 0.1)


def test_ref_kernel_multiplies_by_the_source_and_weight_scales_in_turn():
    # acc 50, scales 0.1 * 0.1, output scale 1, zp 0 (0.1 is float32 0.100000001):
    # jit: f32(0.1 * 0.1) = 0.010000001; 50 * 0.010000001 = 0.50000006 -> 1 (FBGEMM: the same product, 1)
    # ref: 50 * 0.1 = f32(5.0000000745) = 5.0; 5.0 * 0.1 = f32(0.50000000373) = 0.5 -> rne 0
    for c_per_g, expected in ((2, 0), (4, 1)):
        x, w = _ref_and_jit_pair(c_per_g)
        out = conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 2, 1.0, 0, profile=ONEDNN)
        assert out.int_repr[0, 0, 0, 0] == expected


def test_relu_of_minus_infinity_per_kernel():
    # bias -inf, relu, zp 7: jit max(-inf, 0) = 0 -> 0 + 7 = 7; ref (eltwise relu: 0 * -inf) NaN -> 0.
    for c_per_g, expected in ((2, 0), (4, 7)):
        x, w = _ref_and_jit_pair(c_per_g)
        bias = np.full(2 * c_per_g, -np.inf, np.float32)
        out = conv2d(x, w, bias, (1, 1), (0, 0), (1, 1), 2, 1.0, 7, relu=True, profile=ONEDNN)
        assert out.int_repr[0, 0, 0, 0] == expected


def test_refusals():
    # torch's onednn prepack refuses asymmetric weights; AVX512 profiles run kernels not specified.
    with pytest.raises(EngineRefusedError, match="symmetric"):
        linear(q_u8([[1]]), q_s8([[1]], 1.0, 3), None, 1.0, 0, profile=ONEDNN)
    with pytest.raises(EngineRefusedError, match="symmetric"):
        fast.conv2d(q_u8(np.ones((1, 1, 1, 1))), q_s8([[[[1]]]], 1.0, 1), None, (1, 1), (0, 0), (1, 1), 1, 1.0, 0,
                    profile=ONEDNN)
    with pytest.raises(EngineNotSpecifiedError):
        linear(q_u8([[1]]), q_s8([[1]]), None, 1.0, 0, profile="torch2.13-avx512_vnni-onednn")


def _random_conv(rng: np.random.Generator, kind: str):
    """Arguments of a random conv2d of `kind` with symmetric weights (per tensor or per channel)."""
    c, oc, groups = {"dense": (int(rng.integers(1, 24)), int(rng.integers(1, 24)), 1), "depthwise": (8, 8, 8),
                     "jit-grouped": (8, 16, 2), "ref-grouped": (9, 6, 3),
                     "1x1": (int(rng.integers(1, 40)), 17, 1)}[kind]
    k = 1 if kind == "1x1" else int(rng.choice([2, 3, 5]))
    stride, padding, dilation = (int(rng.integers(1, 3)),) * 2, (int(rng.integers(0, k // 2 + 2)),) * 2, (1, 1)
    size = (int(rng.integers(k, 9)), int(rng.integers(k, 9)))
    x = QTensor(rng.integers(0, 256, (int(rng.integers(1, 3)), c, *size)).astype(np.uint8),
                float(10 ** rng.uniform(-3, 0)), int(rng.integers(0, 256)), "quint8")
    w_ints = rng.integers(-128, 128, (oc, c // groups, k, k)).astype(np.int8)
    if rng.random() < 0.5:
        w = QTensor(w_ints, rng.uniform(0.001, 0.05, oc), np.zeros(oc, np.int64), "qint8", axis=0)
    else:
        w = QTensor(w_ints, float(rng.uniform(0.001, 0.05)), 0, "qint8")
    bias = rng.normal(0, 3, oc).astype(np.float32) if rng.random() < 0.7 else None
    return (x, w, bias, stride, padding, dilation, groups, float(10 ** rng.uniform(-2, 1)), int(rng.integers(0, 256)),
            bool(rng.random() < 0.3))


def _random_linear(rng: np.random.Generator):
    depth = int(rng.choice([rng.integers(1, 256), rng.integers(256, 800)]))  # one K block, or two (odd or even)
    rows, features = int(rng.integers(1, 12)), 13
    x = QTensor(rng.integers(0, 256, (rows, depth)).astype(np.uint8), float(10 ** rng.uniform(-3, 0)),
                int(rng.integers(0, 256)), "quint8")
    w_ints = rng.integers(-128, 128, (features, depth)).astype(np.int8)
    w = (QTensor(w_ints, rng.uniform(0.001, 0.05, features), np.zeros(features, np.int64), "qint8", axis=0)
         if rng.random() < 0.5 else QTensor(w_ints, float(rng.uniform(0.001, 0.05)), 0, "qint8"))
    bias = rng.normal(0, 3, features).astype(np.float32) if rng.random() < 0.7 else None
    return x, w, bias, float(10 ** rng.uniform(-2, 1)), int(rng.integers(0, 256)), bool(rng.random() < 0.3)


KINDS = ("dense", "depthwise", "jit-grouped", "ref-grouped", "1x1")


def test_fast_equals_plain():
    rng = np.random.default_rng(7)
    for i in range(25):
        args = _random_conv(rng, KINDS[i % len(KINDS)])
        plain, quick = conv2d(*args, profile=ONEDNN), fast.conv2d(*args, profile=ONEDNN)
        assert np.array_equal(plain.int_repr, quick.int_repr) and plain.memory_format == quick.memory_format
        largs = _random_linear(rng)
        assert np.array_equal(linear(*largs[:5], relu=largs[5], profile=ONEDNN).int_repr,
                              fast.linear(*largs[:5], relu=largs[5], profile=ONEDNN).int_repr)


def test_prepared_weights_form_their_onednn_operands_once(monkeypatch):
    # The interpreter hands the fast kernels one prepared weight per conv and linear on every
    # run: its oneDNN operands (float64 weight, pair candidates) and output-stage scales are
    # formed on the first call only, the weight is never copied into K order again, and every
    # call still gives the plain op's integers.
    formed, scaled, reordered = [], [], []
    for name, calls in (("onednn_weights", formed), ("requant_scales_onednn_ref", scaled),
                        ("conv_weight_in_k_order", reordered)):
        original = getattr(FAST_ONEDNN, name)
        monkeypatch.setattr(FAST_ONEDNN, name, lambda *args, calls=calls, original=original:
                            calls.append(1) or original(*args))
    rng = np.random.default_rng(8)
    for kind in KINDS:
        args = _random_conv(rng, kind)
        prepared = fast.prepare_conv_weight(args[1], args[6], args[3], args[5])
        expected = conv2d(*args, profile=ONEDNN).int_repr
        for _ in range(2):
            assert np.array_equal(fast.conv2d(*args, profile=ONEDNN, prepared=prepared).int_repr, expected)
        largs = _random_linear(rng)
        prepared = fast.prepare_linear_weight(largs[1])
        expected = linear(*largs[:5], relu=largs[5], profile=ONEDNN).int_repr
        for _ in range(2):
            assert np.array_equal(fast.linear(*largs[:5], largs[5], ONEDNN, prepared=prepared).int_repr, expected)
    assert len(formed) == len(scaled) == 2 * len(KINDS)  # once per weight, not once per call
    assert not reordered  # the prepared weight already holds it


# --- against torch under the onednn engine ----------------------------------------------------------


@pytest.fixture
def onednn_torch():
    torch = pytest.importorskip("torch")
    if not torch.backends.mkldnn.is_available() or "onednn" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch has no onednn quantized engine")
    from quantspec.production.environment import onednn_isa

    if onednn_isa() != "avx2":  # oneDNN dispatches on CPUID, capped by ONEDNN_MAX_CPU_ISA
        pytest.skip("the onednn profile is specified for oneDNN's AVX2 kernels only")
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = "onednn"
    warnings.filterwarnings("ignore", message=".*quantize.*deprecated")
    yield torch
    torch.backends.quantized.engine = before


def _torch_q(torch, t: QTensor):
    if t.per_channel:
        return torch._make_per_channel_quantized_tensor(
            torch.from_numpy(t.int_repr), torch.from_numpy(np.asarray(t.scale, np.float64)),
            torch.zeros(len(t.scale), dtype=torch.long), 0)
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(t.int_repr)), t.scale,
                                                   int(t.zero_point))


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_matches_torch(onednn_torch, threads):
    torch = onednn_torch
    rng, compared = np.random.default_rng(threads), 0
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i in range(40):
            x, w, bias, stride, padding, dilation, groups, scale, zp, relu = _random_conv(rng, KINDS[i % len(KINDS)])
            torch_bias = None if bias is None else torch.from_numpy(bias)
            packed = torch.ops.quantized.conv2d_prepack(_torch_q(torch, w), torch_bias, list(stride), list(padding),
                                                        list(dilation), groups)
            op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
            expected = op(_torch_q(torch, x), packed, scale, zp).int_repr().numpy()
            ours = fast.conv2d(x, w, bias, stride, padding, dilation, groups, scale, zp, relu, profile=ONEDNN)
            assert np.array_equal(ours.int_repr, expected), i
            compared += expected.size
    finally:
        torch.set_num_threads(old)
    assert compared > 5000


def test_linear_matches_torch(onednn_torch):
    torch, rng, compared = onednn_torch, np.random.default_rng(11), 0
    for i in range(60):
        x, w, bias, scale, zp, relu = _random_linear(rng)
        torch_bias = None if bias is None else torch.from_numpy(bias)
        packed = torch.ops.quantized.linear_prepack(_torch_q(torch, w), torch_bias)
        op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
        expected = op(_torch_q(torch, x), packed, scale, zp).int_repr().numpy()
        assert np.array_equal(linear(x, w, bias, scale, zp, relu=relu, profile=ONEDNN).int_repr, expected), i
        compared += expected.size
    assert compared > 3000


def test_minimal_inputs_differ_in_torch_as_in_the_reference(onednn_torch):
    # The K-block example of test_linear_pairs_restart_at_each_k_block, run by torch on both engines.
    torch = onednn_torch
    a = np.zeros((1, 257), np.uint8)
    a[0, 129:131] = 255
    x, w = q_u8(a), q_s8(np.full((1, 257), 127))
    outputs = []
    for engine in ("fbgemm", "onednn"):
        torch.backends.quantized.engine = engine
        packed = torch.ops.quantized.linear_prepack(_torch_q(torch, w), None)
        outputs.append(int(torch.ops.quantized.linear(_torch_q(torch, x), packed, 1000.0, 0).int_repr()[0, 0]))
    assert outputs == [65, 33]


@pytest.mark.parametrize("c_per_g, relu, expected", [(2, False, 0), (4, False, 1), (2, True, 0), (4, True, 7)])
def test_ref_and_jit_kernels_in_torch(onednn_torch, c_per_g, relu, expected):
    # The examples of test_ref_kernel_multiplies_by_the_source_and_weight_scales_in_turn (no bias,
    # zp 0) and test_relu_of_minus_infinity_per_kernel (bias -inf, relu, zp 7), run by torch.
    torch = onednn_torch
    x, w = _ref_and_jit_pair(c_per_g)
    bias = torch.full((2 * c_per_g,), -float("inf")) if relu else None
    packed = torch.ops.quantized.conv2d_prepack(_torch_q(torch, w), bias, [1, 1], [0, 0], [1, 1], 2)
    op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
    assert int(op(_torch_q(torch, x), packed, 1.0, 7 if relu else 0).int_repr()[0, 0, 0, 0]) == expected


# --- `quantspec engines` names oneDNN's steps (production; needs torch) -----------------------------


@pytest.mark.parametrize(
    "kind, args, cause",
    [
        # test_linear_adds_the_zero_point_before_rounding: the output stage alone differs.
        ("quantized::linear", (q_u8([[6]]), q_s8([[1]], 0.25), None, 1.0, 11), "ONEDNN_OUTPUT_STAGE"),
        # test_linear_pairs_restart_at_each_k_block: the accumulation alone differs.
        ("quantized::linear", "k-block", "ONEDNN_ACCUMULATION"),
        # test_conv_skips_taps_outside_the_image: FBGEMM's saturated padding pairs.
        ("quantized::conv2d", "padding", "ONEDNN_ACCUMULATION"),
    ],
)
def test_engines_attributes_each_difference_to_a_onednn_step(kind, args, cause):
    pytest.importorskip("torch")
    from quantspec.production import engines
    from quantspec.reference.interpreter.file_format import PackedConv, PackedLinear
    from quantspec.reference.interpreter.model import Node

    if args == "k-block":
        a = np.zeros((1, 257), np.uint8)
        a[0, 129:131] = 255
        args = (q_u8(a), q_s8(np.full((1, 257), 127)), None, 1000.0, 0)
    if args == "padding":
        x, w = q_u8(np.full((1, 8, 1, 1), 255), 1.0, 255), q_s8(np.full((8, 1, 3, 3), 127))
        node_args = [x, PackedConv(w, None, (1, 1), (1, 1), (1, 1), 8), 1000.0, 128]
    else:
        x, w, bias, scale, zp = args
        node_args = [x, PackedLinear(w, bias), scale, zp]
    node = Node(kind, ("x", "packed", "scale", "zp"), ("y",))
    on_fbgemm = engines._ints(engines._run_node(node, node_args, FBGEMM))
    on_onednn = engines._ints(engines._run_node(node, node_args, ONEDNN))
    differs = on_fbgemm != on_onednn
    assert differs.any()
    counts = engines.attribute(node, node_args, node_args, on_onednn, differs, ONEDNN, FBGEMM)
    assert counts == {getattr(engines, cause): int(differs.sum())}

"""Float islands: float32 linear/conv2d in the summation orders of torch's MKL/oneDNN
(profile float_gemm "mkl2024.2-amd"), the float64 computation kept under "unspecified",
the profile property's detection and round trip, and whole zoo models verified bit for bit.

Hand-worked examples use 2^24-scale values: 2^24 + 1 is a float32 tie and rounds to the
even 2^24, so a 1 added to a partial sum holding 2^24 is absorbed, and the result shows
which terms were summed together first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from quantspec.reference.ops import float_ops
from quantspec.reference.ops._float_gemm import fma_k_blocks, sgemm_order_known, uses_mkldnn
from quantspec.reference.profile import DEFAULT_PROFILE, NumericsProfile

MKL_AMD = dataclasses.replace(DEFAULT_PROFILE, float_gemm="mkl2024.2-amd")
MKL_AMD_AVX2 = dataclasses.replace(MKL_AMD, cpu="avx2")  # oneDNN runs jit:avx2 for NCHW convs
BIG = 2.0**24


def _rows(row: list[float], m: int) -> np.ndarray:
    return np.tile(np.float32(row), (m, 1))


# --- hand-worked orders (no torch) -------------------------------------------------------

# w = [2^24, 1, 1, 1, 1, 1, 1, -2^24], x = ones: the exact sum is 6.
ROW8 = [BIG, 1, 1, 1, 1, 1, 1, -BIG]


def test_gemv_peels_four_products_then_four_lanes():
    # batch 1 (gemv): peel ((2^24 + 1) + 1) + 1 = 2^24 (each +1 absorbed) seeds lane 0;
    # lanes over k = 4..7: l0 = 2^24 + 1 = 2^24, l1 = 1, l2 = 1, l3 = -2^24;
    # (l0 + l2) + (l1 + l3) = 2^24 + (1 - 2^24) = 1.
    y = float_ops.linear(np.ones((1, 8), np.float32), _rows(ROW8, 4), np.zeros(4, np.float32), profile=MKL_AMD)
    assert y.tolist() == [[1.0] * 4]


def test_dot_kernel_four_lanes_from_k0():
    # batch 2 (dot): lanes from k = 0: l0 = 2^24 + 1 = 2^24, l1 = 1 + 1 = 2, l2 = 2,
    # l3 = 1 - 2^24 (exact); (l0 + l2) + (l1 + l3) = (2^24 + 2) + (3 - 2^24) = 5.
    y = float_ops.linear(np.ones((2, 8), np.float32), _rows(ROW8, 4), np.zeros(4, np.float32), profile=MKL_AMD)
    assert y.tolist() == [[5.0] * 4, [5.0] * 4]


def test_dot_kernel_tail_rows_use_eight_lanes():
    # K = 16, w = [2^24, 1 x7, -2^24, 1 x7], batch 2, M = 5: rows 0-3 (a full 4-row block)
    # take 4 lanes: l0 = ((2^24 + 1) - 2^24) + 1 = 1 (the first 1 absorbed), l1..l3 = 4:
    # (1 + 4) + (4 + 4) = 13. Row 4 (the M mod 4 tail) takes 8 lanes: l0 = 2^24 - 2^24 = 0,
    # l1..l7 = 2: halving [0+2, 2+2, 2+2, 2+2] -> [2+4, 4+4] -> 14 (the exact sum).
    row = [BIG] + [1] * 7 + [-BIG] + [1] * 7
    y = float_ops.linear(np.ones((2, 16), np.float32), _rows(row, 5), np.zeros(5, np.float32), profile=MKL_AMD)
    assert y.tolist() == [[13.0] * 4 + [14.0]] * 2


def test_fma_kernel_rounds_once_per_term():
    # batch 4, M = 12 (fma kernel): k0: 1 * -(1 + 2^-11) = -(1 + 2^-11); k1: fma((1 + 2^-12)^2, acc)
    # = 1 + 2^-11 + 2^-24 - (1 + 2^-11) = 2^-24 exactly. Separate multiply and add would round
    # the product to 1 + 2^-11 (a tie, to even) and give 0.
    x = np.tile(np.float32([1, 1 + 2**-12]), (4, 1))
    w = _rows([-(1 + 2**-11), 1 + 2**-12], 12)
    y = float_ops.linear(x, w, np.zeros(12, np.float32), profile=MKL_AMD)
    assert (y == np.float32(2**-24)).all()


def test_fma_kernel_sums_k_in_blocks():
    # K = 200: blocks k 0..99 and 100..199 (fma_k_blocks), each one chain, then added.
    # x = ones, w = 2^40 at k = 0, -2^40 at k = 150, ones elsewhere. Block 0 = 2^40 (99 ones
    # absorbed, ulp 2^17); block 1 = -2^40 (50 ones before it and 49 after, absorbed);
    # 2^40 - 2^40 = 0. One chain over all K would cancel at k = 150 and end with 49.
    assert fma_k_blocks(200) == [(0, 100), (100, 200)]
    row = np.ones(200, np.float32)
    row[0], row[150] = 2.0**40, -(2.0**40)
    y = float_ops.linear(np.ones((4, 200), np.float32), _rows(list(row), 12), np.zeros(12, np.float32), profile=MKL_AMD)
    assert (y == 0).all()


def test_unspecified_profile_keeps_the_float64_sum():
    # Under "unspecified" the sum is exact in float64, rounded once: 2^24 - 2^24 + 6 ones = 6.
    y = float_ops.linear(np.ones((1, 8), np.float32), _rows(ROW8, 4), np.zeros(4, np.float32))
    assert y.tolist() == [[6.0] * 4]


def test_linear_outside_the_verified_set_keeps_the_float64_sum():
    # K = 12 is not a multiple of 8 (the gemv/dot kernels' unprobed case), and no bias means
    # matmul instead of addmm: both fall back to the exact float64 sum, 2^24 - 2^24 + 10 = 10.
    row = [BIG] + [1] * 5 + [-BIG] + [1] * 5
    out = float_ops.linear(np.ones((1, 12), np.float32), _rows(row, 4), np.zeros(4, np.float32), profile=MKL_AMD)
    assert out.tolist() == [[10.0] * 4]
    assert float_ops.linear(np.ones((1, 8), np.float32), _rows(ROW8, 4), profile=MKL_AMD).tolist() == [[6.0] * 4]


def test_onednn_conv_is_one_fma_chain_over_taps():
    # Batch 2 selects oneDNN (use_mkldnn: 3x3 kernel, batch > 1). One output per image:
    # taps in (kh, kw) order read 2^24, seven 1s, -2^24: 2^24 absorbs the 1s, then cancels: 0.
    # The float64 sum is 7.
    image = np.float32([[BIG, 1, 1], [1, 1, 1], [1, 1, -BIG]])
    x = np.tile(image, (2, 1, 1, 1))
    w, b = np.ones((1, 1, 3, 3), np.float32), np.zeros(1, np.float32)
    assert float_ops.conv2d(x, w, b, profile=MKL_AMD).ravel().tolist() == [0.0, 0.0]
    assert float_ops.conv2d(x, w, b).ravel().tolist() == [7.0, 7.0]
    # Batch 1 (1*1*3*3 <= 20480 elements) is slow_conv2d, here an SGEMM with one output
    # position, outside the verified set: the float64 sum stays.
    assert float_ops.conv2d(x[:1], w, b, profile=MKL_AMD).ravel().tolist() == [7.0]


def test_onednn_avx2_nchw_chain_starts_at_the_bias():
    # jit:avx2 (NCHW) loads the bias into the accumulator: bias 2^24, taps 1*1 eight times,
    # then 1*-2^24: the eight 1s are absorbed (2^24 + 1 is a tie, to even), 2^24 - 2^24 = 0.
    # The AVX-512 model (chain from +0, then + bias) gives (8 - 2^24) + 2^24 = 8, as float64.
    x = np.ones((2, 1, 3, 3), np.float32)
    w, b = np.float32([1] * 8 + [-BIG]).reshape(1, 1, 3, 3), np.float32([BIG])
    assert float_ops.conv2d(x, w, b, profile=MKL_AMD_AVX2).ravel().tolist() == [0.0, 0.0]
    assert float_ops.conv2d(x, w, b, profile=MKL_AMD).ravel().tolist() == [8.0, 8.0]
    assert float_ops.conv2d(x, w, b).ravel().tolist() == [8.0, 8.0]


def test_onednn_avx2_nchw_runs_8_channel_blocks_through_one_chain():
    # C = 16, x = ones, bias 0, w = 2^24 at (ic 0, tap 0), -2^24 at (ic 8, tap 0), ones elsewhere.
    # jit:avx2 order (icb, kh, kw, ic): block ic 0-7 = 2^24 (its 71 other ones absorbed), then
    # block ic 8-15 starts with -2^24: 0, plus its 71 ones = 71. The AVX-512 model (taps outer,
    # all 16 channels inner) cancels in tap 0 after ic 9..15: 7 + 8 taps * 16 = 135; float64 142.
    x, w, b = np.ones((2, 16, 3, 3), np.float32), np.ones((1, 16, 3, 3), np.float32), np.zeros(1, np.float32)
    w[0, 0, 0, 0], w[0, 8, 0, 0] = BIG, -BIG
    assert float_ops.conv2d(x, w, b, profile=MKL_AMD_AVX2).ravel().tolist() == [71.0, 71.0]
    assert float_ops.conv2d(x, w, b, profile=MKL_AMD).ravel().tolist() == [135.0, 135.0]
    assert float_ops.conv2d(x, w, b).ravel().tolist() == [142.0, 142.0]


@pytest.mark.parametrize("c, negative", [(5, True), (8, True), (12, False)])
def test_onednn_avx2_nchw_zero_channel_padding_turns_minus_zero_positive(c, negative):
    # x = -0, w = 1, bias -0: every product is -0 and the sum stays -0, unless C >= 8 is not
    # a multiple of 8: the nChw8c reorder pads it with zero channels, and 0*0 + -0 = +0.
    x = np.full((2, c, 4, 4), -0.0, np.float32)
    y = float_ops.conv2d(x, np.ones((8, c, 3, 3), np.float32), np.full(8, -0.0, np.float32), padding=1,
                         profile=MKL_AMD_AVX2)
    assert (y == 0).all() and (np.signbit(y) == negative).all()


@pytest.mark.parametrize(
    "shape, kernel, stride, threads, expected",
    [
        ((1, 8, 16, 16), (3, 3), (2, 2), 1, False),  # batch 1, 2048 <= 20480 elements: slow_conv2d
        ((1, 8, 64, 64), (3, 3), (2, 2), 1, True),  # 32768 > 20480 elements
        ((2, 8, 16, 16), (3, 3), (2, 2), 1, True),  # batch > 1
        ((2, 8, 16, 16), (1, 1), (1, 1), 1, False),  # 1x1, unstrided, batch < 16, one thread
        ((2, 8, 16, 16), (1, 1), (1, 1), 2, True),  # ... with two threads
    ],
)
def test_use_mkldnn_rule(shape, kernel, stride, threads, expected):
    assert uses_mkldnn(shape, kernel, stride, (1, 1), 1, threads) is expected


def test_interpreter_dequantize_keeps_channels_last_strides_for_the_float_conv():
    # torch's dequantize keeps the memory format; the float conv picks its kernel by it.
    from quantspec.reference.interpreter.kernels import KERNELS, RunContext
    from quantspec.reference.qtensor import MemoryFormat, QTensor, memory_format_of

    q = QTensor(np.zeros((1, 2, 3, 4), np.uint8), 0.5, 0, "quint8", memory_format=MemoryFormat.channels_last)
    x = KERNELS["aten::dequantize"]([q], RunContext(MKL_AMD))
    assert x.shape == (1, 2, 3, 4) and x.strides == (96, 4, 32, 8)  # NHWC-dense float32
    assert memory_format_of(x) is MemoryFormat.channels_last
    assert memory_format_of(np.ascontiguousarray(x)) is MemoryFormat.contiguous


def test_profile_field_defaults_to_unspecified_and_is_checked():
    assert NumericsProfile("2.13", "avx512_vnni").float_gemm == "unspecified"  # model files without the field
    assert MKL_AMD.name == DEFAULT_PROFILE.name == "torch2.13-avx512_vnni-fbgemm"
    with pytest.raises(ValueError, match="float_gemm='mkl9'"):
        NumericsProfile("2.13", "avx512_vnni", float_gemm="mkl9")


# --- against torch -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_mkl_amd():
    torch = pytest.importorskip("torch")
    from quantspec.production.environment import detect_profile

    profile = detect_profile()
    if profile.float_gemm != "mkl2024.2-amd":
        pytest.skip(f"torch here sums float GEMMs in the {profile.float_gemm!r} order, not mkl2024.2-amd")
    return torch, profile


def test_detect_float_gemm_needs_amd_and_no_mkl_cbwr(torch_mkl_amd, monkeypatch):
    from quantspec.production import environment

    monkeypatch.setenv("MKL_CBWR", "AVX2")
    assert environment.detect_float_gemm() == "unspecified"
    monkeypatch.delenv("MKL_CBWR")
    monkeypatch.setattr(environment, "cpu_vendor", lambda: "GenuineIntel")
    assert environment.detect_float_gemm() == "unspecified"


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.int32), b.view(np.int32))


LINEAR_SHAPES = [
    (1, 16, 10), (2, 32, 10), (1, 1024, 10), (3, 512, 13), (1, 64, 15), (2, 64, 1000),
    (64, 72, 11), (4, 72, 12), (4, 200, 16), (8, 400, 32), (13, 72, 64),
]


@pytest.mark.parametrize(
    "threads, n, k, m", [(t, *shape) for t in (1, 2) for shape in LINEAR_SHAPES] + [(1, 7, 72, 64), (1, 10, 576, 1000)]
)
def test_linear_matches_torch(torch_mkl_amd, threads, n, k, m):
    torch, profile = torch_mkl_amd
    from quantspec.production.environment import torch_threads

    assert sgemm_order_known(n, m, k, threads)
    rng = np.random.default_rng(n * 1000 + k + m)
    for scale in (1e-3, 1.0, 1e3):
        x = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        w = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(np.float32)
        b = (rng.standard_normal(m) * 0.1).astype(np.float32)
        with torch_threads(threads):
            expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
        assert _bits_equal(float_ops.linear(x, w, b, profile=profile, num_threads=threads), expected)


def test_two_threads_with_a_batch_mkl_splits_is_outside_the_verified_set():
    # With 2 threads MKL runs a batch of 5-7 or 9-11 as a 4-column fma part plus a dot-kernel
    # remainder (measured) above an unprobed size: the float64 computation stays there.
    assert sgemm_order_known(7, 64, 72, 1) and not sgemm_order_known(7, 64, 72, 2)
    assert sgemm_order_known(8, 64, 72, 2) and sgemm_order_known(13, 64, 72, 2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "n, c, size, oc, stride, channels_last",
    [
        (2, 8, 16, 16, 2, True),  # oneDNN brg_conv_fwd
        (1, 8, 64, 8, 2, True),  # oneDNN (> 20480 elements)
        (1, 8, 16, 8, 2, True),  # slow_conv2d, OC 8: MKL dot kernel
        (1, 8, 16, 16, 1, True),  # slow_conv2d, OC 16: MKL fma kernel
        (2, 32, 8, 16, 1, False),  # oneDNN NCHW: two 16-channel chains (AVX-512), one 8-block chain (AVX2)
        (1, 8, 16, 16, 2, False),  # slow_conv2d NCHW: SGEMM('N','N'), fma kernel
    ],
)
def test_conv2d_matches_torch(torch_mkl_amd, threads, n, c, size, oc, stride, channels_last):
    torch, profile = torch_mkl_amd
    from quantspec.production.environment import torch_threads

    rng = np.random.default_rng(n + c + size + oc + stride)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = (rng.standard_normal(oc) * 0.1).astype(np.float32)
    xt = torch.from_numpy(x)
    if channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC strides, as torch's
    with torch_threads(threads):
        expected = torch.nn.functional.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride, 1).numpy()
    got = float_ops.conv2d(x, w, b, stride, 1, profile=profile, num_threads=threads)
    assert _bits_equal(np.ascontiguousarray(got), np.ascontiguousarray(expected))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "n, c, size, oc, stride",
    [
        (2, 3, 8, 16, 2),  # C < 8: plain NCHW source, one block
        (2, 12, 8, 16, 1),  # padded to 16 channels: two blocks
        (2, 40, 7, 24, 2),  # five blocks (C % 16 != 0)
        (1, 24, 32, 16, 1),  # batch 1, 24576 > 20480 elements
    ],
)
def test_onednn_avx2_nchw_conv_matches_torch(torch_mkl_amd, threads, n, c, size, oc, stride):
    # oneDNN jit:avx2 (NCHW, nChw8c): one fma chain from the bias over (icb, kh, kw, ic).
    torch, profile = torch_mkl_amd
    if profile.avx512:
        pytest.skip("pins oneDNN's jit:avx2 order; this CPU runs jit:avx512_core")
    from quantspec.production.environment import torch_threads

    rng = np.random.default_rng(n + c + size + oc + stride)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = (rng.standard_normal(oc) * 0.1).astype(np.float32)
    assert uses_mkldnn(x.shape, (3, 3), (stride, stride), (1, 1), 1, threads)
    with torch_threads(threads):
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, 1)
    got = float_ops.conv2d(x, w, b, stride, 1, profile=profile, num_threads=threads)
    assert _bits_equal(got, expected.numpy())


# (model, width, input size) -> (batch, threads) runs; one conversion each. The island conv
# takes slow_conv2d with the dot kernel (width 0.25, batch 1: OC 8) or the fma kernel
# (width 0.5, batch 1: OC 16), and oneDNN for batch 2 or > 20480 input elements (width 1.0
# at 64 px); the heads take gemv (batch 1) and dot (batch 2); mobilenet's head has K 1024.
# (One mobilenet conversion: quantize_jit of its graph takes seconds.)
ZOO_CASES = [
    ("island_net", 0.25, 16, [(1, 1), (2, 2)]),
    ("island_net", 0.5, 32, [(1, 2), (2, 1)]),
    ("island_net", 1.0, 64, [(1, 2)]),
    ("mobilenet_v3_small", 1.0, 32, [(1, 1), (2, 2), (1, 2)]),
]


@pytest.mark.parametrize("name, width, size, runs", ZOO_CASES)
def test_zoo_models_with_float_islands_verify_bit_exact(torch_mkl_amd, name, width, size, runs):
    torch, profile = torch_mkl_amd
    from quantspec.production.verify import verify

    gen = torch.Generator().manual_seed(3)
    converted = _convert(torch, name, width, torch.randn(2, 3, size, size, generator=gen))
    for batch, threads in runs:
        report = verify(converted, [torch.randn(batch, 3, size, size, generator=gen)], num_threads=threads)
        floats = [c for c in report.checks if c.kind in ("aten::conv2d", "aten::linear")]
        assert floats and report.ok, report.format()


def _convert(torch, name: str, width: float, calib):
    """quantize_jit of zoo model `name` with the zoo's qconfig_dict, but a MinMax activation
    observer (same dtypes and schemes as the fbgemm default, calibrated much faster)."""
    from quantize_helpers import fast_qconfig_dict, run_once

    from quantspec import production
    from quantspec.production import zoo

    return production.quantize_jit(zoo.build(name, width=width, seed=0), fast_qconfig_dict(name), run_once, (calib,))


def test_export_writes_float_gemm_and_load_reads_it(torch_mkl_amd, tmp_path):
    torch, profile = torch_mkl_amd
    from quantspec import production, reference

    converted = _convert(torch, "island_net", 0.25, torch.randn(1, 3, 16, 16))
    path = production.export(converted, tmp_path / "island.qsm")
    assert reference.load(path).profile == profile and profile.float_gemm == "mkl2024.2-amd"

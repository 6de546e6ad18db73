"""reference.fast.conv2d against the plain definition reference.ops.conv2d.

The property test draws the conformance suite's conv cases (every FBGEMM path, the deep
|acc| > 2^24 target, Winograd-sized convs) under every numerics profile (engines fbgemm,
qnnpack and x86; where x86 picks oneDNN both refuse alike), with one or two workers and
band sizes from one row to whole, and requires bit-identical outputs; it then checks that
the drawn cases reached every fast path, so it cannot pass vacuously. The other
tests pin the fast kernel's machinery with hand-worked cases: the one-GEMM bound, K chunks,
Winograd, band cuts and prepared weights.
"""

from __future__ import annotations

import collections
import re
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantspec.reference import fast
from quantspec.reference._arguments import ArgumentError
from quantspec.reference.ops import conv2d, conv_path
from quantspec.reference.profile import PROFILES, EngineNotSpecifiedError, get_profile
from quantspec.reference.qtensor import QTensor

pytest.importorskip("torch")  # the conformance strategies build torch oracles beside the cases
from qtensors import q_s8, q_u8

from quantspec.conformance.checks.conv2d import conv_cases  # noqa: E402

VNNI_213 = get_profile("torch2.13-avx512_vnni-fbgemm")
AVX2_213 = get_profile("torch2.13-avx2-fbgemm")
FAST_CONV = sys.modules["quantspec.reference.fast.conv2d"]
THREADS = sys.modules["quantspec.reference.fast.threads"]
GEMM = sys.modules["quantspec.reference.fast.gemm"]


def spy(monkeypatch, module, name: str, calls: list) -> None:
    """Record `(arguments, result)` of every call of `module.name`."""
    original = getattr(module, name)

    def record(*args):
        result = original(*args)
        calls.append((args, result))
        return result

    monkeypatch.setattr(module, name, record)


def test_fast_equals_plain_on_drawn_cases_and_reaches_every_fast_path():
    reached: collections.Counter[str] = collections.Counter()

    # Derandomized: the reach assertions below must not depend on the seed. VNNI is drawn
    # half the time: only there (or under qnnpack) may the fast kernel take Winograd.
    @settings(max_examples=240, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(conv_cases(), st.sampled_from(["2.13", "2.14"]),
           st.sampled_from(["avx512_vnni", "avx512_vnni", "avx512", "avx2"]),
           st.sampled_from(["fbgemm", "fbgemm", "qnnpack", "x86"]), st.sampled_from([1, 2]),
           st.sampled_from([1, 2**21]))
    def fast_equals_plain(case, release, cpu, engine, workers, band_bytes):
        profile = PROFILES[f"torch{release}-{cpu}-{engine}"]
        x, weight, bias, out_scale = case.arrays()
        args = (x, weight, bias, case.stride, case.padding, case.dilation, case.groups, out_scale,
                case.out_zero_point, case.relu, profile)
        # x86 on VNNI with symmetric weights runs oneDNN, not specified: refused by both (reached
        # only by chance here; test_qnnpack checks the refusal on a fixed case).
        if profile.conv2d_library(weight.zero_point, case.groups) == "onednn":
            for implementation in (conv2d, fast.conv2d):
                with pytest.raises(EngineNotSpecifiedError):
                    implementation(*args)
            return
        expected = conv2d(*args)
        winograd, chunks, corrections = [], [], []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(THREADS, "MIN_MACS_PER_WORKER", 1)  # even small convs get several bands
            patch.setattr(FAST_CONV, "BAND_BYTES", band_bytes)  # one row per band, or cache-sized
            spy(patch, FAST_CONV, "winograd_sums", winograd)
            spy(patch, GEMM, "_grouped_matmul", chunks)
            spy(patch, FAST_CONV, "pair_saturation_correction", corrections)
            got = fast.conv2d(*args, workers=workers)
        assert np.array_equal(got.int_repr, expected.int_repr)
        assert got.memory_format is expected.memory_format and got.shape == expected.shape
        reached[case.path(profile.cpu)] += 1
        reached[profile.engine] += 1
        reached["winograd"] += bool(winograd)
        reached["qnnpack-winograd"] += bool(winograd) and engine == "qnnpack"
        reached["k-chunks"] += any(args[0].shape[-1] < case.depth for args, _ in chunks)  # exact_matmul cut K
        reached["saturated-pairs"] += any(np.any(correction) for _, correction in corrections)
        reached["two-workers"] += workers == 2

    fast_equals_plain()
    for path in ("depthwise", "groupwise", "pointwise", "im2col", "winograd", "k-chunks", "saturated-pairs",
                 "two-workers", "fbgemm", "qnnpack", "x86", "qnnpack-winograd"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_gemm_path_one_float32_gemm_when_window_norms_allow(monkeypatch):
    # 3x3 conv, 64 channels (K = 576), pad 1, w = 127 everywhere, a_zp 0:
    # 576 * 255 * 127 = 18,653,760 > 2^24, so the simple bound fails.
    calls = []
    spy(monkeypatch, GEMM, "_grouped_matmul", calls)
    w = q_s8(np.full((1, 64, 3, 3), 127))
    # One nonzero activation (255 at channel 5, the centre): every window's sum of squares
    # is 65,025; times sum w^2 = 576 * 16,129 = 9,290,304 gives 6.0e11 <= 2^48: one GEMM.
    # Every output window covers the centre: S = 255 * 127 = 32385; / 256 = 126.50 -> 127.
    sparse = np.zeros((1, 64, 3, 3))
    sparse[0, 5, 1, 1] = 255
    out = fast.conv2d(q_u8(sparse), w, None, (1, 1), (1, 1), (1, 1), 1, 256.0, 0)
    assert out.int_repr.ravel().tolist() == [127] * 9
    assert [args[0].shape for args, _ in calls] == [(1, 9, 576)]
    # All 255: the centre window's 576 * 65,025 = 37,454,400 times 9,290,304 = 3.5e14 > 2^48:
    # chunks of floor((2^24 - 1) / 32385) = 518 terms. S = valid taps * 64 * 32385, / 2^17:
    # corners 4 taps 63.25 -> 63, edges 6 taps 94.875 -> 95, centre 9 taps 142.31 -> 142.
    calls.clear()
    out = fast.conv2d(q_u8(np.full((1, 64, 3, 3), 255)), w, None, (1, 1), (1, 1), (1, 1), 1, 2.0**17, 0)
    assert out.int_repr.reshape(3, 3).tolist() == [[63, 95, 63], [95, 142, 95], [63, 95, 63]]
    assert [args[0].shape for args, _ in calls] == [(1, 9, 518), (1, 9, 58)]


def test_winograd_gives_the_direct_sums(monkeypatch):
    # Stride-1 3x3 convs with >= WINOGRAD_MIN_PIXELS outputs take Winograd F(2x2, 3x3); forced
    # here for a 3x3 image [[1, 2, 3], [4, 5, 6], [7, 8, 9]] (zp 0), weights all 1, padding 1:
    # each output is the sum of its 3x3 neighbourhood, e.g. corner 1+2+4+5 = 12, centre 45.
    # The 3x3 output takes 2x2 tiles, the last row and column of which are cut off.
    monkeypatch.setattr(FAST_CONV, "WINOGRAD_MIN_PIXELS", 0)
    calls = []
    spy(monkeypatch, FAST_CONV, "winograd_sums", calls)
    x = q_u8(np.arange(1, 10).reshape(1, 1, 3, 3))
    out = fast.conv2d(x, q_s8(np.ones((1, 1, 3, 3))), None, (1, 1), (1, 1), (1, 1), 1, 1.0, 0, profile=VNNI_213)
    assert out.int_repr.reshape(3, 3).tolist() == [[12, 21, 16], [27, 45, 33], [24, 39, 28]]
    assert len(calls) == 1


def test_winograd_band_cuts_give_the_plain_outputs(monkeypatch):
    # 30x29 outputs (870 >= WINOGRAD_MIN_PIXELS): 15x15 tiles, the last column cut off.
    rng = np.random.default_rng(5)
    x = QTensor(rng.integers(0, 120, (1, 16, 30, 29)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-100, 100, (8, 16, 3, 3)).astype(np.int8), rng.uniform(0.005, 0.01, 8),
                np.zeros(8, np.int64), "qint8", axis=0)
    bias = rng.normal(0, 1, 8).astype(np.float32)
    args = (x, w, bias, (1, 1), (1, 1), (1, 1), 1, 0.3, 7, True, VNNI_213)
    expected = conv2d(*args)
    monkeypatch.setattr(THREADS, "MIN_MACS_PER_WORKER", 1)  # 30 * 29 * 8 * 144 = 1.0M multiply-adds: band it
    bands = []  # (tile rows, output channels) of every winograd_sums call; threads append in any order
    original = FAST_CONV.winograd_sums
    monkeypatch.setattr(FAST_CONV, "winograd_sums", lambda *call: bands.append(call[3:5]) or original(*call))

    def run_and_check(workers: int) -> list[tuple[slice, slice]]:
        bands.clear()
        assert np.array_equal(fast.conv2d(*args, workers=workers).int_repr, expected.int_repr)
        return sorted(bands, key=lambda band: (band[0].start, band[1].start))

    assert run_and_check(1) == [(slice(0, 15), slice(0, 8))]  # Winograd's exactness bound held
    # Two workers: 15 x 15 tiles x 16 positions x 4 bytes x (16 + 8) channels = 346 KB of
    # intermediates fit one 2 MB band, so the workers take output channels 0-3 and 4-7.
    assert run_and_check(2) == [(slice(0, 15), slice(0, 4)), (slice(0, 15), slice(4, 8))]
    # Cache-sized bands: one tile row per band when a band may hold only a few bytes, on
    # one thread and on two.
    monkeypatch.setattr(FAST_CONV, "BAND_BYTES", 1)
    for workers in (1, 2):
        assert run_and_check(workers) == [(slice(row, row + 1), slice(0, 8)) for row in range(15)]


def test_no_winograd_where_pairs_saturate(monkeypatch):
    # Winograd forms exact sums; without VNNI the GEMM paths saturate pairs, so the same conv
    # must take im2col with the pair correction.
    calls = []
    spy(monkeypatch, FAST_CONV, "winograd_sums", calls)
    x = q_u8(np.full((1, 4, 16, 16), 250), 0.1, 0)
    w = q_s8(np.full((2, 4, 3, 3), 127), 0.1)
    for profile in (AVX2_213, VNNI_213):
        args = (x, w, None, (1, 1), (1, 1), (1, 1), 1, 50.0, 0, False, profile)
        assert np.array_equal(fast.conv2d(*args).int_repr, conv2d(*args).int_repr)
    assert len(calls) == 1  # the VNNI run only


@pytest.mark.parametrize(
    "pixel, zero_point, channels, winograd",
    [
        ((128, 128), 0, 4, True),  # every pixel's channel pair sums to 256 < 257: no pair can saturate
        ((128, 129), 0, 4, False),  # 257: 257 * -128 = -32,896 saturates
        ((128, 128), 129, 4, False),  # the padding taps' pair (129, 129) sums to 258
        ((128, 128), 0, 3, False),  # odd channels: pairs straddle taps (128 + 128 + ...), not judged per pixel
    ],
)
def test_no_pair_reaching_257_opens_winograd_without_vnni(monkeypatch, pixel, zero_point, channels, winograd):
    # Without VNNI a pair saturates only if a0 + a1 >= 257 (|w| <= 128); with an even channel
    # count per group every pair is one pixel's channels (2q, 2q + 1) or a padding tap's
    # (zp, zp), so when none reaches 257 the exact Winograd sums are FBGEMM's too.
    calls = []
    spy(monkeypatch, FAST_CONV, "winograd_sums", calls)
    values = np.empty((1, channels, 16, 16), np.uint8)
    values[:, 0::2], values[:, 1::2] = pixel
    x = q_u8(values, 0.1, zero_point)
    w = q_s8(np.full((2, channels, 3, 3), -128), 0.1)
    args = (x, w, None, (1, 1), (1, 1), (1, 1), 1, 50.0, 0, False, AVX2_213)
    assert np.array_equal(fast.conv2d(*args).int_repr, conv2d(*args).int_repr)
    assert bool(calls) is winograd


def test_pair_saturation_is_the_same_in_every_band_cut(monkeypatch):
    # Without VNNI the im2col path saturates vpmaddubsw pairs; the correction is formed per
    # band from the band's raw windows and the band's weight rows. High activations times
    # same-signed extreme weights saturate most pairs (255 * 127 * 2 = 64770 > 32767).
    monkeypatch.setattr(THREADS, "MIN_MACS_PER_WORKER", 1)
    rng = np.random.default_rng(4)
    x = QTensor(rng.integers(240, 256, (2, 16, 6, 7)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(np.where(rng.random((8, 16, 3, 3)) < 0.9, 127, -128).astype(np.int8), 0.01, 0, "qint8")
    bias = rng.normal(0, 1, 8).astype(np.float32)
    args = (x, w, bias, (1, 1), (1, 1), (1, 1), 1, 40.0, 5)
    expected = conv2d(*args, profile=AVX2_213).int_repr
    assert not np.array_equal(conv2d(*args, profile=VNNI_213).int_repr, expected)  # the saturation shows
    assert np.array_equal(fast.conv2d(*args, profile=AVX2_213).int_repr, expected)  # one band
    assert np.array_equal(fast.conv2d(*args, profile=AVX2_213, workers=2).int_repr, expected)  # channel bands
    monkeypatch.setattr(FAST_CONV, "BAND_BYTES", 1)
    assert np.array_equal(fast.conv2d(*args, profile=AVX2_213, workers=2).int_repr, expected)  # one-row bands


def test_prepared_weights_form_requant_params_once_per_pair_of_scales(monkeypatch):
    calls = []
    original = FAST_CONV.requant_params
    for module in (FAST_CONV, GEMM):  # unprepared calls use fast.conv2d's; prepared weights gemm's
        monkeypatch.setattr(module, "requant_params", lambda *args: calls.append(args[0:3:2]) or original(*args))
    rng = np.random.default_rng(2)
    x = QTensor(rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8), rng.uniform(0.01, 0.02, 6),
                np.zeros(6, np.int64), "qint8", axis=0)
    prepared = fast.prepare_conv_weight(w, 1)
    for out_scale in (0.5, 0.5, 0.25):
        expected = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, out_scale, 7)
        unprepared = fast.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, out_scale, 7)
        with_prepared = fast.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, out_scale, 7, prepared=prepared)
        assert np.array_equal(unprepared.int_repr, expected.int_repr)
        assert np.array_equal(with_prepared.int_repr, expected.int_repr)
    # Unprepared calls form them every time (3); the prepared weight once per output scale (2).
    assert calls.count((0.05, 0.5)) == 3 and calls.count((0.05, 0.25)) == 2


def test_a_prepared_weight_keeps_a_bounded_number_of_requantizations():
    # A caller that varies the output scale on every call: the prepared weight keeps only the
    # newest KEPT_ENTRIES sets of constants, and an evicted scale is formed again, not reused stale.
    rng = np.random.default_rng(3)
    x = QTensor(rng.integers(0, 256, (1, 4, 4, 4)).astype(np.uint8), 0.05, 3, "quint8")
    w = QTensor(rng.integers(-128, 128, (6, 4, 1, 1)).astype(np.int8), 0.02, 0, "qint8")
    prepared = fast.prepare_conv_weight(w, 1)
    out_scales = [0.1 + 0.01 * i for i in range(GEMM.KEPT_ENTRIES + 6)] + [0.1]  # 0.1 again, once evicted
    for out_scale in out_scales:
        args = (x, w, None, (1, 1), (0, 0), (1, 1), 1, out_scale, 7)
        assert np.array_equal(fast.conv2d(*args, prepared=prepared).int_repr, conv2d(*args).int_repr)
    kept = [key[1] for key in prepared._requant]
    assert len(kept) == GEMM.KEPT_ENTRIES and kept[-1] == 0.1 and kept[0] == out_scales[7]


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_bands_phases_and_offsets_give_the_plain_outputs(monkeypatch, kernel, stride, multiplier):
    # The fast depthwise kernel reads each stride phase's columns as contiguous float32 rows
    # and cuts the output rows into bands; this walks every kernel size FBGEMM's depthwise
    # path takes, both strides, both channel multipliers, an odd width (a last phase one
    # column shorter), a nonzero weight zero point (the row-offset term), values up to 255
    # with weights up to 127 (pairs that saturate: 255 * 127 * 2 > 32,767), one-row bands
    # and whole-image bands, on one and two workers.
    monkeypatch.setattr(THREADS, "MIN_MACS_PER_WORKER", 1)
    rng = np.random.default_rng(kernel * 10 + stride + multiplier)
    channels = 8
    x = QTensor(rng.integers(0, 256, (2, channels, 11, 13)).astype(np.uint8), 0.05, 7, "quint8")
    w = QTensor(rng.integers(-128, 128, (channels * multiplier, 1, kernel, kernel)).astype(np.int8), 0.01, 3, "qint8")
    bias = rng.normal(0, 1, channels * multiplier).astype(np.float32)
    pad = (kernel - 1) // 2
    args = (x, w, bias, (stride, stride), (pad, pad), (1, 1), channels, 30.0, 9, False, AVX2_213)
    assert conv_path(channels, channels * multiplier, (kernel, kernel), *args[3:7], AVX2_213) == "depthwise"
    expected = conv2d(*args).int_repr
    for band_bytes in (1, 2**21):
        monkeypatch.setattr(FAST_CONV, "BAND_BYTES", band_bytes)
        for workers in (1, 2):
            assert np.array_equal(fast.conv2d(*args, workers=workers).int_repr, expected)


def test_a_conv_plan_runs_only_inputs_like_the_one_it_was_formed_for():
    # plan_conv2d checks the arguments once; run_conv_plan still refuses an input whose channel
    # count, dtype or qscheme the checks never saw, rather than computing something else.
    x = q_u8(np.arange(8).reshape(1, 2, 2, 2))
    w = q_s8(np.ones((3, 2, 1, 1)))
    plan = fast.plan_conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1, 1.0, 0)
    # out[c] = x[0] + x[1] at each pixel: 0 + 4, 1 + 5, 2 + 6, 3 + 7
    assert fast.run_conv_plan(x, plan).int_repr[0, 0].ravel().tolist() == [4, 6, 8, 10]
    for other in (q_u8(np.zeros((1, 3, 2, 2))), q_s8(np.zeros((1, 2, 2, 2))), np.zeros((1, 2, 2, 2), np.uint8)):
        with pytest.raises(ArgumentError):
            fast.run_conv_plan(other, plan)


@pytest.mark.parametrize(
    ("prepared_for", "call", "named"),
    [
        (((6, 4, 3, 3), 1, (1, 1)), ((6, 4, 3, 3), 1, (2, 2)), "(kernel, stride, dilation, groups)"),
        (((6, 4, 1, 1), 1, (1, 1)), ((6, 4, 3, 3), 1, (1, 1)), "(kernel, stride, dilation, groups)"),
        (((8, 4, 3, 3), 1, (1, 1)), ((6, 4, 3, 3), 1, (1, 1)), "of shape (8, 4, 3, 3), not (6, 4, 3, 3)"),
        (((6, 2, 3, 3), 2, (1, 1)), ((6, 4, 3, 3), 2, (1, 1)), "of shape (6, 2, 3, 3), not (6, 4, 3, 3)"),
    ],
)
def test_a_prepared_weight_of_another_shape_or_geometry_is_refused(prepared_for, call, named):
    def weight(shape):
        return QTensor(np.ones(shape, np.int8), 0.02, 0, "qint8")

    shape, groups, stride = prepared_for
    prepared = fast.prepare_conv_weight(weight(shape), groups, stride)
    shape, groups, stride = call
    x = QTensor(np.zeros((1, shape[1] * groups, 6, 6), np.uint8), 0.05, 3, "quint8")
    with pytest.raises(ArgumentError, match=re.escape(named)):
        fast.conv2d(x, weight(shape), None, stride, (1, 1), (1, 1), groups, 0.5, 7, prepared=prepared)


@pytest.mark.parametrize(
    ("values", "scale", "zero_point", "named"),
    [(2, 0.02, 0, "with other integer values"), (1, 0.03, 0, "with other qparams"), (1, 0.02, 1, "other qparams")],
)
def test_a_prepared_weight_of_another_weight_of_the_same_shape_is_refused(values, scale, zero_point, named):
    # Prepared from all-1 weights, called with all-2 ones: the kernel computes with the prepared
    # operands alone, so an inner output would be 36 taps * (8 - 3) * 1 = 180 -> 180 * 0.02 = 3.6
    # -> 4, where the plain op gives 36 * 5 * 2 * 0.02 = 7.2 -> 7; refused instead. An equal copy
    # of the weight is accepted.
    prepared = fast.prepare_conv_weight(QTensor(np.ones((6, 4, 3, 3), np.int8), 0.02, 0, "qint8"), 1)
    x = QTensor(np.full((1, 4, 6, 6), 8, np.uint8), 1.0, 3, "quint8")
    args = (x, None, None, (1, 1), (1, 1), (1, 1), 1, 1.0, 0)
    copy = QTensor(np.ones((6, 4, 3, 3), np.int8), 0.02, 0, "qint8")
    assert np.array_equal(fast.conv2d(*args[:1], copy, *args[2:], prepared=prepared).int_repr,
                          conv2d(*args[:1], copy, *args[2:]).int_repr)
    other = QTensor(np.full((6, 4, 3, 3), values, np.int8), scale, zero_point, "qint8")
    with pytest.raises(ArgumentError, match=named):
        fast.conv2d(*args[:1], other, *args[2:], prepared=prepared)


@pytest.mark.parametrize(
    ("shape", "groups", "named"),
    [((6, 4, 3, 3), 4, "groups=4 expects out_channels divisible by it"), ((6, 4), 1, "4-d qint8")],
)
def test_prepare_conv_weight_refuses_a_weight_its_groups_cannot_split(shape, groups, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        fast.prepare_conv_weight(QTensor(np.ones(shape, np.int8), 0.02, 0, "qint8"), groups)


QNNPACK_213 = get_profile("torch2.13-avx2-qnnpack")


def _depthwise_corner_and_centre(x: QTensor, w: QTensor, out_scale: float, out_zero_point: int, profile) -> list:
    """The (0, 0) and (1, 1) outputs of channel 0 of a 3x3, padding-1 depthwise conv, plain and fast."""
    args = (x, w, None, (1, 1), (1, 1), (1, 1), x.shape[1], out_scale, out_zero_point, False, profile)
    plain, quick = conv2d(*args).int_repr[0, 0], fast.conv2d(*args).int_repr[0, 0]
    return [int(plain[0, 0]), int(plain[1, 1]), int(quick[0, 0]), int(quick[1, 1])]


def test_depthwise_pairs_of_padding_taps_saturate():
    # An image of 0s with a_zp = 255, every weight 127 (w_zp 0), out scale 2000, zp 128; the
    # image alone never saturates, the padding (which reads a_zp = 255) does. Output (0, 0):
    # taps t = 3r + s; t0, t1, t2, t3 and t6 are padding (255), the rest image (0). FBGEMM's
    # pairs (0,1) and (2,3) are 2 * 255 * 127 = 64,770 -> sat16 32,767 each; (4,5) is 0;
    # (6,7) is 32,385 (fits); t8 alone is 0. S = 97,919; minus a_zp * sum(w) = 255 * 1,143:
    # acc = -193,546 -> -96.77 -> -97 + 128 = 31. Exact (pytorch_qnnpack): 5 * 32,385 -
    # 291,465 = -129,540 -> -64.77 -> -65 + 128 = 63. Output (1, 1) reads only the image:
    # -291,465 / 2000 -> -146 + 128 < 0 -> 0 under both.
    x = QTensor(np.zeros((1, 8, 3, 3), np.uint8), 1.0, 255, "quint8")
    w = QTensor(np.full((8, 1, 3, 3), 127, np.int8), 1.0, 0, "qint8")
    assert _depthwise_corner_and_centre(x, w, 2000.0, 128, AVX2_213) == [31, 0, 31, 0]
    assert _depthwise_corner_and_centre(x, w, 2000.0, 128, QNNPACK_213) == [63, 0, 63, 0]


def test_depthwise_pair_just_past_int16_saturates():
    # Every input 255 (zp 0), weights -64 and -65 on taps (0,0) and (0,1), the rest 0; out scale
    # 129, zp 255. Output (1, 1): P = 255 * -64 + 255 * -65 = -32,895, 127 past int16 ->
    # sat16 -32,768 -> -32,768 / 129 = -254.02 -> -254 + 255 = 1 under FBGEMM; pytorch_qnnpack
    # sums exactly: -32,895 / 129 = -255 -> 0. Output (0, 0) reads padding (a_zp = 0) on both taps: 255.
    x = QTensor(np.full((1, 8, 3, 3), 255, np.uint8), 1.0, 0, "quint8")
    weights = np.zeros((8, 1, 3, 3), np.int8)
    weights[:, 0, 0, :2] = (-64, -65)
    w = QTensor(weights, 1.0, 0, "qint8")
    assert _depthwise_corner_and_centre(x, w, 129.0, 255, AVX2_213) == [255, 1, 255, 1]
    assert _depthwise_corner_and_centre(x, w, 129.0, 255, QNNPACK_213) == [255, 0, 255, 0]


def test_depthwise_requantization_of_one_prepared_weight_follows_the_library():
    # x scale 0.04095165, w scale 0.01728904, out scale 0.15892893 (float32 values): FBGEMM's
    # multiplier f32(f32(xs * ws) / os) = 0.0044549145, pytorch_qnnpack's f32(f32(xs * ws) *
    # f32(1 / os)) one ulp lower, 0.004454914. Every input 221 (zp 0), only the centre tap
    # -97: acc = 221 * -97 = -21,437 -> * 0.0044549145 = -95.5 exactly -> rne -96 + 128 = 32;
    # * 0.004454914 = -95.49999 -> -95 + 128 = 33. One prepared weight runs both in turn: the
    # second must not reuse the first's constants.
    scales = [float(np.float32(v)) for v in ("0.04095165", "0.01728904", "0.15892893")]
    weights = np.zeros((8, 1, 3, 3), np.int8)
    weights[:, 0, 1, 1] = -97
    w = QTensor(weights, scales[1], 0, "qint8")
    x = QTensor(np.full((1, 8, 3, 3), 221, np.uint8), scales[0], 0, "quint8")
    prepared = fast.prepare_conv_weight(w, 8)
    for profile, expected in ((AVX2_213, 32), (QNNPACK_213, 33), (AVX2_213, 32)):
        args = (x, w, None, (1, 1), (1, 1), (1, 1), 8, scales[2], 128, False, profile)
        assert conv2d(*args).int_repr[0, 0, 1, 1] == expected
        assert np.all(fast.conv2d(*args, prepared=prepared).int_repr == expected)


def test_depthwise_row_constants_follow_every_qparam_and_bias_on_one_prepared_weight():
    # The depthwise kernel keeps its per-row constants (zero-point term, bias, requantization
    # constants) on the prepared weight; a call with another input zero point or scale, output
    # scale, width or bias must not reuse another call's, under FBGEMM and pytorch_qnnpack.
    rng = np.random.default_rng(5)
    w = QTensor(rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8), rng.uniform(0.01, 0.02, 8),
                np.zeros(8, np.int64), "qint8", axis=0)
    prepared = fast.prepare_conv_weight(w, 8)
    bias_a, bias_b = rng.normal(0, 1, 8).astype(np.float32), rng.normal(0, 1, 8).astype(np.float32)
    calls = [(0.05, 0, 6, 0.5, bias_a), (0.05, 9, 6, 0.5, bias_a), (0.07, 9, 6, 0.5, bias_a),
             (0.07, 9, 6, 0.25, bias_a), (0.07, 9, 5, 0.25, bias_a), (0.07, 9, 5, 0.25, bias_b),
             (0.07, 9, 5, 0.25, None)]
    for profile in (AVX2_213, get_profile("torch2.13-avx2-qnnpack")):
        for scale, zero_point, width, out_scale, bias in calls * 2:  # each call twice: the second from the cache
            x = QTensor(rng.integers(0, 256, (1, 8, 5, width)).astype(np.uint8), scale, zero_point, "quint8")
            args = (x, w, bias, (1, 1), (1, 1), (1, 1), 8, out_scale, 3, False, profile)
            assert np.array_equal(fast.conv2d(*args, prepared=prepared).int_repr, conv2d(*args).int_repr)

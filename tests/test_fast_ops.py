"""reference.fast's add, max_pool2d, avg_pool2d, adaptive_avg_pool2d, cat and clamp/hardtanh
against their plain definitions in reference.ops.

The property tests draw the conformance suite's cases for each op (vector-lane and scalar-tail
channel counts, C == 1 and H*W == 1 routing, ceil mode, padding, dilation, odd zero points,
qint8, torch.cat's generic path; add's qint32, mixed layouts and 2-thread ranges) under every
numerics profile, with the integers laid out in
memory as their memory format says (NHWC strides for channels_last, as conv outputs are) or
not, and with the fast kernels' cut-offs forced the other way half the time (the plain formula
instead of a table, band sums instead of a matrix product; add: every 8-bit case tabulated),
and require identical QTensors. They then
check that the drawn cases reached each path, so they cannot pass vacuously. Hand-worked cases
pin the tables and the window sums.
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantspec.reference import fast, ops
from quantspec.reference.ops._pool_common import takes_nhwc_kernel
from quantspec.reference.ops._tensor_iterator import scalar_tail_spans
from quantspec.reference.profile import PROFILES
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor, in_memory_format, memory_format_of

pytest.importorskip("torch")  # the conformance strategies build torch oracles beside the cases
from quantspec.conformance.checks import adaptive_avg_pool2d as adaptive_check  # noqa: E402
from quantspec.conformance.checks import add as add_check  # noqa: E402
from quantspec.conformance.checks import avg_pool2d as avg_check  # noqa: E402
from quantspec.conformance.checks import cat as cat_check  # noqa: E402
from quantspec.conformance.checks import clamp as clamp_check  # noqa: E402
from quantspec.conformance.checks import max_pool2d as max_check  # noqa: E402

FAST_ADD = sys.modules["quantspec.reference.fast.add"]
FAST_AVG = sys.modules["quantspec.reference.fast.avg_pool2d"]
FAST_ADAPTIVE = sys.modules["quantspec.reference.fast.adaptive_avg_pool2d"]
FAST_CLAMP = sys.modules["quantspec.reference.fast.clamp"]
PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def laid_out(q: QTensor, as_labelled: bool) -> QTensor:
    """`q` with its integers in memory as its memory format says (NHWC strides for
    channels_last), or as drawn (C-contiguous whatever the label)."""
    if not as_labelled or q.int_repr.ndim != 4:
        return q
    values = in_memory_format(np.ascontiguousarray(q.int_repr), q.memory_format)
    return QTensor(values, q.scale, q.zero_point, q.dtype, memory_format=q.memory_format)


def assert_same(got: QTensor, expected: QTensor) -> None:
    assert np.array_equal(got.int_repr, expected.int_repr) and got.int_repr.dtype == expected.int_repr.dtype
    assert got.shape == expected.shape and got.memory_format is expected.memory_format
    assert (got.scale, got.zero_point, got.dtype) == (expected.scale, expected.zero_point, expected.dtype)


def same_result_or_same_refusal(plain, fast_kernel, *args) -> bool:
    """Run both; True when both computed (and agree), False when both refused alike."""
    try:
        expected = plain(*args)
    except Exception as refusal:
        with pytest.raises(type(refusal)):
            fast_kernel(*args)
        return False
    assert_same(fast_kernel(*args), expected)
    return True


PROFILE_NAMES = st.sampled_from(sorted(PROFILES))


def test_fast_add_equals_plain():
    reached: collections.Counter[str] = collections.Counter()

    @settings(PROPERTY, max_examples=80)  # adds run the plain formula (slow) and build tables
    @given(add_check.cases(), st.sampled_from(sorted(PROFILES)), st.booleans(), st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled, tabulate_all):
        a, b = laid_out(case.a.q, as_labelled), laid_out(case.b.q, as_labelled)
        args = (a, b, case.scale, case.zero_point, case.relu, case.threads, PROFILES[profile_name])
        with pytest.MonkeyPatch.context() as patch:
            if tabulate_all:
                patch.setattr(FAST_ADD, "TABLE_MIN_SIZE", 0)
            computed = same_result_or_same_refusal(ops.add, fast.add, *args)
        tabulated = a.dtype is not QDtype.qint32 and (tabulate_all or a.int_repr.size >= FAST_ADD.TABLE_MIN_SIZE)
        if computed and tabulated and PROFILES[profile_name].engine != "qnnpack":
            reached["table"] += 1
            reached["table+tail"] += bool(scalar_tail_spans(a.int_repr.size, 64, case.threads))
            reached["table+2-threads"] += case.threads == 2 and a.int_repr.size > 32768

    fast_equals_plain()
    for path in ("table", "table+tail", "table+2-threads"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_tabulated_add_keeps_the_scalar_tail():
    # 4097 quint8 ones (scale 1, zp 0) + themselves into scale 4, zp 1: the 64 blocks take the
    # vector lambda, cvt(2 / 4 = 0.5) = 0, + 1 = 1; the last element is a scalar tail:
    # 2.13 rne(1 + 0.5) = rne(1.5) = 2.
    ones = QTensor(np.ones((4097,), np.uint8), 1.0, 0, "quint8")
    out = fast.add(ones, ones, 4.0, 1, profile=PROFILES["torch2.13-avx2-fbgemm"]).int_repr
    assert out[:4096].tolist() == [1] * 4096 and out[4096] == 2


def test_fast_max_pool2d_equals_plain():
    reached: collections.Counter[str] = collections.Counter()

    @PROPERTY
    @given(max_check.cases(), PROFILE_NAMES, st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled):
        x, profile = laid_out(case.x, as_labelled), PROFILES[profile_name]
        k = case.kwargs
        args = (x, k["kernel_size"], k["stride"], k["padding"], k["dilation"], k["ceil_mode"], profile)
        if same_result_or_same_refusal(ops.max_pool2d, fast.max_pool2d, *args):
            reached["nhwc-memory" if memory_format_of(x.int_repr) is MemoryFormat.channels_last else "nchw-memory"] += 1
            reached["qnnpack"] += profile.engine == "qnnpack"
            reached["dilation"] += max(k["dilation"]) > 1

    fast_equals_plain()
    for path in ("nhwc-memory", "nchw-memory", "qnnpack", "dilation"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_fast_avg_pool2d_equals_plain():
    reached: collections.Counter[str] = collections.Counter()

    @PROPERTY
    @given(avg_check.cases(), PROFILE_NAMES, st.booleans(), st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled, untabulated):
        x, profile = laid_out(case.x, as_labelled), PROFILES[profile_name]
        k = case.kwargs
        args = (x, k["kernel_size"], k["stride"], k["padding"], k["ceil_mode"], k["count_include_pad"],
                k["divisor_override"], profile)
        with pytest.MonkeyPatch.context() as patch:
            if untabulated:
                patch.setattr(FAST_AVG, "TABLE_MAX_ENTRIES", 0)
            computed = same_result_or_same_refusal(ops.avg_pool2d, fast.avg_pool2d, *args)
        if computed:
            reached["nhwc-kernel" if takes_nhwc_kernel(x) else "nchw-kernel"] += 1
            reached["nhwc-memory"] += memory_format_of(x.int_repr) is MemoryFormat.channels_last
            reached["untabulated" if untabulated else "tabulated"] += 1
            reached["tail"] += takes_nhwc_kernel(x) and x.shape[1] % profile.aten_avx512_float_lanes != 0

    fast_equals_plain()
    for path in ("nhwc-kernel", "nchw-kernel", "nhwc-memory", "untabulated", "tabulated", "tail"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_fast_adaptive_avg_pool2d_equals_plain():
    reached: collections.Counter[str] = collections.Counter()

    @PROPERTY
    @given(adaptive_check.cases(), PROFILE_NAMES, st.booleans(), st.booleans(), st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled, untabulated, band_sums):
        x, profile = laid_out(case.x, as_labelled), PROFILES[profile_name]
        with pytest.MonkeyPatch.context() as patch:
            if untabulated:
                patch.setattr(FAST_ADAPTIVE, "TABLE_MAX_ENTRIES", 0)
            if band_sums:
                patch.setattr(FAST_ADAPTIVE, "BAND_MATRIX_MAX_ENTRIES", 0)
            FAST_ADAPTIVE._windows.cache_clear()  # the band matrix is formed (or not) with the windows
            computed = same_result_or_same_refusal(
                ops.adaptive_avg_pool2d, fast.adaptive_avg_pool2d, x, case.kwargs["output_size"], profile
            )
            FAST_ADAPTIVE._windows.cache_clear()
        if computed:
            reached["nhwc-kernel" if takes_nhwc_kernel(x) else "nchw-kernel"] += 1
            reached["nhwc-memory"] += memory_format_of(x.int_repr) is MemoryFormat.channels_last
            reached["untabulated" if untabulated else "tabulated"] += 1
            reached["band-sums" if band_sums else "matrix-sums"] += 1
            global_pool = tuple(np.broadcast_to(case.kwargs["output_size"], 2)) == (1, 1)
            reached["global-nhwc-memory"] += global_pool and memory_format_of(x.int_repr) is MemoryFormat.channels_last
            reached["tail"] += takes_nhwc_kernel(x) and x.shape[1] % 8 != 0

    fast_equals_plain()
    for path in ("nhwc-kernel", "nchw-kernel", "nhwc-memory", "untabulated", "tabulated", "band-sums",
                 "matrix-sums", "global-nhwc-memory", "tail"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_fast_cat_equals_plain():
    reached: collections.Counter[str] = collections.Counter()

    @PROPERTY
    @given(cat_check.cases(), PROFILE_NAMES, st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled):
        tensors = [laid_out(t, as_labelled) for t in case.tensors]
        args = (tensors, case.dim, case.scale, case.zero_point, PROFILES[profile_name])
        if same_result_or_same_refusal(ops.cat, fast.cat, *args):
            nhwc = case.dim % tensors[0].int_repr.ndim == 1 and all(
                t.int_repr.ndim == 4 and takes_nhwc_kernel(t) for t in tensors)
            reached["nhwc-path" if nhwc else "generic-path"] += 1
            reached["tail"] += nhwc and any(t.shape[1] % 8 for t in tensors)

    fast_equals_plain()
    for path in ("nhwc-path", "generic-path", "tail"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_fast_clamp_and_hardtanh_equal_plain():
    reached: collections.Counter[str] = collections.Counter()

    @PROPERTY
    @given(clamp_check.cases(), PROFILE_NAMES, st.booleans())
    def fast_equals_plain(case, profile_name, as_labelled):
        plain, quick = (ops.hardtanh, fast.hardtanh) if case.hardtanh else (ops.clamp, fast.clamp)
        args = (laid_out(case.x.q, as_labelled), case.low, case.high, PROFILES[profile_name])
        for _ in range(2):  # the second call reads the bounds the first one kept
            computed = same_result_or_same_refusal(plain, quick, *args)
        if computed:
            reached["hardtanh" if case.hardtanh else "clamp"] += 1
            reached["pytorch_qnnpack"] += PROFILES[profile_name].engine == "qnnpack" and case.x.q.dtype is QDtype.quint8

    fast_equals_plain()
    for path in ("hardtanh", "clamp", "pytorch_qnnpack"):
        assert reached[path] > 0, f"no drawn case reached {path}: {dict(reached)}"


def test_relu6_bounds_are_quantized_once_per_qparams():
    # ReLU6 = hardtanh(q, 0.0, 6.0) (ops.hardtanh's case): scale 0.05, zp 10, min_q = 10 + 0,
    # max_q = 10 + 6 * 20 = 130. Called again with the same qparams, both bounds are read back.
    q = QTensor(np.array([0, 50, 200], np.uint8), 0.05, 10, "quint8")
    fast.hardtanh(q, 0.0, 6.0)
    hits = FAST_CLAMP._kept_bound.cache_info().hits
    assert fast.hardtanh(q, 0.0, 6.0).int_repr.tolist() == [10, 50, 130]
    assert FAST_CLAMP._kept_bound.cache_info().hits == hits + 2


def test_adaptive_global_pool_sums_and_table():
    # 2 channels of a 2x2 image, NHWC kernel (channels_last), zp 1, scale 0.5: channel 0
    # [[1, 2], [3, 4]] sums 10, acc = 10 - 4 * 1 = 6; channel 1 [[0, 0], [0, 1]] sums 1, acc -3.
    # mult = 1 / 4, scale = 4: 6 / 4 = 1.5 and -3 / 4 = -0.75; 2.13 (zp first, scalar tail: C = 2
    # is below the 8 vector lanes): rne(1 + 1.5) = 2, rne(1 - 0.75) = rne(0.25) = 0.
    values = np.array([[[[1, 2], [3, 4]], [[0, 0], [0, 1]]]], np.uint8)
    x = QTensor(in_memory_format(values, MemoryFormat.channels_last), 0.5, 1, "quint8",
                memory_format=MemoryFormat.channels_last)
    out = fast.adaptive_avg_pool2d(x, 1, PROFILES["torch2.13-avx2-fbgemm"])
    assert out.int_repr.ravel().tolist() == [2, 0]
    assert out.memory_format is MemoryFormat.channels_last


def test_avg_pool_tap_sums_skip_padding():
    # One channel [[4, 8], [12, 16]], kernel 2, stride 1, padding 1, count_include_pad=False,
    # zp 0: the corner windows hold one valid tap each (4, 8, 12, 16 over 1), the edges two
    # ((4 + 8) / 2 = 6, (4 + 12) / 2 = 8, (8 + 16) / 2 = 12, (12 + 16) / 2 = 14), the centre
    # all four (40 / 4 = 10): the padding zeros add nothing and are not counted.
    x = QTensor(np.array([[[[4, 8], [12, 16]]]], np.uint8), 1.0, 0, "quint8")
    out = fast.avg_pool2d(x, 2, 1, 1, count_include_pad=False)
    assert out.int_repr.reshape(3, 3).tolist() == [[4, 6, 8], [8, 10, 12], [12, 14, 16]]

"""quantized::cat / torch.cat: NHWC fast path (copy, vector blocks, scalar tail), generic
path, release ties, routing, errors, and a torch cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.ops import cat
from quantspec.reference.profile import get_profile
from quantspec.reference.qtensor import MemoryFormat, QTensor

P213 = get_profile("torch2.13-avx512_vnni-fbgemm")
P214 = get_profile("torch2.14-avx512_vnni-fbgemm")
CL = MemoryFormat.channels_last


def twos(channels: int, memory_format: MemoryFormat, hw: tuple[int, int] = (1, 2)) -> QTensor:
    """All q = 2 at scale 0.25, zp 0: each dequantizes to 0.5, a tie at output scale 1."""
    return QTensor(np.full((1, channels) + hw, 2, np.uint8), 0.25, 0, "quint8", memory_format=memory_format)


def test_nhwc_vector_channels_round_first_and_the_tail_follows_the_release() -> None:
    # 9 channels_last channels of x = 0.5 into scale 1, zp 1:
    # channels 0..7 (one block of 8): fma(0.25, 2, -0) = 0.5, cvt(0.5 * 1) = 0, + 1 = 1.
    # channel 8 (scalar): 2.13 rne(1 + 0.5) = 2; 2.14 1 + rne(0.5) = 1.
    x = twos(9, CL)
    assert cat([x], 1, 1.0, 1, P213).int_repr[0, :, 0, 0].tolist() == [1] * 8 + [2]
    assert cat([x], 1, 1.0, 1, P214).int_repr[0, :, 0, 0].tolist() == [1] * 9


def test_generic_path_requantizes_with_quantize_per_tensor() -> None:
    # NCHW with C = 9 and H*W = 2 is not channels-last memory: dequantize (0.5), float cat,
    # quantize_per_tensor: 2.13 cvt(fma(0.5, 1, 1)) = cvt(1.5) = 2; 2.14 cvt(0.5) + 1 = 1.
    x = twos(9, MemoryFormat.contiguous)
    out13 = cat([x], 1, 1.0, 1, P213)
    assert out13.int_repr.ravel().tolist() == [2] * 18 and out13.memory_format is MemoryFormat.contiguous
    assert cat([x], 1, 1.0, 1, P214).int_repr.ravel().tolist() == [1] * 18


def test_c1_inputs_take_the_nhwc_path() -> None:
    # Two NCHW inputs with C == 1 count as channels-last: the NHWC kernel runs (its single
    # channel is a scalar tail: 2.13 rne(1 + 0.5) = 2) and, as it always does, allocates a
    # channels_last output, which is what tells it apart from the generic path here.
    x = twos(1, MemoryFormat.contiguous)
    out = cat([x, x], 1, 1.0, 1, P213)
    assert out.int_repr.ravel().tolist() == [2, 2, 2, 2] and out.memory_format is CL


def test_equal_qparams_are_copied_even_at_the_extremes() -> None:
    # Input with the output's (scale, zp) is memcpy'd: 0 and 255 unchanged; the other input
    # (scale 0.5, zp 0, q = 3 -> 1.5) into scale 1, zp 0, 1 channel scalar: 2.13 rne(0 + 1.5) = 2.
    same = QTensor(np.array([0, 255], np.uint8).reshape(1, 1, 1, 2), 0.3, 7, "quint8", memory_format=CL)
    other = QTensor(np.full((1, 1, 1, 2), 3, np.uint8), 0.5, 0, "quint8", memory_format=CL)
    out = cat([same, other], 1, 0.3, 7, P213)
    assert out.int_repr[0, 0].ravel().tolist() == [0, 255]
    other_out = cat([other], 1, 1.0, 0, P213)
    assert other_out.int_repr.ravel().tolist() == [2, 2]


def test_torch_cat_takes_the_first_inputs_qparams() -> None:
    # torch.cat = quantized::cat with tensors[0]'s scale and zero point: the first input is
    # copied, the second requantized (q = 2 at 0.25 -> 0.5 / 0.3 = 1.6666666 -> + 7 = 8.67 -> 9).
    first = QTensor(np.full((1, 1, 2, 2), 40, np.uint8), 0.3, 7, "quint8")
    out = cat([first, twos(1, MemoryFormat.contiguous, (2, 2))], 1)
    assert (out.scale, out.zero_point) == (0.3, 7)
    assert out.int_repr[0, 0].ravel().tolist() == [40] * 4 and out.int_repr[0, 1].ravel().tolist() == [9] * 4


def test_dim_other_than_channels_uses_the_generic_path_and_keeps_channels_last() -> None:
    # dim 2 with channels_last inputs: generic path (2.13: 0.5 -> cvt(1.5) = 2); output
    # channels_last because every input is.
    out = cat([twos(9, CL), twos(9, CL)], 2, 1.0, 1, P213)
    assert out.shape == (1, 9, 2, 2) and out.memory_format is CL
    assert out.int_repr.ravel().tolist() == [2] * 36


@pytest.mark.parametrize(
    "tensors, dim, message",
    [
        ([], 1, "at least one"),
        ([twos(2, CL), twos(2, CL, (2, 2))], 1, "shape"),
        ([twos(2, CL), QTensor(np.zeros((1, 2, 1, 2), np.int8), 0.25, 0, "qint8")], 1, "dtype"),
        ([twos(2, CL)], 4, "out of range"),
    ],
)
def test_bad_inputs_are_refused(tensors: list[QTensor], dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cat(tensors, dim, 1.0, 0)


def test_matches_torch_on_both_paths() -> None:
    torch = pytest.importorskip("torch")
    from quantspec.production.bridge import from_torch, to_torch
    from quantspec.production.environment import detect_profile, fbgemm_engine

    rng = np.random.default_rng(2)
    profile = detect_profile()
    compared = 0
    with fbgemm_engine():
        for fmt, dim in [(CL, 1), (MemoryFormat.contiguous, 1), (CL, 3)]:
            inputs = [
                QTensor(rng.integers(0, 256, (2, c, 3, 4)).astype(np.uint8), s, z, "quint8", memory_format=fmt)
                for c, s, z in [(37, 0.25, 3), (5, 0.5, 1), (8, 1.0, 7)]
            ]
            if dim == 3:
                inputs = [QTensor(q.int_repr[:, :5], q.scale, q.zero_point, q.dtype, memory_format=fmt) for q in inputs]
            expected = torch.ops.quantized.cat([to_torch(q) for q in inputs], dim, 1.0, 7)
            ours = cat(inputs, dim, 1.0, 7, profile)
            assert np.array_equal(from_torch(expected).int_repr, ours.int_repr)
            compared += ours.int_repr.size
    assert compared > 1000


def test_add_pool_cat_conformance_cases_print_as_rebuild_recipes() -> None:
    # A failure report must paste back into the very same inputs (integers, layout, qparams).
    pytest.importorskip("torch")
    from hypothesis import HealthCheck, given, settings

    import quantspec.conformance.checks.add as add_check
    import quantspec.conformance.checks.avg_pool2d as avg_check
    import quantspec.conformance.checks.cat as cat_check
    from quantspec.conformance.checks._pool_cases import PoolCase
    from quantspec.conformance.strategies import QTensorCase
    from quantspec.reference.qtensor import QDtype

    namespace = dict(np=np, QDtype=QDtype, QTensor=QTensor, MemoryFormat=MemoryFormat, QTensorCase=QTensorCase,
                     BinaryCase=add_check.BinaryCase, CatCase=cat_check.CatCase, PoolCase=PoolCase)

    def tensors(case: object) -> list[QTensor]:
        if isinstance(case, add_check.BinaryCase):
            return [case.a.q, case.b.q]
        return case.tensors if isinstance(case, cat_check.CatCase) else [case.x]

    @settings(max_examples=10, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(add_check.cases() | avg_check.cases() | cat_check.cases())
    def rebuilds(case: object) -> None:
        rebuilt = eval(repr(case), namespace)
        for original, copy in zip(tensors(case), tensors(rebuilt), strict=True):
            assert copy.int_repr.tolist() == original.int_repr.tolist()
            assert (copy.scale, copy.zero_point, copy.memory_format) == (
                original.scale,
                original.zero_point,
                original.memory_format,
            )

    rebuilds()

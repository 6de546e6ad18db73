"""Every qnnpack-specific op against torch under `torch.backends.quantized.engine = "qnnpack"`
(the NumPy-only engine tests: tests/test_qnnpack.py).

The torch comparisons draw seeded random cases aimed at the hard ones (power-of-two scales
for exact ties, odd zero points, int16 saturation, |acc| > 2^24, 4096-element tiles, the
add shifts of 32 and more, channels_last layouts) and require equal integers, equal
refusals (the reference's EngineRefusedError where torch raises) and, where it is visible,
the same memory format. They run under the running torch's release (run the file under
both venvs); the engine is set around prepack and call and restored afterwards.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qtensors import q_s8, q_u8

from quantspec.production.bridge import from_torch, to_torch
from quantspec.production.environment import detect_profile, quantized_engine, torch_release
from quantspec.reference import fast
from quantspec.reference.ops import (
    adaptive_avg_pool2d,
    add,
    add_relu,
    avg_pool2d,
    clamp,
    conv2d,
    hardswish,
    hardtanh,
    linear,
    max_pool2d,
    mean,
)
from quantspec.reference.ops.conv2d import conv_gemm_operands
from quantspec.reference.profile import (
    EngineRefusedError,
    get_profile,
)
from quantspec.reference.qtensor import MemoryFormat, QTensor

CL = MemoryFormat.channels_last

RELEASE_QNNPACK = get_profile(f"torch{torch_release()}-avx2-qnnpack")


def torch_qnnpack(call: Callable[[], "torch.Tensor"]) -> QTensor | None:
    """torch's result with the qnnpack engine set around prepack and call, or None if it refuses."""
    with quantized_engine("qnnpack"):
        try:
            return from_torch(call())
        except RuntimeError:
            return None


def reference_or_refusal(call: Callable[[], QTensor]) -> QTensor | None:
    try:
        return call()
    except EngineRefusedError:
        return None


def assert_same(reference: Callable[[], QTensor], oracle: Callable[[], "torch.Tensor"], case: object) -> bool:
    """Both refuse, or both give the same integers and qparams (and memory format where the two
    layouts differ); returns whether a result was compared."""
    expected, got = reference_or_refusal(reference), torch_qnnpack(oracle)
    assert (expected is None) == (got is None), f"refusals differ (reference refused: {expected is None}): {case}"
    if expected is None:
        return False
    differing = np.sum(expected.int_repr != got.int_repr)
    assert differing == 0, f"{differing} elements differ: {case}"
    assert (expected.scale, expected.zero_point) == (got.scale, got.zero_point), case
    ints = expected.int_repr
    if ints.ndim == 4 and ints.shape[1] > 1 and ints.shape[2] * ints.shape[3] > 1:
        assert expected.memory_format is got.memory_format, case
    return True


def scales(rng: np.random.Generator, count: int, low: float, high: float) -> list[float]:
    """Power-of-two scales (exact ties) half the time, else log-uniform ones."""
    if rng.integers(0, 2):
        return [float(2.0 ** rng.integers(np.log2(low), np.log2(high) + 1)) for _ in range(count)]
    return [float(10 ** rng.uniform(np.log10(low), np.log10(high))) for _ in range(count)]


def weight(rng: np.random.Generator, shape: tuple[int, ...], extreme: bool) -> QTensor:
    """int8 weights per-tensor or per-channel (axis 0), symmetric or with odd zero points;
    `extreme`: -128 or 127, one sign per output channel, so the products add up (|acc| > 2^24)."""
    if extreme:
        ints = np.broadcast_to(rng.choice([-128, 127], (shape[0],) + (1,) * (len(shape) - 1)), shape)
    else:
        ints = rng.integers(-128, 128, shape)
    channels = shape[0]
    if rng.integers(0, 2):
        zero_points = rng.integers(-5, 6, channels) * rng.integers(0, 2)
        return QTensor(ints.astype(np.int8), rng.uniform(0.002, 0.02, channels), zero_points, "qint8", axis=0)
    return QTensor(ints.astype(np.int8), scales(rng, 1, 2.0**-9, 2.0**-5)[0], int(rng.integers(-3, 4)), "qint8")


def bias(rng: np.random.Generator, channels: int, act_scale: float, w: QTensor) -> np.ndarray | None:
    """None, normal, on the int32 rounding ties (odd multiples of half the bias scale), or
    saturating (+-3e9, inf, NaN) among ordinary ones."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return None
    if kind == 1:
        return rng.normal(0, 3, channels).astype(np.float32)
    if kind == 2:
        bias_scale = np.float64(act_scale) * np.broadcast_to(np.asarray(w.scale, np.float64), (channels,))
        return ((rng.integers(-40, 40, channels) + 0.5) * bias_scale).astype(np.float32)
    return rng.choice([3e9, -3e9, 1e5, np.inf, np.nan], channels).astype(np.float32)


def activations(rng: np.random.Generator, shape: tuple[int, ...], high: bool) -> np.ndarray:
    return (rng.integers(200, 256, shape) if high else rng.integers(0, 256, shape)).astype(np.uint8)


# One comparison: the reference call, torch's call (engine set by `torch_qnnpack`), what to print.
Comparison = tuple[Callable[[], QTensor], Callable[[], "torch.Tensor"], object]


def compare_drawn(seed: int, count: int, draw: Callable[[np.random.Generator, int], Comparison | None]) -> int:
    """`assert_same` on `count` comparisons drawn from a generator seeded `seed` (None: skip);
    returns how many compared results (the rest were refused by both)."""
    rng = np.random.default_rng(seed)
    compared = 0
    for case in range(count):
        drawn = draw(rng, case)
        if drawn is not None:
            compared += assert_same(*drawn)
    return compared


def fast_checked(plain: Callable[..., QTensor], fast_kernel: Callable[..., QTensor], *args) -> QTensor:
    """The plain definition's result, after checking that the fast kernel gives the same integers."""
    expected = plain(*args)
    assert np.array_equal(fast_kernel(*args).int_repr, expected.int_repr)
    return expected


def linear_comparison(rng: np.random.Generator, case: int) -> Comparison:
    deep = case % 4 == 0  # K 600..1500, activations 200..255 (zp 0), weights +-127/-128: |acc| > 2^24
    depth = int(rng.integers(600, 1500)) if deep else int(rng.integers(1, 300))
    leading = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 3))))
    x_scale = scales(rng, 1, 2.0**-8, 2.0**-2)[0]
    x_zp = 0 if deep else int(rng.integers(0, 256))
    x = QTensor(activations(rng, leading + (depth,), deep), x_scale, x_zp, "quint8")
    w = weight(rng, (int(rng.integers(1, 20)), depth), extreme=deep)
    b = bias(rng, w.shape[0], x_scale, w)
    out_scale, out_zp, relu = scales(rng, 1, 2.0**-6, 2.0**12)[0], int(rng.integers(0, 256)), bool(rng.integers(0, 2))

    def oracle() -> "torch.Tensor":
        packed = torch.ops.quantized.linear_prepack(to_torch(w), None if b is None else torch.from_numpy(b))
        op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
        return op(to_torch(x), packed, out_scale, out_zp)

    args = (x, w, b, out_scale, out_zp, relu, RELEASE_QNNPACK)
    return functools.partial(fast_checked, linear, fast.linear, *args), oracle, (case, x.shape, w.shape, b)


@pytest.mark.parametrize("seed", range(3))
def test_linear_against_torch(seed):
    assert compare_drawn(100 + seed, 60, linear_comparison) > 40


def conv_geometry(rng: np.random.Generator, kind: int) -> dict:
    """One conv configuration: dense, depthwise 3x3/5x5 (multiplier 1 or 2), grouped, 1x1, or deep."""
    if kind == 0:
        channels, out_channels, groups, k = int(rng.integers(1, 9)), int(rng.integers(1, 9)), 1, int(rng.integers(1, 4))
    elif kind == 1:
        channels = groups = int(rng.integers(1, 5)) * 8
        out_channels, k = channels * int(rng.integers(1, 3)), int(rng.choice([3, 5]))
    elif kind == 2:
        groups = int(rng.integers(2, 5))
        channels, out_channels, k = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4)), 3
    elif kind == 3:
        channels, out_channels, groups, k = int(rng.integers(1, 24)), int(rng.integers(1, 24)), 1, 1
    else:  # 96 channels, 3x3: K = 864, high activations, extreme weights: |acc| > 2^24 (864 * 200 * 127 = 21.9M)
        channels, out_channels, groups, k = 96, int(rng.integers(1, 6)), 1, 3
    dilation = (1, 1) if kind in (1, 4) else (int(rng.integers(1, 3)),) * 2
    padding = ((k - 1) // 2,) * 2 if kind == 1 else (int(rng.integers(0, k // 2 + 1)), int(rng.integers(0, k // 2 + 1)))
    span = dilation[0] * (k - 1) + 1
    size = (int(rng.integers(max(span - 2 * padding[0], 1), 10)), int(rng.integers(max(span - 2 * padding[1], 1), 10)))
    return dict(shape=(int(rng.integers(1, 3)), channels) + size, out_channels=out_channels, groups=groups, k=k,
                stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))), padding=padding, dilation=dilation,
                deep=kind == 4)


def conv_comparison(rng: np.random.Generator, case: int) -> Comparison:
    c = conv_geometry(rng, case % 5)
    x_scale = scales(rng, 1, 2.0**-8, 2.0**-2)[0]
    memory_format = CL if rng.integers(0, 2) else MemoryFormat.contiguous
    x_zp = 0 if c["deep"] else int(rng.integers(0, 256))
    x = QTensor(activations(rng, c["shape"], c["deep"]), x_scale, x_zp, "quint8", memory_format=memory_format)
    w = weight(rng, (c["out_channels"], c["shape"][1] // c["groups"], c["k"], c["k"]), extreme=c["deep"])
    b = bias(rng, c["out_channels"], x_scale, w)
    out_scale, out_zp, relu = scales(rng, 1, 2.0**-6, 2.0**12)[0], int(rng.integers(0, 256)), bool(rng.integers(0, 2))
    geometry = (c["stride"], c["padding"], c["dilation"], c["groups"])

    def oracle() -> "torch.Tensor":
        stride, padding, dilation, groups = geometry
        packed = torch.ops.quantized.conv2d_prepack(
            to_torch(w), None if b is None else torch.from_numpy(b), list(stride), list(padding), list(dilation), groups
        )
        op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        return op(to_torch(x), packed, out_scale, out_zp)

    args = (x, w, b, *geometry, out_scale, out_zp, relu, RELEASE_QNNPACK)
    two_workers = functools.partial(fast.conv2d, workers=2)
    return functools.partial(fast_checked, conv2d, two_workers, *args), oracle, (case, c, b)


def test_deep_cases_reach_acc_above_2_24():
    # The "deep" linear and conv cases exist to put |acc| past 2^24, where f32(acc) rounds:
    # check that the drawn operands get there (plain int64 sums of the centered operands).
    def max_acc(x: QTensor, windows: np.ndarray, w: np.ndarray, w_zp: np.ndarray) -> int:
        centered = windows.astype(np.int64) - x.zero_point
        return int(np.abs(centered @ (w.astype(np.int64) - w_zp[:, None]).T).max())

    rng = np.random.default_rng(7)
    depth = int(rng.integers(600, 1500))
    x = QTensor(activations(rng, (2, depth), True), 0.1, 0, "quint8")
    w = weight(rng, (4, depth), extreme=True)
    w_zp = np.broadcast_to(np.asarray(w.zero_point, np.int64), (4,))
    assert max_acc(x, x.int_repr, w.int_repr, w_zp) > 2**24
    c = conv_geometry(rng, 4)
    x = QTensor(activations(rng, c["shape"], True), 0.1, 0, "quint8")
    w = weight(rng, (c["out_channels"], c["shape"][1], 3, 3), extreme=True)
    windows, w_k, zps = conv_gemm_operands(x, w, c["stride"], c["padding"], c["dilation"], 1)
    assert max_acc(x, windows[..., 0, :], w_k[0], zps[0]) > 2**24


@pytest.mark.parametrize("seed", range(3))
def test_conv2d_against_torch(seed):
    assert compare_drawn(200 + seed, 50, conv_comparison) > 30


def linear_under(engine: str, x: QTensor, w: QTensor, b: np.ndarray | None, out_scale: float) -> list:
    with quantized_engine(engine):
        packed = torch.ops.quantized.linear_prepack(to_torch(w), None if b is None else torch.from_numpy(b))
        return torch.ops.quantized.linear(to_torch(x), packed, out_scale, 0).int_repr().tolist()


@pytest.mark.parametrize(
    "x, w, b, out_scale",
    [
        (q_u8([[9]], 0.1), q_s8([[1]]), None, 0.6),  # reciprocal vs divide
        (q_u8([[1]]), q_s8([[1]]), np.float32([0.5]), 1.0),  # int32 bias
        (q_u8([[255, 255]]), q_s8([[127, 127]]), None, 1000.0),  # pair saturation (not on VNNI)
    ],
)
def test_minimal_linear_differences_against_torch(x, w, b, out_scale):
    fbgemm = detect_profile()  # this machine's fbgemm numerics
    assert linear_under("fbgemm", x, w, b, out_scale) == linear(x, w, b, out_scale, 0, profile=fbgemm).int_repr.tolist()
    expected = linear(x, w, b, out_scale, 0, profile=RELEASE_QNNPACK).int_repr.tolist()
    assert linear_under("qnnpack", x, w, b, out_scale) == expected


HUNDREDS = q_u8(np.full((1, 1, 2, 2), 100))
PAIRS = q_u8(np.array([[[[0, 1]], [[3, 4]]]]), 0.1, 1)
# (reference op, torch op, their common arguments): the minimal inputs of docs/profiles.md.
MINIMAL_ATEN_DIFFERENCES = [
    (add, torch.ops.quantized.add, (q_u8([1]), q_u8([0]), 2.0, 0), {}),
    (add, torch.ops.quantized.add, (q_u8([0], 1.0, 1), q_u8([0]), 2.0, 10), {}),
    (add, torch.ops.quantized.add, (q_u8([255], 2.0**-12), q_u8([0], 2.0**-12), 1.0, 0), {}),
    (avg_pool2d, torch.nn.functional.avg_pool2d, (HUNDREDS, 2, 1, 1), {"count_include_pad": False}),
    (avg_pool2d, torch.nn.functional.avg_pool2d, (HUNDREDS, 2), {"divisor_override": 1}),
    (adaptive_avg_pool2d, torch.nn.functional.adaptive_avg_pool2d, (PAIRS, 1), {}),
    (mean, torch.mean, (PAIRS, (2, 3)), {}),
    (max_pool2d, torch.nn.functional.max_pool2d, (q_u8(np.array([5, 1, 2]).reshape(1, 1, 3, 1)), (2, 1), 1, (1, 0),
                                                  (2, 1)), {}),
    (max_pool2d, torch.nn.functional.max_pool2d, (q_u8(np.array([10, 20, 30]).reshape(1, 3, 1, 1)), 2, 1, 1), {}),
    (hardswish, torch.ops.quantized.hardswish, (q_u8(np.arange(256)), 2.0, 1), {}),
    (clamp, torch.clamp, (q_u8(np.arange(12).reshape(1, 3, 2, 2), memory_format=CL), 0.0, 100.0), {}),
]


@pytest.mark.parametrize("op, torch_op, args, kwargs", MINIMAL_ATEN_DIFFERENCES)
def test_minimal_aten_differences_against_torch(op, torch_op, args, kwargs):
    def oracle() -> "torch.Tensor":
        return torch_op(*(to_torch(a) if isinstance(a, QTensor) else a for a in args), **kwargs)

    fbgemm = op(*args, **kwargs, profile=detect_profile()).int_repr
    with quantized_engine("fbgemm"):
        assert np.array_equal(from_torch(oracle()).int_repr, fbgemm)
    qnnpack = op(*args, **kwargs, profile=RELEASE_QNNPACK).int_repr
    assert np.array_equal(torch_qnnpack(oracle).int_repr, qnnpack)
    assert not np.array_equal(qnnpack, fbgemm)  # a real difference


@pytest.mark.parametrize("kernel, padding, expected", [(3, 1, 0), (1, 0, 255)])
def test_saturated_bias_enters_q8conv_as_int32_min(kernel, padding, expected):
    # Zeros (scales 1), bias 3e9 -> INT32_MAX, output scale 2^20, zp 100: q8gemm (1x1, stride 1,
    # no padding) 2^31 / 2^20 = 2048 -> 255; q8conv sums from INT32_MIN: -2048 -> 0.
    x, w = q_u8(np.zeros((1, 1, 3, 3))), q_s8(np.zeros((1, 1, kernel, kernel)))
    args = (x, w, np.float32([3e9]), (1, 1), (padding, padding), (1, 1), 1, 2.0**20, 100)
    with quantized_engine("qnnpack"):
        packed = torch.ops.quantized.conv2d_prepack(to_torch(w), torch.tensor([3e9]), [1, 1], [padding] * 2, [1, 1], 1)
        got = torch.ops.quantized.conv2d(to_torch(x), packed, 2.0**20, 100).int_repr()
    assert set(got.ravel().tolist()) == {expected}
    assert set(conv2d(*args, profile=RELEASE_QNNPACK).int_repr.ravel().tolist()) == {expected}


def test_stale_requantization_of_a_reused_packed_weight():
    # torch's qnnpack linear recomputes its scales and int32 bias only when the INPUT scale
    # changes: the same packed weight run again with another output scale keeps the old one.
    # x = [1, 2, 3, 4] (ints 10..40, scale 0.1), w = 1 (int 10, scale 0.1), bias 1 (int 100):
    # acc = 1100; output scale 1.0 -> 11, output scale 0.5 -> 22 (fresh) but 11 (stale).
    # The reference is stateless: every call is a first call.
    x, w = q_u8([[10, 20, 30, 40]], 0.1), q_s8([[10, 10, 10, 10]], 0.1)
    with quantized_engine("qnnpack"):
        packed = torch.ops.quantized.linear_prepack(to_torch(w), torch.tensor([1.0]))
        first = torch.ops.quantized.linear(to_torch(x), packed, 1.0, 0).int_repr().tolist()
        again = torch.ops.quantized.linear(to_torch(x), packed, 0.5, 0).int_repr().tolist()
    assert first == [[11]] and again == [[11]]
    assert linear(x, w, np.float32([1.0]), 0.5, 0, profile=RELEASE_QNNPACK).int_repr.tolist() == [[22]]


def binary_operands(rng: np.random.Generator, case: int) -> tuple[QTensor, QTensor]:
    """Same-shape add operands: 1-d lengths around the 8-element loop and the 4096-element tiles,
    4-d tensors (channels_last half the time, mixed layouts sometimes), qint8 now and then."""
    if case % 5 == 0:
        shape = (int(rng.choice([1, 3, 7, 8, 9, 4096 + 3, 4096 + 9, 8192, 8192 + 7])),)
    else:
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    dtype = "qint8" if case % 9 == 0 else "quint8"
    formats = [MemoryFormat.contiguous, MemoryFormat.contiguous]
    if len(shape) == 4:
        formats = [CL if rng.integers(0, 2) else MemoryFormat.contiguous for _ in range(2)]
    if case % 3 == 0:
        a_scale, b_scale = scales(rng, 2, 2.0**-14, 2.0**3)
    else:  # ratios across the accepted range [2^-14, 2^8) and a little beyond
        a_scale, b_scale = (float(2.0 ** rng.uniform(-14.5, 8.5)) for _ in range(2))
    low, high = (-128, 128) if dtype == "qint8" else (0, 256)
    return tuple(
        QTensor(rng.integers(low, high, shape).astype(np.int8 if dtype == "qint8" else np.uint8), s,
                int(rng.integers(low, high)), dtype, memory_format=f)
        for s, f in ((a_scale, formats[0]), (b_scale, formats[1]))
    )


def add_comparison(rng: np.random.Generator, case: int) -> Comparison:
    a, b = binary_operands(rng, case)
    relu = bool(case % 2)
    out_zp = (255 if case % 11 == 0 else int(rng.integers(0, 256))) - (128 if a.dtype.label == "qint8" else 0)
    reference = functools.partial(add_relu if relu else add, a, b, 1.0, out_zp, profile=RELEASE_QNNPACK)
    op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    return reference, functools.partial(op, to_torch(a), to_torch(b), 1.0, out_zp), (case, a, b, out_zp, relu)


@pytest.mark.parametrize("seed", range(2))
def test_add_against_torch(seed):
    assert compare_drawn(300 + seed, 250, add_comparison) > 150


def pool_input(rng: np.random.Generator, case: int) -> QTensor:
    """4-d inputs, NCHW or channels_last, with C == 1 and H*W == 1 now and then, qint8 rarely."""
    shape = [int(rng.integers(1, 3)), int(rng.integers(1, 12)), int(rng.integers(1, 9)), int(rng.integers(1, 9))]
    if case % 7 == 0:
        shape[1] = 1
    if case % 11 == 0:
        shape[2] = shape[3] = 1
    dtype = "qint8" if case % 13 == 0 else "quint8"
    ints = rng.integers(-128, 128, shape).astype(np.int8) if dtype == "qint8" else activations(rng, tuple(shape), False)
    memory_format = CL if rng.integers(0, 2) else MemoryFormat.contiguous
    scale = scales(rng, 1, 2.0**-8, 2.0**2)[0]
    zero_point = int(rng.integers(-128, 128) if dtype == "qint8" else rng.integers(0, 256))
    return QTensor(ints, scale, zero_point, dtype, memory_format=memory_format)


def pool_window(rng: np.random.Generator, x: QTensor) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding): kernels up to 4x4 within the image, strides 1..3, padding up
    to half the kernel, each dimension drawn on its own."""
    kernel = tuple(min(int(rng.integers(1, 5)), size) for size in x.shape[2:])
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    return kernel, stride, padding


def avg_pool_comparison(rng: np.random.Generator, case: int) -> Comparison:
    x = pool_input(rng, case)
    window = pool_window(rng, x)
    options = dict(ceil_mode=case % 5 == 0, count_include_pad=bool(rng.integers(0, 2)),
                   divisor_override=int(rng.integers(1, 10)) if case % 6 == 0 else None)
    reference = functools.partial(avg_pool2d, x, *window, **options, profile=RELEASE_QNNPACK)
    oracle = functools.partial(torch.nn.functional.avg_pool2d, to_torch(x), *window, **options)
    return reference, oracle, (case, x, window, options)


@pytest.mark.parametrize("seed", range(2))
def test_avg_pool2d_against_torch(seed):
    assert compare_drawn(400 + seed, 150, avg_pool_comparison) > 100


def max_pool_comparison(rng: np.random.Generator, case: int) -> Comparison | None:
    x = pool_input(rng, case)
    kernel, stride, padding = pool_window(rng, x)
    dilation = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if any(x.shape[2 + i] + 2 * padding[i] < dilation[i] * (kernel[i] - 1) + 1 for i in (0, 1)):
        return None  # an empty output
    window = (kernel, stride, padding, dilation, case % 6 == 0)  # ceil_mode now and then
    reference = functools.partial(max_pool2d, x, *window, RELEASE_QNNPACK)
    return reference, functools.partial(torch.nn.functional.max_pool2d, to_torch(x), *window), (case, x, window)


@pytest.mark.parametrize("seed", range(2))
def test_max_pool2d_against_torch(seed):
    assert compare_drawn(800 + seed, 150, max_pool_comparison) > 60


def adaptive_comparison(rng: np.random.Generator, case: int) -> Comparison:
    x = pool_input(rng, case)
    height, width = x.shape[2:]
    divisors = [(d, e) for d in range(1, height + 1) for e in range(1, width + 1) if height % d == width % e == 0]
    output_size = divisors[int(rng.integers(0, len(divisors)))] if case % 3 else (int(rng.integers(1, 6)),) * 2
    reference = functools.partial(adaptive_avg_pool2d, x, output_size, RELEASE_QNNPACK)
    oracle = functools.partial(torch.nn.functional.adaptive_avg_pool2d, to_torch(x), output_size)
    return reference, oracle, (case, x, output_size)


def mean_comparison(rng: np.random.Generator, case: int) -> Comparison:
    x = pool_input(rng, case)
    dims = [(2, 3), (2, 3), (3, 2), (-2, -1)][case % 4]  # qnnpack takes exactly (2, 3)
    keepdim = bool(rng.integers(0, 2)) or x.memory_format is CL  # ATen fails on the other combination
    reference = functools.partial(mean, x, dims, keepdim, RELEASE_QNNPACK)
    return reference, functools.partial(torch.mean, to_torch(x), dims, keepdim), (case, x, dims, keepdim)


@pytest.mark.parametrize("seed", range(2))
def test_adaptive_avg_pool2d_and_mean_against_torch(seed):
    assert compare_drawn(500 + seed, 120, adaptive_comparison) > 80
    assert compare_drawn(900 + seed, 120, mean_comparison) > 80


def hardswish_comparison(rng: np.random.Generator, case: int) -> Comparison:
    x = pool_input(rng, case)
    if case % 10 == 0:  # every byte, for the whole table
        x = QTensor(np.arange(256, dtype=np.uint8).reshape(1, 4, 8, 8), x.scale, case % 256, "quint8")
    out_scale = 1e-40 if case % 17 == 0 else scales(rng, 1, 2.0**-8, 2.0**1)[0]  # 1e-40: refused
    out_zp = int(rng.integers(0, 256)) - (128 if x.dtype.label == "qint8" else 0)
    reference = functools.partial(hardswish, x, out_scale, out_zp, profile=RELEASE_QNNPACK)
    oracle = functools.partial(torch.ops.quantized.hardswish, to_torch(x), out_scale, out_zp)
    return reference, oracle, (case, x, out_scale, out_zp)


@pytest.mark.parametrize("seed", range(2))
def test_hardswish_against_torch(seed):
    assert compare_drawn(600 + seed, 100, hardswish_comparison) > 80


def clamp_comparison(rng: np.random.Generator, case: int) -> Comparison:
    """clamp or (odd cases) hardtanh; bounds on ties of the scale now and then, min above max
    (refused) sometimes, one bound (refused, clamp only) sometimes."""
    x = pool_input(rng, case)
    low, high = sorted(float(v) for v in (rng.integers(-40, 40, 2) * x.scale / 2))
    if case % 8 == 0:
        low, high = high + x.scale, low
    if case % 9 == 0:
        high = None
    if case % 2 and high is not None and low <= high:  # F.hardtanh refuses min > max in Python, before any kernel
        reference = functools.partial(hardtanh, x, low, high, RELEASE_QNNPACK)
        return reference, functools.partial(torch.nn.functional.hardtanh, to_torch(x), low, high), (case, x, low, high)
    reference = functools.partial(clamp, x, low, high, RELEASE_QNNPACK)
    return reference, functools.partial(torch.clamp, to_torch(x), low, high), (case, x, low, high)


@pytest.mark.parametrize("seed", range(2))
def test_clamp_and_hardtanh_against_torch(seed):
    assert compare_drawn(700 + seed, 150, clamp_comparison) > 80


def test_conformance_oracles_run_under_the_chosen_engine():
    from quantspec.conformance.checks import select
    from quantspec.conformance.oracles import oracle, oracle_engine
    from quantspec.conformance.runner import run_checks

    with oracle_engine("qnnpack"):
        with oracle():
            assert torch.backends.quantized.engine == "qnnpack"
        run = run_checks(select(["linear", "hardswish"]), "smoke", numerics=RELEASE_QNNPACK)
    with oracle():
        assert torch.backends.quantized.engine == "fbgemm"
    assert [(check.name, check.status) for check in run.checks] == [("linear", "ok"), ("hardswish", "ok")]

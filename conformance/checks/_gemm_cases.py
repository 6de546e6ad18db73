"""Cases shared by the conv2d and linear checks: the quint8 x qint8 GEMM's operands.

Activations, weights, biases and output scales are drawn by kind, so that the hard spots
are reached by construction: int16 pair saturation ("high" activations over "extreme"
weights), |acc| > 2^24, biases on requantization ties, huge/inf/NaN biases and tiny output
scales (the INT32_MIN pitfall), per-tensor and per-channel weights with zero and odd zero
points. A case holds the kinds and a seed; `gemm_operands` expands the arrays from them.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
from hypothesis import strategies as st

from quantspec.reference.qtensor import QDtype, QTensor

ACT_KINDS = ("uniform", "low", "high", "edges")
W_KINDS = ("uniform", "extreme", "small")
BIAS_KINDS = ("none", "normal", "normal", "ties", "ties", "huge")  # sampled uniformly: huge 1 in 6

# What the kinds produce (`activation_ints`, `weight_tensor`), for bounds taken from the
# case's parameters alone: rebuilding the arrays to measure would cost more than the op.
ACT_RANGES = {"uniform": (0, 255), "low": (0, 127), "high": (200, 255), "edges": (0, 255)}
W_MAX_ABS = {"uniform": 128, "extreme": 128, "small": 8}  # before the weight zero point (|zp| <= 9)
HIGH_ACT_MEAN = 227.5  # "high" activations: uniform 200..255
# "extreme" weights: 90% |w| in {126, 127} (or 127, 128), one sign per channel; 10% uniform
EXTREME_W_MEAN = 113.8


# --- strategy ---------------------------------------------------------------------------------


def input_scales() -> st.SearchStrategy[float]:
    """Activation and weight scales: powers of two (exact products) and ordinary values."""
    return st.one_of(st.integers(-10, -2).map(lambda e: 2.0**e), st.floats(1e-3, 0.2))


def out_scale_factors() -> st.SearchStrategy[float]:
    """Relative output scales (see `output_scale`): ordinary, or (1 in 10) tiny: INT32_MIN."""
    ordinary = st.one_of(st.floats(0.25, 4.0), st.integers(-2, 2).map(lambda e: 2.0**e))
    tiny = st.sampled_from([1e-9, 1e-12])
    return st.tuples(st.sampled_from(range(10)), ordinary, tiny).map(lambda t: t[2] if t[0] == 5 else t[1])


@st.composite
def gemm_qparams(draw: st.DrawFn, deep: bool) -> dict[str, Any]:
    """The fields of a ConvCase or LinearCase after its structure: kinds, qparams, relu, seed.
    `deep` fixes activations 200..255 with zero point 0 over extreme weights: |acc| > 2^24
    once K is large."""
    return dict(
        act_scale=draw(input_scales()),
        act_zero_point=0 if deep else draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 128, 129, 255]))),
        act_kind="high" if deep else draw(st.sampled_from(ACT_KINDS)),
        w_per_channel=draw(st.booleans()),
        w_scale=draw(input_scales()),
        w_zero_point_kind=draw(st.sampled_from(["zero", "zero", "odd"])),
        w_kind="extreme" if deep else draw(st.sampled_from(W_KINDS)),
        bias_kind=draw(st.sampled_from(BIAS_KINDS)),
        out_scale_rel=draw(out_scale_factors()),
        out_zero_point=draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 1, 127, 255]))),
        relu=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- array expansion --------------------------------------------------------------------------


def gemm_operands(
    case: Any, x_shape: tuple[int, ...], w_shape: tuple[int, ...], depth: int
) -> tuple[QTensor, QTensor, Optional[np.ndarray], float]:
    """(x, weight, bias, output_scale) of a ConvCase or LinearCase (the fields `gemm_qparams`
    draws), deterministic for the case; `depth` is K, the products summed per output."""
    rng = np.random.default_rng(case.seed)
    ints = activation_ints(rng, x_shape, case.act_kind, case.act_zero_point)
    x = QTensor(ints, case.act_scale, case.act_zero_point, QDtype.quint8)
    weight = weight_tensor(rng, w_shape, case.w_kind, case.w_per_channel, case.w_scale, case.w_zero_point_kind)
    bias = bias_values(rng, w_shape[0], case.bias_kind, x, weight)
    return x, weight, bias, output_scale(case.out_scale_rel, x, weight, depth)


def gemm_weight_arguments(weight: QTensor) -> dict[str, Any]:
    """A weight as a target call's `weight`, `weight_scale`, `weight_zero_point` (per-channel
    qparams stay float64 / int64 arrays along axis 0)."""
    return dict(weight=weight.int_repr, weight_scale=weight.scale, weight_zero_point=weight.zero_point)


def activation_ints(rng: np.random.Generator, shape: tuple[int, ...], kind: str, zero_point: int) -> np.ndarray:
    """quint8 integers: uniform; low (0..127, reduce_range: never saturates); high
    (200..255: saturates u8 x s8 pairs); edges (0, 255, zp and neighbours)."""
    if kind == "low":
        ints = rng.integers(0, 128, shape)
    elif kind == "high":
        ints = rng.integers(200, 256, shape)
    elif kind == "edges":
        ints = rng.choice([0, 1, 254, 255, zero_point, min(zero_point + 1, 255)], shape)
    else:
        ints = rng.integers(0, 256, shape)
    return ints.astype(np.uint8)


def weight_tensor(
    rng: np.random.Generator, shape: tuple[int, ...], kind: str, per_channel: bool, scale: float, zp_kind: str
) -> QTensor:
    """qint8 weights: uniform, extreme (+-127/-128 runs of one sign per channel), small."""
    if kind == "extreme":
        signs = rng.choice([-1, 1], (shape[0],) + (1,) * (len(shape) - 1))
        ints = np.where(signs > 0, rng.choice([127, 126], shape), rng.choice([-128, -127], shape))
        ints = np.where(rng.random(shape) < 0.1, rng.integers(-128, 128, shape), ints)
    elif kind == "small":
        ints = rng.integers(-8, 9, shape)
    else:
        ints = rng.integers(-128, 128, shape)
    ints = ints.astype(np.int8)
    channels = shape[0]
    if not per_channel:
        zp = 0 if zp_kind == "zero" else int(rng.integers(-9, 10)) | 1
        return QTensor(ints, scale, zp, QDtype.qint8)
    octaves = 2.0 ** rng.integers(-2, 3, channels)  # drawn first: the rng order fixes each case's arrays
    scales = scale * octaves * np.where(rng.random(channels) < 0.5, 1.0, rng.uniform(0.5, 1.0, channels))
    zps = np.zeros(channels, np.int64) if zp_kind == "zero" else rng.integers(-9, 10, channels) | 1
    return QTensor(ints, scales, zps, QDtype.qint8, axis=0)


def bias_values(
    rng: np.random.Generator, channels: int, kind: str, x: QTensor, weight: QTensor
) -> Optional[np.ndarray]:
    """float32 bias: none; normal (a few hundred quanta); ties ((k + 1/2) * act_scale * w_scale,
    so bias / atws lands on or next to a half and the fma-vs-separate rounding shows);
    huge (|bias| ~ 1e30 and +-inf, NaN: the INT32_MIN pitfall)."""
    if kind == "none":
        return None
    atws = np.float64(np.float32(x.scale)) * np.asarray(weight.scale, np.float64)
    if kind == "ties":
        k = rng.integers(-2000, 2000, channels) + 0.5
        return (k * atws).astype(np.float32)
    if kind == "huge":
        return rng.choice(np.array([1e30, -1e30, np.inf, -np.inf, np.nan, 1.0], np.float32), channels)
    return (rng.normal(0, 300, channels) * atws).astype(np.float32)


def output_scale(relative: float, x: QTensor, weight: QTensor, depth: int) -> float:
    """`relative` times a scale that spreads typical outputs over ~100 quanta; relative
    1e-9 gives the tiny scales of the INT32_MIN pitfall.

    A typical |acc| is sqrt(K) * rms(a - a_zp) * rms(w - w_zp) when the centered values
    average to zero, and K * |mean(a - a_zp)| * |mean(w_c - w_zp_c)| when they do not
    (high activations with one-signed weight channels: the |acc| > 2^24 cases).
    """
    a = x.int_repr.astype(np.float64) - x.zero_point
    w_zp = np.asarray(weight.zero_point, np.float64).reshape((-1,) + (1,) * (weight.int_repr.ndim - 1))
    w = weight.int_repr.astype(np.float64) - (w_zp if weight.per_channel else weight.zero_point)
    w_rows = w.reshape(w.shape[0], -1)
    random_part = np.sqrt(depth) * np.sqrt(np.mean(a * a)) * np.sqrt(np.mean(w_rows * w_rows))
    biased_part = depth * abs(float(a.mean())) * float(np.abs(w_rows.mean(axis=1)).mean())
    spread = max(random_part + biased_part, 1.0) / 50
    return float(relative * x.scale * float(np.mean(weight.scale)) * spread)


# --- labels -----------------------------------------------------------------------------------


def qparam_labels(case: Any) -> Iterator[str]:
    """The labels of a ConvCase's or LinearCase's weight and output qparams, bias and relu."""
    yield "per-channel" if case.w_per_channel else "per-tensor"
    yield f"bias-{case.bias_kind}"
    if case.relu:
        yield "relu"
    if case.w_zero_point_kind == "odd":
        yield "w-zp"
    if case.out_scale_rel < 1e-6:
        yield "tiny-out-scale"


def pairs_saturate(act_kind: str, w_kind: str, depth: int) -> bool:
    """Whether the drawn kinds saturate int16 pairs by construction: "high" activations
    (>= 200) times two same-signed "extreme" weights (|w| >= 126) give |pair| >= 50400 >
    32767. Other kinds saturate pairs by chance (uniform weights, padding with a_zp > 127);
    those cases are not counted."""
    return act_kind == "high" and w_kind == "extreme" and depth >= 2


def typical_acc_above_2_24(act_kind: str, act_zero_point: int, w_kind: str, depth: int) -> bool:
    """Whether a typical |acc| of the drawn kinds exceeds 2^24, where `f32(acc)` rounds:
    K * mean(a - a_zp) * mean|w| for "high" activations over one-signed "extreme" weights
    (other kinds center near zero and stay far below). Cases within a few percent of the
    threshold may land on either side."""
    typical = depth * (HIGH_ACT_MEAN - act_zero_point) * EXTREME_W_MEAN
    return act_kind == "high" and w_kind == "extreme" and typical > 2**24

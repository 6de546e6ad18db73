"""Hypothesis strategies for conformance cases: qparams, tie-rich float arrays, QTensors.

A public module: every check draws its inputs from here, so that all ops see the same
hard inputs (exact .5 ties for the drawn scale and zero point, their float32 neighbours,
NaN, +-inf, subnormals, huge values, lengths that end in vector tails).

Arrays are built in two layers, because Hypothesis cannot draw 10^3-10^4 elements one by
one (its per-example buffer is a few kilobytes):

* the *structure* is drawn by Hypothesis and shrinks: dtype, qparams, shape, the mixture
  of element kinds, a seed, and up to 16 explicitly drawn "pinned" elements;
* the *bulk* is expanded from the seed with NumPy's PCG64, deterministic for that seed.

Every strategy returns a frozen data object (`FloatArrayCase`, `QTensorCase`, ...) that
keeps every parameter and prints as a constructor call with the values themselves when the
array is small, so a shrunk failure can be pasted into a check's `examples` list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quantspec.reference.numerics import f32, ieee_float_ops
from quantspec.reference.qtensor import MemoryFormat, QDtype, QTensor
from quantspec.reference.quantize_kernels import inverse_scale_f32

ALL_QDTYPES: tuple[QDtype, ...] = (QDtype.quint8, QDtype.qint8, QDtype.qint32)

# Element kinds of a drawn float array. Each kind is a way torch's rounding can go wrong.
KINDS = ("tie", "near_tie", "in_range", "out_of_range", "special")
MIXES: dict[str, tuple[float, ...]] = {  # probabilities over KINDS
    "ties": (0.6, 0.3, 0.1, 0.0, 0.0),
    "mixed": (0.3, 0.2, 0.3, 0.1, 0.1),
    "in_range": (0.0, 0.0, 1.0, 0.0, 0.0),
    "edges": (0.2, 0.2, 0.2, 0.2, 0.2),
}
SPECIAL_VALUES = np.array(
    [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.17549435e-38,
     3.4028235e38, -3.4028235e38, 2147483520.0, 2147483648.0, -2147483648.0, 16777217.0],
    dtype=np.float32,
)
# The AVX2 float vector is 8 lanes, AVX512 16; ATen's quint8 vectors hold 32 and qadd
# walks chunks of 64. Lengths r + 64*m with r in 0..63 end in every kind of tail.
# Flat (1-d) arrays go up to MAX_ELEMENTS so a few hundred cases compare >= 10^6
# elements; n-d shapes stay under MAX_ND_ELEMENTS (their structure is the point).
MAX_ELEMENTS = 16384
MAX_ND_ELEMENTS = 4096


FORMAT_LIMIT = 64  # arrays up to this size print their values


def format_array(values: np.ndarray, limit: int = FORMAT_LIMIT) -> str:
    """`np.array([...], dtype=np.float32)` text that round-trips exactly (or a summary if large)."""
    values = np.asarray(values)
    dtype = f"np.{values.dtype.name}"
    if values.size > limit:
        return f"<{values.dtype.name} array shape={values.shape}>"
    if values.dtype.kind == "f":
        items = ", ".join(_float_literal(v) for v in values.ravel())
    else:
        items = ", ".join(str(int(v)) for v in values.ravel())
    return f"np.array([{items}], dtype={dtype}).reshape({values.shape})"


def _float_literal(value: np.floating) -> str:
    if np.isnan(value):
        return "np.nan" if not np.signbit(value) else "-np.nan"
    if np.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))  # float32 -> float64 is exact, repr round-trips


# --- qparams -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization parameters as drawn (scale is the double torch stores)."""

    scale: float
    zero_point: int
    dtype: QDtype

    def __repr__(self) -> str:
        return f"QParams(scale={self.scale!r}, zero_point={self.zero_point}, dtype=QDtype.{self.dtype.label})"


def qdtypes(dtypes: Sequence[QDtype] = ALL_QDTYPES) -> st.SearchStrategy[QDtype]:
    """One of the given quantized dtypes."""
    return st.sampled_from(tuple(dtypes))


COMMON_SCALES = st.one_of(
    st.integers(-24, 24).map(lambda e: 2.0**e),  # exact ties
    st.floats(1e-4, 1e2).filter(lambda s: s > 0),
    st.floats(1e-3, 1.0).map(lambda s: float(np.float32(s))),  # already a float32 value
)
EXTREME_SCALES = st.one_of(
    st.integers(-149, 127).map(lambda e: 2.0**e),
    st.floats(1e-45, 1e-30),  # float32 subnormal / tiny: 1/float(scale) may overflow
    st.floats(1e30, 3.4e38),
    st.sampled_from([1e-46, 1e-300, 1e39, 1e300]),  # float(scale) is 0 or inf
)


def scales(extreme: Optional[bool] = None) -> st.SearchStrategy[float]:
    """Positive double scales (torch stores double, kernels mostly read float(scale)).

    extreme=False: powers of two 2^-24..2^24 (exact ties), ordinary values, float32 values.
    extreme=True: 2^-149..2^127, float32-tiny and huge values, and doubles whose float32
    narrowing is 0 or inf (torch accepts them; 1/float(scale) becomes inf or 0).
    None: mostly ordinary. Below ~2.9e-39 every output saturates, which tests one edge
    and informs about nothing else, so checks draw extreme scales for small arrays only.
    """
    if extreme is None:
        return mostly(COMMON_SCALES, EXTREME_SCALES, 6)
    return EXTREME_SCALES if extreme else COMMON_SCALES


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, times: int) -> st.SearchStrategy:
    """`common` about `times` times as often as `rare`. (`one_of` drops repeated branches,
    so each copy is a distinct identity map.)"""
    return st.one_of(*[common.map(lambda v: v) for _ in range(times)], rare)


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in `n` draws. (`st.integers(0, n - 1) == 0` is not: Hypothesis
    favours an integer range's ends, measured 0.44 for n = 4 and 0.33 for n = 20;
    `sampled_from` draws its index uniformly.)"""
    return st.sampled_from(range(n)).map(lambda index: index == 0)


def zero_points(dtype: QDtype) -> st.SearchStrategy[int]:
    """Zero points over the dtype's full range, favouring odd values (they expose the
    rounding order at ties) and the range ends; qint32 also near +-2^24 and +-2^31."""
    full = st.integers(dtype.qmin, dtype.qmax)
    odd = full.map(lambda z: z | 1 if (z | 1) <= dtype.qmax else z)
    ends = st.sampled_from(
        [dtype.qmin, dtype.qmin + 1, dtype.qmax - 1, dtype.qmax, 0, 1, -1 if dtype.qmin < 0 else 127]
    )
    if dtype is QDtype.qint32:
        small = st.integers(-300, 300)
        around_2_24 = st.integers(-4, 4).flatmap(lambda d: st.sampled_from([2**24 + d, -(2**24) + d]))
        return st.one_of(small, odd, ends, around_2_24)
    return st.one_of(odd, full, ends)


@st.composite
def qparams(draw: st.DrawFn, dtypes: Sequence[QDtype] = ALL_QDTYPES, extreme: Optional[bool] = None) -> QParams:
    """A dtype with a scale (see `scales` for `extreme`) and a zero point valid for it."""
    dtype = draw(qdtypes(dtypes))
    return QParams(draw(scales(extreme)), draw(zero_points(dtype)), dtype)


# --- shapes ------------------------------------------------------------------------------


def tail_lengths(max_elements: int = MAX_ELEMENTS) -> st.SearchStrategy[int]:
    """Lengths 64*m + r: every r in 0..63, so n % 8, % 16, % 32, % 64 all take every value."""
    return st.builds(lambda m, r: max(1, 64 * m + r), st.integers(0, max_elements // 64 - 1), st.integers(0, 63))


def shapes(
    min_dims: int = 1, max_dims: int = 4, max_elements: int = MAX_ELEMENTS
) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes: 1-d tail-hitting lengths (up to `max_elements`) or n-d shapes with at
    most min(MAX_ND_ELEMENTS, max_elements) elements."""
    flat = tail_lengths(max_elements).map(lambda n: (n,))
    nd_limit = min(MAX_ND_ELEMENTS, max_elements)
    nd = hnp.array_shapes(min_dims=max(min_dims, 1), max_dims=max_dims, min_side=1, max_side=24).filter(
        lambda s: int(np.prod(s)) <= nd_limit
    )
    return st.one_of(flat, nd) if min_dims <= 1 else nd


# --- float arrays ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatArrayCase:
    """A float32 array drawn for given qparams (one per channel when `axis` is set).

    `x` is the array itself; `mix`, `seed` and `pinned` say how it was made (see
    `from_seed`). A case written by hand leaves them at their defaults.
    """

    x: np.ndarray
    scale: float | np.ndarray
    zero_point: int | np.ndarray
    dtype: QDtype
    axis: Optional[int] = None
    mix: str = "pinned"
    seed: int = 0
    pinned: tuple[float, ...] = field(default=())

    @classmethod
    def from_seed(
        cls,
        shape: tuple[int, ...],
        scale: float | np.ndarray,
        zero_point: int | np.ndarray,
        dtype: QDtype,
        axis: Optional[int] = None,
        mix: str = "mixed",
        seed: int = 0,
        pinned: Sequence[float] = (),
    ) -> "FloatArrayCase":
        """Rebuild a drawn case exactly: the bulk from `tie_rich_values(seed)`, then the
        `pinned` values at seed-chosen positions."""
        n = int(np.prod(shape))
        if axis is None:
            scale_flat, zp_flat = np.full(n, scale, np.float64), np.full(n, zero_point, np.int64)
        else:
            scale_flat = _per_element(_column(np.asarray(scale, np.float64), len(shape), axis), shape)
            zp_flat = _per_element(_column(np.asarray(zero_point, np.int64), len(shape), axis), shape)
        rng = np.random.default_rng(seed)
        values = tie_rich_values(rng, n, scale_flat, zp_flat, dtype, mix)
        pinned_values = np.array(pinned, np.float32)
        if n and pinned_values.size:
            positions = rng.choice(n, size=min(n, pinned_values.size), replace=False)
            values[positions] = pinned_values[: positions.size]
        return cls(values.reshape(shape), scale, zero_point, dtype, axis, mix, seed, tuple(pinned_values.tolist()))

    def __repr__(self) -> str:
        scale = _qparam_text(self.scale)
        zp = _qparam_text(self.zero_point)
        axis = "" if self.axis is None else f", axis={self.axis}"
        if self.x.size <= FORMAT_LIMIT or self.mix == "pinned":
            return (
                f"FloatArrayCase(x={format_array(self.x)}, scale={scale}, zero_point={zp}, "
                f"dtype=QDtype.{self.dtype.label}{axis})"
            )
        pinned = "(" + "".join(_float_literal(np.float32(v)) + ", " for v in self.pinned) + ")"
        return (
            f"FloatArrayCase.from_seed(shape={self.x.shape}, scale={scale}, zero_point={zp}, "
            f"dtype=QDtype.{self.dtype.label}{axis}, mix={self.mix!r}, seed={self.seed}, pinned={pinned})"
        )


def _qparam_text(value: float | int | np.ndarray) -> str:
    return repr(value) if np.ndim(value) == 0 else format_array(np.asarray(value), limit=1 << 16)


def tie_rich_values(
    rng: np.random.Generator, n: int, scale: np.ndarray, zero_point: np.ndarray, dtype: QDtype, mix: str
) -> np.ndarray:
    """`n` float32 values for qparams (`scale`/`zero_point` broadcast to length n).

    tie:          x = f32((k + 0.5) * scale), k + zp spanning [qmin - 2, qmax + 2];
                  exact ties of `x * inv` when scale is a power of two, near-ties otherwise
    near_tie:     a tie moved by 1-2 float32 ulps up or down (nextafter)
    in_range:     uniform over the representable range, times scale
    out_of_range: beyond qmin/qmax by up to 2^40 quanta, either side
    special:      NaN, +-inf, +-0, subnormals, float max, int32 edges
    """
    kinds = rng.choice(len(KINDS), size=n, p=MIXES[mix])
    scale = np.broadcast_to(np.asarray(scale, np.float64), (n,))
    zp = np.broadcast_to(np.asarray(zero_point, np.int64), (n,)).astype(np.float64)
    lo, hi = _quanta_range(dtype, zp)
    k = np.floor(rng.uniform(lo - 2, hi + 2)) - zp
    with np.errstate(over="ignore", invalid="ignore"):
        tie = ((k + 0.5) * scale).astype(np.float32)
        steps = rng.choice([-2, -1, 1, 2], size=n)
        near = _nextafter_steps(tie, steps)
        in_range = ((rng.uniform(lo, hi) - zp) * scale).astype(np.float32)
        beyond = np.where(rng.random(n) < 0.5, lo - 2.0 ** rng.uniform(0, 40, n), hi + 2.0 ** rng.uniform(0, 40, n))
        out_of_range = ((beyond - zp) * scale).astype(np.float32)
    special = rng.choice(SPECIAL_VALUES, size=n)
    return np.choose(kinds, [tie, near, in_range, out_of_range, special]).astype(np.float32)


def _quanta_range(dtype: QDtype, zp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integer range to aim ties at: the dtype's range, but for qint32 only a window
    around the zero point (ties need k + 0.5 to be a float32 value, |k| < 2^23)."""
    if dtype is not QDtype.qint32:
        return np.full_like(zp, dtype.qmin), np.full_like(zp, dtype.qmax)
    return zp - 2.0**22, zp + 2.0**22


def _nextafter_steps(values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    out = values.copy()
    for _ in range(int(np.abs(steps).max(initial=0))):
        move = steps != 0
        out[move] = np.nextafter(out[move], np.where(steps[move] > 0, np.inf, -np.inf).astype(np.float32))
        steps = steps - np.sign(steps)
    return out


def case_exact_ties(case: FloatArrayCase) -> int:
    """`count_exact_ties` of the case's `f32(x * f32(1/float(scale)))`, the product every
    quantize formula rounds: how many elements sit where rounding order matters."""
    scale = np.asarray(case.scale, np.float64)
    if case.axis is not None:
        shape = [1] * case.x.ndim
        shape[case.axis] = -1
        scale = scale.reshape(shape)
    with ieee_float_ops():
        return count_exact_ties(f32(case.x * inverse_scale_f32(scale)))


def count_exact_ties(t: np.ndarray) -> int:
    """How many finite elements of `t` (a product about to be rounded) sit exactly on a .5 tie."""
    with ieee_float_ops():
        return int(np.count_nonzero(np.isfinite(t) & (t - np.floor(t) == 0.5)))


def pinned_elements(max_size: int = 16) -> st.SearchStrategy[np.ndarray]:
    """A few floats drawn element by element (these shrink): any float32 incl. NaN/inf."""
    return hnp.arrays(
        np.float32,
        st.integers(0, max_size),
        elements=st.one_of(st.floats(width=32), st.sampled_from(SPECIAL_VALUES.tolist())),
    )


@st.composite
def float_arrays(
    draw: st.DrawFn,
    qp: QParams,
    shape_strategy: Optional[st.SearchStrategy[tuple[int, ...]]] = None,
    mixes: Sequence[str] = tuple(MIXES),
) -> FloatArrayCase:
    """A tie-rich float32 array for per-tensor qparams `qp`."""
    shape = draw(shape_strategy if shape_strategy is not None else shapes())
    return FloatArrayCase.from_seed(shape, qp.scale, qp.zero_point, qp.dtype, None, *_draw_recipe(draw, mixes))


def _draw_recipe(draw: st.DrawFn, mixes: Sequence[str]) -> tuple[str, int, tuple[float, ...]]:
    """The drawn part of an array: (mix, seed, pinned elements)."""
    mix = draw(st.sampled_from(tuple(mixes)))
    seed = draw(st.integers(0, 2**32 - 1))
    return mix, seed, tuple(draw(pinned_elements()).tolist())


def _per_element(values, shape) -> np.ndarray:
    """Scalar qparams as is; per-channel columns (already shaped to broadcast) flattened."""
    return np.broadcast_to(np.asarray(values), shape).ravel()


@st.composite
def channel_shapes(
    draw: st.DrawFn, max_channels: int = 16, ndim: Optional[int] = None, max_axis: int = 3
) -> tuple[tuple[int, ...], int]:
    """(shape, axis) for per-channel qparams: 1..max_channels channels at a drawn axis
    (at most `max_axis`), the other dims small n-d sides or one tail-hitting length."""
    channels = draw(st.integers(1, max_channels))
    if ndim is None:
        others = draw(st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=12),
            tail_lengths(MAX_ELEMENTS // max_channels).map(lambda n: (n,)),
        ))
    else:
        others = draw(hnp.array_shapes(min_dims=ndim - 1, max_dims=ndim - 1, min_side=1, max_side=12))
    axis = draw(st.integers(0, min(len(others), max_axis)))
    return others[:axis] + (channels,) + others[axis:], axis


def _channel_qparams(draw: st.DrawFn, dtype: QDtype, channels: int) -> tuple[np.ndarray, np.ndarray]:
    scale = np.array(draw(st.lists(scales(), min_size=channels, max_size=channels)), np.float64)
    zp = np.array(draw(st.lists(zero_points(dtype), min_size=channels, max_size=channels)), np.int64)
    return scale, zp


def _column(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along `axis` of an ndim-d array."""
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


@st.composite
def per_channel_float_arrays(
    draw: st.DrawFn, dtypes: Sequence[QDtype] = ALL_QDTYPES, max_channels: int = 16
) -> FloatArrayCase:
    """A tie-rich float32 array with per-channel scales and zero points along a drawn axis."""
    dtype = draw(qdtypes(dtypes))
    shape, axis = draw(channel_shapes(max_channels))
    scale, zp = _channel_qparams(draw, dtype, shape[axis])
    return FloatArrayCase.from_seed(shape, scale, zp, dtype, axis, *_draw_recipe(draw, tuple(MIXES)))


# --- quantized tensors -----------------------------------------------------------------------


@dataclass(frozen=True)
class QTensorCase:
    """A drawn QTensor, printed so that it can be rebuilt exactly (and pinned)."""

    q: QTensor
    seed: Optional[int] = None  # set when the integers came from `from_seed`

    @classmethod
    def from_seed(
        cls,
        shape: tuple[int, ...],
        scale: float | np.ndarray,
        zero_point: int | np.ndarray,
        dtype: QDtype,
        axis: Optional[int] = None,
        memory_format: MemoryFormat = MemoryFormat.contiguous,
        seed: int = 0,
    ) -> "QTensorCase":
        """Rebuild a drawn case exactly: integers from `int_values(seed)`."""
        if axis is None:
            zp = np.int64(zero_point)
        else:
            zp = _per_element(_column(np.asarray(zero_point, np.int64), len(shape), axis), shape)
        ints = int_values(np.random.default_rng(seed), int(np.prod(shape)), dtype, zp).reshape(shape)
        return cls(QTensor(ints, scale, zero_point, dtype, axis=axis, memory_format=memory_format), seed)

    def __repr__(self) -> str:
        q = self.q
        scale, zp = _qparam_text(q.scale), _qparam_text(q.zero_point)
        axis = "" if not q.per_channel else f", axis={q.axis}"
        layout = f"memory_format=MemoryFormat.{q.memory_format.value}"
        if self.seed is None or q.int_repr.size <= FORMAT_LIMIT:
            ints = format_array(q.int_repr)
            return f"QTensorCase(QTensor({ints}, {scale}, {zp}, QDtype.{q.dtype.label}{axis}, {layout}))"
        return (
            f"QTensorCase.from_seed(shape={q.shape}, scale={scale}, zero_point={zp}, dtype=QDtype.{q.dtype.label}"
            f"{axis}, {layout}, seed={self.seed})"
        )


def int_values(rng: np.random.Generator, n: int, dtype: QDtype, zero_point: np.ndarray) -> np.ndarray:
    """Integers of a quantized dtype: uniform, the range ends, and values near the zero point."""
    zp = np.broadcast_to(np.asarray(zero_point, np.int64), (n,))
    uniform = rng.integers(dtype.qmin, dtype.qmax, size=n, endpoint=True)
    ends = rng.choice([dtype.qmin, dtype.qmin + 1, dtype.qmax - 1, dtype.qmax], size=n)
    near_zp = np.clip(zp + rng.integers(-3, 4, size=n), dtype.qmin, dtype.qmax)
    pick = rng.choice(3, size=n, p=(0.6, 0.2, 0.2))
    return np.choose(pick, [uniform, ends, near_zp]).astype(dtype.storage)


@st.composite
def qtensors(
    draw: st.DrawFn,
    dtypes: Sequence[QDtype] = ALL_QDTYPES,
    per_channel: Optional[bool] = None,
    memory_formats: Sequence[MemoryFormat] = tuple(MemoryFormat),
    shape_strategy: Optional[st.SearchStrategy[tuple[int, ...]]] = None,
) -> QTensorCase:
    """A QTensor of any dtype, per-tensor or per-channel, contiguous or channels_last.

    `per_channel=None` draws either; channels_last tensors are 4-d. `shape_strategy`
    applies to per-tensor draws (per-channel shapes come from `channel_shapes`).
    """
    dtype = draw(qdtypes(dtypes))
    channelwise = draw(st.booleans()) if per_channel is None else per_channel
    memory_format = draw(st.sampled_from(tuple(memory_formats)))
    ndim = 4 if memory_format is MemoryFormat.channels_last else None
    seed = draw(st.integers(0, 2**32 - 1))
    if channelwise:
        # torch supports channels_last per-channel qparams only along axis 0 or 1.
        shape, axis = draw(channel_shapes(ndim=ndim, max_axis=1 if ndim == 4 else 3))
        scale, zp = _channel_qparams(draw, dtype, shape[axis])
        return QTensorCase.from_seed(shape, scale, zp, dtype, axis, memory_format, seed)
    if shape_strategy is None:
        shape_strategy = shapes(min_dims=4, max_dims=4) if ndim == 4 else shapes()
    shape = draw(shape_strategy)
    qp = draw(qparams([dtype]))
    return QTensorCase.from_seed(shape, qp.scale, qp.zero_point, dtype, None, memory_format, seed)

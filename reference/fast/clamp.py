"""`quantspec.reference.ops.clamp` and `hardtanh`, fast: the plain op's integer clamp, with
each bound's quantization (`ops.clamp.quantized_bound`) kept per (bound, scale, zero point,
dtype, profile). A model's ReLU6 asks for the same two bounds of the same qparams on every
run, and quantizing one (the scalar `quantize_val`, through NumPy) costs more than clamping
a small tensor. Exact: the same function of the same arguments."""

from __future__ import annotations

import functools
from typing import Optional

from ..ops.clamp import checked_arguments, clamped, quantized_bound
from ..ops.hardtanh import checked_arguments as hardtanh_arguments
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import QTensor

# `quantized_bound`, remembered: one entry per ReLU6 / clamp bound and qparams of a model.
_kept_bound = functools.lru_cache(maxsize=1024)(quantized_bound)


def clamp(
    q: QTensor,
    min_value: Optional[float] = None,
    max_value: Optional[float] = None,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantspec.reference.ops.clamp` (same arguments and result), fast.

    >>> import numpy as np
    >>> clamp(QTensor(np.array([0, 4, 9], np.uint8), 0.5, 3, "quint8"), 0.0, 1.25).int_repr.tolist()  # ops.clamp's
    [3, 4, 6]
    """
    min_value, max_value, profile = checked_arguments(q, min_value, max_value, profile)
    low = None if min_value is None else _kept_bound(min_value, q.scale, q.zero_point, q.dtype, profile)
    high = None if max_value is None else _kept_bound(max_value, q.scale, q.zero_point, q.dtype, profile)
    return clamped(q, low, high, profile)


def hardtanh(
    q: QTensor, min_value: float = -1.0, max_value: float = 1.0, profile: NumericsProfile = DEFAULT_PROFILE
) -> QTensor:
    """`quantspec.reference.ops.hardtanh` (same arguments and result), fast: `clamp` above.

    >>> import numpy as np
    >>> hardtanh(QTensor(np.array([0, 50, 200], np.uint8), 0.05, 10, "quint8"), 0.0, 6.0).int_repr.tolist()
    [10, 50, 130]
    """
    return clamp(q, *hardtanh_arguments(q, min_value, max_value, profile))

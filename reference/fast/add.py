"""`quantspec.reference.ops.add`, fast: 8-bit results looked up in cached tables of all 256 x 256
`(qa, qb)` pairs (the plain op's vector table, and one of the scalar formula for the tails) from
`TABLE_MIN_SIZE` elements on (the plain op tabulates from `PAIR_TABLE_MIN_SIZE`, and computes
its tails), the pair indices formed straight from the integers in memory order.

Exact: the tables are the plain vector and scalar formulas evaluated once on every pair, and
an 8-bit result of either depends on nothing but its pair (the scalar tails look their pairs
up in the scalar table); everything else (qint32, qnnpack, mixed layouts, small tensors) is the
plain op itself.
"""

from __future__ import annotations

import functools

import numpy as np

from ..ops._tensor_iterator import (
    VECTOR_BLOCK_8BIT,
    from_memory_order,
    layouts_differ,
    scalar_tail_spans,
    to_memory_order,
)
from ..ops.add import add as plain_add
from ..ops.add import checked_arguments, pair_table, scalar_path
from ..profile import DEFAULT_PROFILE, NumericsProfile
from ..qtensor import QDtype, QTensor

# A model's adds keep their qparams, so each node builds its table once (a few ms) and looks
# up every run after; MobileNetV2's smallest add (160 x 7 x 7 = 7840 elements) is above this.
TABLE_MIN_SIZE = 4096


def add(
    a: QTensor,
    b: QTensor,
    output_scale: float,
    output_zero_point: int,
    relu: bool = False,
    num_threads: int = 1,
    profile: NumericsProfile = DEFAULT_PROFILE,
) -> QTensor:
    """`quantspec.reference.ops.add` (same arguments and result), fast.

    >>> block = QTensor(np.ones((4096,), np.uint8), 1.0, 0, "quint8")
    >>> int(add(block, block, 4.0, 1).int_repr[0])  # ops.add's vector case
    1
    """
    out, profile = checked_arguments(a, b, output_scale, output_zero_point, relu, num_threads, profile)
    tabulated = a.dtype is not QDtype.qint32 and a.int_repr.size >= TABLE_MIN_SIZE and not layouts_differ(a, b)
    if not tabulated or (profile.engine == "qnnpack" and a.dtype is QDtype.quint8):
        return plain_add(a, b, output_scale, output_zero_point, relu, num_threads, profile)
    vector, scalar = _pair_tables(
        a.dtype, (a.scale, a.zero_point), (b.scale, b.zero_point), (out.scale, out.zero_point), relu, profile
    )
    flat_a, flat_b = (to_memory_order(q.int_repr, a.memory_format).view(np.uint8) for q in (a, b))
    index = flat_a.astype(np.uint16)  # the pair's bytes, as the table is laid out
    index <<= 8
    index |= flat_b
    ints = vector.take(index)
    for begin, end in scalar_tail_spans(ints.size, VECTOR_BLOCK_8BIT, num_threads):
        ints[begin:end] = scalar.take(index[begin:end])
    logical = from_memory_order(ints, a.shape, a.memory_format)
    return QTensor(logical, out.scale, out.zero_point, a.dtype, memory_format=a.memory_format)


@functools.lru_cache(maxsize=256)
def _pair_tables(
    dtype: QDtype,
    a_qparams: tuple[float, int],
    b_qparams: tuple[float, int],
    out_qparams: tuple[float, int],
    relu: bool,
    profile: NumericsProfile,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain op's vector table (`ops.add.pair_table`) and the plain scalar formula on all
    256 x 256 byte pairs laid out alike, flat (read-only): the scalar tails are looked up too."""
    vector = pair_table(dtype, a_qparams, b_qparams, out_qparams, relu, profile)
    levels = np.arange(256, dtype=np.uint8).view(dtype.storage)
    rows = QTensor(levels[:, None], *a_qparams, dtype)
    columns = QTensor(levels[None, :], *b_qparams, dtype)
    out = QTensor(np.zeros((0,), dtype.storage), *out_qparams, dtype)
    scalar = scalar_path(rows, columns, out, relu, profile).ravel()
    scalar.setflags(write=False)
    return vector, scalar

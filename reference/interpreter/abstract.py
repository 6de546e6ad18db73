"""The values the model checker computes with instead of running a node: a tensor's kind,
dtype and shape (`TensorInfo`), a scalar or list known only at run time (`Unknown`), and
`Call`, one node's abstract inputs with accessors that refuse a wrong type or range with a
`ModelCheckError` naming the node, the input, the value and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, NoReturn, Optional, Sequence

import numpy as np

from .._arguments import is_scale
from ..qtensor import QDtype, QTensor
from .archive import ModelFileError
from .fields import INT64_MAX, INT64_MIN, short
from .kernels import UnknownNodeKind
from .model import Node

FLOAT32_BYTES = 4
# A tensor's shape: None when even its rank is unknown; each dimension an int or, when the
# checker cannot compute it, a `SymbolicDim` (None inside a rule, until `named_dims`).
Dims = Optional[tuple[Any, ...]]


class ModelCheckError(ModelFileError):
    """A model whose graph is not well formed or cannot run: the message names the node (its
    index, kind and source line), the field, the bad value and what was expected."""


class UnknownKindError(ModelCheckError, UnknownNodeKind):
    """A node kind the interpreter does not run (also an `UnknownNodeKind`, which `run` raises)."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the checker knows it: quantized dtype (None for float32), per-channel axis,
    and shape (see `Dims`)."""

    shape: Dims
    qdtype: Optional[QDtype] = None
    axis: Optional[int] = None

    @property
    def quantized(self) -> bool:
        return self.qdtype is not None

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor, unknown dimensions counted as 1 (a per-sample estimate)."""
        itemsize = self.qdtype.storage.itemsize if self.qdtype else FLOAT32_BYTES
        return self.elements * itemsize

    @property
    def elements(self) -> int:
        return prod(size if type(size) is int else 1 for size in self.shape or ())

    def dim(self, index: int) -> Any:
        """Dimension `index` as known: an int, a `SymbolicDim` or None."""
        return None if self.shape is None else self.shape[index]

    def size(self, index: int) -> Optional[int]:
        """Dimension `index` when it is a known int, else None."""
        return _int_or_none(self.dim(index))

    def __repr__(self) -> str:
        dtype = self.qdtype.label if self.qdtype else "float32"
        dims = "(rank unknown)" if self.shape is None else "(" + ", ".join(map(_dim_text, self.shape)) + ")"
        axis = "" if self.axis is None else f" per-channel axis {self.axis}"
        return f"{dtype} tensor {dims}{axis}"


@dataclass(frozen=True)
class Unknown:
    """A scalar or list known only at run time, by type: "int", "float", "bool", "list" or "any"."""

    type: str

    def __repr__(self) -> str:
        return f"<{self.type} computed at run time>"


@dataclass(frozen=True)
class SymbolicDim(Unknown):
    """A dimension the checker cannot compute (a free dimension of a graph input, or one that
    depends on it), named after the value it first appears in: unknown, but the same wherever
    it flows, so `view(x, [x.size(0), -1, x.size(2), x.size(3)])` can still be checked."""

    name: str = ""

    def __repr__(self) -> str:
        return self.name


UNKNOWN_INT, UNKNOWN_FLOAT, UNKNOWN_BOOL, UNKNOWN_LIST, ANY = (
    Unknown(t) for t in ("int", "float", "bool", "list", "any")
)


def named_dims(value: Any, name: str) -> Any:
    """`value` (a node output or graph input called `name`) with each unknown (None) dimension of
    its tensors replaced by a `SymbolicDim` named after it."""
    if isinstance(value, TensorInfo) and value.shape is not None and None in value.shape:
        dims = tuple(SymbolicDim("int", f"{name}.shape[{i}]") if d is None else d for i, d in enumerate(value.shape))
        return TensorInfo(dims, value.qdtype, value.axis)
    if isinstance(value, (list, tuple)):
        return type(value)(named_dims(item, f"{name}[{index}]") for index, item in enumerate(value))
    return value


def _int_or_none(value: Any) -> Optional[int]:
    return value if type(value) is int else None


def _dim_text(value: Any) -> str:
    return "?" if value is None else str(value)


def abstract(value: Any) -> Any:
    """A constant as the checker sees it: tensors as `TensorInfo`, containers item by item,
    scalars, strings, None and packed weights as they are."""
    if isinstance(value, QTensor):
        return TensorInfo(value.shape, value.dtype, value.axis)
    if isinstance(value, np.ndarray):
        return TensorInfo(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(abstract(item) for item in value)
    return value


def _unknown_of(value: Any, *types: str) -> bool:
    """Whether `value` is known only at run time, as one of `types`. A value of type "any"
    (unpacked from a list computed at run time, or a prim::If output whose branches differ)
    passes every scalar and list check; tensors must be known."""
    return isinstance(value, Unknown) and value.type in (*types, "any")


def is_int(value: Any) -> bool:
    return type(value) is int or _unknown_of(value, "int")


def is_number(value: Any) -> bool:
    return type(value) in (int, float) or _unknown_of(value, "int", "float")


def is_bool(value: Any) -> bool:
    return type(value) is bool or _unknown_of(value, "bool")


def is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or _unknown_of(value, "list")


def known(value: Any) -> bool:
    """Whether `value` is known before run time (no `Unknown` in it)."""
    if isinstance(value, (list, tuple)):
        return all(known(item) for item in value)
    return not isinstance(value, Unknown)


class Call:
    """One node under check: its label (index path, kind, source line) and abstract inputs.

    The accessors return an input when it has the expected type and range, and otherwise
    raise `ModelCheckError` naming the node, the input, its value and what was expected.
    `extra_work` is set by rules whose kernels need temporaries beyond the per-element
    estimate (see `checker.peak_memory_bytes`).
    """

    def __init__(self, node: Node, label: str, args: Sequence[Any]) -> None:
        self.node, self.label, self.args = node, label, list(args)
        self.extra_work = 0

    @property
    def kind(self) -> str:
        return self.node.kind

    def fail(self, field: str, value: Any, expected: str) -> NoReturn:
        raise ModelCheckError(
            f"{self.label} {self.node.kind} (source: {self.node.source or 'unknown'}): "
            f"{field} = {short(value)}: expected {expected}"
        )

    def field(self, index: int) -> str:
        return f"input {index} (%{self.node.inputs[index]})"

    def arity(self, minimum: int, maximum: Optional[int] = None) -> None:
        maximum = minimum if maximum is None else maximum
        if not minimum <= len(self.args) <= maximum:
            count = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
            self.fail("number of inputs", len(self.args), f"{count} inputs")

    def tensor(
        self,
        index: int,
        quantized: Optional[bool] = None,
        rank: Optional[int] = None,
        dtypes: Sequence[QDtype] = (),
        per_tensor: bool = False,
    ) -> TensorInfo:
        """Input `index` as a tensor: quantized or float32 (None: either), of `rank` when its
        rank is known, of one of `dtypes` when given, without per-channel qparams if asked."""
        value = self.args[index]
        kind = {None: "a tensor", True: "a quantized tensor", False: "a float32 tensor"}[quantized]
        if not isinstance(value, TensorInfo) or quantized not in (None, value.quantized):
            self.fail(self.field(index), value, kind)
        if rank is not None and value.rank not in (None, rank):
            self.fail(self.field(index), value, f"{kind} of rank {rank}")
        if dtypes and value.quantized and value.qdtype not in dtypes:
            self.fail(self.field(index), value, f"dtype {' or '.join(d.label for d in dtypes)}")
        if per_tensor and value.axis is not None:
            self.fail(self.field(index), value, "per-tensor qparams")
        return value

    def integer(self, index: int, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> Any:
        """An int (not a bool) in [minimum, maximum], or an int known at run time."""
        value = self.args[index]
        if not is_int(value) or (type(value) is int and not minimum <= value <= maximum):
            self.fail(self.field(index), value, f"an int in [{minimum}, {maximum}]")
        return value

    def number(self, index: int, optional: bool = False) -> Any:
        """An int or float (not a bool), or None when `optional`."""
        value = self.args[index]
        if not (is_number(value) or (optional and value is None)):
            self.fail(self.field(index), value, "a number" + (" or None" if optional else ""))
        return value

    def boolean(self, index: int) -> Any:
        value = self.args[index]
        if not is_bool(value):
            self.fail(self.field(index), value, "a bool")
        return value

    def sequence(self, index: int) -> Any:
        """A list or tuple, or one computed at run time."""
        value = self.args[index]
        if not is_sequence(value):
            self.fail(self.field(index), value, "a list or tuple")
        return value

    def string(self, index: int, optional: bool = False) -> Any:
        value = self.args[index]
        if not (type(value) is str or (optional and value is None)):
            self.fail(self.field(index), value, "a string" + (" or None" if optional else ""))
        return value

    def constant_int(self, index: int, choices: Sequence[int]) -> int:
        """An int known before run time, one of `choices` (dtype codes, memory formats)."""
        value = self.args[index]
        if type(value) is not int or value not in choices:
            self.fail(self.field(index), value, f"a constant int, one of {sorted(choices)}")
        return value

    def ints(self, index: int, lengths: Sequence[int], minimum: int = INT64_MIN) -> Optional[list]:
        """A list of ints (each >= minimum, or known at run time) of one of `lengths` (empty:
        any length); None when the list itself is computed at run time. A single int counts
        as a list of one (TorchScript's int[2] arguments accept one)."""
        value = self.args[index]
        items = [value] if type(value) is int else value
        if isinstance(items, Unknown):
            return None
        lengths_ok = not lengths or (isinstance(items, (list, tuple)) and len(items) in lengths)
        if not isinstance(items, (list, tuple)) or not lengths_ok or not all(is_int(v) for v in items):
            self.fail(self.field(index), value, f"a list of {' or '.join(map(str, lengths)) or 'any number of'} ints")
        if any(type(v) is int and v < minimum for v in items):
            self.fail(self.field(index), value, f"ints >= {minimum}")
        return list(items)

    def pair(self, index: int, minimum: int, allow_empty: bool = False) -> Optional[tuple]:
        """An int or a list of 1 or 2 ints (>= minimum) as (height, width); () for an empty list
        when `allow_empty` (a pooling stride: the kernel size); None when known at run time."""
        items = self.ints(index, (0, 1, 2) if allow_empty else (1, 2), minimum)
        if items is None:
            return (None, None)
        if not items:
            return ()
        return tuple(v if type(v) is int else None for v in (items[0], items[-1]))

    def instance(self, index: int, cls: type) -> Any:
        value = self.args[index]
        if not isinstance(value, cls):
            self.fail(self.field(index), value, f"a {cls.__name__} constant")
        return value

    def scale(self, index: int) -> Any:
        """A positive finite scale."""
        value = self.number(index)
        if type(value) in (int, float) and not is_scale(value):
            self.fail(self.field(index), value, "a positive finite scale")
        return value

    def zero_point(self, index: int, qdtype: QDtype) -> Any:
        return self.integer(index, qdtype.qmin, qdtype.qmax)

    def dimension(self, index: int, rank: Optional[int]) -> Any:
        """A dimension index of a tensor of `rank`, wrapped to [0, rank) when both are known."""
        value = self.integer(index)
        if rank is None or type(value) is not int:
            return value
        if not -rank <= value < rank:
            self.fail(self.field(index), value, f"a dimension of a rank-{rank} tensor, in [{-rank}, {rank})")
        return value % rank

    def same(self, field: str, value: Any, expected: Any) -> None:
        """Refuse two sizes that must agree, known as ints, and do not."""
        if type(value) is int and type(expected) is int and value != expected:
            self.fail(field, value, str(expected))


"""Bad arguments to the public API get one clear error (issue 14, items 4 and 7).

Every call in BAD_CALLS passes one bad value for one argument of an otherwise valid call. It
must raise a ValueError or TypeError (the reference's `ArgumentError` is both) whose message
names the argument: never an AttributeError, KeyError, IndexError-only or NumPy's own message,
and never silently succeed. GOOD_CALLS pass valid 0-d and Python-scalar inputs, which must work.
"""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter
from typing import Any, Callable

import numpy as np
import pytest

from quantspec.reference import (
    MemoryFormat,
    NumericsProfile,
    QTensor,
    fast,
    fold_conv_bn,
    get_profile,
    observers,
    ops,
)
from quantspec.reference._arguments import ArgumentError

NAN, INF = math.nan, math.inf


def _activation() -> QTensor:
    values = np.arange(32, dtype=np.uint8).reshape(1, 2, 4, 4)
    return QTensor(values, 0.1, 3, "quint8")


X4 = _activation()
W4 = QTensor(np.ones((3, 2, 1, 1), np.int8), 0.05, 0, "qint8")
X2 = QTensor(np.arange(8, dtype=np.uint8).reshape(2, 4), 0.1, 3, "quint8")
W2 = QTensor(np.ones((3, 4), np.int8), 0.05, 0, "qint8")
OTHER_W4 = QTensor(np.full((3, 2, 1, 1), 2, np.int8), 0.05, 0, "qint8")  # W4's shape, other values
OTHER_W2 = QTensor(np.ones((3, 4), np.int8), 0.07, 0, "qint8")  # W2's values, another scale
FLOATS = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)

# Bad values by kind of argument.
NOT_QTENSOR = ["x", None, 1.5, np.zeros((1, 2, 4, 4), np.float32), object()]
BAD_SCALE = ["0.1", None, True, [0.1], object(), NAN, INF, -1.0, 0.0]
BAD_ZERO_POINT = ["3", None, True, 1.5, 1000, -1000, object()]
BAD_INT = ["1", None, True, 1.5, object()]
BAD_COUNT = BAD_INT + [0, -1]
BAD_FLAG = ["yes", None, 2, object()]
BAD_PROFILE = ["bogus", "torch9-avx2-fbgemm", 3, None, object()]
BAD_DTYPE = ["bogus", 3, None, object()]
BAD_PAIR = ["2", None, True, 1.5, [1, 2, 3], object()]
BAD_FLOATS = ["abc", None, object(), np.zeros(3, np.float64), [[1.0], [2.0, 3.0]], ["1.5"]]
BAD_BIAS = ["abc", object(), np.zeros(3, np.float64), np.zeros(4, np.float32), [1.0]]
BAD_DIM = BAD_INT + [7, -9]
# None is the default of these (a pooling stride of None or [] is the kernel size; cat's output
# qparams default to tensors[0]'s; no divisor_override): valid, see GOOD_CALLS.
BAD_POOL_STRIDE = [v for v in BAD_PAIR if v is not None] + [(0, 1)]
BAD_DIVISOR = [v for v in BAD_INT if v is not None] + [0]

CONV_ARGS = dict(
    x=X4, weight=W4, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
    output_scale=0.2, output_zero_point=2,
)
LINEAR_ARGS = dict(x=X2, weight=W2, bias=None, output_scale=0.2, output_zero_point=2)
BINARY_ARGS = dict(a=X4, b=X4, output_scale=0.2, output_zero_point=2)
COMMON_BAD = dict(
    x=NOT_QTENSOR, q=NOT_QTENSOR, a=NOT_QTENSOR, b=NOT_QTENSOR, weight=NOT_QTENSOR,
    output_scale=BAD_SCALE, output_zero_point=BAD_ZERO_POINT, relu=BAD_FLAG, profile=BAD_PROFILE,
    num_threads=BAD_COUNT, bias=BAD_BIAS, groups=BAD_COUNT + [4], stride=BAD_PAIR + [(0, 1)],
    padding=BAD_PAIR + [(-1, 0)], dilation=BAD_PAIR + [(0, 1)], dim=BAD_DIM,
)

# function, valid arguments, {argument: bad values} (COMMON_BAD fills in the rest).
TABLE: list[tuple[str, Callable, dict[str, Any], dict[str, list]]] = [
    ("quantize_per_tensor", ops.quantize_per_tensor,
     dict(x=FLOATS, scale=0.1, zero_point=3, dtype="quint8"),
     dict(x=BAD_FLOATS, scale=BAD_SCALE, zero_point=BAD_ZERO_POINT, dtype=BAD_DTYPE)),
    ("quantize_per_channel", ops.quantize_per_channel,
     dict(x=FLOATS, scales=[0.1, 0.2], zero_points=[1, 2], axis=0, dtype="qint8"),
     dict(x=BAD_FLOATS, scales=["0.1", None, [0.1], [NAN, 0.1], [-1.0, 0.1], ["0.1", "0.2"], [True, True]],
          zero_points=["3", None, [1.5, 2], [1000, 0], ["1", "2"], [True, False]],
          axis=BAD_INT + [2, -3], dtype=BAD_DTYPE)),
    ("dequantize", ops.dequantize, dict(q=X4), {}),
    ("add", ops.add, BINARY_ARGS, dict(b=NOT_QTENSOR + [X2])),
    ("add_relu", ops.add_relu, BINARY_ARGS, dict(b=NOT_QTENSOR + [X2])),
    ("mul", ops.mul, BINARY_ARGS, dict(b=NOT_QTENSOR + [X2])),
    ("mul_relu", ops.mul_relu, BINARY_ARGS, dict(b=NOT_QTENSOR + [X2])),
    ("conv2d", ops.conv2d, CONV_ARGS, dict(x=NOT_QTENSOR + [X2], weight=NOT_QTENSOR + [W2])),
    ("conv2d_relu", ops.conv2d_relu, CONV_ARGS, {}),
    ("fast.conv2d", fast.conv2d, CONV_ARGS, dict(x=NOT_QTENSOR + [X2], weight=NOT_QTENSOR + [W2], prepared=[
        "packed", object(), fast.prepare_linear_weight(W2), fast.prepare_conv_weight(OTHER_W4, 1),
        fast.prepare_conv_weight(W4, 1, stride=(2, 2))])),
    ("conv_path", ops.conv_path,
     dict(in_channels=2, out_channels=3, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1),
          groups=1),
     dict(in_channels=BAD_COUNT, out_channels=BAD_COUNT, kernel_size=BAD_PAIR + [(0, 1)])),
    ("linear", ops.linear, LINEAR_ARGS, dict(x=NOT_QTENSOR, weight=NOT_QTENSOR + [W4])),
    ("linear_relu", ops.linear_relu, LINEAR_ARGS, {}),
    ("fast.linear", fast.linear, LINEAR_ARGS, dict(x=NOT_QTENSOR, weight=NOT_QTENSOR + [W4], prepared=[
        "packed", object(), fast.prepare_conv_weight(W4, 1), fast.prepare_linear_weight(OTHER_W2)])),
    ("adaptive_avg_pool2d", ops.adaptive_avg_pool2d, dict(x=X4, output_size=(2, 2)),
     dict(output_size=BAD_PAIR + [(0, 1)])),
    ("avg_pool2d", ops.avg_pool2d, dict(x=X4, kernel_size=2),
     dict(kernel_size=BAD_PAIR + [(0, 1)], ceil_mode=BAD_FLAG, count_include_pad=BAD_FLAG,
          stride=BAD_POOL_STRIDE, divisor_override=BAD_DIVISOR)),
    ("max_pool2d", ops.max_pool2d, dict(x=X4, kernel_size=2),
     dict(kernel_size=BAD_PAIR + [(0, 1)], stride=BAD_POOL_STRIDE, ceil_mode=BAD_FLAG)),
    ("cat", ops.cat, dict(tensors=[X4, X4], dim=1),
     dict(tensors=["ab", None, [], [X4, "x"], [X4, X2], object()],
          output_scale=[v for v in BAD_SCALE if v is not None],
          output_zero_point=[v for v in BAD_ZERO_POINT if v is not None])),
    ("chunk", ops.chunk, dict(q=X4, chunks=2, dim=1), dict(chunks=BAD_COUNT)),
    ("clamp", ops.clamp, dict(q=X4, min_value=0.0, max_value=1.0),
     dict(min_value=["0", True, object()], max_value=["1", True, object()])),  # torch clamps to NaN
    ("hardtanh", ops.hardtanh, dict(q=X4), dict(min_value=["0", None, True, object()],
                                              max_value=["1", None, True, object()])),
    ("contiguous", ops.contiguous, dict(q=X4), dict(memory_format=["bogus", None, 1.5, object()])),
    ("flatten", ops.flatten, dict(x=X4), dict(start_dim=BAD_DIM, end_dim=BAD_DIM)),
    ("hardsigmoid", ops.hardsigmoid, dict(q=X4), {}),
    ("hardswish", ops.hardswish, dict(q=X4, output_scale=0.2, output_zero_point=2), {}),
    ("mean", ops.mean, dict(q=X4, dims=(2, 3)), dict(dims=["2", None, 2.5, [2.5], [7], object()],
                                                       keepdim=BAD_FLAG)),
    ("relu", ops.relu, dict(q=X4), {}),
    ("reshape", ops.reshape, dict(x=X4, shape=(2, 16)), dict(shape=["2", None, [2.5, 16], [5, 5], object()])),
    ("transpose", ops.transpose, dict(q=X4, dim0=1, dim1=2), dict(dim0=BAD_DIM, dim1=BAD_DIM)),
    ("QTensor", QTensor, dict(int_repr=np.zeros((1, 2, 2, 2), np.uint8), scale=0.1, zero_point=3, dtype="quint8"),
     dict(int_repr=["ab", None, np.zeros(3, np.float32), np.full(3, 300)], scale=BAD_SCALE,
          zero_point=BAD_ZERO_POINT, dtype=BAD_DTYPE, axis=["0", True, 1.5, 4, object()],
          memory_format=["bogus", 3, object()])),
    ("fold_conv_bn", fold_conv_bn,
     dict(conv_weight=np.ones((2, 1, 1, 1), np.float32), conv_bias=None, running_mean=np.zeros(2, np.float32),
          running_var=np.ones(2, np.float32), bn_weight=None, bn_bias=None),
     dict(conv_weight=["ab", None, object(), np.ones(2, np.float32), np.ones((2, 1), np.float64)],
          running_mean=["ab", None, np.zeros(3, np.float32)], running_var=[None, object()],
          bn_weight=["ab", np.zeros(3, np.float32)], eps=["1e-5", None, True, NAN, -1.0],
          transpose=BAD_FLAG)),
    ("get_profile", get_profile, dict(name="torch2.13-avx2-fbgemm"), dict(name=["bogus", None, 3, object()])),
    ("NumericsProfile", NumericsProfile, dict(torch_release="2.13", cpu="avx2"),
     dict(torch_release=["2.99", None, 2.13], cpu=["arm", None], engine=["bogus", None])),
]

OBSERVER_BAD = dict(
    dtype=BAD_DTYPE, qscheme=["bogus", None, 3], reduce_range=BAD_FLAG,
    quant_min=["0", True, 1.5, object()], quant_max=["255", True, 1.5, object()],
    eps=["1e-5", None, True, NAN, -1.0], averaging_constant=["0.1", None, True, NAN, -0.5, 1.5],
    ch_axis=BAD_INT, bins=BAD_COUNT,
)
OBSERVER_CLASSES = [
    observers.MinMaxObserver, observers.MovingAverageMinMaxObserver, observers.PerChannelMinMaxObserver,
    observers.MovingAveragePerChannelMinMaxObserver, observers.HistogramObserver,
]
for _cls in OBSERVER_CLASSES:
    _params = inspect.signature(_cls).parameters
    TABLE.append((_cls.__name__, _cls, {}, {k: v for k, v in OBSERVER_BAD.items() if k in _params}))


def _observe(observer_class: type, x: Any) -> None:
    observer_class().observe(x)


BAD_OBSERVATIONS = ["ab", None, object(), np.zeros(2, np.complex64), [[1.0], [2.0, 3.0]]]
TABLE += [
    (f"{cls.__name__}.observe", _observe, dict(observer_class=cls, x=FLOATS), dict(x=BAD_OBSERVATIONS))
    for cls in OBSERVER_CLASSES
]


def _bad_calls() -> list[tuple[str, Callable, dict[str, Any], str]]:
    calls = []
    for label, function, valid, bad in TABLE:
        parameters = inspect.signature(function).parameters
        table = {**{k: v for k, v in COMMON_BAD.items() if k in parameters}, **bad}
        for argument, values in table.items():
            for value in values:
                calls.append((label, function, {**valid, argument: value}, argument))
    return calls


BAD_CALLS = _bad_calls()


def _outcome(function: Callable, kwargs: dict[str, Any], argument: str) -> tuple[str, str]:
    """("clear" | "raw" | "silent", detail) for one bad call."""
    try:
        function(**kwargs)
    except (ValueError, TypeError) as error:
        # The argument's name (or its base name, as in `stride[0]`) as a word in the message.
        if re.search(rf"\b{re.escape(argument)}\b", str(error)):
            return "clear", ""
        return "raw", f"{type(error).__name__}: {error}"
    except Exception as error:  # noqa: BLE001 - classifying every escape is the point
        return "raw", f"{type(error).__name__}: {error}"
    return "silent", ""


def test_bad_arguments_raise_one_clear_error() -> None:
    outcomes = Counter()
    failures = []
    for label, function, kwargs, argument in BAD_CALLS:
        kind, detail = _outcome(function, kwargs, argument)
        outcomes[kind] += 1
        if kind != "clear":
            failures.append(f"{kind}: {label}({argument}={kwargs[argument]!r}) {detail}"[:300])
    print(f"\n{len(BAD_CALLS)} bad calls: {dict(outcomes)}")
    assert len(BAD_CALLS) > 300
    assert outcomes["raw"] == 0 and outcomes["silent"] == 0, "\n".join(failures)


def test_argument_error_is_value_and_type_error() -> None:
    with pytest.raises(ArgumentError, match="profile") as raised:
        ops.hardsigmoid(X4, profile="bogus")
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)


GOOD_CALLS = [
    ("0-d float32 input", lambda: ops.quantize_per_tensor(np.float32(1.5), 0.1, 3, "quint8")),
    ("Python float input", lambda: ops.quantize_per_tensor(1.5, 0.1, 3, "qint32")),
    ("0-d array input", lambda: ops.quantize_per_tensor(np.array(1.5, np.float32), 0.1, 3, "qint8")),
    ("NumPy scalar qparams", lambda: ops.quantize_per_tensor(FLOATS, np.float64(0.1), np.int64(3), "quint8")),
    ("0-d array qparams", lambda: ops.quantize_per_tensor(FLOATS, np.array(0.1), np.array(3), "quint8")),
    ("integral float zero point", lambda: QTensor(np.zeros(2, np.uint8), 0.1, 3.0, "quint8")),
    ("profile name", lambda: ops.conv2d(**CONV_ARGS, profile="torch2.13-avx512_vnni-fbgemm")),
    ("fast profile name", lambda: fast.linear(**LINEAR_ARGS, profile="torch2.14-avx2-qnnpack")),
    ("memory format name", lambda: QTensor(X4.int_repr, 0.1, 3, "quint8", memory_format="contiguous")),
    ("NumPy int groups", lambda: ops.conv2d(**{**CONV_ARGS, "groups": np.int64(1)})),
    ("NumPy bool relu", lambda: ops.add(X4, X4, 0.2, 2, relu=np.bool_(True))),
    ("0-d scalar dequantize", lambda: ops.dequantize(ops.quantize_per_tensor(np.float32(1.5), 0.1, 3, "quint8"))),
    ("pool stride None", lambda: ops.max_pool2d(X4, 2, None)),
    ("TorchScript pool stride []", lambda: ops.avg_pool2d(X4, [2, 2], [], [0, 0], False, True, None)),
    ("one-entry kernel_size", lambda: ops.max_pool2d(X4, [2], [1], [0], [1])),
    ("cat default qparams", lambda: ops.cat([X4, X4], 1, None, None)),
    ("clamp with one bound", lambda: ops.clamp(X4, None, 1)),
    ("mean dims list", lambda: ops.mean(X4, [-2, -1], True)),
    ("mul broadcast", lambda: ops.mul(X4, QTensor(np.ones((1, 2, 1, 1), np.uint8), 0.1, 0, "quint8"), 0.2, 2)),
]


@pytest.mark.parametrize("label, call", GOOD_CALLS, ids=[label for label, _ in GOOD_CALLS])
def test_valid_scalar_inputs_are_accepted(label: str, call: Callable[[], Any]) -> None:
    call()


def test_profile_name_gives_the_profile_results() -> None:
    name = "torch2.14-avx2-fbgemm"
    by_name = ops.quantize_per_tensor(FLOATS, 0.01, 3, "quint8", profile=name)
    by_profile = ops.quantize_per_tensor(FLOATS, 0.01, 3, "quint8", profile=get_profile(name))
    np.testing.assert_array_equal(by_name.int_repr, by_profile.int_repr)


def test_repr_after_memory_format_name() -> None:
    assert "channels_last" in repr(QTensor(X4.int_repr, 0.1, 3, "quint8", memory_format="channels_last"))
    channels_last = QTensor(X4.int_repr, 0.1, 3, "quint8", memory_format="channels_last")
    assert channels_last.memory_format is MemoryFormat.channels_last

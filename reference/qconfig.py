"""Named qconfig presets: which observer torch puts on activations and on weights.

Data, not behaviour: each preset names an observer class of `reference.observers` and
the keyword arguments torch gives it (torch/ao/quantization/qconfig.py
`get_default_qconfig`, `default_qconfig`, `default_per_channel_qconfig`;
observer.py `default_observer`, `default_weight_observer`,
`default_per_channel_weight_observer`). The same in torch 2.13 and 2.14.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import observers

_OBSERVER_CLASSES = {
    cls.__name__: cls
    for cls in (
        observers.MinMaxObserver,
        observers.MovingAverageMinMaxObserver,
        observers.PerChannelMinMaxObserver,
        observers.MovingAveragePerChannelMinMaxObserver,
        observers.HistogramObserver,
    )
}


@dataclass(frozen=True)
class ObserverSpec:
    """An observer class name and the keyword arguments torch's `with_args` binds."""

    observer: str
    kwargs: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.observer not in _OBSERVER_CLASSES:
            raise ValueError(f"unknown observer {self.observer!r}; expected one of {sorted(_OBSERVER_CLASSES)}")

    def create(self) -> Any:
        """A fresh reference observer with these arguments."""
        return _OBSERVER_CLASSES[self.observer](**dict(self.kwargs))


@dataclass(frozen=True)
class QConfig:
    """The observers for a module's output activation and for its weight."""

    activation: ObserverSpec
    weight: ObserverSpec


# observer.py: default_observer = MinMaxObserver.with_args(quant_min=0, quant_max=127)
DEFAULT_OBSERVER = ObserverSpec("MinMaxObserver", (("quant_max", 127), ("quant_min", 0)))
# default_weight_observer = MinMaxObserver.with_args(dtype=qint8, qscheme=per_tensor_symmetric)
DEFAULT_WEIGHT_OBSERVER = ObserverSpec("MinMaxObserver", (("dtype", "qint8"), ("qscheme", "per_tensor_symmetric")))
# default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(dtype=qint8,
#     qscheme=per_channel_symmetric)  (ch_axis 0, -128..127)
DEFAULT_PER_CHANNEL_WEIGHT_OBSERVER = ObserverSpec(
    "PerChannelMinMaxObserver", (("dtype", "qint8"), ("qscheme", "per_channel_symmetric"))
)

# qconfig.py: default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
default_qconfig = QConfig(DEFAULT_OBSERVER, DEFAULT_WEIGHT_OBSERVER)
default_per_channel_qconfig = QConfig(DEFAULT_OBSERVER, DEFAULT_PER_CHANNEL_WEIGHT_OBSERVER)

_BACKEND_QCONFIGS = {
    # HistogramObserver.with_args(reduce_range=True): quint8 0..127, 2048 bins.
    "fbgemm": QConfig(
        ObserverSpec("HistogramObserver", (("reduce_range", True),)), DEFAULT_PER_CHANNEL_WEIGHT_OBSERVER
    ),
    "x86": QConfig(ObserverSpec("HistogramObserver", (("reduce_range", True),)), DEFAULT_PER_CHANNEL_WEIGHT_OBSERVER),
    "qnnpack": QConfig(ObserverSpec("HistogramObserver", (("reduce_range", False),)), DEFAULT_WEIGHT_OBSERVER),
    # torch also warns on CPUs without VNNI; the observers are the same.
    "onednn": QConfig(
        ObserverSpec("HistogramObserver", (("reduce_range", False),)), DEFAULT_PER_CHANNEL_WEIGHT_OBSERVER
    ),
}


def get_default_qconfig(backend: str = "x86", version: int = 0) -> QConfig:
    """torch's `get_default_qconfig(backend, version)` as data.

    >>> get_default_qconfig("fbgemm").activation.create().quant_max  # reduce_range: 0..127
    127
    >>> get_default_qconfig("qnnpack").weight.observer
    'MinMaxObserver'
    """
    if backend not in _BACKEND_QCONFIGS:
        raise ValueError(f"backend {backend!r} not supported; expected one of {sorted(_BACKEND_QCONFIGS)}")
    if version != 0:
        raise ValueError(f"get_default_qconfig version {version} is not supported; torch has only version 0")
    return _BACKEND_QCONFIGS[backend]

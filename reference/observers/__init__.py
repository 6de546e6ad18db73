"""Observers: what torch's calibration records, and the qparams it derives, in NumPy.

One observer per module, each mirroring its class in torch/ao/quantization/observer.py
with the same parameters and defaults. `observe(array)` accumulates a batch;
`calculate_qparams()` returns (scale float32 array, zero point int64 array) equal to
torch's bit for bit.
"""

from ._qparams import QScheme
from .histogram import HistogramObserver
from .minmax import MinMaxObserver
from .moving_average import MovingAverageMinMaxObserver
from .moving_average_per_channel import MovingAveragePerChannelMinMaxObserver
from .per_channel import PerChannelMinMaxObserver

__all__ = [
    "HistogramObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "PerChannelMinMaxObserver",
    "QScheme",
]

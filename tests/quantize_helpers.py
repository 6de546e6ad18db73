"""Calibration helpers of the tests that quantize zoo models (test_zoo, test_engines,
test_float_islands). Importing this module imports torch: import it after
`pytest.importorskip("torch")` or inside a test."""

from __future__ import annotations

import torch
from torch.ao.quantization import MinMaxObserver, QConfig, default_per_channel_weight_observer

from quantspec.production.zoo import qconfig_dict

# Same dtypes and schemes as get_default_qconfig("fbgemm") (quint8 0..127 activations,
# per-channel symmetric qint8 weights) but a min/max activation observer: the same graph,
# calibrated in a fraction of the HistogramObserver's time.
FAST_QCONFIG = QConfig(
    activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
    weight=default_per_channel_weight_observer,
)


def fast_qconfig_dict(name: str) -> dict:
    """The zoo model `name`'s qconfig_dict with FAST_QCONFIG wherever it quantizes."""
    return {key: (None if value is None else FAST_QCONFIG) for key, value in qconfig_dict(name).items()}


def run_once(model: torch.jit.ScriptModule, x: torch.Tensor) -> None:
    """Calibrate on one batch. One call: the JIT's profiling/optimizing runs would cost more
    than the calibration."""
    with torch.jit.optimized_execution(False):
        model(x)

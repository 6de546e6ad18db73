"""PerChannelMinMaxObserver: running min and max per channel."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .._arguments import integer
from ..qtensor import QDtype
from ._base import DEFAULT_EPS, UniformObserver, as_observed_float32, channel_rows
from ._qparams import QScheme, default_qparams


class PerChannelMinMaxObserver(UniformObserver):
    """torch.ao.quantization.PerChannelMinMaxObserver (observer.py).

    observe: move `ch_axis` to the front, flatten the rest, and take each channel's
    min/max (`torch.aminmax(y, dim=1)`); later batches combine with elementwise
    minimum/maximum (NaN propagates). Empty inputs are ignored. A batch with a different
    channel count is refused (torch broadcasts or fails depending on the counts).
    calculate_qparams: per channel, as `_qparams.calculate_qparams`; before any
    observation, scale [1.0] and zero point [0] with a warning.

    Defaults as torch: ch_axis 0, quint8, per_channel_affine, 0..255.

    Hand-worked, qint8 per_channel_symmetric, rows [-1, 0.5] and [0, 0.25]:
    channel 0: max(1, 0.5) = 1 -> f32(1 / 127.5); channel 1: 0.25 -> f32(0.25 / 127.5).

    >>> obs = PerChannelMinMaxObserver(dtype="qint8", qscheme="per_channel_symmetric")
    >>> obs.observe(np.array([[-1.0, 0.5], [0.0, 0.25]], np.float32))
    >>> scale, zp = obs.calculate_qparams()
    >>> scale.tolist() == [np.float32(1) / np.float32(127.5), np.float32(0.25) / np.float32(127.5)], zp.tolist()
    (True, [0, 0])
    """

    def __init__(
        self,
        ch_axis: int = 0,
        dtype: Union[QDtype, str] = QDtype.quint8,
        qscheme: Union[QScheme, str] = QScheme.per_channel_affine,
        reduce_range: bool = False,
        quant_min: Optional[int] = None,
        quant_max: Optional[int] = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self._check_qscheme(per_channel=True)
        self.ch_axis = integer(ch_axis, "ch_axis")
        self.min_val = np.zeros((0,), np.float32)
        self.max_val = np.zeros((0,), np.float32)

    def _batch_min_max(self, x: np.typing.ArrayLike) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Per-channel (min, max) of one batch, or None for an empty batch."""
        values = as_observed_float32(x, type(self).__name__)
        if values.size == 0:
            return None
        rows = channel_rows(values, self.ch_axis, type(self).__name__)
        if self.min_val.size and rows.shape[0] != self.min_val.size:
            raise ValueError(
                f"{type(self).__name__} saw {self.min_val.size} channels before, now {rows.shape[0]} "
                f"(axis {self.ch_axis} of shape {values.shape})"
            )
        return rows.min(axis=1), rows.max(axis=1)

    def observe(self, x: np.typing.ArrayLike) -> None:
        """Fold one batch into the per-channel running min and max."""
        batch = self._batch_min_max(x)
        if batch is None:
            return
        if self.min_val.size == 0:
            self.min_val, self.max_val = batch
            return
        self.min_val = np.minimum(batch[0], self.min_val)
        self.max_val = np.maximum(batch[1], self.max_val)

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """(scales float32 [C], zero points int64 [C]) as torch gives them."""
        if self.min_val.size == 0:
            return default_qparams("must run observer before calling calculate_qparams")
        return self._qparams(self.min_val, self.max_val)

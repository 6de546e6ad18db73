"""MovingAveragePerChannelMinMaxObserver: moving averages of per-channel min and max."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..numerics import f32
from ..qtensor import QDtype
from ._base import DEFAULT_EPS, checked_averaging_constant
from ._qparams import QScheme
from .per_channel import PerChannelMinMaxObserver


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """torch.ao.quantization.MovingAveragePerChannelMinMaxObserver (observer.py).

    The first non-empty batch sets the per-channel (min, max); later batches move them:
    `min = f32(min + f32(f32(c) * f32(batch_min - min)))` per channel (float32 tensor
    steps), the same for max. qparams as PerChannelMinMaxObserver.

    Hand-worked, c = 0.25, one channel: [0, 8] -> (0, 8); [4, 4] -> min 0 + 0.25 * 4 = 1,
    max 8 + 0.25 * (4 - 8) = 7.

    >>> obs = MovingAveragePerChannelMinMaxObserver(averaging_constant=0.25)
    >>> obs.observe(np.array([[0.0, 8.0]], np.float32)); obs.observe(np.array([[4.0, 4.0]], np.float32))
    >>> obs.min_val.tolist(), obs.max_val.tolist()
    ([1.0], [7.0])
    """

    def __init__(
        self,
        averaging_constant: float = 0.01,
        ch_axis: int = 0,
        dtype: Union[QDtype, str] = QDtype.quint8,
        qscheme: Union[QScheme, str] = QScheme.per_channel_affine,
        reduce_range: bool = False,
        quant_min: Optional[int] = None,
        quant_max: Optional[int] = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(ch_axis, dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.averaging_constant = checked_averaging_constant(averaging_constant)

    def observe(self, x: np.typing.ArrayLike) -> None:
        """Fold one batch into the per-channel moving averages."""
        batch = self._batch_min_max(x)
        if batch is None:
            return
        if self.min_val.size == 0:
            self.min_val, self.max_val = batch
            return
        c = np.float32(self.averaging_constant)
        with np.errstate(invalid="ignore", over="ignore"):
            self.min_val = f32(self.min_val + f32(c * f32(batch[0] - self.min_val)))
            self.max_val = f32(self.max_val + f32(c * f32(batch[1] - self.max_val)))

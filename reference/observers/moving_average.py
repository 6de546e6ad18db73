"""MovingAverageMinMaxObserver: qparams from exponential moving averages of min and max."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..numerics import f32
from ..qtensor import QDtype
from ._aten import aminmax_f32
from ._base import DEFAULT_EPS, as_observed_float32, checked_averaging_constant
from ._qparams import QScheme
from .minmax import MinMaxObserver


class MovingAverageMinMaxObserver(MinMaxObserver):
    """torch.ao.quantization.MovingAverageMinMaxObserver (observer.py), per-tensor.

    The first non-empty batch sets (min, max) = (amin(x), amax(x)); each later one
    (whenever the state is not exactly (+inf, -inf)) moves them, in float32 tensor steps:
    `min = f32(min + f32(f32(c) * f32(amin(x) - min)))`, the same for max, with
    c = averaging_constant (a Python float, narrowed to float32 by the scalar multiply).
    qparams as MinMaxObserver.

    Hand-worked, c = 0.5: batch [0, 4] -> (0, 4); batch [-2, 2]:
    min = 0 + 0.5 * (-2 - 0) = -1, max = 4 + 0.5 * (2 - 4) = 3.

    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> obs.observe(np.array([0.0, 4.0], np.float32)); obs.observe(np.array([-2.0, 2.0], np.float32))
    >>> float(obs.min_val), float(obs.max_val)
    (-1.0, 3.0)
    """

    def __init__(
        self,
        averaging_constant: float = 0.01,
        dtype: Union[QDtype, str] = QDtype.quint8,
        qscheme: Union[QScheme, str] = QScheme.per_tensor_affine,
        reduce_range: bool = False,
        quant_min: Optional[int] = None,
        quant_max: Optional[int] = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.averaging_constant = checked_averaging_constant(averaging_constant)

    def observe(self, x: np.typing.ArrayLike) -> None:
        """Fold one batch into the moving averages."""
        values = as_observed_float32(x, type(self).__name__)
        if values.size == 0:
            return
        current_min, current_max = aminmax_f32(values)
        if self.min_val == np.inf and self.max_val == -np.inf:
            self.min_val, self.max_val = current_min, current_max
            return
        c = np.float32(self.averaging_constant)
        with np.errstate(invalid="ignore", over="ignore"):
            self.min_val = f32(self.min_val + f32(c * f32(current_min - self.min_val)))
            self.max_val = f32(self.max_val + f32(c * f32(current_max - self.max_val)))

"""MinMaxObserver: qparams from the running min and max of everything observed."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..qtensor import QDtype
from ._aten import aminmax_f32
from ._base import DEFAULT_EPS, UniformObserver, as_observed_float32
from ._qparams import QScheme, default_qparams


class MinMaxObserver(UniformObserver):
    """torch.ao.quantization.MinMaxObserver (observer.py), per-tensor.

    observe: `min = minimum(min, amin(x))`, `max = maximum(max, amax(x))` in float32
    (inputs are converted to float32 first; NaN propagates and sticks, as in torch;
    empty inputs are ignored). Starts at (+inf, -inf).
    calculate_qparams: `_qparams.calculate_qparams` on (min, max); before any
    observation, scale [1.0] and zero point [0] with a warning, as torch does.

    Defaults as torch: quint8, per_tensor_affine, reduce_range False, 0..255, eps =
    float32 machine epsilon.

    Hand-worked, qint8 symmetric, data [-0.5, 2.0]: max(|-0.5|, 2.0) = 2.0;
    scale = f32(2.0 / f32(255 / 2)) = f32(2 / 127.5) = 0.015686275; zero point 0.

    >>> obs = MinMaxObserver(dtype="qint8", qscheme="per_tensor_symmetric")
    >>> obs.observe(np.array([-0.5, 2.0], np.float32))
    >>> scale, zp = obs.calculate_qparams()
    >>> float(scale[0]) == float(np.float32(2.0) / np.float32(127.5)), zp.tolist()
    (True, [0])
    """

    def __init__(
        self,
        dtype: Union[QDtype, str] = QDtype.quint8,
        qscheme: Union[QScheme, str] = QScheme.per_tensor_affine,
        reduce_range: bool = False,
        quant_min: Optional[int] = None,
        quant_max: Optional[int] = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self._check_qscheme(per_channel=False)
        self.min_val = np.float32(np.inf)
        self.max_val = np.float32(-np.inf)

    def observe(self, x: np.typing.ArrayLike) -> None:
        """Fold one batch into the running min and max."""
        values = as_observed_float32(x, type(self).__name__)
        if values.size == 0:
            return
        batch_min, batch_max = aminmax_f32(values)
        self.min_val = np.minimum(batch_min, self.min_val)
        self.max_val = np.maximum(batch_max, self.max_val)

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale float32 [1], zero point int64 [1]) as torch's `calculate_qparams` gives them."""
        if self.min_val == np.inf and self.max_val == -np.inf:
            return default_qparams("must run observer before calling calculate_qparams")
        return self._qparams(self.min_val, self.max_val)

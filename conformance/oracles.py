"""Calling torch for a check: the fbgemm engine pinned, torch's known notices silenced.

Only conformance (and production) import torch; checks get their torch results through
these helpers so that every oracle call runs the same way.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from quantspec.production.bridge import TORCH_QDTYPES, from_torch, to_torch
from quantspec.production.environment import fbgemm_engine, known_deprecations_silenced
from quantspec.reference.qtensor import QDtype

__all__ = ["from_torch", "to_torch", "torch_dtype", "float_tensor", "oracle"]

@contextlib.contextmanager
def oracle() -> Iterator[None]:
    """Run torch with the fbgemm engine pinned and its known deprecation notices silenced."""
    with fbgemm_engine(), known_deprecations_silenced():
        yield


def torch_dtype(dtype: QDtype) -> torch.dtype:
    """The torch quantized dtype of a QDtype."""
    return TORCH_QDTYPES[dtype]


def float_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 torch tensor sharing nothing with `x` (torch must not see a read-only view)."""
    if x.dtype != np.float32:
        raise TypeError(f"expected a float32 array, got {x.dtype}")
    return torch.from_numpy(np.array(x, copy=True))

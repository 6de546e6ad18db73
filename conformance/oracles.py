"""Calling torch for a check: the engine pinned (fbgemm unless `oracle_engine` says otherwise),
torch's known notices silenced.

Only conformance (and production) import torch; checks get their torch results through
these helpers so that every oracle call runs the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import numpy as np
import torch

from quantspec.production.bridge import TORCH_QDTYPES, from_torch, to_torch
from quantspec.production.environment import ENGINE, known_deprecations_silenced, quantized_engine
from quantspec.reference.qtensor import QDtype

__all__ = ["from_torch", "to_torch", "torch_dtype", "float_tensor", "oracle", "oracle_engine"]

# The quantized engine every `oracle()` call runs torch under.
_ORACLE_ENGINE: contextvars.ContextVar[str] = contextvars.ContextVar("quantspec_oracle_engine", default=ENGINE)


@contextlib.contextmanager
def oracle_engine(name: str) -> Iterator[None]:
    """Run the checks inside the block against torch's `name` engine ("qnnpack", ...): each
    check's torch side (prepack and call: the runner wraps the whole `check.torch(case)` in
    `oracle()`) runs under it. Pair it with a numerics profile of the same engine, which the
    reference side reads (`run_checks(..., numerics=get_profile("torch2.13-avx2-qnnpack"))`)."""
    token = _ORACLE_ENGINE.set(name)
    try:
        yield
    finally:
        _ORACLE_ENGINE.reset(token)


@contextlib.contextmanager
def oracle() -> Iterator[None]:
    """Run torch with the oracle engine pinned (fbgemm unless inside `oracle_engine`) and its
    known deprecation notices silenced."""
    with quantized_engine(_ORACLE_ENGINE.get()), known_deprecations_silenced():
        yield


def torch_dtype(dtype: QDtype) -> torch.dtype:
    """The torch quantized dtype of a QDtype."""
    return TORCH_QDTYPES[dtype]


def float_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 torch tensor sharing nothing with `x` (torch must not see a read-only view)."""
    if x.dtype != np.float32:
        raise TypeError(f"expected a float32 array, got {x.dtype}")
    return torch.from_numpy(np.array(x, copy=True))

"""quantspec production: the torch-backed path people deploy with."""

from .export import export
from .io import load, save
from .quantize import quantize_jit

__all__ = ["export", "load", "quantize_jit", "save"]

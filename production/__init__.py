"""quantspec production: the torch-backed path people deploy with."""

from .export import export

__all__ = ["export"]

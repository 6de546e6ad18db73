"""Reference ops, one per module. `OPS` maps each torch op name to its reference function."""

from ._registry import OPS, register_op
from .dequantize import dequantize
from .quantize_per_channel import quantize_per_channel
from .quantize_per_tensor import quantize_per_tensor

__all__ = ["OPS", "register_op", "dequantize", "quantize_per_channel", "quantize_per_tensor"]

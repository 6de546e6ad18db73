"""Reference ops, one per module. `OPS` maps each torch op name to its reference function."""

from ._registry import OPS, register_op
from .clamp import clamp
from .dequantize import dequantize
from .hardsigmoid import hardsigmoid
from .hardswish import hardswish
from .hardtanh import hardtanh
from .mean import mean
from .mul import mul, mul_relu
from .quantize_per_channel import quantize_per_channel
from .quantize_per_tensor import quantize_per_tensor
from .relu import relu

__all__ = [
    "OPS",
    "register_op",
    "clamp",
    "dequantize",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "mean",
    "mul",
    "mul_relu",
    "quantize_per_channel",
    "quantize_per_tensor",
    "relu",
]

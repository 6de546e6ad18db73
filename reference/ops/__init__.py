"""Reference ops, one per module. `OPS` maps each torch op name to its reference function."""

from ._registry import OPS, register_op
from .clamp import clamp
from .conv2d import conv2d, conv2d_relu, conv_path
from .dequantize import dequantize
from .hardsigmoid import hardsigmoid
from .hardswish import hardswish
from .hardtanh import hardtanh
from .linear import linear, linear_relu
from .mean import mean
from .mul import mul, mul_relu
from .quantize_per_channel import quantize_per_channel
from .quantize_per_tensor import quantize_per_tensor
from .relu import relu

__all__ = [
    "OPS",
    "register_op",
    "clamp",
    "conv2d",
    "conv2d_relu",
    "conv_path",
    "dequantize",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "linear",
    "linear_relu",
    "mean",
    "mul",
    "mul_relu",
    "quantize_per_channel",
    "quantize_per_tensor",
    "relu",
]

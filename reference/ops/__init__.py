"""Reference ops, one per module. `OPS` maps each torch op name to its reference function."""

from ._registry import OPS, register_op
from .adaptive_avg_pool2d import adaptive_avg_pool2d
from .add import add, add_relu
from .avg_pool2d import avg_pool2d
from .cat import cat
from .chunk import chunk
from .clamp import clamp
from .contiguous import contiguous
from .conv2d import conv2d, conv2d_relu, conv_path
from .dequantize import dequantize
from .flatten import flatten
from .hardsigmoid import hardsigmoid
from .hardswish import hardswish
from .hardtanh import hardtanh
from .linear import linear, linear_relu
from .max_pool2d import max_pool2d
from .mean import mean
from .mul import mul, mul_relu
from .quantize_per_channel import quantize_per_channel
from .quantize_per_tensor import quantize_per_tensor
from .relu import relu
from .reshape import reshape
from .transpose import transpose

__all__ = [
    "OPS",
    "register_op",
    "adaptive_avg_pool2d",
    "add",
    "add_relu",
    "avg_pool2d",
    "cat",
    "chunk",
    "clamp",
    "contiguous",
    "conv2d",
    "conv2d_relu",
    "conv_path",
    "dequantize",
    "flatten",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "linear",
    "linear_relu",
    "max_pool2d",
    "mean",
    "mul",
    "mul_relu",
    "quantize_per_channel",
    "quantize_per_tensor",
    "relu",
    "reshape",
    "transpose",
]

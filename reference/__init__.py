"""quantspec reference: the exact integer semantics of torch's quantized ops, in NumPy.

This package never imports torch. Every op takes its numerics as data: a
`NumericsProfile` naming the torch release, CPU features and engine.
"""

from . import observers, ops
from .fold import fold_conv_bn
from .interpreter import Model, ModelCheckError, ModelFileError, ReadLimits, check, load, run
from .ops import dequantize, quantize_per_channel, quantize_per_tensor
from .profile import DEFAULT_PROFILE, PROFILES, NumericsProfile, get_profile
from .qconfig import QConfig, default_qconfig, get_default_qconfig
from .qtensor import MemoryFormat, QDtype, QTensor

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "MemoryFormat",
    "Model",
    "ModelCheckError",
    "ModelFileError",
    "NumericsProfile",
    "QConfig",
    "QDtype",
    "QTensor",
    "ReadLimits",
    "check",
    "default_qconfig",
    "dequantize",
    "fold_conv_bn",
    "get_default_qconfig",
    "get_profile",
    "load",
    "observers",
    "ops",
    "quantize_per_channel",
    "quantize_per_tensor",
    "run",
]

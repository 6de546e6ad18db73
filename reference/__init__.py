"""quantspec reference: the exact integer semantics of torch's quantized ops, in NumPy.

This package never imports torch. Every op takes its numerics as data: a
`NumericsProfile` naming the torch release, CPU features and engine.
"""

from . import ops
from .interpreter import Model, load, run
from .ops import dequantize, quantize_per_channel, quantize_per_tensor
from .profile import DEFAULT_PROFILE, PROFILES, NumericsProfile, get_profile
from .qtensor import MemoryFormat, QDtype, QTensor

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "MemoryFormat",
    "Model",
    "NumericsProfile",
    "QDtype",
    "QTensor",
    "dequantize",
    "get_profile",
    "load",
    "ops",
    "quantize_per_channel",
    "quantize_per_tensor",
    "run",
]

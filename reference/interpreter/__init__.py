"""The NumPy interpreter of converted models: `load` a portable model file (read under
`ReadLimits`, decoded strictly, validated by `check`), `run` it."""

from .abstract import ModelCheckError, UnknownKindError
from .archive import ReadLimits
from .checker import DEFAULT_MEMORY_BUDGET, check, peak_memory_bytes
from .file_format import FORMAT_VERSION, ModelFileError, PackedConv, PackedLinear
from .kernels import KERNELS, ScriptException, UnknownNodeKind
from .loader import load
from .model import Block, InputSpec, Model, Node, NodeError, run

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "FORMAT_VERSION",
    "KERNELS",
    "Block",
    "InputSpec",
    "Model",
    "ModelCheckError",
    "ModelFileError",
    "Node",
    "NodeError",
    "PackedConv",
    "PackedLinear",
    "ReadLimits",
    "ScriptException",
    "UnknownKindError",
    "UnknownNodeKind",
    "check",
    "load",
    "peak_memory_bytes",
    "run",
]

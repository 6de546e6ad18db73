"""The NumPy interpreter of converted models: `load` a portable model file, `run` it."""

from .file_format import FORMAT_VERSION, ModelFileError, PackedConv, PackedLinear
from .kernels import KERNELS, ScriptException, UnknownNodeKind
from .model import Block, InputSpec, Model, Node, NodeError, load, run

__all__ = [
    "FORMAT_VERSION",
    "KERNELS",
    "Block",
    "InputSpec",
    "Model",
    "ModelFileError",
    "Node",
    "NodeError",
    "PackedConv",
    "PackedLinear",
    "ScriptException",
    "UnknownNodeKind",
    "load",
    "run",
]

"""Fast kernels: the integers of `quantspec.reference.ops`, computed quickly.

Each kernel takes its plain op's arguments (plus `prepared` weights and `workers`), returns
the same `QTensor`, and states beside it the bound that makes its float32 arithmetic exact.
The model interpreter runs these; the tests and the conformance suite check each against
its plain definition on every drawn case.
"""

from .conv2d import ConvWeights, conv2d, prepare_conv_weight
from .gemm import GemmWeights
from .linear import linear, prepare_linear_weight

__all__ = ["ConvWeights", "GemmWeights", "conv2d", "linear", "prepare_conv_weight", "prepare_linear_weight"]

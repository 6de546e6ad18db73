"""Fast kernels: the integers of `quantspec.reference.ops`, computed quickly.

Each kernel takes its plain op's arguments (plus `prepared` weights and `workers`), returns
the same `QTensor`, and states beside it the bound that makes its float32 arithmetic exact.
The model interpreter runs these; the tests and the conformance suite check each against
its plain definition on every drawn case.
"""

from .adaptive_avg_pool2d import adaptive_avg_pool2d
from .add import add
from .avg_pool2d import avg_pool2d
from .cat import cat
from .conv2d import ConvWeights, conv2d, prepare_conv_weight
from .gemm import GemmWeights
from .linear import linear, prepare_linear_weight
from .max_pool2d import max_pool2d

__all__ = [
    "ConvWeights", "GemmWeights", "adaptive_avg_pool2d", "add", "avg_pool2d", "cat", "conv2d", "linear", "max_pool2d",
    "prepare_conv_weight", "prepare_linear_weight",
]

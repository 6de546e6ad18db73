"""Fast kernels: the integers of `quantspec.reference.ops`, computed quickly.

Each kernel takes its plain op's arguments (plus `prepared` weights and `workers`), returns
the same `QTensor`, and states beside it the bound that makes its float32 arithmetic exact.
A prepared weight (`prepare_conv_weight`, `prepare_linear_weight`: torch's prepack) is the
weight's GEMM operands plus the constants its calls derive, kept per input and output qparams
(at most `gemm.KEPT_ENTRIES` sets; the oldest goes first); it is safe to share across threads.
conv2d also splits into `plan_conv2d` (every check and decision, once per weight and kind of
input) and `run_conv_plan` (the arithmetic), as the interpreter runs it.
The model interpreter runs these; the tests and the conformance suite check each against
its plain definition on every drawn case.
"""

from .adaptive_avg_pool2d import adaptive_avg_pool2d
from .add import add
from .avg_pool2d import avg_pool2d
from .cat import cat
from .clamp import clamp, hardtanh
from .conv2d import ConvPlan, ConvWeights, conv2d, plan_conv2d, prepare_conv_weight, run_conv_plan
from .gemm import GemmWeights, PreparedWeights
from .linear import linear, prepare_linear_weight
from .max_pool2d import max_pool2d

__all__ = [
    "ConvPlan", "ConvWeights", "GemmWeights", "PreparedWeights", "adaptive_avg_pool2d", "add", "avg_pool2d", "cat",
    "clamp", "conv2d", "hardtanh", "linear", "max_pool2d", "plan_conv2d", "prepare_conv_weight",
    "prepare_linear_weight", "run_conv_plan",
]

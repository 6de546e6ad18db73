"""conformance.models: random whole models built, converted with production.quantize_jit and
verified node by node (a few derandomized draws plus a pinned model with every block kind)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, Phase, given, settings

from quantspec.conformance.models import (
    ConcatSpec,
    ConvSpec,
    ModelSpec,
    PoolSpec,
    ResidualSpec,
    SqueezeSpec,
    check_spec,
    model_specs,
)

EVERY_BLOCK = ModelSpec(
    size=9,
    stem=8,
    blocks=(
        ConvSpec(8, kernel=3, stride=1, padding=1, depthwise=True, act="relu6"),
        ResidualSpec(act=True),
        PoolSpec("max", 2, 2, 1, ceil_mode=True),
        ConcatSpec(4),
        SqueezeSpec(2),
        ConvSpec(12, kernel=3, stride=2, padding=2, dilation=2, groups=2, bn=False, act="hardswish"),
    ),
    excluded=(2,),
    seed=3,
)


def test_a_model_with_every_block_kind_verifies_bit_exactly():
    result = check_spec(EVERY_BLOCK)
    for kind, report in result.reports.items():
        assert report.ok, f"{kind}:\n{report.format()}"
    kinds = result.reports["random"].by_kind()
    for expected in ("quantized::add_relu", "quantized::cat", "quantized::mul", "aten::hardsigmoid",
                     "quantized::hardswish", "aten::max_pool2d", "aten::quantize_per_tensor", "aten::dequantize"):
        assert expected in kinds, sorted(kinds)


@settings(max_examples=2, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(model_specs(max_blocks=4))
def test_random_models_verify_bit_exactly(spec):
    result = check_spec(spec)
    assert result.ok, "\n".join(f"{spec}\n{kind}: {r.format()}" for kind, r in result.reports.items())

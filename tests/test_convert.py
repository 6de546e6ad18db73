"""The convert check: torch's convert_jit decisions (folded weights, int8 weights, activation
qparams) against the reference's, and the pieces it relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from quantspec.conformance.checks import convert
from quantspec.conformance.checks.calibration import CalibrationCase
from quantspec.conformance.runner import compare_outputs
from quantspec.production import zoo
from quantspec.production.environment import detect_profile, fbgemm_engine, torch_threads

SMALL = CalibrationCase("cifar_resnet20", 0.25, 0, 2, 0)


class _Pairs(nn.Module):
    """conv_a -> bn_a folds; conv_b's output also feeds the add, so bn_b does not fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.bn_a(self.conv_a(x)))
        y = self.conv_b(x)
        return self.bn_b(y) + y


def test_conv_bn_pairs_follow_the_fold_pattern() -> None:
    scripted = torch.jit.script(_Pairs().eval())
    pairs = convert.conv_bn_pairs(scripted)
    assert sorted(pairs) == ["block.0", "conv_a"]
    assert pairs["conv_a"].original_name == "BatchNorm2d"
    # torch's own pass agrees: it folds exactly those two (their BNs leave the graph).
    folded = torch.jit._recursive.wrap_cpp_module(torch._C._jit_pass_fold_convbn(scripted._c))
    calls = str(folded.graph) + str(folded.block.graph)
    assert "bn_a" not in calls and "bn_b" in calls


def test_cifar_resnet20_converts_exactly_as_the_reference_decides() -> None:
    expected = convert.reference_decisions(SMALL, detect_profile())
    with fbgemm_engine():
        actual = convert.torch_decisions(SMALL)
    # 19 convs + 1 linear: weights, biases, int8 weights, qparams; 30 activation observers.
    assert expected.size > 30_000
    assert compare_outputs(expected, actual, SMALL) is None


def test_a_fold_one_eps_off_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The folded weights are compared bit for bit: eps 1e-5 -> 1.5e-5 changes
    rsqrt(var + eps) in the last bits of many channels."""
    with fbgemm_engine():
        actual = convert.torch_decisions(SMALL)
    fold = convert.fold_conv_bn
    monkeypatch.setattr(convert, "fold_conv_bn", lambda *args, eps, **kwargs: fold(*args, eps=eps * 1.5, **kwargs))
    difference = compare_outputs(convert.reference_decisions(SMALL, detect_profile()), actual, SMALL)
    assert difference is not None and difference.mismatched_elements > 0


def test_a_recording_without_its_node_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recordings map to nodes by graph order: one activation recording too many (the
    last one, doubled) is an error naming both counts, not a silent shift."""
    recordings = convert.ordered_recordings(SMALL)
    monkeypatch.setattr(convert, "ordered_recordings", lambda case: recordings + recordings[-1:])
    activations = sum(not recording.is_weight for recording in recordings)
    with fbgemm_engine(), pytest.raises(ValueError, match=f"{activations + 1} activation observers.*graph order"):
        convert.torch_decisions(SMALL)


def test_zoo_models_do_not_depend_on_the_thread_count() -> None:
    """BN statistics come from a float forward pass whose sums depend on the thread count;
    zoo.randomize runs it on one thread (found by the convert check: the recording run on one
    thread saw other folded weights than a model built at two threads)."""
    states = []
    for threads in (1, 2):
        with torch_threads(threads):
            model = zoo.build("mobilenet_v2", width=0.25, seed=0)
        states.append(
            {k: v.numpy().view(np.uint8).copy() for k, v in model.state_dict().items() if v.is_floating_point()}
        )
    assert states[0].keys() == states[1].keys()
    assert all(np.array_equal(states[0][k], states[1][k]) for k in states[0])

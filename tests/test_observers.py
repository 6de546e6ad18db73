"""Observers: hand-worked qparams, the ATen kernels they rest on, bad input, and torch."""

from __future__ import annotations

import numpy as np
import pytest

from quantspec.reference.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from quantspec.reference.observers._aten import cascade_sum_f32, div_floor_f32, histc_f32, linspace_f32
from quantspec.reference.observers.histogram import _quantile_steps
from quantspec.reference.qconfig import default_qconfig, get_default_qconfig

F32_EPS = float(np.finfo(np.float32).eps)


def f32s(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


# --- hand-worked qparams ---------------------------------------------------------------------


def test_minmax_affine_quint8_hand_worked() -> None:
    # min -1, max 3: scale = f32(4 / 255) = 0.015686275; -1 / scale = -63.75 -> rne -64 -> zp 0 - (-64) = 64.
    obs = MinMaxObserver()
    obs.observe(f32s(-1.0, 0.5, 3.0))
    scale, zp = obs.calculate_qparams()
    assert scale.dtype == np.float32 and scale.tolist() == [np.float32(4.0) / np.float32(255.0)]
    assert zp.tolist() == [64]


def test_minmax_keeps_zero_in_range() -> None:
    # Only positive data [2, 6]: min is clamped to 0 first, so scale = 6 / 255 and zp = 0.
    obs = MinMaxObserver()
    obs.observe(f32s(2.0, 6.0))
    scale, zp = obs.calculate_qparams()
    assert scale.tolist() == [np.float32(6.0) / np.float32(255.0)] and zp.tolist() == [0]


def test_minmax_symmetric_quint8_zero_point_128_and_reduce_range() -> None:
    # Symmetric quint8: zp 128; scale = max(|-2|, 1) / 127.5.
    obs = MinMaxObserver(qscheme="per_tensor_symmetric")
    obs.observe(f32s(-2.0, 1.0))
    scale, zp = obs.calculate_qparams()
    assert scale.tolist() == [np.float32(2.0) / np.float32(127.5)] and zp.tolist() == [128]
    # reduce_range quint8 affine: 0..127, so scale = 4 / 127 for [-1, 3]; -1 / (4/127) = -31.75 -> -32 -> zp 32.
    reduced = MinMaxObserver(reduce_range=True)
    reduced.observe(f32s(-1.0, 3.0))
    scale, zp = reduced.calculate_qparams()
    assert scale.tolist() == [np.float32(4.0) / np.float32(127.0)] and zp.tolist() == [32]


def test_eps_floor_for_constant_zero_input() -> None:
    # All zeros: scale 0 / 255 = 0 is raised to eps, zp = 0 - rne(0 / eps) = 0.
    obs = MinMaxObserver()
    obs.observe(np.zeros(5, np.float32))
    scale, zp = obs.calculate_qparams()
    assert scale.tolist() == [np.float32(F32_EPS)] and zp.tolist() == [0]


def test_moving_average_float32_steps() -> None:
    # c = 0.01 (float32 0.0099999998): [0, 1] then [0, 2]: max = f32(1 + f32(c32 * (2 - 1))) = 1.01 (float32).
    obs = MovingAverageMinMaxObserver()
    obs.observe(f32s(0.0, 1.0))
    obs.observe(f32s(0.0, 2.0))
    assert obs.max_val == np.float32(np.float32(1.0) + np.float32(0.01) * np.float32(1.0))
    assert obs.min_val == 0.0


def test_per_channel_axis_and_negative_axis() -> None:
    # Shape (2, 3): channels along axis 1 are columns: column 1 holds [-4, 1] -> symmetric 4 / 127.5.
    x = np.array([[1.0, -4.0, 0.5], [2.0, 1.0, -0.25]], np.float32)
    for axis in (1, -1):
        obs = PerChannelMinMaxObserver(ch_axis=axis, dtype="qint8", qscheme="per_channel_symmetric")
        obs.observe(x)
        scale, zp = obs.calculate_qparams()
        assert scale.tolist() == [np.float32(v) / np.float32(127.5) for v in (2.0, 4.0, 0.5)]
        assert zp.tolist() == [0, 0, 0]


def test_moving_average_per_channel_hand_worked() -> None:
    # c = 0.5, two channels: first [[0, 4], [-2, 2]] -> min [0, -2]; then [[2, 2], [-4, 0]]:
    # min = [0 + 0.5 * 2, -2 + 0.5 * -2] = [1, -3], max = [4 + 0.5 * -2, 2 + 0.5 * -2] = [3, 1].
    obs = MovingAveragePerChannelMinMaxObserver(averaging_constant=0.5)
    obs.observe(np.array([[0.0, 4.0], [-2.0, 2.0]], np.float32))
    obs.observe(np.array([[2.0, 2.0], [-4.0, 0.0]], np.float32))
    assert obs.min_val.tolist() == [1.0, -3.0] and obs.max_val.tolist() == [3.0, 1.0]


def test_histogram_second_batch_rebins_by_midpoints() -> None:
    # 2 bins over [0, 1] hold [1, 1]; then [2]: range [0, 2]. Old bins split into 16 parts of 1/16,
    # midpoints (k + 0.5) / 32 for k < 32 all fall below 1.0, i.e. in new bin 0: 32 * 1/16 = 2.
    # The new batch's 2.0 is the top edge: last bin. -> [2, 1].
    obs = HistogramObserver(bins=2)
    obs.observe(f32s(0.0, 1.0))
    obs.observe(f32s(2.0))
    assert obs.histogram.tolist() == [2.0, 1.0]
    assert (obs.min_val, obs.max_val) == (0.0, 2.0)


def test_histogram_constant_then_wider_uses_point_branch() -> None:
    # 4 bins, [1, 1, 1] (one point) then [0, 2]: the point 1.0 goes to histc bin
    # f32((1 - 0) * 4 / 2) = 2 with weight sum([..]) = 3; update [0, 2] -> bins 0 and 3.
    obs = HistogramObserver(bins=4)
    obs.observe(f32s(1.0, 1.0, 1.0))
    obs.observe(f32s(0.0, 2.0))
    assert obs.histogram.tolist() == [1.0, 0.0, 3.0, 1.0]


def test_histogram_range_beyond_float32_gives_nan_scale_without_warnings() -> None:
    # [-3e38, 3e38]: max - min = 6e38 overflows float32 to inf, so histc's edges are NaN (every
    # element skipped, an all-zero histogram), the search keeps bins 0..2047, and
    # new_min = min + f32(inf * 0) = NaN: scale NaN, as torch 2.13 gives. NumPy must not warn
    # (pytest turns warnings into errors) on these intended overflows.
    obs = HistogramObserver()
    obs.observe(f32s(-3e38, 3e38, 1.0))
    obs.observe(f32s(-3.3e38, 1.0))  # a wider range: the re-binning path overflows too
    scale, zp = obs.calculate_qparams()
    assert np.isnan(scale[0]) and zp.tolist() == [0]


# --- the L2 search ---------------------------------------------------------------------------


def _stepwise_search(obs: HistogramObserver) -> tuple[int, int]:
    """torch's `_non_linear_param_search` loop (observer.py) transcribed step by step: alpha
    and beta in Python doubles, csum compared in float32 with `f32(next_alpha * total)`."""
    total = float(cascade_sum_f32(obs.histogram))
    csum = np.cumsum(obs.histogram, dtype=np.float64).astype(np.float32).tolist()
    alpha, beta = 0.0, 1.0
    start, end = 0, obs.bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha, next_beta = alpha + 1e-5, beta - 1e-5
        a_total, b_total = float(np.float32(next_alpha * total)), float(np.float32(next_beta * total))
        left, right = start, end
        while left < end and csum[left] < a_total:
            left += 1
        while right > start and csum[right] > b_total:
            right -= 1
        next_start, next_end = start, end
        if left - start > end - right:
            next_start, alpha = left, next_alpha
        else:
            next_end, beta = right, next_beta
        if (next_start, next_end) == (start, end):
            continue
        norm = obs._quantization_error(next_start, next_end)
        if norm > norm_min:
            break
        norm_min, start, end = norm, next_start, next_end
    return start, end


def test_quantile_steps_are_the_python_loop_values() -> None:
    # `alpha += 1e-5` rounds at every step: after 100,000 steps alpha is 0.9999999999980838,
    # not 1.0 (a pairwise sum such as np.sum gives 1.0). np.add.accumulate must add left to
    # right like the loop, for every value the search can read.
    alphas, betas, _ = _quantile_steps()
    alpha, beta, loop_alphas, loop_betas = 0.0, 1.0, [], []
    for _ in range(alphas.size):
        loop_alphas.append(alpha)
        loop_betas.append(beta)
        alpha, beta = alpha + 1e-5, beta - 1e-5
    assert np.array_equal(alphas, loop_alphas) and np.array_equal(betas, loop_betas)
    assert alphas[100_000] == 0.9999999999980838 and betas[-1] < 0.0 and alphas[-1] > 1.0


@pytest.mark.parametrize(
    "histogram",
    [
        # Total 1,000,018: f32(1e-5 * total) = 10.00018 exceeds csum[0..5] = 10, so the start
        # bin moves (once, to bin 6), besides two end moves and a run of 24,999 unchanged steps.
        [1, 2, 3, 0, 0, 4] + [250_000] * 4 + [0, 0, 2, 0, 0, 0, 5] + [0] * 40 + [1],
        # Bin 0 holds 500 >= f32(1e-5 * 591): alpha never moves; two end moves, 168 unchanged steps.
        [500, 40, 30, 20] + [0] * 27 + [1],
        [0.0] * 64,  # nothing observed in range: 100,000 unchanged steps, then the full range
        [7.0],
    ],
)
def test_event_driven_search_equals_torch_stepwise_loop(histogram: list[float]) -> None:
    obs = HistogramObserver(bins=len(histogram))
    obs.histogram = np.array(histogram, np.float32)
    obs.min_val, obs.max_val = np.float32(-1.0), np.float32(3.0)
    assert obs._search() == _stepwise_search(obs)


def test_event_driven_search_equals_torch_stepwise_loop_on_drawn_histograms() -> None:
    rng = np.random.default_rng(5)
    for data in (rng.standard_t(1.5, 4000), -rng.exponential(1.0, 4000) ** 3, np.maximum(rng.standard_normal(4000), 0)):
        obs = HistogramObserver(bins=128)
        obs.observe(data.astype(np.float32))
        assert obs._search() == _stepwise_search(obs)


def test_uninitialized_observers_return_defaults_with_warning() -> None:
    for obs in (MinMaxObserver(), PerChannelMinMaxObserver(), HistogramObserver()):
        with pytest.warns(UserWarning, match="must run observer"):
            scale, zp = obs.calculate_qparams()
        assert scale.tolist() == [1.0] and zp.tolist() == [0]


def test_qconfig_presets() -> None:
    activation = get_default_qconfig("fbgemm").activation.create()
    assert type(activation).__name__ == "HistogramObserver" and activation.bins == 2048
    assert (activation.quant_min, activation.quant_max) == (0, 127)
    weight = get_default_qconfig("x86").weight.create()
    assert (weight.dtype.label, weight.qscheme.value, weight.ch_axis) == ("qint8", "per_channel_symmetric", 0)
    assert (default_qconfig.activation.create().quant_max, default_qconfig.weight.observer) == (127, "MinMaxObserver")
    with pytest.raises(ValueError, match="not supported"):
        get_default_qconfig("tensorrt")


# --- the ATen kernels ------------------------------------------------------------------------


def test_cascade_sum_order_differs_from_left_to_right() -> None:
    # n = 5: partials [1e8, 1, 1, 1], tail -1e8 joins partial 0 first -> 0, then + 1 + 1 + 1 = 3.
    assert cascade_sum_f32(f32s(1e8, 1, 1, 1, -1e8)) == 3.0
    # n = 16: two 8-lane vectors; lane 0 holds 1e8 and -1e8 (sum 0), the other lanes 1 each: 14.
    x = np.ones(16, np.float32)
    x[0], x[8] = 1e8, -1e8
    assert cascade_sum_f32(x) == 14.0


def test_linspace_fma_ends() -> None:
    # step = 1/3 (float32); the upper half is end - step*(n-1-i): element 2 = fma(-step, 1, 1).
    values = linspace_f32(0.0, 1.0, 4)
    third = np.float32(1.0) / np.float32(3.0)
    assert values[0] == 0.0 and values[3] == 1.0
    assert values[1] == third and values[2] == np.float32(1.0 - np.float64(third))


def test_histc_constant_input_uses_float32_neighbours() -> None:
    # Constant v = 2^25: edges min(nextafter_f32(v, -inf), v - 1) and max(nextafter_f32(v, +inf), v + 1).
    # Below 2^25 the float32 spacing is 2, above it 4: edges v - 2 and v + 4.
    # (v - lo) * 16 / 6 = 32 / 6 = 5.33 -> bin 5 (torch 2.13 gives bin 5 too).
    hist = histc_f32(f32s(2.0**25, 2.0**25), 16, 2.0**25, 2.0**25)
    assert np.flatnonzero(hist).tolist() == [5] and hist[5] == 2.0


def test_histc_overflowing_quotient_lands_in_bin_0() -> None:
    # [-1.5e38, 1.5e38]: (0 + 1.5e38) * 8 overflows to inf -> inf / 3e38 = inf -> torch's int64 cast
    # gives INT64_MIN, whose 4-byte offset wraps to bin 0. Every element here ends in bin 0.
    x = f32s(-1.5e38, 0.0, 1e38, 1.5e38)
    assert histc_f32(x, 8, -1.5e38, 1.5e38).tolist() == [4.0] + [0.0] * 7


def test_div_floor_python_semantics() -> None:
    # -7 // 2: fmod -1, (-7 + 1) / 2 = -3, mod and b differ in sign -> -4. 7 // 2 = 3. 0 // 2 = 0.
    # 7 // -2: fmod 1, (7 - 1) / -2 = -3, signs differ -> -4. 0 // -2 keeps the sign of 0 / -2: -0.
    result = div_floor_f32(f32s(-7.0, 7.0, 0.0), np.float32(2.0))
    assert result.tolist() == [-4.0, 3.0, 0.0]
    negative = div_floor_f32(f32s(7.0, 0.0), np.float32(-2.0))
    assert negative[0] == -4.0 and np.signbit(negative[1])


# --- bad input -------------------------------------------------------------------------------


def test_bad_parameters_raise_clear_errors() -> None:
    with pytest.raises(NotImplementedError, match="symmetric"):
        MinMaxObserver(qscheme="per_tensor_symmetric", reduce_range=True)
    with pytest.raises(NotImplementedError, match="per-tensor qscheme"):
        MinMaxObserver(qscheme="per_channel_affine")
    with pytest.raises(ValueError, match="include 0"):
        MinMaxObserver(quant_min=1, quant_max=10)
    with pytest.raises(ValueError, match="unknown qscheme"):
        MinMaxObserver(qscheme="per_tensor_cubic")
    with pytest.raises(ValueError, match="bins"):
        HistogramObserver(bins=0)


def test_bad_inputs() -> None:
    with pytest.raises(IndexError, match="ch_axis 2"):
        PerChannelMinMaxObserver(ch_axis=2).observe(np.zeros((2, 3), np.float32))
    with pytest.raises(IndexError, match="at least 2 dims"):
        PerChannelMinMaxObserver().observe(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="complex"):
        MinMaxObserver().observe(np.zeros(3, np.complex64))
    with pytest.raises(TypeError, match="float32"):
        HistogramObserver().observe(np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="NaN"):
        HistogramObserver().observe(f32s(1.0, np.nan))
    per_channel = PerChannelMinMaxObserver()
    per_channel.observe(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="saw 2 channels before, now 3"):
        per_channel.observe(np.zeros((3, 3), np.float32))


def test_empty_and_infinite_inputs_are_ignored_where_torch_ignores_them() -> None:
    obs = HistogramObserver(bins=4)
    obs.observe(np.zeros((0, 3), np.float32))
    obs.observe(f32s(np.inf, -np.inf))  # only infinities: nothing left to observe
    assert obs.min_val == np.inf
    obs.observe(f32s(np.inf, 1.0, 3.0))
    assert (obs.min_val, obs.max_val) == (1.0, 3.0)


def test_nan_sticks_in_minmax_and_gives_nan_scale() -> None:
    # torch: min/max become NaN; scale NaN (quiet NaN 0x7FC00000 for a 0-d result); zp: NaN
    # converts to INT32_MIN, 0 - INT32_MIN wraps to INT32_MIN, clamped to qmin 0.
    obs = MinMaxObserver()
    obs.observe(f32s(1.0, np.nan))
    obs.observe(f32s(2.0))
    scale, zp = obs.calculate_qparams()
    assert scale.view(np.uint32).tolist() == [0x7FC00000] and zp.tolist() == [0]


# --- against torch -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("MinMaxObserver", {}),
        ("MinMaxObserver", {"dtype": "qint8", "qscheme": "per_tensor_symmetric"}),
        ("MovingAverageMinMaxObserver", {"averaging_constant": 0.3, "reduce_range": True}),
        ("PerChannelMinMaxObserver", {"dtype": "qint8", "qscheme": "per_channel_symmetric", "ch_axis": 1}),
        ("MovingAveragePerChannelMinMaxObserver", {"quant_min": 0, "quant_max": 127}),
        ("HistogramObserver", {"reduce_range": True}),
        ("HistogramObserver", {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "bins": 256}),
    ],
)
def test_matches_torch_on_batches_of_different_ranges(name: str, kwargs: dict) -> None:
    torch = pytest.importorskip("torch")
    import quantspec.reference.observers as ours
    from quantspec.conformance.checks.observers import torch_observer

    rng = np.random.default_rng(7)
    batches = [
        (rng.standard_normal((4, 6, 5, 5)) * scale + shift).astype(np.float32)
        for scale, shift in ((1.0, 0.0), (3.0, 1.0), (0.5, -2.0))
    ]
    expected = getattr(ours, name)(**kwargs)
    actual = torch_observer(name, **kwargs)
    for batch in batches:
        expected.observe(batch)
        actual(torch.from_numpy(batch.copy()))
    scale, zp = expected.calculate_qparams()
    torch_scale, torch_zp = actual.calculate_qparams()
    assert np.array_equal(scale.view(np.uint32), torch_scale.numpy().view(np.uint32))
    assert np.array_equal(zp, torch_zp.numpy().astype(np.int64))


def test_histogram_matches_scripted_torch_observer() -> None:
    # Graph mode (prepare_jit) runs observers as TorchScript; their arithmetic is the eager one.
    torch = pytest.importorskip("torch")
    import torch.ao.quantization.observer as observers

    rng = np.random.default_rng(11)
    batches = [(rng.standard_t(2, 3000) * s).astype(np.float32) for s in (1.0, 4.0)]
    scripted = torch.jit.script(observers.HistogramObserver(reduce_range=True))
    ours = HistogramObserver(reduce_range=True)
    for batch in batches:
        scripted(torch.from_numpy(batch.copy()))
        ours.observe(batch)
    assert np.array_equal(ours.histogram, scripted.histogram.numpy())
    scale, zp = ours.calculate_qparams()
    torch_scale, torch_zp = scripted.calculate_qparams()
    assert scale.view(np.uint32).tolist() == torch_scale.numpy().view(np.uint32).tolist()
    assert zp.tolist() == torch_zp.tolist()


def test_aten_kernels_match_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for n in (5, 8, 100, 2048, 20000):
        x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
        assert cascade_sum_f32(x) == torch.from_numpy(x).sum().item()
    edges = torch.linspace(torch.tensor(-1.3), torch.tensor(7.1), 2049).numpy()
    assert np.array_equal(linspace_f32(np.float32(-1.3), np.float32(7.1), 2049), edges)
    x = rng.standard_normal(5000).astype(np.float32)
    assert np.array_equal(histc_f32(x, 64, -1.5, 2.0), torch.histc(torch.from_numpy(x), 64, min=-1.5, max=2.0).numpy())
    b = np.float32(0.37)
    expected = torch.div(torch.from_numpy(x), float(b), rounding_mode="floor").numpy()
    assert np.array_equal(div_floor_f32(x, b), expected)


RESNET20 = "/work/shared/data/models/resnet20-12fca82f.th"
CIFAR_CALIB = "/work/shared/data/cifar10/calib"


def test_resnet20_calibration_every_activation_observer_matches_reference() -> None:
    """Whole model: what each of ResNet-20's 30 activation observers sees during graph-mode
    calibration (prepare_jit with get_default_qconfig('fbgemm')'s weights and torch's
    RecordingObserver as the activation observer, real CIFAR images), fed to torch's
    HistogramObserver(reduce_range=True) (the fbgemm qconfig's activation observer; scripted
    and eager observers compute alike, test_histogram_matches_scripted_torch_observer) and
    to the reference's: equal qparams. One recording serves both sides, as in
    conformance/checks/calibration.py: two prepare_jit runs can see different float
    activations (thread scheduling)."""
    torch = pytest.importorskip("torch")
    import os

    if not (os.path.exists(RESNET20) and os.path.isdir(CIFAR_CALIB)):
        pytest.skip("the shared ResNet-20 checkpoint or CIFAR calibration images are not available")
    from torch.ao.quantization import QConfig, prepare_jit
    from torch.ao.quantization import get_default_qconfig as torch_default_qconfig
    from torch.ao.quantization.observer import RecordingObserver

    from quantspec.conformance.checks.calibration import recorded_observers
    from quantspec.production.data import ImageFolder, cifar_transform
    from quantspec.production.environment import fbgemm_engine, known_deprecations_silenced
    from quantspec.production.zoo.cifar_resnet import cifar_resnet20, load_checkpoint

    model = load_checkpoint(cifar_resnet20(), RESNET20).eval()
    images = [
        torch.from_numpy(x) for x, _ in ImageFolder(CIFAR_CALIB, cifar_transform(), limit=16).batches(8, progress=False)
    ]
    qconfig = torch_default_qconfig("fbgemm")
    recording = QConfig(activation=RecordingObserver.with_args(dtype=torch.quint8), weight=qconfig.weight)
    with fbgemm_engine(), known_deprecations_silenced(), torch.no_grad():
        recorded = prepare_jit(torch.jit.script(model), {"": recording})
        for batch in images:
            recorded(batch)
    activations = recorded_observers(recorded)  # the weights keep their own observers
    assert len(activations) == 30 and not any(r.is_weight for r in activations)
    for index, recording in enumerate(activations):
        ours, theirs = HistogramObserver(reduce_range=True), qconfig.activation()
        for tensor in recording.tensors:
            ours.observe(tensor)
            theirs(torch.from_numpy(tensor))
        scale, zp = ours.calculate_qparams()
        torch_scale, torch_zp = theirs.calculate_qparams()
        assert scale.view(np.uint32).tolist() == torch_scale.numpy().view(np.uint32).tolist(), index
        assert zp.tolist() == torch_zp.tolist(), index

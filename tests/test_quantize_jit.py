"""production.quantize_jit, qconfig_dict resolution and save/load (torch 2.13/2.14, fbgemm)."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn
from torch.ao.quantization import get_default_qconfig, prepare_jit

from quantspec.production import load, quantize_jit, save
from quantspec.production.environment import (
    KNOWN_DEPRECATIONS,
    fbgemm_engine,
    known_deprecations_silenced,
    silenced_in_workers,
)
from quantspec.production.qconfig_dict import check_qconfig_dict, float_modules, resolve_qconfig
from quantspec.production.quantize import TracedFallbackWarning, node_kinds
from quantspec.production.zoo import build, qconfig_dict, randomize

QCONFIG = get_default_qconfig("fbgemm")


def calibrate(model: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> None:
    for batch in batches:
        model(batch)


def batches(count: int = 2, shape: tuple[int, ...] = (2, 3, 16, 16), seed: int = 7) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(count)]


def island_net() -> nn.Module:
    # stem(conv-bn-relu), island(conv-bn-relu), body(conv-bn), act, ..., fc1, relu, fc2
    return build("island_net", width=0.5)


def other_engine() -> str:
    """An engine other than fbgemm the caller might have set (x86 is torch's default)."""
    engines = [e for e in torch.backends.quantized.supported_engines if e not in ("fbgemm", "none")]
    if not engines:
        pytest.skip("no quantized engine besides fbgemm in this torch build")
    return engines[0]


@pytest.fixture
def caller_engine():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = other_engine()
    yield torch.backends.quantized.engine
    torch.backends.quantized.engine = previous


# --- engine pinning -------------------------------------------------------------------


def test_engine_is_fbgemm_inside_and_restored_after(caller_engine: str) -> None:
    seen = []

    def spy(model: torch.jit.ScriptModule, data: list[torch.Tensor]) -> None:
        seen.append(torch.backends.quantized.engine)
        calibrate(model, data)

    quantize_jit(island_net(), qconfig_dict("island_net"), spy, (batches(),))
    assert seen == ["fbgemm"]
    assert torch.backends.quantized.engine == caller_engine


def test_engine_restored_when_calibration_fails(caller_engine: str) -> None:
    def broken(model: torch.jit.ScriptModule) -> None:
        raise RuntimeError("calibration data missing")

    with pytest.raises(RuntimeError, match="calibration data missing"):
        quantize_jit(island_net(), None, broken)
    assert torch.backends.quantized.engine == caller_engine


def test_engine_restored_when_qconfig_dict_is_bad(caller_engine: str) -> None:
    with pytest.raises(KeyError):
        quantize_jit(island_net(), {"": QCONFIG, "nope": None}, calibrate, (batches(),))
    assert torch.backends.quantized.engine == caller_engine


def test_same_model_as_torchs_quantize_jit_under_fbgemm() -> None:
    from torch.ao.quantization import quantize_jit as torch_quantize_jit

    model, data = island_net(), batches()
    ours = quantize_jit(model, qconfig_dict("island_net"), calibrate, (data,))
    with known_deprecations_silenced(), fbgemm_engine():
        theirs = torch_quantize_jit(torch.jit.script(model), qconfig_dict("island_net"), calibrate, [data])
    assert node_kinds(ours) == node_kinds(theirs)
    x = batches(1, seed=11)[0]
    assert np.array_equal(ours(x).numpy().view(np.int32), theirs(x).numpy().view(np.int32))


def test_calibrate_is_required() -> None:
    with pytest.raises(TypeError, match="calibrate must be a function"):
        quantize_jit(island_net())


# --- qconfig_dict ---------------------------------------------------------------------


def test_typo_in_qconfig_dict_names_the_closest_submodules() -> None:
    # "stem.O" (letter O) is one edit from "stem.0"; torch itself would ignore the key.
    with pytest.raises(KeyError, match=re.escape("'stem.O' names no submodule of IslandNet (closest: ")) as error:
        quantize_jit(island_net(), {"": QCONFIG, "stem.O": None}, calibrate, (batches(),))
    assert "'stem.0'" in str(error.value)


def test_qconfig_dict_rejects_non_string_keys_and_bad_values() -> None:
    model = island_net()
    with pytest.raises(TypeError, match="keys must be submodule names"):
        check_qconfig_dict(model, {0: QCONFIG})
    with pytest.raises(TypeError, match=r"qconfig_dict\['fc1'\] must be a QConfig or None, got str"):
        check_qconfig_dict(model, {"fc1": "fbgemm"})


def test_resolution_rule_by_hand() -> None:
    # "" -> QCONFIG; island -> None and its children inherit None, except island.0 which has
    # its own key; act -> None; fc2 -> None; everything else inherits "".
    model = island_net()
    resolved = resolve_qconfig(model, {"": QCONFIG, "island": None, "island.0": QCONFIG, "act": None, "fc2": None})
    assert resolved["island.0"] is QCONFIG
    assert resolved["island.1"] is None and resolved["island.2"] is None
    assert resolved["stem.0"] is QCONFIG and resolved["fc1"] is QCONFIG
    assert float_modules(model, {"fc1": QCONFIG}) == [name for name, _ in model.named_modules() if name != "fc1"]


def weight_observed_modules(model: nn.Module, qdict: dict) -> set[str]:
    """Modules whose weight torch's prepare_jit observes (it attaches `_observer_N`
    submodules to the module owning the weight)."""
    with known_deprecations_silenced(), fbgemm_engine():
        prepared = prepare_jit(torch.jit.script(model), qdict)
    return {
        name
        for name, module in prepared.named_modules()
        if hasattr(module, "weight") and any(child.startswith("_observer_") for child, _ in module.named_children())
    }


@pytest.mark.parametrize(
    "qdict",
    [
        {"": QCONFIG, "island": None, "act": None, "fc2": None},
        {"": QCONFIG, "island": None, "island.0": QCONFIG},
        {"stem": QCONFIG, "fc2": QCONFIG},
        {"": None, "body.0": QCONFIG},
        {"": QCONFIG},
    ],
    ids=["exclusions", "child-overrides-none", "no-global", "global-none", "global"],
)
def test_resolution_matches_which_weights_torch_observes(qdict: dict) -> None:
    assert_resolution_matches_torch(island_net(), qdict)


def test_resolution_matches_torch_in_nested_blocks() -> None:
    # layer2 float except its first block's conv1; layer3.1 float; the rest quantized.
    qdict = {"": QCONFIG, "layer2": None, "layer2.0.conv1": QCONFIG, "layer3.1": None}
    model = build("resnet18", width=0.125)
    assert_resolution_matches_torch(model, qdict)
    assert "layer2.0.conv2" in float_modules(model, qdict) and "layer2.0.conv1" not in float_modules(model, qdict)


def assert_resolution_matches_torch(model: nn.Module, qdict: dict) -> None:
    resolved = resolve_qconfig(model, qdict)
    ours = {
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and resolved[name] is not None
    }
    assert ours == weight_observed_modules(model, qdict)


def test_none_exclusions_leave_float_modules() -> None:
    converted = quantize_jit(island_net(), qconfig_dict("island_net"), calibrate, (batches(),))
    kinds = node_kinds(converted)
    # island.0 stays a float conv, fc2 a float linear, act a float relu; stem.0 / body.0
    # become quantized convs (stem fused with its ReLU), fc1 + relu a quantized linear_relu.
    assert kinds["aten::conv2d"] == 1 and kinds["aten::linear"] == 1
    assert kinds["quantized::conv2d_relu"] == 1 and kinds["quantized::conv2d"] == 1
    assert kinds["quantized::linear_relu"] == 1
    assert kinds["aten::relu"] + kinds["aten::relu_"] == 2  # island.2 and act, on floats


# --- scripting and tracing ------------------------------------------------------------


class Unscriptable(nn.Module):
    """Scripting fails on the Python-only `getattr` with a runtime string; tracing records
    the conv it resolves to."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.which = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.which)(x)


def test_unscriptable_module_without_example_inputs_is_an_error() -> None:
    with pytest.raises(TypeError, match="cannot script Unscriptable .*pass example_inputs"):
        quantize_jit(Unscriptable(), None, calibrate, (batches(),))


def test_unscriptable_module_is_traced_with_example_inputs() -> None:
    with pytest.warns(TracedFallbackWarning, match="could not script Unscriptable"):
        converted = quantize_jit(Unscriptable(), None, calibrate, (batches(),), example_inputs=(batches(1)[0],))
    assert node_kinds(converted)["quantized::conv2d"] == 1
    assert converted(batches(1)[0]).shape == (2, 8, 14, 14)


def test_scriptable_module_is_scripted_even_with_example_inputs() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TracedFallbackWarning)
        converted = quantize_jit(island_net(), None, calibrate, (batches(),), example_inputs=(batches(1)[0],))
    # Scripting keeps F.adaptive_avg_pool2d's shape check (a prim::If); tracing drops it.
    assert node_kinds(converted)["prim::If"] == 1


def test_inplace_converts_the_callers_script_module_and_only_then() -> None:
    scripted = torch.jit.script(island_net())
    before = {key: value.clone() for key, value in scripted.state_dict().items()}
    copy = quantize_jit(scripted, None, calibrate, (batches(),))
    assert copy is not scripted and scripted.state_dict().keys() == before.keys()
    assert all(torch.equal(value, before[key]) for key, value in scripted.state_dict().items())
    converted = quantize_jit(scripted, None, calibrate, (batches(),), inplace=True)
    assert converted is scripted and node_kinds(converted)["quantized::linear_relu"] == 1


def test_nn_module_weights_are_never_changed() -> None:
    model = island_net()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    quantize_jit(model, None, calibrate, (batches(),), inplace=True)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


# --- save / load ----------------------------------------------------------------------


class DepthwiseNet(nn.Module):
    """conv-BN-ReLU, 3x3 depthwise conv (the kernel x86/oneDNN would replace), pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.depthwise(self.stem(x))), 1))


def test_save_load_round_trip_is_bit_identical(tmp_path, caller_engine: str) -> None:
    converted = quantize_jit(randomize(DepthwiseNet()), None, calibrate, (batches(),))
    path = tmp_path / "depthwise.pt"
    save(converted, path)
    loaded = load(path)
    assert torch.backends.quantized.engine == caller_engine
    x = batches(1, seed=3)[0]
    # The outputs are dequantized int8 (scale * (q - zp)): equal floats <=> equal integers.
    expected, actual = converted(x).numpy(), loaded(x).numpy()
    assert np.array_equal(expected.view(np.int32), actual.view(np.int32))


def test_save_and_load_reject_bad_arguments(tmp_path) -> None:
    with pytest.raises(TypeError, match="expects a TorchScript module"):
        save(island_net(), tmp_path / "float.pt")
    with pytest.raises(FileNotFoundError, match="no TorchScript model file"):
        load(tmp_path / "missing.pt")


# --- warnings -------------------------------------------------------------------------


def known(message: str) -> bool:
    return any(re.match(pattern, message) for pattern in KNOWN_DEPRECATIONS)


def test_known_deprecations_silenced_only_inside(tmp_path) -> None:
    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        converted = quantize_jit(island_net(), None, calibrate, (batches(),))
        save(converted, tmp_path / "m.pt")
        load(tmp_path / "m.pt")
    assert [str(w.message) for w in inside if known(str(w.message))] == []
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        torch.jit.script(island_net())
    assert any(known(str(w.message)) for w in outside), "torch.jit.script no longer warns outside our calls"


def test_other_warnings_still_surface() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with known_deprecations_silenced():
            warnings.warn("`torch.jit.script` is deprecated", DeprecationWarning)
            warnings.warn("something else", UserWarning)
    assert [str(w.message) for w in caught] == ["something else"]


def _warn(message: str) -> str:
    warnings.warn(message, FutureWarning)  # torch 2.14's category for `torch.jit.script`
    return message


def test_worker_entry_points_silence_exactly_the_known_notices() -> None:
    # A spawned process or a Dask worker starts with Python's default filters, not the CLI's:
    # without this, `conform --jobs 2` on torch 2.14.1 printed torch.jit.script's FutureWarning.
    from quantspec.conformance.runner import run_named_check
    from quantspec.production.verify_data import verify_chunk

    quiet = silenced_in_workers(_warn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert quiet("`torch.jit.script` is deprecated. Please switch to `torch.compile`.").startswith("`torch")
        quiet("something else")
    assert [str(w.message) for w in caught] == ["something else"]
    for entry_point in (run_named_check, verify_chunk):  # what ordered_map sends to workers
        assert entry_point.__wrapped__ and pickle.loads(pickle.dumps(entry_point)) is entry_point

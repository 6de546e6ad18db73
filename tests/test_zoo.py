"""The model zoo: every model scripts, converts with quantize_jit and runs; the CIFAR
ResNet-20 loads the shared pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from quantize_helpers import fast_qconfig_dict, run_once

from quantspec.production import quantize_jit
from quantspec.production.quantize import node_kinds
from quantspec.production.zoo import ZOO, build, cifar_resnet20, load_checkpoint, qconfig_dict
from quantspec.production.zoo.node_kinds import input_size

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESNET20 = DATA / "models" / "resnet20-12fca82f.th"

def tiny_input(name: str, batch: int = 1) -> torch.Tensor:
    size = input_size(name)
    return torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_scripts_converts_and_runs(name: str) -> None:
    model = build(name, num_classes=7, width=0.25 if name.startswith("cifar") else 0.125)
    x = tiny_input(name)
    converted = quantize_jit(torch.jit.script(model), fast_qconfig_dict(name), run_once, (x,))
    kinds = node_kinds(converted)
    assert kinds["quantized::conv2d"] + kinds["quantized::conv2d_relu"] > 0, dict(kinds)
    out = converted(x)
    assert out.shape == (1, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()


# Parameter counts torchvision publishes for its definitions (weights metadata "num_params";
# GoogLeNet without aux heads) and akamaster's CIFAR ResNets (README: 0.27 M, 0.85 M).
PUBLISHED_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "shufflenet_v2": 2_278_604,
    "googlenet": 6_624_904,
    "squeezenet": 1_235_496,
    "cifar_resnet20": 269_722,
    "cifar_resnet56": 853_018,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_full_width_models_have_the_published_parameter_counts(name: str) -> None:
    classes = 10 if name.startswith("cifar") else 1000
    assert sum(p.numel() for p in ZOO[name](num_classes=classes).parameters()) == PUBLISHED_PARAMETERS[name]


def test_build_is_deterministic_and_bn_statistics_are_not_trivial() -> None:
    first, again, other = (build("resnet18", width=0.125, seed=s) for s in (0, 0, 1))
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert not torch.equal(first.fc.weight, other.fc.weight)
    bn = first.layer2[0].bn1
    assert bn.running_var.std() > 0.01 and bn.running_mean.abs().max() > 0.01


def test_build_rejects_unknown_models_and_bad_widths() -> None:
    with pytest.raises(KeyError, match="unknown zoo model 'resnet19'"):
        build("resnet19")
    with pytest.raises(ValueError, match="width multiplier must be > 0, got 0"):
        build("resnet18", width=0)
    with pytest.raises(ValueError, match="option A needs a multiple of 4"):
        build("cifar_resnet20", width=0.1)


@pytest.mark.parametrize("name", ["cifar_resnet20", "island_net"])
def test_debug_convert_runs(name: str) -> None:
    model = build(name, width=0.25 if name.startswith("cifar") else 0.5)
    x = tiny_input(name, batch=2)
    converted = quantize_jit(model, qconfig_dict(name), run_once, (x,), debug=True)
    kinds = node_kinds(converted)
    # debug keeps float convs between quantize/dequantize pairs instead of quantized kernels.
    assert kinds["quantized::conv2d"] == 0 and kinds["aten::conv2d"] > 0 and kinds["aten::quantize_per_tensor"] > 0
    assert converted(x).detach().shape == (2, 10)


def cifar_images(split: str, per_class: int) -> tuple[torch.Tensor, np.ndarray]:
    from PIL import Image

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in (DATA / "cifar10" / split).iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg"))[:per_class]:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"), np.float32) / 255.0
            images.append(((pixels - mean) / std).transpose(2, 0, 1))
            labels.append(label)
    return torch.from_numpy(np.stack(images)), np.array(labels)


@pytest.mark.skipif(not RESNET20.is_file(), reason="shared pretrained checkpoint not present (../shared/data)")
def test_cifar_resnet20_checkpoint_loads_and_quantizes() -> None:
    model = load_checkpoint(cifar_resnet20(), RESNET20)
    calib, _ = cifar_images("calib", 4)
    test, labels = cifar_images("test", 5)
    with torch.no_grad():
        float_pred = model(test).argmax(1).numpy()
    converted = quantize_jit(model, None, run_once, (calib,))
    int8_pred = converted(test).argmax(1).numpy()
    # README: 81% float top-1 on this test set; 50 images -> at least 30 right, and the
    # int8 model (81.01%) agrees with float on nearly all of them.
    assert (float_pred == labels).sum() >= 30
    assert (int8_pred == float_pred).sum() >= 45
    kinds = node_kinds(converted)
    assert kinds["aten::pad"] == 2  # the two option-A shortcuts stay float islands


def test_load_checkpoint_rejects_a_non_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.th"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="expected a dict with a 'state_dict' entry"):
        load_checkpoint(cifar_resnet20(), path)

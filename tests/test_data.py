"""The ImageFolder loader on tiny trees the tests draw themselves with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantspec.production.data import EvalTransform, ImageFolder, center_crop, cifar_transform, resize_shorter_side


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Classes "cat" (2 images) and "ant" (1 image), 2x2 PNGs (lossless, so pixels survive)."""
    _save(tmp_path / "cat" / "b.png", np.full((2, 2, 3), 255))
    _save(tmp_path / "cat" / "a.png", np.zeros((2, 2, 3)))
    _save(tmp_path / "ant" / "x.png", np.full((2, 2, 3), 51))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    return tmp_path


def test_labels_follow_sorted_class_folders(tree: Path) -> None:
    data = ImageFolder(tree, cifar_transform())
    assert data.classes == ["ant", "cat"]
    # ant/x.png -> 0; cat/a.png, cat/b.png -> 1 (files sorted by name; notes.txt is skipped)
    assert [(p.name, label) for p, label in data.samples] == [("x.png", 0), ("a.png", 1), ("b.png", 1)]


def test_to_tensor_and_normalize(tree: Path) -> None:
    transform = EvalTransform(None, None, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    image, label = ImageFolder(tree, transform)[2]  # cat/b.png, all 255
    # 255/255 = 1.0; (1 - 0.5)/0.5 = 1, (1 - 0.25)/0.25 = 3, (1 - 0)/2 = 0.5
    assert label == 1 and image.dtype == np.float32 and image.shape == (3, 2, 2)
    assert np.array_equal(image[:, 0, 0], np.float32([1.0, 3.0, 0.5]))
    dark, _ = ImageFolder(tree, transform)[0]  # ant/x.png, all 51 -> 0.2
    # (0.2 - 0.5)/0.5 = -0.6 in float32 arithmetic
    expected = (np.float32(51) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    assert dark[0, 1, 1] == expected and abs(float(expected) + 0.6) < 1e-6


def test_batches_labels_and_progress_off(tree: Path) -> None:
    batches = list(ImageFolder(tree, cifar_transform()).batches(2, progress=False))
    assert [x.shape for x, _ in batches] == [(2, 3, 2, 2), (1, 3, 2, 2)]
    assert [y.tolist() for _, y in batches] == [[0, 1], [1]]


def test_per_class_and_limit(tree: Path) -> None:
    first = ImageFolder(tree, cifar_transform(), per_class=1)
    assert [(p.name, label) for p, label in first.samples] == [("x.png", 0), ("a.png", 1)]
    # limit 2 of 3: indices 0*3//2 = 0 and 1*3//2 = 1
    spread = ImageFolder(tree, cifar_transform(), limit=2)
    assert [p.name for p, _ in spread.samples] == ["x.png", "a.png"]


def test_resize_shorter_side_keeps_aspect() -> None:
    # 10x4 (w x h): shorter side 4 -> 2, longer int(2 * 10 / 4) = 5
    assert resize_shorter_side(Image.new("RGB", (10, 4)), 2).size == (5, 2)
    # 3x7: shorter 3 -> 2, longer int(2 * 7 / 3) = int(4.67) = 4
    assert resize_shorter_side(Image.new("RGB", (3, 7)), 2).size == (2, 4)


def test_center_crop_takes_the_middle() -> None:
    pixels = np.arange(25, dtype=np.uint8).reshape(5, 5) * 10
    # (5 - 3) / 2 = 1: rows and columns 1..3
    cropped = np.asarray(center_crop(Image.fromarray(pixels), 3))
    assert cropped.tolist() == [[60, 70, 80], [110, 120, 130], [160, 170, 180]]
    # (6 - 3) / 2 = 1.5 rounds half to even -> 2, as torchvision's int(round(...))
    wide = np.arange(6, dtype=np.uint8)[None, :].repeat(3, 0)
    assert np.asarray(center_crop(Image.fromarray(wide), 3))[0].tolist() == [2, 3, 4]


def test_resize_then_crop_pipeline(tmp_path: Path) -> None:
    _save(tmp_path / "only" / "big.png", np.full((8, 12, 3), 255))
    image, _ = ImageFolder(tmp_path, EvalTransform(4, 3, (0, 0, 0), (1, 1, 1)))[0]
    # 12x8 -> 6x4 (shorter side 4) -> 3x3 crop; a constant image stays 1.0 everywhere
    assert image.shape == (3, 3, 3) and np.all(image == 1.0)


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere", cifar_transform())
    with pytest.raises(ValueError, match="no class sub-directories"):
        ImageFolder(tmp_path, cifar_transform())
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class holds no images"):
        ImageFolder(tmp_path, cifar_transform())


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "c" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"definitely not a jpeg")
    data = ImageFolder(tmp_path, cifar_transform())
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        data[0]


def test_mixed_sizes_need_a_resize(tmp_path: Path) -> None:
    _save(tmp_path / "c" / "a.png", np.zeros((2, 2, 3)))
    _save(tmp_path / "c" / "b.png", np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="b.png is 2x3"):
        list(ImageFolder(tmp_path, cifar_transform()).batches(2, progress=False))


def test_bad_arguments(tree: Path) -> None:
    with pytest.raises(ValueError, match="crop=0"):
        EvalTransform(None, 0)
    with pytest.raises(ValueError, match="larger than the image"):
        ImageFolder(tree, EvalTransform(None, 3))[0]
    with pytest.raises(ValueError, match="per_class=0"):
        ImageFolder(tree, cifar_transform(), per_class=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        next(ImageFolder(tree, cifar_transform()).batches(0))

"""Labelled images from an ImageFolder tree, with the usual evaluation transforms, in NumPy.

The layout is torchvision's ImageFolder convention, the one users keep ImageNet in:
`root/<class>/<image>`, one folder per class; class folders in sorted order give labels
0, 1, 2, ... Images are read with Pillow; the transforms are torchvision's evaluation
pipeline (`Resize(shorter side)`, `CenterCrop`, `ToTensor`, `Normalize`) written with
Pillow and NumPy, since torchvision is not available beside our torch.

>>> transform = cifar_transform()
>>> transform.resize is None and transform.crop is None
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

# torchvision's IMG_EXTENSIONS: the files an ImageFolder tree is allowed to hold as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The shared CIFAR-10 checkpoints were trained with the ImageNet statistics (data README).
CIFAR_MEAN = IMAGENET_MEAN
CIFAR_STD = IMAGENET_STD


@dataclass(frozen=True)
class EvalTransform:
    """Evaluation preprocessing: optional resize and center crop, then [0, 1] and normalize.

    Attributes:
        resize: the shorter side is scaled to this many pixels (bilinear, antialiased, as
            torchvision's `Resize(int)` on PIL images), or None to keep the size.
        crop: the side of the square center crop, or None for no crop.
        mean, std: per-channel normalization, applied in float32 as `(x - mean) / std`.
    """

    resize: Optional[int]
    crop: Optional[int]
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}={value!r}: expected a positive int or None")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean {self.mean!r} and std {self.std!r}: expected three values each (RGB)")
        if min(self.std) <= 0:
            raise ValueError(f"std {self.std!r}: expected positive values")

    def __call__(self, image: Image.Image) -> np.ndarray:
        """The image as a normalized float32 CHW array."""
        image = image.convert("RGB")
        if self.resize is not None:
            image = resize_shorter_side(image, self.resize)
        if self.crop is not None:
            image = center_crop(image, self.crop)
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255)  # ToTensor: HWC uint8 -> [0, 1]
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def imagenet_transform(resize: int = 256, crop: int = 224) -> EvalTransform:
    """The standard ImageNet evaluation transform: resize 256, center crop 224, normalize."""
    return EvalTransform(resize, crop, IMAGENET_MEAN, IMAGENET_STD)


def cifar_transform() -> EvalTransform:
    """CIFAR-10 (32x32): no resize or crop, just to [0, 1] and normalize (data README)."""
    return EvalTransform(None, None, CIFAR_MEAN, CIFAR_STD)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is `size`, keeping the aspect ratio.

    The longer side is `int(size * long / short)` (truncated), as torchvision computes it;
    Pillow's bilinear filter widens its support when downscaling (antialiasing).
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central `size` x `size` square; offsets rounded as torchvision's CenterCrop."""
    width, height = image.size
    if size > width or size > height:
        raise ValueError(f"center crop {size} is larger than the image ({width}x{height}); resize first")
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class ImageFolder:
    """The labelled images of an ImageFolder tree, optionally a deterministic subset.

    Args:
        root: the directory holding one sub-directory per class.
        transform: the preprocessing (see `EvalTransform`).
        per_class: keep only the first N images (sorted file names) of each class.
        limit: keep N images spread evenly over the (sorted) whole list, so every class
            is represented; applied after `per_class`.
    """

    def __init__(
        self,
        root: Union[str, Path],
        transform: EvalTransform,
        per_class: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.classes = _class_folders(self.root)
        samples = [s for label, name in enumerate(self.classes) for s in self._class_samples(label, name, per_class)]
        self.samples = _evenly_spaced(samples, limit)

    def _class_samples(self, label: int, name: str, per_class: Optional[int]) -> list[tuple[Path, int]]:
        files = sorted(p for p in (self.root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            expected = ", ".join(IMAGE_EXTENSIONS)
            raise ValueError(f"class folder {self.root / name} holds no images (expected {expected})")
        if per_class is not None:
            if per_class <= 0:
                raise ValueError(f"per_class={per_class}: expected a positive count")
            files = files[:per_class]
        return [(path, label) for path in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        return self.transform(read_image(path)), label

    def batches(
        self, batch_size: int, progress: bool = True, desc: str = "images"
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(float32 NCHW batch, int64 labels)` in order, with a tqdm progress bar."""
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size}: expected a positive int")
        with tqdm(total=len(self), desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for start in range(0, len(self), batch_size):
                indices = range(start, min(start + batch_size, len(self)))
                images, labels = zip(*(self[i] for i in indices))
                yield _stack(images, [self.samples[i][0] for i in indices]), np.asarray(labels, np.int64)
                bar.update(len(indices))


def read_image(path: Path) -> Image.Image:
    """Decode one image file, naming it if Pillow cannot.

    Images larger than Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485 pixels) are refused
    before they are decoded: a small file declaring a huge size (a decompression bomb)
    would otherwise take gigabytes. (Pillow itself only warns below twice that limit.)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def _class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-directories (expected {root}/<class>/<image>)")
    return classes


def _evenly_spaced(samples: list[tuple[Path, int]], limit: Optional[int]) -> list[tuple[Path, int]]:
    if limit is None or limit >= len(samples):
        return samples
    if limit <= 0:
        raise ValueError(f"limit={limit}: expected a positive count")
    return [samples[i * len(samples) // limit] for i in range(limit)]


def _stack(images: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    shape = images[0].shape
    for image, path in zip(images, paths):
        if image.shape != shape:
            raise ValueError(
                f"image {path} is {image.shape[2]}x{image.shape[1]} after the transform, but {paths[0]} is "
                f"{shape[2]}x{shape[1]}; give a resize/crop so a batch has one size"
            )
    return np.stack(images)

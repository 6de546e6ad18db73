"""The tiny float model and ImageFolder tree the CLI tests run on (test_cli_bad_input.py, and
through tests/conftest.py's quantized copy test_cli.py, test_engines*.py, test_verify_data.py),
and a PNG whose header declares a huge image."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHAPE = ["2", "3", "16", "16"]  # --input-shape N C H W of the calibration batches


class Tiny(torch.nn.Module):
    """conv-bn-relu, global average pool, linear: quantize_jit fuses conv+bn+relu."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))


def write_tiny_files(root: Path) -> Path:
    """root/tiny.pt (float TorchScript) and root/imgs/<class>/<n>.png: 2 classes x 3 random
    20x24 images. Returns `root`."""
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Tiny().eval()), str(root / "tiny.pt"))
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        folder = root / "imgs" / name
        folder.mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


def write_declared_size_png(path: Path, width: int, height: int) -> None:
    """A few-byte PNG (Pillow's 1x1 image) whose header declares `width` x `height` pixels:
    the decompression-bomb shape, refused when the header is read."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")  # the chunk's type; its CRC covers type and data
    data[start + 4:start + 12] = struct.pack(">II", width, height)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    path.write_bytes(bytes(data))

"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_quantized_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/cli_files.py's tiny model and images, plus tiny_int8.pt: `quantspec quantize` of
    it (fbgemm, --input-shape 2 3 16 16), made once per session. Tests take a copy
    (`tiny_quantized`), never this directory."""
    pytest.importorskip("torch")
    pytest.importorskip("PIL.Image")
    from cli_files import SHAPE, write_tiny_files

    from quantspec.production.cli import main

    root = write_tiny_files(tmp_path_factory.mktemp("tiny"))
    assert main(["quantize", str(root / "tiny.pt"), "--calib", str(root / "imgs"), "--out",
                 str(root / "tiny_int8.pt"), "--input-shape", *SHAPE]) == 0
    return root


@pytest.fixture(scope="module")
def tiny_quantized(tiny_quantized_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module's own copy of `tiny_quantized_master` (tiny.pt, imgs/, tiny_int8.pt), free to write into."""
    return Path(shutil.copytree(tiny_quantized_master, tmp_path_factory.mktemp("tiny_copy") / "files"))

"""The README's Python examples run as written, and print what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_examples() -> None:
    assert len(python_blocks()) >= 2


def test_profile_example_gives_the_commented_integers() -> None:
    namespace: dict = {}
    exec(python_blocks()[0], namespace)
    reference, x = namespace["reference"], namespace["x"]
    # torch 2.13 adds zp 1 before rounding: 1.5, 2.5, 3.5, 0.5 -> [2, 2, 4, 0] (ties to even);
    # 2.14 rounds first: 0, 2, 2, -0 (-> 0) then + 1 -> [1, 3, 3, 1].
    assert reference.quantize_per_tensor(x, 1.0, 1, "quint8").int_repr.tolist() == [2, 2, 4, 0]
    profile = namespace["get_profile"]("torch2.14-avx512_vnni-fbgemm")
    assert reference.quantize_per_tensor(x, 1.0, 1, "quint8", profile).int_repr.tolist() == [1, 3, 3, 1]


def test_model_example_runs_bit_exact(tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # it writes resnet18.qsm to the working directory
    namespace: dict = {}
    exec(python_blocks()[1], namespace)  # ends with its own bit-exactness assert
    assert np.array_equal(namespace["logits"], namespace["int8"](namespace["calib"][0]).numpy())

"""Per-profile budgets and the size scale of the conformance profiles (conformance.settings)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the check modules import torch

from hypothesis import given
from hypothesis import settings as hsettings

from quantspec.conformance import settings as conform_settings
from quantspec.conformance.checks._pool_cases import pool_shapes

MAPPING = {"smoke": 0.5, "default": 2.2, "thorough": 0.25}


def test_a_float_budget_applies_to_every_profile() -> None:
    # smoke 40 * 0.5 = 20 cases; default 600 * 0.5 = 300
    assert conform_settings.get("smoke", 0.5).max_examples == 20
    assert conform_settings.get("default", 0.5).max_examples == 300


def test_a_mapping_budget_is_read_per_profile() -> None:
    # smoke 40 * 0.5 = 20; default 600 * 2.2 = 1320; thorough 20000 * 0.25 = 5000
    assert conform_settings.get("smoke", MAPPING).max_examples == 20
    assert conform_settings.get("default", MAPPING).max_examples == 1320
    assert conform_settings.get("thorough", MAPPING).max_examples == 5000


def test_a_mapping_must_name_every_profile() -> None:
    with pytest.raises(ValueError, match=r"\['thorough'\]"):
        conform_settings.get("default", {"smoke": 1, "default": 2})


def test_the_size_scale_is_one_outside_a_run_and_under_smoke() -> None:
    assert conform_settings.size_scale() == 1
    with conform_settings.active("smoke"):
        assert conform_settings.size_scale() == 1
    with conform_settings.active("default"):
        assert conform_settings.size_scale() > 1
    assert conform_settings.size_scale() == 1
    with pytest.raises(ValueError, match="unknown conformance profile 'huge'"):
        with conform_settings.active("huge"):
            pass


def _batches(profile: str) -> set[int]:
    seen: set[int] = set()

    @hsettings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(pool_shapes())
    def draw(shape: tuple[int, int, int, int]) -> None:
        seen.add(shape[0])

    with conform_settings.active(profile):
        draw()
    return seen


def test_default_draws_bigger_batches_and_still_the_small_ones() -> None:
    # pool_shapes draws N in 1..2 under smoke, 1..2 * size_scale() under default.
    assert _batches("smoke") == {1, 2}
    default = _batches("default")
    assert {1, 2} <= default and max(default) > 2

"""Hypothesis settings profiles for the conformance runs.

Registered under "quantspec-<name>" so they never replace Hypothesis's own "default"
profile for other test suites in the same process. `max_examples` is per check,
multiplied by the check's `budget` for that profile.

* smoke:    derandomized, ~40 cases per check; all checks together well under a minute.
* default:  ~600 cases per check; >= 10^6 compared elements per op; a few minutes.
* thorough: 20000 cases per check; hours, not for CI.

Budgets (the case-count lever). A check's `budget` is one multiplier for every profile
or a mapping {profile: multiplier}. Ops whose cases are small (pooling windows, conv and
linear outputs, mean's reductions, folded weights) use a mapping: a small smoke budget
keeps CI fast, a larger default budget reaches 10^6 compared elements. Only the number
of cases changes, never their distribution, so every hard case (ties, tails, conv paths,
|acc| > 2^24, saturation) keeps its share at every profile.

Sizes (the elements-per-case lever). `size_scale()` multiplies the upper bound of the
batch dimension in the strategies of those ops (N of NCHW inputs, linear's first leading
dim; fold_conv_bn, which has no batch, its channel counts): 1 under smoke, larger under
default and thorough. A bigger batch repeats the per-image structure (channels, windows,
tails) that the hard cases live in, and small values stay drawable, so it adds elements
without thinning any hard case. The runner sets the active profile
with `active(profile)` while a check's cases are drawn; outside it the scale is 1.

In CI (env `CI` set to true) every profile is derandomized and uses no example database,
so its case sequence depends on the commit, not on a saved database. (Measured at
b8f5dc7: two `CI=true` default runs of every check, PYTHONHASHSEED 1 and 2, drew the same
cases and compared the same element counts; runs in earlier sessions had varied by a few
percent, not reproduced since. The default budgets keep a margin over 10^6 anyway.)
Locally "default" and "thorough" keep an example database, so a failure found once is
replayed first next time.

Same cases in every process. Hypothesis sometimes draws a constant it found in the source
of the local (not installed: an editable install's) modules loaded at that moment
(`HypothesisProvider._maybe_draw_constant`), so a check drawn in a `--jobs` worker, which
has loaded fewer of quantspec's modules, or after other checks drew other cases than in a
serial run. `load_every_module()`, called before every check, imports all of quantspec
first: a derandomized check then draws the same cases wherever and after whatever it runs.

Storage. Hypothesis's database and its caches go to `hypothesis_directory()` (env
`QUANTSPEC_HYPOTHESIS_DB`, else `$XDG_CACHE_HOME/quantspec/hypothesis`, else
`~/.cache/quantspec/hypothesis`), never to a `.hypothesis/` folder in the current directory:
the database is `<directory>/examples`, and `hypothesis_storage()` points Hypothesis's
other files (its constants cache) there while a run draws cases.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import pkgutil
from pathlib import Path
from typing import Iterator, Mapping, Union

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE_NAMES = ("smoke", "default", "thorough")
DIRECTORY_ENV = "QUANTSPEC_HYPOTHESIS_DB"
MAX_EXAMPLES = {"smoke": 40, "default": 600, "thorough": 20000}
SIZE_SCALE = {"smoke": 1, "default": 3, "thorough": 3}

Budget = Union[float, Mapping[str, float]]

_ACTIVE: contextvars.ContextVar[str] = contextvars.ContextVar("quantspec_conformance_profile", default="smoke")


def in_ci() -> bool:
    """Whether we run under CI (`CI=true`, as GitHub Actions and most CI systems set)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def hypothesis_directory() -> Path:
    """Where Hypothesis keeps quantspec's example database (`examples/`) and its caches:
    `$QUANTSPEC_HYPOTHESIS_DB`, else `$XDG_CACHE_HOME/quantspec/hypothesis`, else
    `~/.cache/quantspec/hypothesis`."""
    configured = os.environ.get(DIRECTORY_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "quantspec" / "hypothesis"


@contextlib.contextmanager
def hypothesis_storage() -> Iterator[Path]:
    """Point Hypothesis's storage (its constants cache, written even by database-free runs)
    at `hypothesis_directory()` inside the block; Hypothesis's own default after."""
    directory = hypothesis_directory()
    set_hypothesis_home_dir(directory)
    try:
        yield directory
    finally:
        set_hypothesis_home_dir(None)


@functools.cache
def load_every_module() -> None:
    """Import every module of quantspec.reference, .production and .conformance (once per
    process): the local constants Hypothesis draws from are then the same everywhere. A module
    whose optional extra is not installed (an ImportError naming a module outside quantspec,
    e.g. onnx for the onnx target) is skipped: no process of this installation can load it.
    An ImportError inside quantspec itself is a bug and propagates."""
    for name in ("quantspec.reference", "quantspec.production", "quantspec.conformance"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            try:
                importlib.import_module(module.name)
            except ImportError as error:
                if (error.name or "quantspec").partition(".")[0] == "quantspec":
                    raise


def hypothesis_name(profile: str) -> str:
    """The Hypothesis profile name of a conformance profile ("smoke" -> "quantspec-smoke")."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown conformance profile {profile!r}; expected one of {PROFILE_NAMES}")
    return f"quantspec-{profile}"


def register_profiles() -> None:
    """Register the three profiles with Hypothesis (idempotent)."""
    ci = in_ci()
    for name in PROFILE_NAMES:
        deterministic = ci or name == "smoke"
        settings.register_profile(
            hypothesis_name(name),
            max_examples=MAX_EXAMPLES[name],
            derandomize=deterministic,
            database=None if deterministic else DirectoryBasedExampleDatabase(hypothesis_directory() / "examples"),
            deadline=None,  # a torch call's first run (kernel JIT, thread pool) is slow
            # Cases are arrays of up to a few thousand elements built from a seed; drawing
            # them is deliberately heavier than Hypothesis's default budget.
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=not deterministic,
            # One shrunk failure per check: the runner reports one case to pin.
            report_multiple_bugs=False,
        )


def budget_for(profile: str, budget: Budget) -> float:
    """A check's case multiplier under `profile`: the float itself, or the mapping's entry
    (a mapping must name every profile, so no profile silently falls back to 1)."""
    hypothesis_name(profile)  # validates the name
    if not isinstance(budget, Mapping):
        return float(budget)
    missing = [name for name in PROFILE_NAMES if name not in budget]
    if missing:
        raise ValueError(
            f"budget {dict(budget)!r} names no multiplier for profile(s) {missing}; expected all of {PROFILE_NAMES}"
        )
    return float(budget[profile])


def get(profile: str, budget: Budget = 1.0) -> settings:
    """The settings of a conformance profile, with max_examples scaled by a check's budget."""
    register_profiles()
    base = settings.get_profile(hypothesis_name(profile))
    return settings(base, max_examples=max(1, round(base.max_examples * budget_for(profile, budget))))


@contextlib.contextmanager
def active(profile: str) -> Iterator[None]:
    """Make `profile` the one `size_scale()` reads while its cases are drawn."""
    hypothesis_name(profile)  # validates the name
    token = _ACTIVE.set(profile)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def size_scale() -> int:
    """The batch-size multiplier of the active profile (1 outside `active`, and under smoke)."""
    return SIZE_SCALE[_ACTIVE.get()]

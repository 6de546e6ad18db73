"""Hypothesis settings profiles for the conformance runs.

Registered under "quantspec-<name>" so they never replace Hypothesis's own "default"
profile for other test suites in the same process. `max_examples` is per check,
multiplied by the check's `budget`.

* smoke:    derandomized, ~40 cases per check; all checks together well under a minute.
* default:  ~600 cases per check, enough for >= 10^6 compared elements on the
            elementwise ops; a few minutes.
* thorough: 20000 cases per check; hours, not for CI.

In CI (env `CI` set to true) every profile is derandomized and uses no example database,
so a run is reproducible from the commit alone. Locally "default" and "thorough" keep
the database (.hypothesis/), so a failure found once is replayed first next time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_NAMES = ("smoke", "default", "thorough")
MAX_EXAMPLES = {"smoke": 40, "default": 600, "thorough": 20000}


def in_ci() -> bool:
    """Whether we run under CI (`CI=true`, as GitHub Actions and most CI systems set)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
            database=None if deterministic else settings.default.database,
            deadline=None,  # a torch call's first run (kernel JIT, thread pool) is slow
            # Cases are arrays of up to a few thousand elements built from a seed; drawing
            # them is deliberately heavier than Hypothesis's default budget.
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=not deterministic,
            # One shrunk failure per check: the runner reports one case to pin.
            report_multiple_bugs=False,
        )


def get(profile: str, budget: float = 1.0) -> settings:
    """The settings of a conformance profile, with max_examples scaled by a check's budget."""
    register_profiles()
    base = settings.get_profile(hypothesis_name(profile))
    return settings(base, max_examples=max(1, round(base.max_examples * budget)))

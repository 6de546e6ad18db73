"""Ctrl-C at a chosen moment of a running `quantspec conform --profile smoke`, and what came of it.

Shared by tests/test_cli.py (a few tries) and benchmarks/interrupts.py (many).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

CONFORM = [sys.executable, "-m", "quantspec.production.cli", "conform", "--profile", "smoke"]
INTERRUPTED_LINE = "quantspec conform: interrupted"


SUMMARY_LINES = ("all checks bit-exact", "FAILED: ")  # the last line of a run that got to its end


@dataclass(frozen=True)
class Outcome:
    """How one interrupted run ended: its exit status, what it printed, and whether it had
    already run every check when the signal came (`late`: nothing left to interrupt)."""

    delay: float
    status: int
    stdout: str
    stderr: str

    @property
    def late(self) -> bool:
        return any(line.startswith(SUMMARY_LINES) for line in self.stdout.splitlines())

    @property
    def clean(self) -> bool:
        """Exit status 130 and the single line `quantspec conform: interrupted`: no traceback,
        no "Exception ignored" (an interrupt Python dropped)."""
        return self.status == 130 and self.stderr.strip() == INTERRUPTED_LINE


def start_conform(cwd: str) -> subprocess.Popen:
    """`quantspec conform --profile smoke` in the folder `cwd`, which also holds its Hypothesis
    folder (`cwd/hypothesis`); stdout and stderr piped."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", QUANTSPEC_HYPOTHESIS_DB=os.path.join(cwd, "hypothesis"))
    return subprocess.Popen(CONFORM, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interrupt(process: subprocess.Popen, delay: float, timeout: float = 120.0) -> Outcome:
    """Wait until `process` prints its first line (imports done, checks starting), `delay`
    seconds more, then send SIGINT; wait for it to end."""
    first = process.stdout.readline()
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=timeout)
    return Outcome(delay, process.returncode, first + stdout, stderr)

"""Load and run model files in child processes under a memory cap (RLIMIT_AS) and a timeout,
and sort what happened into outcome classes; shared by tests/test_model_file_fuzz.py and
benchmarks/fuzz_model_file.py.

A worker (`python tests/model_file_sandbox.py SEED MEMORY_BYTES`) runs the seed model once,
then reads model-file paths on stdin and answers one JSON line per file: what `load` and
`run` (on the seed's input) did. `Sandbox` drives one worker, restarting it after a hang
(killed at the timeout) or a crash.
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import subprocess
import sys
import tempfile
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from model_file_mutations import Mutation, seed_input  # noqa: E402

# What a worker reports.
REFUSED, SAME, CHANGED, SCRIPT_RAISED, INPUT_REFUSED = "refused", "same", "changed", "script raised", "input refused"
RUN_FAILED, RAW, MEMORY, HANG, CRASH = "run failed", "raw exception", "memory blow-up", "hang", "crash"

# Outcome classes of a mutated file.
OK_OUTCOMES = (
    "refused (ModelFileError)",
    "accepted, same output",
    "accepted re-sealed edit, changed output",
    "accepted, the program raised (ScriptException)",
    "accepted re-sealed edit, the seed input no longer fits",
)
BAD_OUTCOMES = (
    "raw exception",
    "memory blow-up",
    "hang",
    "crash",
    "structurally invalid file accepted",
    "changed output without re-sealing",
)
DEFAULT_MEMORY_CAP = 3 * 2**30
DEFAULT_TIMEOUT = 30.0
STARTUP_TIMEOUT = 120.0


# --- the worker (child process) ------------------------------------------------------------


def _worker(seed_path: str, memory_bytes: int) -> None:
    import resource

    from quantspec import reference

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    expected = reference.run(reference.load(seed_path), seed_input())
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(attempt(line.strip(), expected)), flush=True)


def attempt(path: str, expected: Any) -> dict:
    """What loading `path` and running it on the seed input did, as {"result", "detail"}."""
    from quantspec import reference
    from quantspec.reference.interpreter import ModelFileError, NodeError, ScriptException

    try:
        model = reference.load(path)
    except ModelFileError as error:
        return _report(REFUSED, error)
    except MemoryError as error:
        return _report(MEMORY, error)
    except Exception as error:
        return _report(RAW, error)
    try:
        output = reference.run(model, seed_input())
    except ScriptException as error:
        return _report(SCRIPT_RAISED, error)
    except (MemoryError, NodeError) as error:
        return _report(MEMORY if _caused_by_memory(error) else RUN_FAILED, error)
    except (TypeError, ValueError) as error:
        refused_input = traceback.extract_tb(error.__traceback__)[-1].name in ("_checked_input", "_as_list")
        return _report(INPUT_REFUSED if refused_input else RAW, error)
    except Exception as error:
        return _report(RAW, error)
    return {"result": SAME if _same(output, expected) else CHANGED, "detail": ""}


def _report(result: str, error: BaseException) -> dict:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return {"result": result, "detail": f"{type(error).__name__}{where}: {str(error)[:300]}"}


def _caused_by_memory(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, MemoryError):
            return True
        error = error.__cause__
    return False


def _same(output: Any, expected: Any) -> bool:
    return (
        isinstance(output, np.ndarray) and output.shape == expected.shape and output.dtype == expected.dtype
        and np.array_equal(output, expected, equal_nan=True)
    )


# --- the parent ----------------------------------------------------------------------------


class Sandbox:
    """One worker process; `attempt(path)` returns its report, or a hang or crash."""

    def __init__(self, seed_path: Path, memory_bytes: int = DEFAULT_MEMORY_CAP, timeout: float = DEFAULT_TIMEOUT):
        self.seed_path, self.memory_bytes, self.timeout = seed_path, memory_bytes, timeout
        self.process: Optional[subprocess.Popen] = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, __file__, str(self.seed_path), str(self.memory_bytes)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if _readline(process, STARTUP_TIMEOUT) != "ready\n":
            process.kill()
            raise RuntimeError(f"the sandbox worker did not start (exit code {process.wait()})")
        return process

    def attempt(self, path: Path) -> dict:
        self.process = self.process or self._start()
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        line = _readline(self.process, self.timeout)
        if not line:
            return self._dead(HANG if line is None else CRASH)
        return json.loads(line)

    def _dead(self, result: str) -> dict:
        self.process.kill()
        code = self._stop()
        return {"result": result, "detail": f"worker exit code {code}"}

    def _stop(self) -> int:
        """Close the worker's pipes (it exits at the end of its input) and wait for it."""
        try:
            self.process.stdin.close()
        except BrokenPipeError:  # it died
            pass
        code = self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process = None
        return code

    def close(self) -> None:
        if self.process:
            self._stop()


def _readline(process: subprocess.Popen, timeout: float) -> Optional[str]:
    """The worker's next line ("" if it died), or None when it says nothing for `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    return process.stdout.readline()


def classify(mutation: Mutation, report: dict) -> str:
    """The outcome class (OK_OUTCOMES or BAD_OUTCOMES) of a mutated file given its report."""
    result = report["result"]
    if result in (RAW, MEMORY, HANG, CRASH):
        return {RAW: "raw exception", MEMORY: "memory blow-up", HANG: "hang", CRASH: "crash"}[result]
    if result == REFUSED:
        return "refused (ModelFileError)"
    if mutation.must_refuse or result == RUN_FAILED:
        return "structurally invalid file accepted"
    if result == CHANGED:
        return "accepted re-sealed edit, changed output" if mutation.resealed else "changed output without re-sealing"
    return {
        SAME: "accepted, same output",
        SCRIPT_RAISED: "accepted, the program raised (ScriptException)",
        INPUT_REFUSED: "accepted re-sealed edit, the seed input no longer fits",
    }[result]


@dataclass
class FuzzReport:
    """Counts per outcome class, per mutation kind, and a few examples of each bad outcome."""

    counts: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, mutation: Mutation, report: dict) -> None:
        outcome = classify(mutation, report)
        self.counts[outcome] += 1
        self.by_mutation.setdefault(mutation.name.split(" at ")[0], Counter())[outcome] += 1
        if outcome in BAD_OUTCOMES and len(self.examples.setdefault(outcome, [])) < 5:
            self.examples[outcome].append(f"{mutation.name}: {report['detail']}")

    @property
    def bad(self) -> int:
        return sum(self.counts[outcome] for outcome in BAD_OUTCOMES)

    def format(self) -> str:
        lines = [f"{self.counts[o]:7d}  {o}" for o in OK_OUTCOMES + BAD_OUTCOMES]
        for outcome, examples in self.examples.items():
            lines += [f"{outcome}:"] + [f"    {example}" for example in examples]
        return "\n".join(lines)


def fuzz(seed_path: Path, mutations: Iterable[Mutation], workers: int = 2, **sandbox: Any) -> FuzzReport:
    """Write each mutation to a file, load and run it in `workers` sandboxes, and count outcomes."""
    report, lock = FuzzReport(), threading.Lock()
    jobs: queue.Queue = queue.Queue(maxsize=4 * workers)

    def work() -> None:
        box = Sandbox(seed_path, **sandbox)
        try:
            while (job := jobs.get()) is not None:
                path, mutation = job
                result = box.attempt(path)
                path.unlink()
                with lock:
                    report.add(mutation, result)
        finally:
            box.close()

    with tempfile.TemporaryDirectory(prefix="quantspec-fuzz-") as scratch:
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for index, mutation in enumerate(mutations):
            path = Path(scratch) / f"mutant{index}.qsm"
            path.write_bytes(mutation.data)
            jobs.put((path, mutation))
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()
    return report


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))

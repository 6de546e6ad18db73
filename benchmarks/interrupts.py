"""Ctrl-C is never lost: SIGINT at random moments of `quantspec conform --profile smoke`.

    python benchmarks/interrupts.py [--tries 50] [--max-delay 18] [--parallel 2] [--seed S]

Each try starts `quantspec conform --profile smoke` in a fresh process (in a scratch folder),
waits for its first output line (imports done, checks starting), sleeps a random delay in
[0, --max-delay) seconds (the smoke run's checks take about 20 s on a 2-core AMD EPYC with
two runs at a time), sends SIGINT and waits for the process to end. A try is clean when the
process exits 130 printing only "quantspec conform: interrupted" on stderr (no traceback, no
"Exception ignored"). Prints every other try (but those whose signal came after the run had
printed its summary line: nothing was left to interrupt), then how many tries exited 130.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sigint_probe import Outcome, interrupt, start_conform


def one_try(delay: float) -> Outcome:
    with tempfile.TemporaryDirectory() as scratch:
        return interrupt(start_conform(scratch), delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--max-delay", type=float, default=18.0, help="seconds after the run's first line")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--seed", type=int, help="seed of the delays (default: fresh)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    delays = [rng.uniform(0.0, args.max_delay) for _ in range(args.tries)]
    with ThreadPoolExecutor(args.parallel) as pool:
        outcomes = list(pool.map(one_try, delays))
    late = [outcome for outcome in outcomes if outcome.late]
    for outcome in outcomes:
        if not outcome.clean and not outcome.late:
            print(f"after {outcome.delay:.2f} s: exit {outcome.status}, stdout ends {outcome.stdout[-300:]!r}, "
                  f"stderr:\n{outcome.stderr}")
    exited = sum(outcome.status == 130 for outcome in outcomes)
    clean = sum(outcome.clean for outcome in outcomes)
    print(f"{exited} of {len(outcomes)} tries exited 130 ({clean} with just the one 'interrupted' line); "
          f"{len(late)} signals came after the run had checked everything (delays "
          f"{', '.join(f'{outcome.delay:.1f}' for outcome in late) or '-'} s)")


if __name__ == "__main__":
    main()

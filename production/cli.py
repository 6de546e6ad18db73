"""The `quantspec` command: one small function per verb, one parser builder.

Add a verb: write `_cmd_<verb>(args) -> int` and an `_add_<verb>(subparsers)` that
registers it with `set_defaults(handler=_cmd_<verb>)`, then list it in `build_parser`.
Heavy imports (torch, conformance) happen inside the verb, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

CONFORM_PROFILES = ("smoke", "default", "thorough")


def _add_conform(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "conform",
        help="check torch's quantized kernels against the reference, bit for bit",
        description="Run the per-op conformance checks under a Hypothesis settings profile. "
        "Exits 1 on any mismatch, vacuous check or error.",
    )
    parser.add_argument("--profile", choices=CONFORM_PROFILES, default="default", help="settings profile (default: default)")
    parser.add_argument("--ops", nargs="+", metavar="OP", help="only these checks (default: all registered)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.set_defaults(handler=_cmd_conform)


def _cmd_conform(args: argparse.Namespace) -> int:
    from conformance import runner
    from conformance.checks import select

    try:
        select(args.ops)
    except ValueError as error:
        print(f"quantspec conform: {error}", file=sys.stderr)
        return 2
    result = runner.run(args.ops, args.profile, json_path=args.json, out=sys.stdout)
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(prog="quantspec", description="The exact integer arithmetic of torch's int8 models.")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_conform(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `quantspec` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

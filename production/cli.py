"""The `quantspec` command: one small function per verb, one parser builder.

Add a verb: write `_cmd_<verb>(args) -> int` and an `_add_<verb>(subparsers)` that
registers it with `set_defaults(handler=_cmd_<verb>)`, then list it in `build_parser`.
Each verb imports what it needs (conformance, Hypothesis, ...) inside its function.
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


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="size, accuracy and latency of float, graph/eager/FX int8 variants on real data",
        description="Quantize the model every way torch can, evaluate each variant on an ImageFolder tree, "
        "time them interleaved (batch 1, one thread), check bit-exactness against the reference; "
        "print the table and write compare.json and compare.md to --out-dir.",
    )
    parser.add_argument("--model", required=True, metavar="CKPT_OR_SCRIPTED", help="checkpoint or unfrozen float TorchScript file")
    parser.add_argument("--arch", required=True, metavar="NAME", help="production.zoo architecture, e.g. cifar_resnet20")
    parser.add_argument("--data", required=True, metavar="DIR", help="evaluation images (ImageFolder layout)")
    parser.add_argument("--calib", required=True, metavar="DIR", help="calibration images (ImageFolder layout)")
    parser.add_argument("--calib-count", type=int, default=1000, metavar="N", help="calibration images (default 1000)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate on N images spread over the classes (default: all)")
    parser.add_argument("--out-dir", default="compare-out", metavar="DIR", help="where models and tables go (default compare-out)")
    parser.add_argument("--latency-repeats", type=int, default=100, metavar="N", help="timed rounds per variant (default 100)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw accuracy and latency bars (needs matplotlib)")
    parser.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from production.compare import compare

    try:
        result = compare(args.model, args.arch, args.data, args.calib, calib_count=args.calib_count, limit=args.limit,
                         out_dir=args.out_dir, latency_repeats=args.latency_repeats, plot=args.plot)
    except (OSError, ValueError, ImportError) as error:
        print(f"quantspec compare: {error}", file=sys.stderr)
        return 2
    print(result.text(), end="")
    print(f"wrote {args.out_dir}/compare.json and compare.md" + (f", {args.plot}" if args.plot else ""))
    return 0


def _add_inspect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="graph-mode Numeric Suite: per-node SQNR of an int8 model against its float model",
        description="Run the int8 model in the reference interpreter (exporting it first if it is TorchScript) and "
        "the float TorchScript model on the same images; print each quantized node's SQNR and max abs error "
        "and each layer's weight SQNR, worst first.",
    )
    parser.add_argument("int8", metavar="INT8.pt", help="int8 TorchScript model (quantize_jit output) or exported file")
    parser.add_argument("--float", required=True, dest="float_model", metavar="FLOAT.pt", help="the float TorchScript model (unfrozen gives module names)")
    parser.add_argument("--data", required=True, metavar="DIR", help="images (ImageFolder layout)")
    parser.add_argument("--limit", type=int, default=32, metavar="N", help="images to run (default 32)")
    parser.add_argument("--top", type=int, metavar="N", help="print only the N worst rows of each table")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw per-layer SQNR bars (needs matplotlib)")
    parser.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from production.numeric_suite import inspect

    try:
        report = inspect(args.int8, args.float_model, args.data, limit=args.limit, plot=args.plot)
    except (OSError, ValueError, ImportError) as error:
        print(f"quantspec inspect: {error}", file=sys.stderr)
        return 2
    print(report.text(args.top), end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report.as_dict(), handle, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(prog="quantspec", description="The exact integer arithmetic of torch's int8 models.")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_conform(subparsers)
    _add_compare(subparsers)
    _add_inspect(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `quantspec` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

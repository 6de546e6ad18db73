"""The `quantspec` command: one small function per verb, one parser builder.

Add a verb: write `_cmd_<verb>(args) -> int` (decorated with `_reports(...)`, the errors that
mean bad input) and an `_add_<verb>(subparsers)` that registers it with
`set_defaults(handler=_cmd_<verb>)`, then list it in `build_parser`.
Each verb imports what it needs (conformance, Hypothesis, ...) inside its function.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, Optional, Sequence

CONFORM_PROFILES = ("smoke", "default", "thorough")
Handler = Callable[[argparse.Namespace], int]


def _reports(*errors: type[BaseException], torch_errors: tuple[type[BaseException], ...] = ()) -> Callable[[Handler], Handler]:
    """A verb handler whose bad-input `errors` become one line on stderr and exit status 2;
    `torch_errors` (torch could not read or run the model) are shown as the model path and
    the error's most telling line."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except errors as error:
                return _fail(args.verb, error)
            except torch_errors as error:
                return _fail(args.verb, f"{args.model}: {_first_line(error)}")

        return run

    return wrap


def _add_conform(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "conform",
        help="check torch's quantized kernels against the reference, bit for bit",
        description="Run the per-op conformance checks under a Hypothesis settings profile. "
        "Exits 1 on any mismatch, vacuous check or error.",
    )
    parser.add_argument("--profile", choices=CONFORM_PROFILES, default="default", help="settings profile (default: default)")
    parser.add_argument("--ops", nargs="+", metavar="OP",
                        help="only these checks, e.g. conv2d add, or models for random whole models (default: all registered)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.set_defaults(handler=_cmd_conform)


@_reports(ValueError)
def _cmd_conform(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("hypothesis") is None:  # the test tooling is an extra, not a deployment need
        return _fail(args.verb, "needs Hypothesis: pip install 'quantspec[conform]'")
    from quantspec.conformance import runner
    from quantspec.conformance.checks import select

    select(args.ops)  # unknown check names: a ValueError naming them
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


@_reports(OSError, ValueError, ImportError)
def _cmd_compare(args: argparse.Namespace) -> int:
    from quantspec.production.compare import compare

    result = compare(args.model, args.arch, args.data, args.calib, calib_count=args.calib_count, limit=args.limit,
                     out_dir=args.out_dir, latency_repeats=args.latency_repeats, plot=args.plot)
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


@_reports(OSError, ValueError, ImportError)
def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from quantspec.production.numeric_suite import inspect

    report = inspect(args.int8, args.float_model, args.data, limit=args.limit, plot=args.plot)
    print(report.text(args.top), end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report.as_dict(), handle, indent=2)
    return 0


# --- quantize / export / verify ----------------------------------------------------------------

QCONFIG_PRESETS = ("fbgemm", "x86", "qnnpack", "default")
# verify --random draws images of this (C, H, W) when neither --input-shape nor the file says.
DEFAULT_IMAGE_SHAPE = (3, 224, 224)


def _add_quantize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="graph-mode post-training static quantization (fbgemm) of a float model, calibrated on images",
        description="Script (or load) the float model, calibrate it on an ImageFolder tree and convert it with "
        "production.quantize_jit (fbgemm pinned); write the int8 TorchScript model to --out.",
    )
    parser.add_argument("model", metavar="MODEL", help="float TorchScript file, or a checkpoint with --arch")
    parser.add_argument("--calib", required=True, metavar="DIR", help="calibration images (ImageFolder layout)")
    parser.add_argument("--out", required=True, metavar="OUT.pt", help="where the int8 TorchScript model goes")
    parser.add_argument("--qconfig", metavar="FILE.json", help='submodule name ("" = global) -> preset name or null '
                        f"(leave float); presets: {', '.join(QCONFIG_PRESETS)} (default: {{\"\": \"fbgemm\"}})")
    parser.add_argument("--input-shape", nargs=4, type=int, metavar=("N", "C", "H", "W"),
                        help="calibration batches of N images resized and center-cropped to HxW (C must be 3; "
                        "default: batches of 32, the --arch's transform or ImageNet's 256/224)")
    parser.add_argument("--calib-count", type=int, default=100, metavar="N", help="calibration images (default 100)")
    parser.add_argument("--arch", metavar="NAME", help="production.zoo architecture of a checkpoint MODEL")
    parser.set_defaults(handler=_cmd_quantize)


@_reports(OSError, ValueError, TypeError, KeyError)
def _cmd_quantize(args: argparse.Namespace) -> int:
    from quantspec.production.compare import calibration_batches
    from quantspec.production.io import save
    from quantspec.production.quantize import quantize_jit

    model = _float_model(args.model, args.arch)
    qconfig_dict = _qconfig_file(args.qconfig) if args.qconfig else None
    batch_size, transform = _calibration_transform(args.input_shape, args.arch)
    if args.calib_count <= 0:
        raise ValueError(f"--calib-count {args.calib_count}: expected a positive count")
    batches = calibration_batches(args.calib, transform, args.calib_count, batch_size, progress=True)
    converted = quantize_jit(model, qconfig_dict, lambda prepared, data: [prepared(b) for b in data], [batches])
    shape = tuple(batches[0].shape[1:])
    save(converted, args.out, input_shape=shape)
    print(f"wrote {args.out}: calibrated on {sum(len(b) for b in batches)} images of shape {shape}")
    print(f"verify it: quantspec verify {args.out} --random 2")
    return 0


def _fail(verb: str, error: BaseException | str) -> int:
    """Print the one-line error of `quantspec <verb>` on stderr; the exit status for bad input."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError quotes its text
    print(f"quantspec {verb}: {message}", file=sys.stderr)
    return 2


def _float_model(path: str, arch: Optional[str]) -> Any:
    """The float model to quantize: a zoo `arch` holding a checkpoint's (or unfrozen script's)
    weights, or without `arch` a float TorchScript file as it is."""
    from pathlib import Path

    from quantspec.production.compare import is_torchscript, load_float
    from quantspec.production.io import load
    from quantspec.production.quantize import node_kinds

    if arch is not None:
        return load_float(path, arch)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not is_torchscript(Path(path)):
        raise ValueError(f"{path} is not a TorchScript file; for a checkpoint give --arch (a production.zoo name)")
    module = load(path)
    quantized = sorted(kind for kind in node_kinds(module) if kind.startswith("quantized::"))
    if quantized:  # prepare_jit would pass the int8 ops through and "convert" nothing
        raise ValueError(f"{path} is already quantized ({', '.join(quantized)}); give the float model")
    return module


def _qconfig_file(path: str) -> dict[str, Any]:
    """A --qconfig JSON file as a qconfig_dict: {name: preset or null}."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"--qconfig {path}: not valid JSON ({error})") from error
    if not isinstance(entries, dict):
        raise ValueError(f"--qconfig {path}: expected a JSON object {{submodule name: preset or null}}, "
                         f"got {type(entries).__name__}")
    return {key: _qconfig_preset(value, f"--qconfig {path}: entry {key!r}") for key, value in entries.items()}


def _qconfig_preset(name: Any, where: str) -> Any:
    """torch's qconfig for a preset name; None stays None (leave float)."""
    import difflib

    from torch.ao.quantization import default_qconfig, get_default_qconfig

    if name is None:
        return None
    if name not in QCONFIG_PRESETS:
        close = difflib.get_close_matches(str(name), QCONFIG_PRESETS, n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"{where}: unknown qconfig preset {name!r}; {hint}expected one of {QCONFIG_PRESETS} or null")
    return default_qconfig if name == "default" else get_default_qconfig(name)


def _calibration_transform(shape: Optional[Sequence[int]], arch: Optional[str]) -> tuple[int, Any]:
    """(batch size, image transform) for --input-shape N C H W, or the defaults."""
    from quantspec.production.compare import transform_for
    from quantspec.production.data import EvalTransform, imagenet_transform

    if shape is None:
        return 32, transform_for(arch) if arch else imagenet_transform()
    batch, channels, height, width = shape
    if batch <= 0 or channels != 3 or height != width or height <= 0:
        raise ValueError(f"--input-shape {' '.join(map(str, shape))}: expected N 3 S S "
                         "(positive batch, RGB images, a square center crop)")
    return batch, EvalTransform(height, height)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a converted TorchScript model as quantspec's portable file for the NumPy interpreter",
        description="Load the int8 TorchScript model (fbgemm pinned) and write the portable model file "
        "(JSON + arrays in one zip, no pickle) that reference.load / reference.run execute.",
    )
    parser.add_argument("model", metavar="OUT.pt", help="int8 TorchScript model (quantspec quantize output)")
    parser.add_argument("file", metavar="FILE", help="the portable model file to write")
    parser.add_argument("--input-shape", nargs=3, type=int, metavar=("C", "H", "W"),
                        help="record the input shape (batch left free) so the interpreter refuses other shapes "
                        "(default: the shape `quantspec quantize` recorded in OUT.pt, if any)")
    parser.set_defaults(handler=_cmd_export)


@_reports(torch_errors=(OSError, ValueError, TypeError, RuntimeError))
def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from quantspec.production.export import export
    from quantspec.production.io import input_shape as recorded_input_shape
    from quantspec.production.io import load

    shape = args.input_shape or recorded_input_shape(args.model)
    examples = [torch.zeros(1, *shape)] if shape else None
    path = export(load(args.model), args.file, example_inputs=examples)
    print(f"wrote {path}")
    return 0


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="run torch and the NumPy interpreter on the same inputs and compare every node bit for bit",
        description="Compare every intermediate value of the int8 model, torch against the reference "
        "interpreter; print one line per node kind and the verdict. Exit 1 on any mismatch (a repro "
        "file replaying the first differing node is written next to the model), 2 on bad input.",
    )
    parser.add_argument("model", metavar="OUT.pt", help="int8 TorchScript model (quantspec quantize output)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--inputs", metavar="X.npy", help="a float32 N C H W batch (.npy, no pickle)")
    source.add_argument("--random", type=int, metavar="N", help="N seeded random images, half on quantization ties (default 2)")
    parser.add_argument("--input-shape", nargs=3, type=int, metavar=("C", "H", "W"),
                        help="image shape for --random (default: the shape `quantspec quantize` recorded in OUT.pt, else "
                        "3 224 224); with --inputs, the shape they must have")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of --random (default 0)")
    parser.add_argument("--threads", type=int, default=1, metavar="T", help="torch and interpreter threads (default 1)")
    parser.set_defaults(handler=_cmd_verify)


@_reports(OSError, ValueError, TypeError, NotImplementedError, torch_errors=(RuntimeError,))
def _cmd_verify(args: argparse.Namespace) -> int:
    from quantspec.production.io import input_shape as recorded_input_shape
    from quantspec.production.verify import verify_command

    if args.inputs is not None:
        _check_inputs_file(args.inputs, args.input_shape)
    if args.random is not None and args.random <= 0:
        raise ValueError(f"--random {args.random}: expected a positive count")
    if args.threads <= 0:
        raise ValueError(f"--threads {args.threads}: expected a positive count")
    shape = tuple(args.input_shape or recorded_input_shape(args.model) or DEFAULT_IMAGE_SHAPE)
    return verify_command(args.model, args.inputs, args.random, shape, args.seed, args.threads)


def _check_inputs_file(path: str, shape: Optional[Sequence[int]]) -> None:
    """Refuse an --inputs file that is not a float32 N C H W batch (of `shape`, if given)."""
    import numpy as np

    try:
        batch = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as error:
        raise ValueError(f"--inputs {path}: not a plain .npy array ({error})") from error
    if batch.dtype != np.float32 or batch.ndim != 4:
        raise ValueError(f"--inputs {path}: {batch.dtype} array of shape {batch.shape}; expected float32 N C H W")
    if shape is not None and tuple(batch.shape[1:]) != tuple(shape):
        raise ValueError(f"--inputs {path}: images of shape {tuple(batch.shape[1:])}, expected {tuple(shape)} (--input-shape)")


def _first_line(error: BaseException) -> str:
    """The most telling line of a (TorchScript) error: the last non-empty one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(prog="quantspec", description="The exact integer arithmetic of torch's int8 models.")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_conform(subparsers)
    _add_compare(subparsers)
    _add_inspect(subparsers)
    _add_quantize(subparsers)
    _add_export(subparsers)
    _add_verify(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `quantspec` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

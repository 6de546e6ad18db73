"""The `quantspec` command: one small function per verb, one parser builder.

Add a verb: write `_cmd_<verb>(args) -> int` (decorated with `_reports(...)`, the errors that
mean bad input) and an `_add_<verb>(subparsers)` that registers it with
`set_defaults(handler=_cmd_<verb>)`, then list it in `build_parser`. A verb checks its
arguments and output paths (`outputs.check_output_file`, `check_output_dir`) before any long
work, and imports what it needs (conformance, Hypothesis, ...) inside its function.

Exit statuses (`EXIT_STATUSES`, shown by `quantspec --help`): 0 success; 1 a mismatch and
nothing else; 2 the run could not be done (bad input, environment, or an internal error),
said in one line on stderr, with the traceback under `quantspec --debug VERB ...`;
3 `verify` only, quantized values bit-exact and only float-island values differ on a CPU
whose float summation order is not specified; 130 interrupted (Ctrl-C, never lost:
`production.interrupts`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
import traceback
from typing import Any, Callable, Optional, Sequence

from .interrupts import INTERRUPTED_STATUS, interrupt_guard
from .outputs import check_output_dir, check_output_file

CONFORM_PROFILES = ("smoke", "default", "thorough")
EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2
EXIT_STATUSES = """exit status:
  0    success
  1    mismatch (verify, conform), and nothing else
  2    the run could not be done: bad input, environment, a conform check that crashed or
       proved nothing, or an internal error; one line on stderr (quantspec --debug VERB ...
       shows the traceback)
  3    verify: every quantized value bit-exact, only float-island values differ, on a CPU
       whose float summation order is not specified
  130  interrupted (Ctrl-C)"""
TORCHSCRIPT_TRUST = ("Loading a TorchScript file runs code it contains: give only files from sources you trust. "
                     "Exchange models with people you do not trust as portable model files (quantspec export).")
# --input-shape bound: elements of one input batch (N*C*H*W), 2^26 float32 values = 256 MiB,
# so a mistyped shape fails at once instead of exhausting memory.
MAX_INPUT_ELEMENTS = 2**26
Handler = Callable[[argparse.Namespace], int]


class BadInput(Exception):
    """A user's mistake or an unusable environment: the message is the one line printed."""


def _reports(
    *errors: type[BaseException], torch_errors: tuple[type[BaseException], ...] = ()
) -> Callable[[Handler], Handler]:
    """A verb handler whose bad-input `errors` become BadInput (one line on stderr, exit
    status 2); `torch_errors` (torch could not run the model) are shown as the model path and
    torch's explanation (`io.torch_error_line`)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except errors as error:
                raise BadInput(_message(error)) from error
            except torch_errors as error:
                from quantspec.production.io import torch_error_line

                model = getattr(args, "model", None)
                raise BadInput(f"{model}: {torch_error_line(error)}" if model else torch_error_line(error)) from error

        return run

    return wrap


def _message(error: BaseException) -> str:
    """An exception's text (a KeyError's without the quotes repr adds), or its type name."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _progress_bars() -> bool:
    """Progress bars on a terminal only: in a log they are noise around the one-line errors."""
    return sys.stderr.isatty()


def _check_positive(value: Optional[int], flag: str) -> None:
    """Refuse a count option (`flag`) given as zero or less; None (not given) passes."""
    if value is not None and value <= 0:
        raise ValueError(f"{flag} {value}: expected a positive count")


def _check_input_shape(shape: Sequence[int], where: str) -> tuple[int, ...]:
    """`shape` (an --input-shape, with or without the batch) if its sizes are positive and a
    batch of it holds at most MAX_INPUT_ELEMENTS elements."""
    if any(size <= 0 for size in shape):
        raise ValueError(f"{where} {' '.join(map(str, shape))}: expected positive sizes")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ValueError(f"{where} {' '.join(map(str, shape))}: {math.prod(shape)} elements per batch, more than the "
                         f"limit of {MAX_INPUT_ELEMENTS} (2^26); use a smaller batch or image")
    return tuple(shape)


def _add_conform(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "conform",
        help="check torch's quantized kernels against the reference, bit for bit",
        description="Run the per-op conformance checks under a Hypothesis settings profile. "
        "Exits 1 on any mismatch, 2 when a check crashed or proved nothing (ERROR, VACUOUS). Hypothesis's "
        "example database and caches go to $QUANTSPEC_HYPOTHESIS_DB (default $XDG_CACHE_HOME/quantspec/"
        "hypothesis, else ~/.cache/quantspec/hypothesis); smoke and CI runs use no database.",
    )
    parser.add_argument("--profile", choices=CONFORM_PROFILES, default="default",
                        help="settings profile (default: default)")
    parser.add_argument("--ops", nargs="+", metavar="OP", help="only these checks, e.g. conv2d add, or models for "
                        "random whole models (default: all registered)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--target", metavar="T", help="judge target T instead of torch's kernels: reference, "
                        "torch or package.module:object (docs/targets.md); the reference is the oracle")
    parser.add_argument("--numerics", metavar="NAME", help="with --target: the reference's numerics profile "
                        "(default: the one detected here)")
    parser.add_argument("--max-abs-diff", type=int, metavar="N", help="with --target: accept differences up to N "
                        "(stated in the report; default: bit-exact)")
    _add_engine(parser, "torch's quantized engine, against the reference in its profile; a check whose kernel "
                "quantspec does not specify under E reports 'not specified' (not a failure)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="run the checks in N processes (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run the checks on this Dask scheduler (needs "
                        "quantspec[dask])")
    parser.set_defaults(handler=_cmd_conform)


def _add_engine(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The --engine option (a quantized engine of `reference.profile.ENGINES`, default fbgemm)."""
    from quantspec.reference.profile import ENGINES

    parser.add_argument("--engine", choices=ENGINES, metavar="E", help=f"{help_text} ({', '.join(ENGINES)}; "
                        "default fbgemm)")


@_reports(OSError, ValueError, ImportError)
def _cmd_conform(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("hypothesis") is None:  # the test tooling is an extra, not a deployment need
        raise BadInput("needs Hypothesis: pip install 'quantspec[conform]'")
    if args.json:
        check_output_file(args.json, "--json")
    from quantspec.conformance import runner
    from quantspec.conformance.checks import select

    select(args.ops)  # unknown check names: a ValueError naming them
    if args.target:
        if args.engine:
            raise BadInput("--engine goes without --target (a target's profile is --numerics)")
        if args.jobs != 1 or args.scheduler:
            raise BadInput("--jobs and --scheduler go without --target")
        return _conform_target(args)
    if args.numerics or args.max_abs_diff is not None:
        raise BadInput("--numerics and --max-abs-diff go with --target")
    _check_positive(args.jobs, "--jobs")
    result = runner.run(args.ops, args.profile, json_path=args.json, out=sys.stdout, engine=args.engine or "fbgemm",
                        jobs=args.jobs, scheduler=args.scheduler)
    if any(check.status == "MISMATCH" for check in result.checks):
        return EXIT_MISMATCH
    failed = [f"{check.name} {check.status}" for check in result.checks
              if check.status not in ("ok", runner.NOT_SPECIFIED)]
    if failed:
        raise BadInput(f"no mismatch, but {len(failed)} check(s) proved nothing: {', '.join(failed)}")
    return EXIT_OK


def _numerics(name: Optional[str]) -> Any:
    """The named numerics profile, else the one detected for this torch and CPU."""
    from quantspec.reference.profile import get_profile

    if name:
        return get_profile(name)
    from quantspec.production.environment import detect_profile

    return detect_profile()


def _conform_target(args: argparse.Namespace) -> int:
    import json

    from quantspec.conformance.judge import judge
    from quantspec.production.outputs import write_text_atomically

    if args.max_abs_diff is not None and args.max_abs_diff < 0:
        raise BadInput(f"--max-abs-diff {args.max_abs_diff}: expected 0 or more")
    run = judge(args.target, args.ops, args.profile, _numerics(args.numerics), args.max_abs_diff, sys.stdout)
    if args.json:
        write_text_atomically(args.json, json.dumps(run.to_json(), indent=2))
    if any(check.status == "MISMATCH" for check in run.checks):
        return EXIT_MISMATCH
    if not run.ok or not run.checks:
        raise BadInput(f"target {args.target}: no mismatch, but nothing judged or a check crashed: "
                       f"{[(c.name, c.error) for c in run.checks if c.status != 'ok']}")
    return EXIT_OK


def _add_vectors(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vectors", help="write or check golden vector packs (docs/targets.md)",
        description="Golden vector packs: hard cases and the reference's outputs as JSON + raw .bin arrays.",
    )
    verbs = parser.add_subparsers(dest="vectors_verb", metavar="write|check", required=True)
    write = verbs.add_parser("write", help="write a pack into DIR (a new folder, or an empty one)")
    write.add_argument("dir", metavar="DIR")
    write.add_argument("--numerics", metavar="NAME", help="numerics profile (default: the one detected here)")
    write.add_argument("--ops", nargs="+", metavar="OP", help="only these ops (default: every target op)")
    write.add_argument("--cases", type=int, default=20, metavar="N", help="drawn cases per op (default 20), "
                       "after the pinned examples")
    write.set_defaults(handler=_cmd_vectors_write)
    check = verbs.add_parser("check", help="replay a pack on a target; exit 1 on a mismatch, 2 on a bad pack")
    check.add_argument("dir", metavar="DIR")
    check.add_argument("--target", required=True, metavar="T", help="reference, torch or package.module:object")
    check.set_defaults(handler=_cmd_vectors_check)


@_reports(OSError, ValueError)
def _cmd_vectors_write(args: argparse.Namespace) -> int:
    from quantspec.conformance.vectors import write_pack

    _check_positive(args.cases, "--cases")
    count = write_pack(args.dir, _numerics(args.numerics), args.ops, args.cases)
    print(f"wrote {count} cases to {args.dir}")
    return EXIT_OK


@_reports(OSError, ValueError)
def _cmd_vectors_check(args: argparse.Namespace) -> int:
    # Neither Hypothesis nor torch is imported here unless the target is torch.
    from quantspec.conformance.targets import load_target
    from quantspec.conformance.vectors import check_pack, read_pack

    profile, _ = read_pack(args.dir)
    result = check_pack(args.dir, load_target(args.target, profile))
    for op, cases in sorted(result.cases.items()):
        print(f"{op:<22} {cases:>5} cases {result.mismatched.get(op, 0):>5} mismatching")
    for line in result.first:
        print(line)
    print("pack bit-exact" if result.ok else "FAILED")
    return EXIT_OK if result.ok else EXIT_MISMATCH


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="size, accuracy and latency of float, graph/eager/FX int8 variants on real data",
        description="Quantize the model every way torch can, evaluate each variant on an ImageFolder tree, "
        "time them interleaved (batch 1, one thread), check bit-exactness against the reference; "
        "print the table and write compare.json and compare.md to --out-dir.",
        epilog=TORCHSCRIPT_TRUST,
    )
    parser.add_argument("--model", required=True, metavar="CKPT_OR_SCRIPTED",
                        help="checkpoint or unfrozen float TorchScript file")
    parser.add_argument("--arch", required=True, metavar="NAME",
                        help="production.zoo architecture, e.g. cifar_resnet20")
    parser.add_argument("--data", required=True, metavar="DIR", help="evaluation images (ImageFolder layout)")
    parser.add_argument("--calib", required=True, metavar="DIR", help="calibration images (ImageFolder layout)")
    parser.add_argument("--calib-count", type=int, default=1000, metavar="N", help="calibration images (default 1000)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="evaluate on N images spread over the classes (default: all)")
    parser.add_argument("--out-dir", default="compare-out", metavar="DIR",
                        help="where models and tables go, created if missing (default compare-out)")
    parser.add_argument("--latency-repeats", type=int, default=100, metavar="N",
                        help="timed rounds per variant (default 100)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw accuracy and latency bars (needs matplotlib)")
    parser.set_defaults(handler=_cmd_compare)


@_reports(OSError, ValueError, ImportError, torch_errors=(RuntimeError,))
def _cmd_compare(args: argparse.Namespace) -> int:
    from quantspec.production.compare import compare

    for value, flag in ((args.calib_count, "--calib-count"), (args.limit, "--limit"),
                        (args.latency_repeats, "--latency-repeats")):
        _check_positive(value, flag)
    check_output_dir(args.out_dir, "--out-dir")
    if args.plot:
        check_output_file(args.plot, "--plot", inputs=[args.model])
    result = compare(args.model, args.arch, args.data, args.calib, calib_count=args.calib_count, limit=args.limit,
                     out_dir=args.out_dir, latency_repeats=args.latency_repeats, plot=args.plot,
                     progress=_progress_bars())
    print(result.text(), end="")
    print(f"wrote {args.out_dir}/compare.json and compare.md" + (f", {args.plot}" if args.plot else ""))
    return EXIT_OK


def _add_inspect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="graph-mode Numeric Suite: per-node SQNR of an int8 model against its float model",
        description="Run the int8 model in the reference interpreter (exporting it first if it is TorchScript) and "
        "the float TorchScript model on the same images; print each quantized node's SQNR and max abs error "
        "and each layer's weight SQNR, worst first.",
        epilog=TORCHSCRIPT_TRUST,
    )
    parser.add_argument("int8", metavar="INT8.pt", help="int8 TorchScript model (quantize_jit output) or exported file")
    parser.add_argument("--float", required=True, dest="float_model", metavar="FLOAT.pt",
                        help="the float TorchScript model (unfrozen gives module names)")
    parser.add_argument("--data", required=True, metavar="DIR", help="images (ImageFolder layout)")
    parser.add_argument("--limit", type=int, default=32, metavar="N", help="images to run (default 32)")
    parser.add_argument("--top", type=int, metavar="N", help="print only the N worst rows of each table")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw per-layer SQNR bars (needs matplotlib)")
    parser.set_defaults(handler=_cmd_inspect)


@_reports(OSError, ValueError, ImportError, NotImplementedError, torch_errors=(RuntimeError,))
def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from quantspec.production.numeric_suite import inspect
    from quantspec.production.outputs import write_text_atomically

    _check_positive(args.limit, "--limit")
    _check_positive(args.top, "--top")
    for path, flag in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_output_file(path, flag, inputs=[args.int8, args.float_model])
    report = inspect(args.int8, args.float_model, args.data, limit=args.limit, plot=args.plot,
                     progress=_progress_bars())
    print(report.text(args.top), end="")
    if args.json:
        write_text_atomically(args.json, json.dumps(report.as_dict(), indent=2))
    return EXIT_OK


# --- quantize / export / verify ----------------------------------------------------------------

QCONFIG_PRESETS = ("fbgemm", "x86", "qnnpack", "onednn", "default")
# verify --random draws images of this (C, H, W) when neither --input-shape nor the file says.
DEFAULT_IMAGE_SHAPE = (3, 224, 224)
# engines --data compares this many images at a time: every intermediate value of a batch is
# held once per engine, so memory is that of one batch whatever the folder's size.
ENGINES_BATCH = 50


def _add_quantize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="graph-mode post-training static quantization of a float model, calibrated on images",
        description="Script (or load) the float model, calibrate it on an ImageFolder tree and convert it with "
        "production.quantize_jit, the quantized engine pinned (--engine, default fbgemm); write the int8 "
        "TorchScript model to --out.",
        epilog=TORCHSCRIPT_TRUST,
    )
    parser.add_argument("model", metavar="MODEL", help="float TorchScript file, or a checkpoint with --arch")
    parser.add_argument("--calib", required=True, metavar="DIR", help="calibration images (ImageFolder layout)")
    parser.add_argument("--out", required=True, metavar="OUT.pt", help="where the int8 TorchScript model goes")
    parser.add_argument("--qconfig", metavar="FILE.json", help='submodule name ("" = global) -> preset name or null '
                        f"(leave float); presets: {', '.join(QCONFIG_PRESETS)} (default: {{\"\": E}}, the --engine's "
                        "preset, as torch's tutorial pairs them)")
    parser.add_argument("--input-shape", nargs=4, type=int, metavar=("N", "C", "H", "W"),
                        help="calibration batches of N images resized and center-cropped to HxW (C must be 3; at "
                        "most 2^26 elements per batch; default: batches of 32, the --arch's transform or "
                        "ImageNet's 256/224)")
    parser.add_argument("--calib-count", type=int, default=100, metavar="N", help="calibration images (default 100)")
    parser.add_argument("--arch", metavar="NAME", help="production.zoo architecture of a checkpoint MODEL")
    _add_engine(parser, "the quantized engine to prepare, calibrate and convert under: its weights are prepacked "
                "for E, so load, verify and export OUT.pt with the same --engine")
    parser.set_defaults(handler=_cmd_quantize)


@_reports(OSError, ValueError, TypeError, KeyError, torch_errors=(RuntimeError,))
def _cmd_quantize(args: argparse.Namespace) -> int:
    from quantspec.production.compare import image_batches
    from quantspec.production.environment import check_engine
    from quantspec.production.io import save
    from quantspec.production.quantize import quantize_jit

    check_output_file(args.out, "--out", inputs=[args.model])
    _check_positive(args.calib_count, "--calib-count")
    engine = check_engine(args.engine or "fbgemm")  # before the long work: this torch build may not offer it
    batch_size, transform = _calibration_transform(args.input_shape, args.arch)
    qconfig_dict = _qconfig_file(args.qconfig) if args.qconfig else None  # None: the engine's preset
    model = _float_model(args.model, args.arch)
    batches = image_batches(args.calib, transform, args.calib_count, batch_size, progress=_progress_bars())
    converted = quantize_jit(model, qconfig_dict, lambda prepared, data: [prepared(b) for b in data], [batches],
                             engine=engine)
    shape = tuple(batches[0].shape[1:])
    save(converted, args.out, input_shape=shape, engine=engine)
    print(f"wrote {args.out}: calibrated on {sum(len(b) for b in batches)} images of shape {shape}, engine {engine}")
    engine_flag = "" if engine == "fbgemm" else f" --engine {engine}"
    print(f"verify it: quantspec verify {args.out} --random 2{engine_flag}")
    return EXIT_OK


def _float_model(path: str, arch: Optional[str]) -> Any:
    """The float model to quantize: a zoo `arch` holding a checkpoint's (or unfrozen script's)
    weights, or without `arch` a float TorchScript file as it is."""
    from pathlib import Path

    from quantspec.production.compare import is_torchscript, load_float
    from quantspec.production.io import load
    from quantspec.production.quantize import quantized_kinds

    if arch is not None:
        return load_float(path, arch)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not is_torchscript(Path(path)):
        raise ValueError(f"{path} is not a TorchScript file; for a checkpoint give --arch (a production.zoo name)")
    module = load(path)
    quantized = quantized_kinds(module)
    if quantized:  # prepare_jit would pass the int8 ops through and "convert" nothing
        raise ValueError(f"{path} is already quantized ({', '.join(quantized)}); give the float model")
    return module


def _qconfig_file(path: str) -> dict[str, Any]:
    """A --qconfig JSON file as a qconfig_dict: {name: preset or null}."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
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
    if not isinstance(name, str):
        raise ValueError(f"{where}: {_json_kind(name)} {name!r} is not a qconfig; expected a preset name "
                         f"{QCONFIG_PRESETS} or null")
    if name not in QCONFIG_PRESETS:
        close = difflib.get_close_matches(name, QCONFIG_PRESETS, n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"{where}: unknown qconfig preset {name!r}; {hint}expected one of {QCONFIG_PRESETS} or null")
    return default_qconfig if name == "default" else get_default_qconfig(name)


def _json_kind(value: Any) -> str:
    """The JSON name of a decoded value's kind: object, array, string, number, true/false.

    >>> _json_kind({}), _json_kind([1]), _json_kind(2.5), _json_kind(True)
    ('an object', 'an array', 'a number', 'a boolean')
    """
    kinds = ((bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string"),
             ((int, float), "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _calibration_transform(shape: Optional[Sequence[int]], arch: Optional[str]) -> tuple[int, Any]:
    """(batch size, image transform) for --input-shape N C H W (the shape wins over `arch`), or the defaults."""
    if shape is None:
        return 32, _data_transform(None, arch)
    batch, channels, height, width = _check_input_shape(shape, "--input-shape")
    if channels != 3 or height != width:
        raise ValueError(f"--input-shape {' '.join(map(str, shape))}: expected N 3 S S "
                         "(positive batch, RGB images, a square center crop)")
    return batch, _data_transform((channels, height, width), None)


def _data_transform(shape: Optional[Sequence[int]], arch: Optional[str]) -> Any:
    """The preprocessing of an ImageFolder tree's images, the same for every verb that reads
    one (quantize, verify --data, engines --data): `arch`'s (as compare), else a resize of the
    shorter side and a center crop to the image `shape` (3, S, S), else ImageNet's 256/224."""
    from quantspec.production.compare import transform_for
    from quantspec.production.data import EvalTransform, imagenet_transform

    if arch:
        return transform_for(arch)
    if shape is None:
        return imagenet_transform()
    channels, height, width = shape
    if channels != 3 or height != width:
        raise ValueError(f"image shape {' '.join(map(str, shape))}: expected 3 S S to preprocess images "
                         "(RGB, a square center crop)")
    return EvalTransform(height, height)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a converted TorchScript model as quantspec's portable file for the NumPy interpreter",
        description="Load the int8 TorchScript model (fbgemm pinned) and write the portable model file "
        "(JSON + arrays in one zip, no pickle, no code) that reference.load / reference.run execute.",
        epilog=TORCHSCRIPT_TRUST,
    )
    parser.add_argument("model", metavar="OUT.pt", help="int8 TorchScript model (quantspec quantize output)")
    parser.add_argument("file", metavar="FILE", help="the portable model file to write (not OUT.pt itself)")
    parser.add_argument("--input-shape", nargs=3, type=int, metavar=("C", "H", "W"),
                        help="record the input shape (batch left free) so the interpreter refuses other shapes "
                        "(positive, at most 2^26 elements; default: the shape `quantspec quantize` recorded in "
                        "OUT.pt, if any)")
    parser.set_defaults(handler=_cmd_export)


@_reports(OSError, ValueError, TypeError, torch_errors=(RuntimeError,))
def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from quantspec.production.export import ExportError, export
    from quantspec.production.io import load

    check_output_file(args.file, "FILE", inputs=[args.model])
    shape = _image_shape(args.input_shape, args.model)
    examples = [torch.zeros(1, *shape)] if shape else None
    try:
        path = export(load(args.model), args.file, example_inputs=examples)
    except ExportError as error:
        raise BadInput(f"{args.model}: cannot export: {error}") from error
    print(f"wrote {path}")
    return EXIT_OK


def _image_shape(shape: Optional[Sequence[int]], model: str) -> Optional[tuple[int, ...]]:
    """The (C, H, W) input shape: --input-shape, else the one `quantize` recorded in `model`
    (None if neither), checked by `_check_input_shape`."""
    from quantspec.production.io import input_shape as recorded_input_shape

    if shape is not None:
        return _check_input_shape(shape, "--input-shape")
    recorded = recorded_input_shape(model)
    return _check_input_shape(recorded, f"{model}: recorded input shape") if recorded else None


def _add_model_and_images(parser: argparse.ArgumentParser, random_help: str, data_help: str) -> None:
    """The int8 model argument and its image source (`--inputs`, `--random` or `--data`, one of them)."""
    parser.add_argument("model", metavar="OUT.pt", help="int8 TorchScript model (quantspec quantize output)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--inputs", metavar="X.npy", help="a float32 N C H W batch (.npy, no pickle)")
    source.add_argument("--random", type=int, metavar="N", help=random_help)
    source.add_argument("--data", metavar="DIR", help=data_help)


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="run torch and the NumPy interpreter on the same inputs and compare every node bit for bit",
        description="Compare every intermediate value of the int8 model, torch against the reference "
        "interpreter; print one line per node kind and the verdict. Exit 0 when bit-exact; 1 on a mismatch "
        "(a repro file replaying the first differing node is written next to the model); 3 when every quantized "
        "value is bit-exact and only float-island values differ, on a CPU whose float summation order is not "
        "specified (float_gemm unspecified); 2 on bad input, e.g. a model with no quantized nodes.",
        epilog=TORCHSCRIPT_TRUST,
    )
    _add_model_and_images(
        parser,
        random_help="N seeded random images, half on quantization ties (default 2)",
        data_help="every image of an ImageFolder tree, one at a time (the report lists each differing value and its "
        "repro file); preprocessing: --arch's, else a resize and center crop to the image shape (--input-shape or "
        "recorded), else ImageNet's 256/224",
    )
    parser.add_argument("--arch", metavar="NAME", help="with --data: the preprocessing of this production.zoo "
                        "architecture (as compare)")
    parser.add_argument("--limit", type=int, metavar="N", help="with --data: N images spread over the classes")
    parser.add_argument("--resume", metavar="STATE.json", help="with --data: progress file, written every few "
                        "images; continue from it if it exists (default: OUT.verify-state.json, started afresh)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="with --data: N processes (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="with --data: run on this Dask scheduler (needs "
                        "quantspec[dask])")
    parser.add_argument("--input-shape", nargs=3, type=int, metavar=("C", "H", "W"),
                        help="image shape for --random (default: the shape `quantspec quantize` recorded in OUT.pt, "
                        "else 3 224 224; at most 2^26 elements per batch); with --inputs, the shape they must have")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of --random (default 0)")
    parser.add_argument("--threads", type=int, default=1, metavar="T", help="torch and interpreter threads (default 1)")
    _add_engine(parser, "the engine OUT.pt was converted under: torch loads (prepacks) and runs it under E, the "
                "reference follows E's profile")
    parser.set_defaults(handler=_cmd_verify)


@_reports(OSError, ValueError, TypeError, NotImplementedError, ImportError, torch_errors=(RuntimeError,))
def _cmd_verify(args: argparse.Namespace) -> int:
    from quantspec.production.verify import verify_command

    _check_positive(args.random, "--random")
    _check_positive(args.threads, "--threads")
    if args.data is not None:
        return _verify_data(args)
    given = [flag for flag in ("arch", "limit", "resume", "scheduler") if getattr(args, flag) is not None]
    if given or args.jobs != 1:
        raise BadInput(f"--{' --'.join(given or ['jobs'])}: go with --data")
    shape = _image_shape(args.input_shape, args.model) or DEFAULT_IMAGE_SHAPE
    if args.inputs is not None:
        _check_inputs_file(args.inputs, args.input_shape)
    else:
        _check_input_shape((args.random or 2, *shape), "--random N and the image shape")
    return verify_command(args.model, args.inputs, args.random, shape, args.seed, args.threads,
                          args.engine or "fbgemm")


def _verify_data(args: argparse.Namespace) -> int:
    """verify --data: every image of the folder; the report, then images per second."""
    from quantspec.production.verify import EXIT_STATUS
    from quantspec.production.verify_data import verify_data

    _check_positive(args.limit, "--limit")
    _check_positive(args.jobs, "--jobs")
    if args.resume:
        check_output_file(args.resume, "--resume", inputs=[args.model])
    transform = _data_transform(_image_shape(args.input_shape, args.model), args.arch)
    report, seconds = verify_data(args.model, args.data, transform, args.limit, args.resume, bool(args.resume),
                                  args.jobs, args.scheduler, args.threads, args.engine or "fbgemm",
                                  progress=_progress_bars())
    print(report.format())
    checked = report.images - report.resumed
    print(f"{checked} images in {seconds:.1f} s ({checked / max(seconds, 1e-9):.1f} images/s, "
          f"{f'scheduler {args.scheduler}' if args.scheduler else f'{args.jobs} jobs'})")
    return EXIT_STATUS[report.verdict]


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
        raise ValueError(
            f"--inputs {path}: images of shape {tuple(batch.shape[1:])}, expected {tuple(shape)} (--input-shape)"
        )


def _add_engines(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "engines",
        help="run an int8 model under every quantized engine torch offers and explain where it differs from fbgemm",
        description="Load OUT.pt under each engine torch offers here (fbgemm, qnnpack, onednn, x86: the load "
        "prepacks), run it on the same images and print, per node kind and engine, the fraction of output "
        "integers differing from fbgemm's, the max |diff| and each difference's cause as the reference names it "
        "(docs/engines.md). Exit 0.",
        epilog=TORCHSCRIPT_TRUST,
    )
    _add_model_and_images(
        parser,
        random_help="N seeded random images (default 2)",
        data_help=f"images of an ImageFolder tree, compared {ENGINES_BATCH} at a time; preprocessed as verify "
        "--data does: --arch's, else a resize and center crop to the recorded image shape, else ImageNet's 256/224",
    )
    parser.add_argument("--arch", metavar="NAME", help="with --data: the preprocessing of this production.zoo "
                        "architecture (as compare and verify)")
    parser.add_argument("--limit", type=int, metavar="N", help="with --data: N images spread over the classes "
                        "(default: all)")
    parser.set_defaults(handler=_cmd_engines)


@_reports(OSError, ValueError, TypeError, torch_errors=(RuntimeError,))
def _cmd_engines(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from quantspec.production.compare import image_batches
    from quantspec.production.engines import engines_command

    _check_positive(args.random, "--random")
    _check_positive(args.limit, "--limit")
    given = [flag for flag in ("arch", "limit") if getattr(args, flag) is not None]
    if given and not args.data:
        raise BadInput(f"--{' --'.join(given)} goes with --data")
    recorded = _image_shape(None, args.model)
    shape = recorded or DEFAULT_IMAGE_SHAPE
    if args.inputs is not None:
        _check_inputs_file(args.inputs, None)
        inputs = torch.from_numpy(np.load(args.inputs, allow_pickle=False))
    elif args.data is not None:
        inputs = image_batches(args.data, _data_transform(recorded, args.arch), args.limit, ENGINES_BATCH,
                               _progress_bars(), desc="images")
    else:
        count = args.random or 2
        _check_input_shape((count, *shape), "--random N and the image shape")
        inputs = torch.randn(count, *shape, generator=torch.Generator().manual_seed(0))
    return engines_command(args.model, inputs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="quantspec", description="The exact integer arithmetic of torch's int8 models.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="on an error, also print its traceback")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_conform(subparsers)
    _add_vectors(subparsers)
    _add_compare(subparsers)
    _add_inspect(subparsers)
    _add_quantize(subparsers)
    _add_export(subparsers)
    _add_verify(subparsers)
    _add_engines(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `quantspec` console script: the verb's exit status (`EXIT_STATUSES`)."""
    args = build_parser().parse_args(argv)
    with interrupt_guard() as guard:
        status = _run(args)
    if guard.interrupted or status == INTERRUPTED_STATUS:  # also when something swallowed the KeyboardInterrupt
        print(f"quantspec {args.verb}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    return status


def _run(args: argparse.Namespace) -> int:
    """The verb's handler with torch's known deprecation notices silenced; an error becomes one
    line on stderr and status 2, Ctrl-C status 130."""
    try:
        with _torch_notices_silenced():
            return args.handler(args)
    except KeyboardInterrupt:
        return INTERRUPTED_STATUS
    except BadInput as error:
        return _fail(args, str(error), error)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return _fail(args, f"this verb needs torch, which is not installed: pip install torch ({error})", error)
    except Exception as error:  # a bug, not the user's mistake: name it, point at --debug
        return _fail(args, f"internal error: {type(error).__name__}: {_message(error)} (rerun as "
                     f"`quantspec --debug {args.verb} ...` for the traceback)", error)


def _torch_notices_silenced() -> contextlib.AbstractContextManager:
    """torch's known deprecation notices silenced (`known_deprecations_silenced`); nothing to
    silence where torch is not installed (the torch-free verbs still run)."""
    try:
        from quantspec.production.environment import known_deprecations_silenced
    except ModuleNotFoundError as missing:
        if missing.name != "torch":
            raise
        return contextlib.nullcontext()
    return known_deprecations_silenced()


def _fail(args: argparse.Namespace, message: str, error: BaseException) -> int:
    """Print `quantspec <verb>: <message>` as one line on stderr (after the traceback under
    --debug); the exit status for a run that could not be done."""
    if args.debug:
        traceback.print_exception(error)
    one_line = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"quantspec {args.verb}: {one_line}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

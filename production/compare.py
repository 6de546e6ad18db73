"""`quantspec compare`: size, accuracy, latency of float and int8 variants of one model, on real data.

The comparison the graph-mode PTQ tutorial ends with, extended to every way torch quantizes
a model, each row one *variant* of the same float weights:

| variant       | what it is                                                                 |
|---------------|----------------------------------------------------------------------------|
| float         | the float model, scripted and frozen                                       |
| graph int8    | `production.quantize_jit` (graph mode, default fbgemm qconfig), fbgemm     |
| graph debug   | the same with `debug=True` (quantize/dequantize around float ops)          |
| eager int8    | QuantStub/fuse_modules/prepare/convert on `production.eager`'s copy        |
| fx int8       | `prepare_fx`/`convert_fx` with `get_default_qconfig_mapping("fbgemm")`     |
| graph int8 x86| the graph int8 file loaded (prepacked) under torch's default `x86` engine  |

Every variant is TorchScript (eager and FX results are scripted and frozen) so latency
compares kernels, not Python. Columns: size of the saved file in MB (10^6 bytes), top-1 and
top-5 accuracy (%), latency at batch 1 on one thread (median ms, and its ratio to float;
variants are timed interleaved, round-robin, in one run, so machine load hits all alike),
bit-exactness against the reference (each int8 variant is exported and checked node by
node with `production.verify` on a few test images; "not checked" says why a variant could
not be exported or run), and quantization time (prepare + calibrate + convert, seconds).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import re
import statistics
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from quantspec.reference.interpreter import NodeError, UnknownNodeKind

from . import zoo
from .data import EvalTransform, ImageFolder, cifar_transform, imagenet_transform
from .eager import CIFAR_RESNET_DEPTHS, quantizable_copy, quantize_eager
from .environment import (
    ENGINE,
    detect_profile,
    fbgemm_engine,
    known_deprecations_silenced,
    quantized_engine,
    torch_threads,
)
from .export import ExportError
from .io import load, save
from .outputs import atomic_output, write_text_atomically
from .quantize import quantize_jit
from .verify import MISMATCH, verify

PathLike = Union[str, Path]

COLUMNS = ("variant", "size_mb", "top1", "top5", "latency_ms", "latency_ratio", "bit_exact", "bit_exact_detail",
           "quant_seconds", "note")


@dataclass
class Row:
    """One variant's measurements; None where a column does not apply."""

    variant: str
    size_mb: float
    top1: Optional[float] = None
    top5: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_ratio: Optional[float] = None
    bit_exact: str = "n/a"
    bit_exact_detail: str = ""
    quant_seconds: Optional[float] = None
    note: str = ""


@dataclass
class Variant:
    """A runnable model plus what the table says about it."""

    name: str
    model: Callable[[torch.Tensor], torch.Tensor]
    path: Path
    engine: str = ENGINE
    quant_seconds: Optional[float] = None
    note: str = ""


@dataclass
class Comparison:
    """The table and how it was measured."""

    rows: list[Row]
    meta: dict[str, Any]

    def markdown(self) -> str:
        """The table as GitHub Markdown, with the measurement conditions above it."""
        lines = [f"Model `{self.meta['arch']}` on {self.meta['test_images']} images of `{self.meta['data_dir']}`; "
                 f"calibration: {self.meta['calib_images']} images of `{self.meta['calib_dir']}`; torch "
                 f"{self.meta['torch']}, profile `{self.meta['profile']}`; latency: batch 1, 1 thread, median of "
                 f"{self.meta['latency_repeats']} interleaved runs.", "",
                 "| variant | size (MB) | top-1 (%) | top-5 (%) | latency (ms) | vs float | bit-exact vs reference "
                 "| quantization (s) | note |",
                 "|---|--:|--:|--:|--:|--:|---|--:|---|"]
        for row in self.rows:
            lines.append(
                f"| {row.variant} | {row.size_mb:.3f} | {_fmt(row.top1, 2)} | {_fmt(row.top5, 2)} "
                f"| {_fmt(row.latency_ms, 3)} "
                f"| {_fmt(row.latency_ratio, 2, 'x')} | {row.bit_exact} | {_fmt(row.quant_seconds, 1)} | {row.note} |"
            )
        lines += ["", "Bit-exact check (export, then node by node against the reference interpreter):", ""]
        lines += [f"- {row.variant}: {row.bit_exact_detail}" for row in self.rows if row.bit_exact != "n/a"]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """The table as aligned plain text for the terminal."""
        cells = [["variant", "MB", "top-1", "top-5", "ms", "vs float", "bit-exact", "quant s"]]
        for row in self.rows:
            cells.append([row.variant, f"{row.size_mb:.3f}", _fmt(row.top1, 2), _fmt(row.top5, 2),
                          _fmt(row.latency_ms, 3), _fmt(row.latency_ratio, 2, "x"), row.bit_exact,
                          _fmt(row.quant_seconds, 1)])
        widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
        rows = ("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)
        return "\n".join(rows) + "\n"

    def to_json(self) -> str:
        """Rows and measurement conditions as JSON."""
        return json.dumps({"meta": self.meta, "rows": [asdict(row) for row in self.rows]}, indent=2) + "\n"


def _fmt(value: Optional[float], digits: int, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def transform_for(arch: str) -> EvalTransform:
    """CIFAR models take 32x32 images as they are; every other zoo model ImageNet's 256/224."""
    return cifar_transform() if arch.startswith("cifar_") else imagenet_transform()


def load_float(model: PathLike, arch: str) -> nn.Module:
    """The float nn.Module of zoo architecture `arch` holding the weights of `model`.

    `model` is either a checkpoint (`{'state_dict': ...}`, keys optionally prefixed
    `module.`, as `production.zoo.load_checkpoint` reads) or a saved float TorchScript
    module that is not frozen (its `state_dict()` carries the weights).
    """
    if arch not in zoo.ZOO:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(zoo.ZOO))}")
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    module = zoo.ZOO[arch]()
    try:
        if not is_torchscript(path):
            return zoo.load_checkpoint(module, path)
        state = load(path).state_dict()
        if not state:
            raise ValueError(
                f"{path} is a frozen TorchScript module (no state_dict); give the checkpoint or an unfrozen script"
            )
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        if not str(error).startswith("Error(s) in loading state_dict"):
            raise
        mismatch = state_dict_mismatch(error)
        raise ValueError(f"{path} does not hold {arch} weights: {mismatch}; is --arch right?") from error
    except pickle.UnpicklingError as error:  # torch.load(weights_only=True) met more than tensors and containers
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # torch's reason is the line before its pointer to the docs; its first sentence says what was refused.
        reason = (lines[-2] if len(lines) > 2 else lines[-1]).split(". ")[0]
        raise ValueError(
            f"{path} is not a checkpoint of tensors torch.load(weights_only=True) reads: {reason}"
        ) from error
    return module.eval()


def state_dict_mismatch(error: RuntimeError) -> str:
    """torch's multi-line `load_state_dict` error in one line: how many keys are missing,
    unexpected or of another shape, with the first of each.

    >>> state_dict_mismatch(RuntimeError('Error(s) in loading state_dict for M:\\n\\t'
    ...     'Missing key(s) in state_dict: "a.weight", "b.weight". '))
    '2 missing keys (a.weight, ...)'
    """
    parts = []
    lines = [line.strip() for line in str(error).splitlines()[1:]]
    for kind, prefix in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)")):
        keys = [key for line in lines if line.startswith(prefix) for key in re.findall(r'"([^"]+)"', line)]
        if keys:
            parts.append(f"{len(keys)} {kind} key{'s' * (len(keys) > 1)} ({keys[0]}{', ...' * (len(keys) > 1)})")
    shapes = [line.split()[3].rstrip(":") for line in lines if line.startswith("size mismatch for")]
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({shapes[0]}{', ...' * (len(shapes) > 1)})")
    return ", ".join(parts) or (lines[0] if lines else "the keys differ")


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding `<name>/code/`; checkpoints hold `data.pkl` only."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def image_batches(
    data_dir: PathLike, transform: EvalTransform, count: Optional[int], batch_size: int, progress: bool,
    desc: str = "calibration",
) -> list[torch.Tensor]:
    """`count` images of an ImageFolder tree (evenly spread over the classes; all if None),
    preprocessed by `transform`, as float batches; `desc` labels the progress bar."""
    data = ImageFolder(data_dir, transform, limit=count)
    return [torch.from_numpy(x) for x, _ in data.batches(batch_size, progress, desc=desc)]


def _calibrate(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for batch in batches:
            model(batch)


def _timed(build: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = build()
    return result, time.perf_counter() - start


def _script_frozen(module: nn.Module) -> torch.jit.ScriptModule:
    with known_deprecations_silenced(), fbgemm_engine():
        return torch.jit.freeze(torch.jit.script(module.eval()))


def _traced_frozen(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """FX writes `_Tensor_` annotations TorchScript cannot parse, so the FX model is traced.

    The trace is exact: the graph has no control flow, and the TracerWarnings it raises are
    about reading the constant qparam attributes (scale, zero point) as Python numbers.
    """
    with known_deprecations_silenced(), warnings.catch_warnings(), fbgemm_engine(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(module.eval(), (example,)))


def build_variants(float_module: nn.Module, arch: str, calib: Sequence[torch.Tensor], out_dir: Path) -> list[Variant]:
    """Quantize `float_module` every way, save each result under `out_dir`, return them runnable.

    Also saves the unfrozen float script `float_script.pt`, the `--float` model for `inspect`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with known_deprecations_silenced():  # unfrozen: keeps module names for `quantspec inspect --float`
        save(torch.jit.script(copy.deepcopy(float_module).eval()), out_dir / "float_script.pt")
    variants = [_saved(Variant("float", _script_frozen(copy.deepcopy(float_module)), out_dir / "float.pt",
                               note="scripted + frozen"))]
    graph, seconds = _timed(lambda: quantize_jit(copy.deepcopy(float_module), None, _calibrate, [calib]))
    variants.append(_saved(Variant("graph int8", graph, out_dir / "graph_int8.pt", quant_seconds=seconds,
                                   note="production.quantize_jit")))
    debug, seconds = _timed(lambda: quantize_jit(copy.deepcopy(float_module), None, _calibrate, [calib], debug=True))
    variants.append(_saved(Variant("graph debug", debug, out_dir / "graph_debug.pt", quant_seconds=seconds,
                                   note="quantize_jit(debug=True)")))
    if arch in CIFAR_RESNET_DEPTHS:
        eager, seconds = _timed(
            lambda: quantize_eager(quantizable_copy(arch, float_module.state_dict()), _calibrate, calib)
        )
        variants.append(_saved(Variant("eager int8", _script_frozen(eager), out_dir / "eager_int8.pt",
                                       quant_seconds=seconds, note="production.eager copy, scripted + frozen")))
    fx, seconds = _timed(lambda: _quantize_fx(copy.deepcopy(float_module), calib))
    variants.append(_saved(Variant("fx int8", _traced_frozen(fx, calib[0][:1]), out_dir / "fx_int8.pt",
                                   quant_seconds=seconds, note="traced + frozen (FX code does not script)")))
    with known_deprecations_silenced(), quantized_engine("x86"):
        x86 = torch.jit.load(str(out_dir / "graph_int8.pt"), map_location="cpu")
    variants.append(Variant("graph int8 x86", x86, out_dir / "graph_int8.pt", engine="x86",
                            note="graph int8 file loaded under the x86 engine"))
    return variants


def _saved(variant: Variant) -> Variant:
    save(variant.model, variant.path)
    return variant


def _quantize_fx(module: nn.Module, calib: Sequence[torch.Tensor]) -> nn.Module:
    """FX graph mode PTQ with torch's default fbgemm QConfigMapping."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with known_deprecations_silenced(), fbgemm_engine():
        prepared = prepare_fx(module.eval(), get_default_qconfig_mapping(ENGINE), example_inputs=(calib[0][:1],))
        _calibrate(prepared, calib)
        return convert_fx(prepared)


def accuracy(
    variants: Sequence[Variant], data: ImageFolder, batch_size: int, progress: bool
) -> dict[str, tuple[float, float]]:
    """Top-1 and top-5 accuracy (%) of every variant, in one pass over the data."""
    top1 = dict.fromkeys((v.name for v in variants), 0)
    top5 = dict.fromkeys((v.name for v in variants), 0)
    with torch.no_grad():
        for images, labels in data.batches(batch_size, progress, desc="evaluation"):
            x = torch.from_numpy(images)
            for variant in variants:
                with quantized_engine(variant.engine):
                    logits = variant.model(x).numpy()
                k = min(5, logits.shape[1])
                best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
                top1[variant.name] += int(np.sum(best[:, 0] == labels))
                top5[variant.name] += int(np.sum(np.any(best == labels[:, None], axis=1)))
    return {name: (100.0 * top1[name] / len(data), 100.0 * top5[name] / len(data)) for name in top1}


def latency(variants: Sequence[Variant], image: torch.Tensor, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median single-image latency (ms) on one thread, variants timed round-robin.

    Each round runs every variant once, starting from a different variant each round, so
    slow drifts in machine load and cache state are shared evenly.
    """
    if repeats < 1:
        raise ValueError(f"latency repeats={repeats}: expected at least 1")
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    with torch_threads(1), torch.no_grad():
        for round_index in range(warmup + repeats):
            shift = round_index % len(variants)
            for variant in list(variants[shift:]) + list(variants[:shift]):
                with quantized_engine(variant.engine):
                    start = time.perf_counter()
                    variant.model(image)
                    elapsed = time.perf_counter() - start
                if round_index >= warmup:
                    times[variant.name].append(elapsed * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def bit_exact(variant: Variant, inputs: torch.Tensor, out_dir: Path) -> tuple[str, str]:
    """Export `variant` and check it node by node against the reference (`production.verify`).

    Returns (verdict, detail): "yes", "NO" (detail: the first mismatching node), "quantized
    only" (every quantized value bit-exact, float-island values differ where this CPU's
    float summation order is not specified), or "not checked" when the model cannot be
    exported or the reference cannot run it (detail: why). Runs under the variant's engine,
    so the x86 row checks oneDNN's conv kernels.
    """
    stem = variant.name.replace(" ", "_")
    try:
        with known_deprecations_silenced(), quantized_engine(variant.engine):
            report = verify(variant.model, inputs, model_path=out_dir / f"{stem}.qsm",
                            repro_path=out_dir / f"{stem}.repro.qsm")
    except (ExportError, UnknownNodeKind, NodeError) as error:
        return "not checked", f"{type(error).__name__}: {error}"
    lines = report.format().splitlines()
    if report.verdict != MISMATCH:
        return "yes" if report.ok else "quantized only", f"{len(inputs)} images: {lines[-1]}"
    bad = sum(not check.equal for check in report.checks)
    where = next((line for line in lines if line.startswith("MISMATCH: ")), lines[-1]).removeprefix("MISMATCH: ")
    return "NO", (f"{len(inputs)} images: {bad} of {len(report.checks)} values differ; {where}; "
                  f"repro file {report.repro_path}")


def compare(
    model: PathLike,
    arch: str,
    data_dir: PathLike,
    calib_dir: PathLike,
    calib_count: int = 1000,
    limit: Optional[int] = None,
    out_dir: PathLike = "compare-out",
    latency_repeats: int = 50,
    verify_inputs: int = 4,
    batch_size: int = 100,
    progress: bool = True,
    plot: Optional[PathLike] = None,
) -> Comparison:
    """Build every variant of `model`, measure them, write `compare.json` and `compare.md` to `out_dir`.

    Args:
        model: a checkpoint or an unfrozen float TorchScript file (see `load_float`).
        arch: the production.zoo architecture name (e.g. "cifar_resnet20").
        data_dir, calib_dir: ImageFolder trees for evaluation and calibration.
        calib_count: calibration images (evenly spread over classes); limit: evaluation images.
        latency_repeats: timed rounds per variant (after 5 warm-up rounds).
        verify_inputs: test images the bit-exact check runs node by node.
        plot: also draw a bar chart of accuracy and latency to this PNG.
    """
    if plot is not None:
        require_matplotlib()
    out = Path(out_dir)
    transform = transform_for(arch)
    test = ImageFolder(data_dir, transform, limit=limit)
    float_module = load_float(model, arch)
    calib = image_batches(calib_dir, transform, calib_count, batch_size, progress)
    variants = build_variants(float_module, arch, calib, out)
    verify_batch = torch.from_numpy(np.stack([test[i][0] for i in range(min(verify_inputs, len(test)))]))
    checks = {v.name: ("n/a", "float model") if v.name == "float" else bit_exact(v, verify_batch, out)
              for v in variants}
    scores = accuracy(variants, test, batch_size, progress)
    times = latency(variants, torch.from_numpy(test[0][0][None]), latency_repeats)
    rows = [_row(v, scores, times, checks[v.name]) for v in variants]
    result = Comparison(rows, _meta(arch, data_dir, calib_dir, len(test), sum(len(b) for b in calib), latency_repeats))
    write_text_atomically(out / "compare.json", result.to_json())
    write_text_atomically(out / "compare.md", result.markdown())
    if plot is not None:
        with atomic_output(plot) as temporary:
            plot_comparison(result, temporary)
    return result


def _row(variant: Variant, scores: dict, times: dict, check: tuple[str, str]) -> Row:
    return Row(
        variant=variant.name,
        size_mb=variant.path.stat().st_size / 1e6,
        top1=scores[variant.name][0],
        top5=scores[variant.name][1],
        latency_ms=times[variant.name],
        latency_ratio=times[variant.name] / times["float"],
        bit_exact=check[0],
        bit_exact_detail=check[1],
        quant_seconds=variant.quant_seconds,
        note=variant.note,
    )


def _meta(
    arch: str, data_dir: PathLike, calib_dir: PathLike, test_images: int, calib_images: int, repeats: int
) -> dict[str, Any]:
    return {
        "arch": arch,
        "data_dir": str(data_dir),
        "calib_dir": str(calib_dir),
        "test_images": test_images,
        "calib_images": calib_images,
        "latency_repeats": repeats,
        "torch": torch.__version__,
        "profile": detect_profile().name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def require_matplotlib() -> None:
    """Fail early, before minutes of work, when a plot is asked for and matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("plotting needs matplotlib: pip install 'quantspec[plot]'")


def plot_comparison(result: Comparison, path: PathLike) -> None:
    """Bar charts of top-1 accuracy and latency per variant (matplotlib, imported here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row.variant for row in result.rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    top1 = [row.top1 or 0.0 for row in result.rows]
    left.bar_label(left.barh(names, top1, color="tab:blue"), fmt="%.2f", padding=3)
    left.set_xlabel("top-1 accuracy (%)")
    left.set_xlim(max(0.0, min(top1) - 5.0), min(100.0, max(top1) + 3.0))
    bars = right.barh(names, [row.latency_ms or 0.0 for row in result.rows], color="tab:orange")
    labels = [f"{row.latency_ms:.2f} ms ({row.latency_ratio:.2f}x)" for row in result.rows]
    right.bar_label(bars, labels=labels, padding=3)
    right.set_xlim(0.0, 1.35 * max(row.latency_ms or 0.0 for row in result.rows))
    right.set_xlabel("latency, batch 1, 1 thread (ms)")
    right.set_yticklabels([])
    for axis in (left, right):
        axis.invert_yaxis()
    fig.suptitle(f"{result.meta['arch']}: {result.meta['test_images']} test images, torch {result.meta['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

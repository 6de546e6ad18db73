"""Detect the numerics profile of the running torch and CPU, and pin the engine.

The reference takes a `NumericsProfile` as data; this module is where production and
conformance find out which profile the torch in this process actually implements.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import sys
import tempfile
import warnings
from typing import Callable, Iterator, ParamSpec, Sequence, TypeVar

import torch

from quantspec.reference.profile import ENGINES, NumericsProfile

P = ParamSpec("P")
R = TypeVar("R")

# The engine production uses unless told otherwise: explicit beats torch's own default (x86,
# which sends conv to oneDNN at prepack time on AVX512-VNNI CPUs).
ENGINE = "fbgemm"


def torch_release() -> str:
    """The running torch's major.minor release, e.g. "2.13"."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return f"{major}.{minor}"


def _cpuinfo_field(name: str) -> str:
    """The first `name : value` of /proc/cpuinfo ("" elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    return set(_cpuinfo_field("flags").split())


def hardware_cpu_features() -> str:
    """The instruction set CPUID offers: "avx512_vnni", "avx512" or "avx2", ignoring the
    switches that lower what FBGEMM and ATen use (FBGEMM's groupwise conv follows CPUID
    alone, see conformance.checks.conv2d)."""
    flags = cpu_flags()
    if not {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx2"
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512"


class OnednnIsaError(ValueError):
    """The onednn engine was asked for where oneDNN does not run the AVX2 kernels quantspec
    specifies (`onednn_isa`)."""


# `ONEDNN_MAX_CPU_ISA` values (also read as `DNNL_MAX_CPU_ISA`) that keep oneDNN below AVX2.
_ONEDNN_BELOW_AVX2 = ("SSE41", "AVX")


def onednn_isa() -> str:
    """The instruction set oneDNN's int8 kernels dispatch to here: "avx2" (the kernels quantspec
    specifies), "avx2_vnni" (CPUID's AVX-VNNI: `vpdpbusd`, no int16 pairs), "avx512", or
    "sse41" (`ONEDNN_MAX_CPU_ISA=AVX` or `SSE41`: oneDNN has no AVX int8 kernels, so both run
    its SSE4.1 ones, and its linear then saturates other pairs than the AVX2 GEMM, measured).
    oneDNN reads the variable once, at its first dispatch; this reads it now."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    if cap in _ONEDNN_BELOW_AVX2:
        return "sse41"
    if cap == "AVX2":
        return "avx2"
    if hardware_cpu_features() != "avx2" and not cap.startswith("AVX2"):
        return "avx512"
    return "avx2_vnni" if "avx_vnni" in cpu_flags() else "avx2"


def detect_cpu_features() -> str:
    """The instruction set FBGEMM and ATen dispatch to here: "avx512_vnni", "avx512" or "avx2".

    Honours the two switches that lower it: `FBGEMM_ENABLE_INSTRUCTIONS` (FBGEMM) and
    `ATEN_CPU_CAPABILITY` (ATen, read back through `torch.backends.cpu`).
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"quantspec specifies fbgemm on x86-64 only; this machine is {platform.machine()}")
    hardware = hardware_cpu_features()
    forced = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").upper()
    aten = torch.backends.cpu.get_cpu_capability().upper()
    if hardware == "avx2" or forced == "AVX2" or not aten.startswith("AVX512"):
        return "avx2"
    if hardware == "avx512_vnni" and forced != "AVX512":
        return "avx512_vnni"
    return "avx512"


def describe_cpu() -> str:
    """The CPU a measurement ran on, for its record: the model name, the CPU count and the
    instruction set FBGEMM and ATen dispatch to here (`detect_cpu_features`)."""
    model = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} CPUs, {detect_cpu_features()}"


def cpu_vendor() -> str:
    """The CPU vendor Linux reports (`vendor_id` of /proc/cpuinfo, e.g. "AuthenticAMD"), or ""."""
    return _cpuinfo_field("vendor_id")


def bundled_mkl_version() -> str:
    """The oneMKL release torch links, from `torch.__config__.show()` (e.g. "2024.2"), or ""."""
    match = re.search(r"Math Kernel Library Version (\d+\.\d+)", torch.__config__.show())
    return match.group(1) if match and torch.backends.mkl.is_available() else ""


def bundled_onednn_version() -> str:
    """The oneDNN (MKL-DNN) release torch links, from `torch.__config__.show()` (e.g. "3.12"), or ""."""
    match = re.search(r"MKL-DNN v(\d+\.\d+)", torch.__config__.show())
    return match.group(1) if match and torch.backends.mkldnn.is_available() else ""


def detect_float_gemm() -> str:
    """The float-island summation order (`NumericsProfile.float_gemm`) of this process.

    "mkl2024.2-amd" when torch bundles oneMKL 2024.2 (float linear, small convs) and
    oneDNN 3.12 (the other convs) and runs on an AMD CPU with
    `MKL_CBWR` unset (any MKL_CBWR value switches MKL to other kernels); "unspecified" otherwise
    (Intel CPUs pick other MKL code paths and are not modelled).
    """
    if os.environ.get("MKL_CBWR"):
        return "unspecified"
    libraries = (bundled_mkl_version(), bundled_onednn_version())
    if libraries == ("2024.2", "3.12") and cpu_vendor() == "AuthenticAMD":
        return "mkl2024.2-amd"
    return "unspecified"


def detect_profile(engine: str = ENGINE) -> NumericsProfile:
    """The numerics profile of this process for a model prepacked and run under `engine`
    ("fbgemm", "qnnpack", "onednn" or "x86"): torch release, CPU features, engine, float GEMM order.

    OnednnIsaError for the onednn engine on an AVX2 CPU whose oneDNN does not run its AVX2
    kernels (`onednn_isa`): the profile would name arithmetic this process does not perform.
    (On AVX512 CPUs the profile itself says oneDNN's kernels are not specified.)"""
    profile = NumericsProfile(torch_release(), detect_cpu_features(), check_engine(engine), detect_float_gemm())
    if engine == "onednn" and profile.cpu == "avx2" and (isa := onednn_isa()) != "avx2":
        raise OnednnIsaError(
            f"oneDNN here runs its {isa} int8 kernels, not the AVX2 ones quantspec specifies for the onednn "
            "engine; set ONEDNN_MAX_CPU_ISA=AVX2"
        )
    return profile


def detect_engine() -> str:
    """The engine torch is set to now (`torch.backends.quantized.engine`), for callers who
    follow torch's setting instead of naming one; ValueError if quantspec does not model it."""
    return check_engine(torch.backends.quantized.engine)


def offered_engines() -> list[str]:
    """The quantized engines quantspec models (`ENGINES`, fbgemm first) that this torch build offers."""
    supported = set(torch.backends.quantized.supported_engines)
    return [engine for engine in ENGINES if engine in supported]


def check_engine(name: str) -> str:
    """`name` if it is a quantized engine quantspec models (`ENGINES`) and this torch build
    offers; else ValueError naming the choices."""
    offered = offered_engines()
    if name not in offered:
        raise ValueError(f"quantized engine {name!r} is not one quantspec models on this torch build; "
                         f"expected one of {offered}")
    return name


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    """Run the block with `torch.backends.quantized.engine = name` (checked by `check_engine`),
    then restore the caller's."""
    check_engine(name)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `torch.set_num_threads(count)`, then restore the caller's count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fbgemm_engine() -> contextlib.AbstractContextManager[None]:
    """`quantized_engine('fbgemm')`.

    The default `x86` engine sends conv to oneDNN at prepack time (including
    `torch.jit.load`), with different numerics; every production step pins fbgemm.
    """
    return quantized_engine(ENGINE)


# Lines torch's C and C++ code writes straight to file descriptor 2 (past Python's warnings)
# that say nothing the call's result does not: pytorch_qnnpack's log line for an operator it
# refuses to create (pytorch_qnnp_log_error; torch then raises the RuntimeError the caller
# handles, e.g. an add whose scale ratio is outside [2^-14, 2^8)), and the TORCH_WARN of an
# observer that saw no data when convert_jit asks its qparams from TorchScript (it returns the
# default qparams, as the reference's observers do).
NATIVE_NOTICES = (
    rb"^Error in QNNPACK: failed to create ",
    rb"^\[W\d{4} [0-9:.]+ \w+\.py:\d+\] Warning: must run observer before calling calculate_qparams\.",
)


@contextlib.contextmanager
def native_notices_filtered(patterns: Sequence[bytes] = NATIVE_NOTICES) -> Iterator[None]:
    """Run the block with file descriptor 2 captured, then write back to it every captured line
    that matches none of `patterns` (regular expressions, `re.search` on the line's bytes), in
    order. Catches what C and C++ code prints (which bypasses `sys.stderr`) as well as Python's
    own stderr output in the block; lines are written back even if the block raises."""
    compiled = [re.compile(pattern) for pattern in patterns]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True)
                        if not any(pattern.search(line) for pattern in compiled)]
                unwritten = b"".join(kept)
                while unwritten:
                    unwritten = unwritten[os.write(2, unwritten):]
    finally:
        os.close(saved)


# torch's own notices about the APIs quantspec calls on purpose (pyproject.toml filters the
# same messages in pytest). They say nothing about numerics; anything else stays visible.
KNOWN_DEPRECATIONS = (
    r"`torch\.jit\.[a-z_]+` is deprecated",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation functions",
    r"Please use quant_min and quant_max to specify the range for observers",
    r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed",
    r"torch\.ao\.quantization is deprecated",
)


@contextlib.contextmanager
def known_deprecations_silenced() -> Iterator[None]:
    """Ignore exactly torch's known deprecation messages inside the block; every other
    warning (and these same messages outside the block) is untouched."""
    with warnings.catch_warnings():
        for message in KNOWN_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message)
        _spend_quantized_tensor_notice()
        yield


def silenced_in_workers(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run under `known_deprecations_silenced`: for the functions `parallel.ordered_map`
    runs in other processes. A spawned process or a Dask worker starts with Python's default
    warning filters, not the CLI's, and shows torch 2.14's FutureWarnings (`torch.jit.script`)
    on every call. Picklable by reference like `function` (`functools.wraps` keeps its name)."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with known_deprecations_silenced():
            return function(*args, **kwargs)

    return run


@functools.cache
def _spend_quantized_tensor_notice() -> None:
    """torch's quantized-tensor deprecation is a C++ TORCH_WARN_ONCE. Raised inside TorchScript
    (every converted model's quantize_per_tensor) it bypasses Python's warnings and is printed
    on stderr; raised by a call from Python it is a Python warning. One such call, under the
    filter above, spends the once for the process: the filter drops it by its message."""
    torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)

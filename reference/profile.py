"""Numerics profiles: the torch release, CPU features and engine that fix the arithmetic.

The same converted model gives different int8 results on different torch releases and
CPUs. The reference never guesses: every op takes a `NumericsProfile` and asks it
named questions (`zero_point_before_rounding`, `gemm_pairs_saturate`, ...). Detecting
the running torch and CPU is not the reference's job; `production.environment` does it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arguments import ArgumentError, describe

TORCH_RELEASES = ("2.13", "2.14")
CPU_FEATURE_SETS = ("avx512_vnni", "avx512", "avx2")
# `torch.backends.quantized.engine` (docs/spec.md, Engines):
#   fbgemm:  FBGEMM's conv/linear kernels; ATen's kernels for every other op.
#   qnnpack: pytorch_qnnpack (its x86 SSE2 build) for conv/linear and, for quint8 inputs, for
#            add/add_relu, avg_pool2d, adaptive_avg_pool2d, mean over (2, 3), max_pool2d,
#            hardswish and clamp/hardtanh; ATen's kernels otherwise (qint8 inputs among them).
#   onednn:  oneDNN's conv/linear kernels: specified for its AVX2 (no VNNI) kernels (docs/spec.md,
#            Engines); on AVX512 CPUs not specified (EngineNotSpecifiedError); every other op as under fbgemm.
#   x86:     torch's default: conv by `NumericsProfile.conv2d_library` (oneDNN or FBGEMM), linear
#            FBGEMM, every other op as under fbgemm; without AVX512-VNNI exactly fbgemm.
ENGINES = ("fbgemm", "qnnpack", "onednn", "x86")
# Summation orders of float32 GEMM/conv in torch's float islands (see float_gemm below).
FLOAT_GEMM_ORDERS = ("unspecified", "mkl2024.2-amd")


@dataclass(frozen=True)
class NumericsProfile:
    """What decides the integer results of a quantized model.

    Attributes:
        torch_release: "2.13" or "2.14" (major.minor; patch releases share numerics).
        cpu: "avx512_vnni", "avx512" or "avx2": the instruction set FBGEMM dispatches to.
        engine: the quantized engine (`torch.backends.quantized.engine`): "fbgemm",
            "qnnpack", "onednn" or "x86" (ENGINES). Conv and linear follow the engine set
            when their weights were prepacked, every other op the engine set when it runs;
            a profile describes a model whose weights were prepacked and which runs under
            the same engine.
        float_gemm: the summation order of the FLOAT `aten::linear` / `aten::conv2d` a
            converted model keeps in its float islands (MKL SGEMM / oneDNN, chosen by the
            MKL release and the CPU vendor, not by the torch release): "mkl2024.2-amd"
            (oneMKL 2024.2 / oneDNN 3.12 on an AMD CPU, MKL_CBWR unset; see
            reference.ops.float_ops) or "unspecified" (the reference sums in float64 and
            rounds once; torch may differ in the last bit). Integer numerics never depend on it.
    """

    torch_release: str
    cpu: str
    engine: str = "fbgemm"
    float_gemm: str = "unspecified"

    def __post_init__(self) -> None:
        _check_choice("torch_release", self.torch_release, TORCH_RELEASES)
        _check_choice("cpu", self.cpu, CPU_FEATURE_SETS)
        _check_choice("engine", self.engine, ENGINES)
        _check_choice("float_gemm", self.float_gemm, FLOAT_GEMM_ORDERS)

    @property
    def name(self) -> str:
        """Stable identifier of the quantized (integer) numerics, e.g. `torch2.13-avx512_vnni-fbgemm`.
        `float_gemm` is not part of it: it only concerns float islands and is reported on its own."""
        return f"torch{self.torch_release}-{self.cpu}-{self.engine}"

    # --- release differences (see docs/profiles.md) ---------------------------------

    @property
    def zero_point_before_rounding(self) -> bool:
        """FBGEMM's LEGACY quantize (2.13) adds zp to the float before rounding;
        FBGEMM 798a6037ac0c (in 2.14) rounds first, then adds zp as an integer."""
        return self.torch_release == "2.13"

    @property
    def depthwise_per_tensor_bias_fma(self) -> bool:
        """Depthwise requantization with per-tensor weights fuses `bias*rcp + acc` into
        one fma on 2.13; 2.14's build multiplies and adds separately."""
        return self.torch_release == "2.13"

    # --- CPU differences ------------------------------------------------------------

    @property
    def gemm_pairs_saturate(self) -> bool:
        """Without VNNI, FBGEMM's GEMM kernels multiply with `vpmaddubsw`, which saturates
        each adjacent pair of u8*s8 products to int16 before accumulating in int32
        (pytorch_qnnpack's kernels never saturate: `numerics.dot_u8u8acc32_qnnpack_ref`)."""
        return self.cpu != "avx512_vnni"

    @property
    def avx512(self) -> bool:
        """Whether the few ATen kernels with an AVX512 build (per-channel dequantize,
        NHWC avg_pool2d, ...) run it; that sets their vector width and scalar tails."""
        return self.cpu in ("avx512_vnni", "avx512")

    @property
    def aten_avx512_float_lanes(self) -> int:
        """float32 lanes of ATen kernels that have an AVX512 build (16, else 8)."""
        return 16 if self.avx512 else 8

    # --- engine differences -----------------------------------------------------------

    def conv2d_library(self, weight_zero_point: int | np.ndarray, groups: int) -> str:
        """Whose kernel a quantized conv2d prepacked under this engine runs: "fbgemm",
        "qnnpack" or "onednn" (`specified_library` says whether quantspec specifies it).

        The x86 engine decides at prepack (`QConvPackWeightInt8::_run`, qconv_prepack.cpp;
        the same rule unpickles a packed weight, conv_serialization.h): oneDNN iff
        `onednn_utils::should_use_onednn_quant` (OnednnUtils.h) holds: Linux (quantspec's
        profiles are Linux; elsewhere x86 is FBGEMM everywhere), an AVX512-VNNI CPU (CPUID's
        flag: `FBGEMM_ENABLE_INSTRUCTIONS` does not lower it), groups <= 100, a symmetric
        weight (every zero point 0) and no output padding (a conv2d has none; transposed
        convs are not specified). Otherwise FBGEMM's `PackedConvWeight`.

        >>> x86 = NumericsProfile("2.13", "avx512_vnni", "x86")
        >>> x86.conv2d_library(0, 1), x86.conv2d_library(3, 1), x86.conv2d_library(0, 128)
        ('onednn', 'fbgemm', 'fbgemm')
        >>> NumericsProfile("2.13", "avx2", "x86").conv2d_library(0, 1)
        'fbgemm'
        """
        if self.engine != "x86":
            return self.engine
        symmetric = not np.any(np.asarray(weight_zero_point))
        return "onednn" if self.cpu == "avx512_vnni" and groups <= 100 and symmetric else "fbgemm"

    @property
    def linear_library(self) -> str:
        """Whose kernel a quantized linear prepacked under this engine runs: the x86 engine
        always packs FBGEMM's `PackedLinearWeight` (`QLinearPackWeightInt8::run`,
        qlinear_prepack.cpp); the others their own library's."""
        return "fbgemm" if self.engine == "x86" else self.engine


class EngineNotSpecifiedError(NotImplementedError):
    """The profile runs a kernel whose integer arithmetic quantspec does not specify: oneDNN's
    quantized conv2d and linear on AVX512 CPUs (docs/spec.md, Engines)."""


class EngineRefusedError(ValueError):
    """torch refuses these arguments under the profile's engine (a RuntimeError there, e.g.
    pytorch_qnnpack's "failed to create ... operator"); the reference refuses them too."""


def specified_library(library: str, op: str, profile: NumericsProfile | None = None) -> str:
    """`library` (from `conv2d_library` / `linear_library`), unless quantspec does not specify
    its kernel under `profile`: then EngineNotSpecifiedError naming `op`. oneDNN's kernels are
    specified on AVX2 CPUs only (`jit_uni_int8:avx2`, `gemm:jit` with the AVX2 s8u8s32 kernel);
    AVX512 and VNNI CPUs run others (brgemm, `vpdpbusd`, other GEMM blocking).

    >>> specified_library("onednn", "quantized::linear", PROFILES["torch2.13-avx2-onednn"])
    'onednn'
    """
    if library == "onednn" and (profile is None or profile.cpu != "avx2"):
        raise EngineNotSpecifiedError(
            f"{op} runs oneDNN's kernel under this profile; quantspec specifies oneDNN's quantized "
            "conv2d/linear arithmetic on AVX2 CPUs only (docs/spec.md, Engines)"
        )
    return library


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"NumericsProfile.{field}={value!r} is not supported; expected one of {allowed}")


PROFILES: dict[str, NumericsProfile] = {
    p.name: p
    for p in (NumericsProfile(r, c, e) for r in TORCH_RELEASES for c in CPU_FEATURE_SETS for e in ENGINES)
}

# The profile the reference uses when none is given: torch 2.13 on an AVX512-VNNI CPU.
DEFAULT_PROFILE = PROFILES["torch2.13-avx512_vnni-fbgemm"]


def get_profile(name: str) -> NumericsProfile:
    """Look up a named profile, e.g. `get_profile("torch2.14-avx2-fbgemm")`; an unknown name
    raises ArgumentError listing the known ones."""
    if not isinstance(name, str):
        raise ArgumentError(f"profile name must be a str, got {describe(name)}")
    try:
        return PROFILES[name]
    except KeyError:
        raise ArgumentError(f"unknown numerics profile name {name!r}; known: {sorted(PROFILES)}") from None


def as_profile(value: NumericsProfile | str, name: str = "profile") -> NumericsProfile:
    """The profile a public function's `profile` argument stands for: a NumericsProfile, or a
    profile name resolved with `get_profile`.

    >>> as_profile("torch2.14-avx2-fbgemm") is get_profile("torch2.14-avx2-fbgemm")
    True
    """
    if isinstance(value, NumericsProfile):
        return value
    if isinstance(value, str):
        if value not in PROFILES:
            raise ArgumentError(f"{name}={value!r} is not a known numerics profile; known: {sorted(PROFILES)}")
        return PROFILES[value]
    raise ArgumentError(f"{name} must be a NumericsProfile or a profile name, got {describe(value)}")

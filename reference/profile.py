"""Numerics profiles: the torch release, CPU features and engine that fix the arithmetic.

The same converted model gives different int8 results on different torch releases and
CPUs. The reference never guesses: every op takes a `NumericsProfile` and asks it
named questions (`zero_point_before_rounding`, `gemm_pairs_saturate`, ...). Detecting
the running torch and CPU is not the reference's job; `production.environment` does it.
"""

from __future__ import annotations

from dataclasses import dataclass

TORCH_RELEASES = ("2.13", "2.14")
CPU_FEATURE_SETS = ("avx512_vnni", "avx512", "avx2")
ENGINES = ("fbgemm",)
# Summation orders of float32 GEMM/conv in torch's float islands (see float_gemm below).
FLOAT_GEMM_ORDERS = ("unspecified", "mkl2024.2-amd")


@dataclass(frozen=True)
class NumericsProfile:
    """What decides the integer results of a quantized model.

    Attributes:
        torch_release: "2.13" or "2.14" (major.minor; patch releases share numerics).
        cpu: "avx512_vnni", "avx512" or "avx2": the instruction set FBGEMM dispatches to.
        engine: the quantized engine; only "fbgemm" is specified.
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
        """Without VNNI, GEMM kernels multiply with `vpmaddubsw`, which saturates each
        adjacent pair of u8*s8 products to int16 before accumulating in int32."""
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


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"NumericsProfile.{field}={value!r} is not supported; expected one of {allowed}")


PROFILES: dict[str, NumericsProfile] = {
    p.name: p for p in (NumericsProfile(r, c) for r in TORCH_RELEASES for c in CPU_FEATURE_SETS)
}

# The profile the reference uses when none is given: torch 2.13 on an AVX512-VNNI CPU.
DEFAULT_PROFILE = PROFILES["torch2.13-avx512_vnni-fbgemm"]


def get_profile(name: str) -> NumericsProfile:
    """Look up a named profile, e.g. `get_profile("torch2.14-avx2-fbgemm")`."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown numerics profile {name!r}; known: {sorted(PROFILES)}") from None

"""Which oneDNN kernels this process runs (`onednn_isa`), and the onednn profile refused where
they are not the AVX2 ones quantspec specifies.

Measured on an AVX2 AMD EPYC, torch 2.13.0: with ONEDNN_MAX_CPU_ISA=AVX or SSE41, oneDNN runs
`jit_uni_int8:sse41` convs and a linear whose int16 pairs saturate elsewhere: `conform --engine
onednn` found LinearCase(in_features=565, out_features=2, all scales 0.25, zero points 0)
giving 34 where the AVX2 reference gives 31. So such a process must not be labelled avx2-onednn.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from quantspec.production import environment  # noqa: E402
from quantspec.production.environment import OnednnIsaError, detect_profile, onednn_isa  # noqa: E402

AVX2 = {"avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Set the CPU flags `environment` reads, and clear both names of oneDNN's ISA cap."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)

    def set_flags(flags: set[str]) -> None:
        monkeypatch.setattr(environment, "cpu_flags", lambda: set(flags))

    return set_flags


@pytest.mark.parametrize(
    ("flags", "cap", "isa"),
    [
        (AVX2, None, "avx2"),
        (AVX2, "ALL", "avx2"),
        (AVX2, "avx", "sse41"),  # oneDNN has no AVX int8 kernels: SSE4.1 ones (measured)
        (AVX2, "SSE41", "sse41"),
        (AVX2 | {"avx_vnni"}, None, "avx2_vnni"),  # VEX vpdpbusd: no int16 pairs
        (AVX2 | {"avx_vnni"}, "AVX2", "avx2"),  # the cap restores the specified kernels
        (AVX512, None, "avx512"),
        (AVX512 | {"avx512_vnni"}, "AVX2", "avx2"),
        (AVX512 | {"avx_vnni"}, "AVX2_VNNI", "avx2_vnni"),
    ],
)
def test_onednn_isa_follows_cpuid_and_the_cap(cpu, monkeypatch, flags, cap, isa) -> None:
    cpu(flags)
    if cap is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert onednn_isa() == isa


def test_the_old_name_of_the_cap_counts_too(cpu, monkeypatch) -> None:
    cpu(AVX2)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "SSE41")
    assert onednn_isa() == "sse41"


def test_the_onednn_profile_is_refused_where_onednn_runs_other_kernels(cpu, monkeypatch) -> None:
    if "onednn" not in environment.offered_engines():
        pytest.skip("this torch has no onednn quantized engine")
    cpu(AVX2)
    monkeypatch.setattr(environment, "detect_cpu_features", lambda: "avx2")  # what ATen and FBGEMM run
    assert detect_profile("onednn").name.endswith("avx2-onednn")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    with pytest.raises(OnednnIsaError, match="runs its sse41 int8 kernels.*set ONEDNN_MAX_CPU_ISA=AVX2"):
        detect_profile("onednn")
    assert detect_profile("fbgemm").name.endswith("avx2-fbgemm")  # FBGEMM does not read oneDNN's cap

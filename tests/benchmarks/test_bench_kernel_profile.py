"""``benchmarks/kernel_profile.py``: its assembly reader counts a hand-written loop right, and
finds the SIMD and scatter loops of the compiled kernel."""

from __future__ import annotations

import numpy as np
import pytest

from _benchmark_scripts import BENCH_DIR, load_script

pytest.importorskip("numba")

LOOP = """
\t.p2align\t4
.LBB0_7:
\tmovl\t(%rbp,%rcx,4), %edx
\tincq\t(%r8,%rdx,8)
\tvmovsd\t(%rdi,%rdx,8), %xmm0
\tvaddsd\t(%rsi,%rcx,8), %xmm0, %xmm0
\tvmovsd\t%xmm0, (%rdi,%rdx,8)
\taddq\t$2, %rcx
\tcmpq\t%rcx, %rax
\tjne\t.LBB0_7
\tretq
"""


def test_loop_profile_counts_a_hand_written_loop() -> None:
    profile = load_script(BENCH_DIR / "kernel_profile.py", "kernel_profile_bench")
    (loop,) = profile.loop_profile(LOOP)
    # 8 instructions for 2 pixels; loads: movl, incq (read-modify-write), vmovsd load,
    # vaddsd's memory source; stores: incq and the vmovsd store; vector ALU: vaddsd only
    assert loop == {"instructions": 8, "pixels_per_pass": 2, "vector_alu": 1, "loads": 4,
                    "stores": 2, "rounds": False, "scatters": True}


def test_static_profile_finds_both_loops_of_the_kernel() -> None:
    profile = load_script(BENCH_DIR / "kernel_profile.py", "kernel_profile_bench")
    from densecal.metrics.functional._calibration import numba_kernel as nk

    kernel = nk.maps_kernel(True, cache=False)
    q = np.linspace(0, 1, 1000, dtype=np.float32)
    kernel(*profile._args(q, (q > 0.5).astype(np.int64), n_cells=64))
    static = profile.static_profile(kernel)
    simd, scatter = static["step1_simd_loop"], static["step2_scatter_loop"]
    assert simd["pixels_per_pass"] >= 4 and simd["vector_alu"] > 3  # vectorised, float64 work
    # two read-modify-writes per pixel (count, confidence sum) plus the key and the confidence
    assert scatter["stores"] == 2 and scatter["loads"] == 4

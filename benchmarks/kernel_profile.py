"""Profile of the fused CPU kernels of PixelCalibration: what each loop costs, per pixel.

Run: ``python benchmarks/kernel_profile.py [--n-maps 100] [--size 384]`` on an otherwise idle
machine. Prints ONE JSON object; every number comes from this run.

What it measures (one thread, the kernel called directly on one long row, best of 5):

* ``clock_ghz``: core clock estimated from a dependent chain of ``x = (x * K) ^ (x >> 29)``
  on uint64 (imul 3 cycles + xor 1 cycle per step on Intel and AMD cores since 2011); cycles
  below are ns times this clock. ``perf`` counters are not available in this VM.
* ``float32``: the float-map kernel (``numba_kernel.maps_kernel``, top-label confidence) on
  float32 maps and int64 targets (the benchmark's data), with parts switched off at compile
  time: the marginal cost of a part is the full kernel's time minus the time without it.
  Two data sets: ``smooth`` (benchmarks/calibration_metrics.py's maps) and ``saturated``
  (the same maps through ``sigmoid(40 logit q)``: 97 % of pixels below 0.01 or above 0.99,
  long runs of equal keys, as from a trained network). ``dram`` streams the whole data set,
  ``l2`` repeats one 65,536-pixel piece that stays in the L2 cache (compute only), and
  ``uint8_targets`` is the same kernel with the targets as uint8.
* ``subnormal_maps``: saturated maps computed in float64 and stored as float32, with and
  without the guard that reads positive subnormal q as 0 in the float32 edge test.
* ``float32_experiments_smooth_dram_ns_per_pixel``: the full kernel with other histogram
  sizes (``n_cells``), with the pixels shuffled (no runs of equal keys, no locality), and
  with int32 counts (not used: a piece could pass 2^31 pixels).
* ``avx512``: the full kernel recompiled in a subprocess with LLVM's 256-bit preference off
  (``NUMBA_CPU_FEATURES=<host>,-prefer-256-bit``), only where the CPU has AVX-512.
* ``static``: instructions per pixel of the SIMD loop (step 1) and the scatter loop (step 2)
  counted in the kernel's x86 assembly (numba ``inspect_asm``), with vector instructions and
  memory operands per pixel; the port bounds assume 3 vector ALU ports, 3 load and 2 store
  ports (Intel Golden Cove / AMD Zen 3 and later).
* ``uint8``: the 8-bit kernel (``numba_kernel.codes_kernel``) with int64 and uint8 targets.
* ``read``: torch ``sum`` over the same bytes (float32 + int64, uint8 + int64 read as int64
  words), one thread and two, the floor any pass over the data pays.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calibration_metrics import machine_info, make_maps

from densecal.metrics.functional._calibration import numba_kernel as nk

N_CELLS = 4096  # PixelCalibration's default: fine_bins 4096, n_bins 15
N_BINS = 15
PIECE = 1 << 16  # pixels of the cache-resident runs
VARIANTS: dict[str, frozenset[str]] = {
    "full": nk.PARTS,
    "without_validate": nk.PARTS - {"validate"},
    "without_nll_factors": nk.PARTS - {"nll"},
    "without_reduce": nk.PARTS - {"reduce"},
    "without_count_add": nk.PARTS - {"count"},
    "without_conf_sum_add": nk.PARTS - {"conf_sum"},
    "step1_only": nk.PARTS - {"count", "conf_sum", "reduce"},
    "without_subnormal_guard": nk.PARTS - {"subnormal_guard"},
}


def clock_ghz(steps: int = 200_000_000) -> float:
    import numba

    @numba.njit(cache=False)
    def chain(n: int, x: Any) -> Any:
        for _ in range(n):
            x = (x * np.uint64(0x9E3779B97F4A7C15)) ^ (x >> np.uint64(29))
        return x

    chain(10, np.uint64(1))
    best = min(_wall(lambda: chain(steps, np.uint64(1))) for _ in range(3))
    return 4 * steps / best / 1e9


def _wall(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def best_ns(run: Callable[[], Any], pixels: int, repeats: int = 5) -> float:
    run()
    return min(_wall(run) for _ in range(repeats)) / pixels * 1e9


def _args(q: np.ndarray, t: np.ndarray, n_cells: int = N_CELLS,
          count: type = np.int64) -> tuple[Any, ...]:  # fmt: skip
    kind = q.dtype.type
    return (q, t, kind(N_BINS), kind(0.5), kind(0.5), n_cells,
            np.zeros(8 * (n_cells + 1), count), np.zeros(2 * (n_cells + 1)),
            np.zeros(2))  # fmt: skip


def time_variants(kernels: dict[str, Callable[..., int]], q: np.ndarray, t: np.ndarray,
                  rounds: int = 7) -> dict[str, dict[str, float]]:  # fmt: skip
    """ns/pixel of every kernel in every mode, best of ``rounds`` round-robin passes.

    Round-robin (every variant once per round) spreads a burst of load on the host over all
    variants instead of one, so the differences between variants stay meaningful.
    """
    small_q, small_t = q[:PIECE].copy(), t[:PIECE].copy()
    laps = max(1, q.size // PIECE)
    t8 = t.astype(np.uint8)
    runs: dict[tuple[str, str], tuple[Callable[[], Any], int]] = {}
    for name, kernel in kernels.items():
        big, small, narrow = _args(q, t), _args(small_q, small_t), _args(q, t8)
        runs[name, "dram"] = (lambda k=kernel, a=big: k(*a)), q.size
        runs[name, "l2"] = (lambda k=kernel, a=small: [k(*a) for _ in range(laps)]), laps * PIECE
        runs[name, "uint8_targets"] = (lambda k=kernel, a=narrow: k(*a)), q.size
    best = {key: np.inf for key in runs}
    for run, _ in runs.values():
        run()  # compile and warm
    for _ in range(rounds):
        for key, (run, pixels) in runs.items():
            best[key] = min(best[key], _wall(run) / pixels * 1e9)
    out: dict[str, dict[str, float]] = {name: {} for name in kernels}
    for (name, mode), ns in best.items():
        out[name][mode] = ns
    return out


def _mnemonic(line: str) -> str:
    return line.split()[0]


def loop_profile(asm: str) -> list[dict[str, Any]]:
    """Innermost loops of x86 ``asm`` (AT&T syntax) with their instruction mix per pass.

    A loop is a backward conditional jump to a label; innermost: no other loop inside it.
    ``pixels_per_pass`` is the immediate of the last ``add``/``sub`` of a register in the
    body (the loop counter's step). Loads: instructions with a memory source operand (an
    ``inc``/``add`` to memory is a load and a store); stores: memory destination; vector
    ALU: instructions on ``xmm``/``ymm``/``zmm``/mask registers that are not plain moves
    from or to memory.
    """
    lines = [line.strip() for line in asm.splitlines()]
    labels = {line[:-1]: i for i, line in enumerate(lines) if re.fullmatch(r"\.LBB\w+:", line)}
    loops = []
    for i, line in enumerate(lines):
        jump = re.fullmatch(r"j\w+\s+(\.LBB\w+)", line)
        if jump and labels.get(jump.group(1), i) < i:
            loops.append((labels[jump.group(1)], i))
    inner = [(a, b) for a, b in loops
             if not any(a <= c < d <= b and (c, d) != (a, b) for c, d in loops)]  # fmt: skip
    out = []
    for a, b in inner:
        body = [x for x in lines[a + 1:b + 1] if x and not x.startswith((".", "#"))]
        step = next((abs(int(m.group(1))) for x in reversed(body)
                     if (m := re.fullmatch(r"(?:addq|subq)\s+\$(-?\d+), %r\w+", x))),
                    1)  # fmt: skip
        loads = stores = alu = 0
        for x in body:
            memory = "(" in x
            dest_memory = memory and x.rstrip().endswith(")")
            rmw = _mnemonic(x) in ("incq", "incl", "addq", "addl") and dest_memory
            moves = _mnemonic(x).startswith(("vmov", "vbroadcast", "vpbroadcast", "mov"))
            loads += int(memory and (not dest_memory or rmw))
            stores += int(dest_memory)
            alu += int(bool(re.search(r"%[xyz]mm|%k\d", x)) and not (moves and memory))
        out.append({
            "instructions": len(body), "pixels_per_pass": step, "vector_alu": alu,
            "loads": loads, "stores": stores,
            "rounds": any(_mnemonic(x).startswith(("vround", "vrndscale")) for x in body),
            "scatters": any(_mnemonic(x) == "incq" and x.rstrip().endswith(")") for x in body),
        })
    return out


def static_profile(kernel: Callable[..., int]) -> dict[str, Any]:
    """Instruction mix per pixel of the SIMD loop (step 1) and the scatter loop (step 2)."""
    asm = next(iter(kernel.inspect_asm().values()))
    loops = loop_profile(asm)
    result: dict[str, Any] = {}
    picks = (("step1_simd_loop", "rounds"), ("step2_scatter_loop", "scatters"))
    for name, flag in picks:
        loop = max((x for x in loops if x[flag]), key=lambda x: x["pixels_per_pass"],
                   default=None)  # fmt: skip
        if loop is None:
            continue
        px = loop["pixels_per_pass"]
        per: dict[str, Any] = {k: round(loop[k] / px, 2)
                               for k in ("instructions", "vector_alu", "loads", "stores")}
        per["pixels_per_pass"] = px
        per["bound_cycles"] = {  # 3 vector ALU ports, 3 load ports, 2 store ports
            "vector_alu": round(loop["vector_alu"] / px / 3, 2),
            "loads": round(loop["loads"] / px / 3, 2),
            "stores": round(loop["stores"] / px / 2, 2),
        }
        result[name] = per
    return result


def avx512_row(n_maps: int, size: int) -> float | None:
    """ns/pixel of the full float32 kernel compiled without the 256-bit preference."""
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features().flatten()
    except Exception:  # pragma: no cover
        return None
    if "+avx512f" not in features:
        return None
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r});"
            "import kernel_profile as k;"
            f"print(k.float32_full_ns({n_maps}, {size}))")  # fmt: skip
    env = dict(os.environ, NUMBA_CPU_FEATURES=features + ",-prefer-256-bit")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def data(n_maps: int, size: int, saturated: bool) -> tuple[np.ndarray, np.ndarray]:
    p, t = make_maps(n_maps, size, seed=0, device="cpu")
    if saturated:  # float32 arithmetic, as a network's sigmoid: subnormals below -87
        p = torch.sigmoid(40.0 * torch.logit(p, eps=1e-6))
    return p.reshape(-1).numpy(), t.reshape(-1).numpy()


def key_change_rate(q: np.ndarray, t: np.ndarray) -> float:
    """Share of pixels whose (cell, label) differs from the previous pixel's."""
    conf = np.maximum(q.astype(np.float64), 1.0 - q.astype(np.float64))
    key = np.minimum(conf * N_CELLS, N_CELLS).astype(np.int64) * 2 + (t >= 1)
    return float((key[1:] != key[:-1]).mean())


def float32_full_ns(n_maps: int, size: int) -> float:
    torch.set_num_threads(1)
    q, t = data(n_maps, size, saturated=False)
    kernel = nk.maps_kernel(True, cache=False)
    args = _args(q, t)
    return best_ns(lambda: kernel(*args), q.size)


def read_ns(tensors: list[torch.Tensor], pixels: int, threads: int) -> float:
    torch.set_num_threads(threads)
    try:
        return best_ns(lambda: [x.sum() for x in tensors], pixels)
    finally:
        torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-maps", type=int, default=100)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args(argv)
    info = machine_info("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ghz = clock_ghz()
    result: dict[str, Any] = {"benchmark": "kernel_profile", "machine": info,
                              "clock_ghz": round(ghz, 3), "n_cells": N_CELLS,
                              "data": {"n_maps": args.n_maps, "size": args.size,
                                       "preds": "float32", "target": "int64"}}  # fmt: skip
    kernels = {name: nk.maps_kernel(True, parts, cache=False) for name, parts in VARIANTS.items()}
    floats: dict[str, Any] = {}
    for label, saturated in (("smooth", False), ("saturated", True)):
        q, t = data(args.n_maps, args.size, saturated)
        rows = time_variants(kernels, q, t)
        full = rows["full"]
        floats[label] = {
            "ns_per_pixel": {k: {m: round(v, 3) for m, v in r.items()} for k, r in rows.items()},
            "cycles_per_pixel": {k: round(r["l2"] * ghz, 2) for k, r in rows.items()},
            "marginal_cycles_per_pixel_l2": {
                "step1_simd": round(rows["step1_only"]["l2"] * ghz, 2),
                "validate": round((full["l2"] - rows["without_validate"]["l2"]) * ghz, 2),
                "nll_factors": round((full["l2"] - rows["without_nll_factors"]["l2"]) * ghz, 2),
                "count_add": round((full["l2"] - rows["without_count_add"]["l2"]) * ghz, 2),
                "conf_sum_add": round((full["l2"] - rows["without_conf_sum_add"]["l2"]) * ghz,
                                      2),
                "reduce_products_logs": round((full["l2"] - rows["without_reduce"]["l2"]) * ghz,
                                              2),
                "subnormal_guard": round((full["l2"] - rows["without_subnormal_guard"]["l2"])
                                         * ghz, 2),
            },
            "subnormal_share": round(float(((q > 0) & (q < np.finfo(np.float32).tiny)).mean()),
                                     4),
            "share_below_001_or_above_099": round(float(((q < 0.01) | (q > 0.99)).mean()), 3),
            "key_change_rate": round(key_change_rate(q, t), 3),
        }
    result["float32"] = floats
    q, t = data(args.n_maps, args.size, saturated=False)
    full_kernel = kernels["full"]

    def full_ns(qq: np.ndarray, tt: np.ndarray, **kw: Any) -> float:
        arguments = _args(qq, tt, **kw)
        return round(best_ns(lambda: full_kernel(*arguments), qq.size), 3)

    order = np.random.default_rng(0).permutation(q.size)
    result["float32_experiments_smooth_dram_ns_per_pixel"] = {
        "as_run": full_ns(q, t),
        **{f"n_cells_{n}": full_ns(q, t, n_cells=n) for n in (256, 1024, 16384)},
        "pixels_shuffled": full_ns(q[order], t[order]),
        "count_as_int32": full_ns(q, t, count=np.int32),
    }
    # saturated maps computed in float64 and stored as float32 (as a user's saved .npy may be):
    # subnormal q for logits in (-103, -87), where float32 arithmetic takes a microcode assist
    p, t64 = make_maps(args.n_maps, args.size, seed=0, device="cpu")
    q64 = torch.sigmoid(40.0 * torch.logit(p.double(), eps=1e-12)).float().reshape(-1).numpy()
    t64 = t64.reshape(-1).numpy()
    unguarded = kernels["without_subnormal_guard"]
    arguments = _args(q64, t64)
    result["subnormal_maps"] = {
        "subnormal_share": round(float(((q64 > 0) & (q64 < np.finfo(np.float32).tiny)).mean()),
                                 4),
        "full_ns_per_pixel": full_ns(q64, t64),
        "without_guard_ns_per_pixel": round(best_ns(lambda: unguarded(*arguments), q64.size), 3),
    }
    result["static"] = static_profile(kernels["full"])
    avx = avx512_row(args.n_maps, args.size)
    result["avx512_full_dram_ns_per_pixel"] = None if avx is None else round(avx, 3)

    q, t = data(args.n_maps, args.size, saturated=False)
    v = np.rint(q * 255).astype(np.uint8)
    codes = nk.codes_kernel(cache=False)
    hist = np.zeros((4, 512), np.int64)
    t8 = t.astype(np.uint8)
    result["uint8"] = {
        "ns_per_pixel": {
            "int64_targets": round(best_ns(lambda: codes(v, t, hist), v.size), 3),
            "uint8_targets": round(best_ns(lambda: codes(v, t8, hist), v.size), 3),
        }
    }
    tq, tt = torch.from_numpy(q), torch.from_numpy(t)
    words = torch.from_numpy(v[: v.size // 8 * 8].view(np.int64))
    result["read"] = {
        f"{name}_{n}thread": round(read_ns(tensors, q.size, n), 3)
        for n in sorted({1, threads})
        for name, tensors in (("float32_int64", [tq, tt]), ("uint8_int64", [words, tt]),
                              ("int64_targets", [tt]))
    }
    torch.set_num_threads(threads)
    full = floats["smooth"]["ns_per_pixel"]["full"]["dram"]
    result["ratios"] = {
        "float32_full_over_read_1thread": round(full / result["read"]["float32_int64_1thread"],
                                                2),
        "float32_l2_over_dram": round(floats["smooth"]["ns_per_pixel"]["full"]["l2"] / full, 2),
        "uint8_over_read_1thread": round(result["uint8"]["ns_per_pixel"]["int64_targets"]
                                         / result["read"]["uint8_int64_1thread"], 2),
    }
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

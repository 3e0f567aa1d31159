"""PixelCalibration distributed and at scale: DDP merge, partition invariance, float64 sums.

1. Two real processes (gloo on CPU) evaluate uneven shards; what every rank reports after
   torchmetrics' sync equals the single-process metric on all maps.
2. Hypothesis: any partition of random maps into batches, each in its own metric and merged with
   ``merge_state``, equals one pass.
3. One bin past 2^24 pixels: the float64 states count exactly where a float32 accumulator
   (the ASLP code's) cannot.
"""

from __future__ import annotations

import itertools
import time
from fractions import Fraction
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _ddp_worker import CONFIGS, WORLD_SIZE, all_updates, run_rank, shard
from hypothesis import given, settings
from hypothesis import strategies as st

from densecal.metrics import PixelCalibration
from densecal.metrics.functional import pixel_calibration

KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")
TABLE_KEYS = ("bin_lower", "bin_upper", "count", "confidence", "accuracy")
COUNT_STATES = ("bin_count", "fine_count", "count", "image_count")
ROUNDED_STATES = ("nll", "image_sums")  # sums of logs / of per-image ratios: order-dependent
DDP_TIMEOUT_S = 120.0


def evaluate(updates: list[tuple[torch.Tensor, torch.Tensor]], options: dict[str, Any]):
    """A fresh metric fed ``updates`` in order: (states, compute(), reliability())."""
    metric = PixelCalibration(**options)
    for preds, target in updates:
        metric.update(preds, target)
    states = {k: v.clone() for k, v in metric.metric_state.items()}
    return states, metric.compute(), metric.reliability()


def assert_dicts_close(got: dict, want: dict, tol: float, what: str) -> None:
    assert set(got) == set(want), what
    for k in want:
        note = f"{what}/{k}"
        torch.testing.assert_close(
            got[k], want[k], atol=tol, rtol=0.0, equal_nan=True, msg=lambda m, n=note: f"{n}: {m}"
        )


def exact_states(options: dict[str, Any]) -> tuple[str, ...]:
    """States that must agree bit for bit however the pixels are split across ranks.

    Counts always. With probabilities on the dyadic grid of ``_ddp_worker`` every per-pixel
    term except the log of the NLL is exact in float64, hence so are all sums of them.
    """
    if options.get("input") == "logits":
        return (*COUNT_STATES, "correct")
    names = PixelCalibration(**options).metric_state
    return tuple(k for k in names if k not in ROUNDED_STATES)


# --------------------------------------------------------------------------- 1. DDP, 2 ranks


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run ``_ddp_worker.run_rank`` in 2 spawned processes; return each rank's saved results."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    if not dist.is_gloo_available():
        pytest.skip("the gloo backend is not available in this torch build")
    folder = tmp_path_factory.mktemp("ddp")
    # A FileStore in a fresh folder: no port to find, no MASTER_ADDR/MASTER_PORT to set
    # (os.environ is left untouched, so nothing needs restoring).
    context = mp.start_processes(
        run_rank,
        args=(WORLD_SIZE, str(folder / "store"), str(folder)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + DDP_TIMEOUT_S
    while not context.join(timeout=1.0):  # re-raises a rank's exception with its traceback
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                process.join(5.0)
            pytest.fail(f"DDP ranks did not finish within {DDP_TIMEOUT_S:.0f} s")
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ddp_two_ranks_equal_single_process(ddp_ranks: list[dict[str, Any]], name: str) -> None:
    options = CONFIGS[name]
    states, computed, table = evaluate(all_updates(options), options)
    exact = exact_states(options)
    for rank, results in enumerate(ddp_ranks):
        got = results[name]
        where = f"{name}/rank{rank}"
        assert_dicts_close(got["compute"], computed, 1e-12, f"{where}/compute")
        assert_dicts_close(got["reliability"], table, 1e-12, f"{where}/reliability")
        assert torch.equal(got["reliability"]["count"], table["count"])
        # the synced state: every sum of the whole dataset, exact where it can be
        assert_dicts_close(got["synced"], states, 1e-12, f"{where}/synced")
        for k in exact:
            assert torch.equal(got["synced"][k], states[k]), f"{where}/synced/{k} not exact"
        # before the sync each rank held its own shard only, and compute() restored that
        local, _, _ = evaluate(shard(rank, options), options)
        assert_dicts_close(got["local"], local, 0.0, f"{where}/local")
        assert_dicts_close(got["after_compute"], local, 0.0, f"{where}/after_compute")
        assert not torch.equal(got["local"]["count"], states["count"])  # the sync did something
    # all ranks report the very same numbers (same gathered states, same reduction order)
    assert_dicts_close(ddp_ranks[1][name]["compute"], ddp_ranks[0][name]["compute"], 0.0, name)
    synced = [r[name]["synced"] for r in ddp_ranks]
    summed = {k: sum(r[name]["local"][k] for r in ddp_ranks) for k in states}
    assert_dicts_close(synced[0], summed, 0.0, f"{name}/sum of local states")


def test_ddp_rank_without_data(ddp_ranks: list[dict[str, Any]]) -> None:
    """A rank that never called update() contributes zeros: both report rank 0's shard."""
    _, computed, table = evaluate(shard(0, {}), {})
    for results in ddp_ranks:
        assert_dicts_close(results["rank1-empty"]["compute"], computed, 1e-12, "empty/compute")
        assert_dicts_close(results["rank1-empty"]["reliability"], table, 1e-12, "empty/table")


# ----------------------------------------------------------- 2. partitions merge to one pass

PROPERTY_MODES = [
    {},
    {"aggregate": "per-image", "confidence": "positive", "target_type": "soft"},
    {"target_type": "strict", "ignore_index": 255, "n_bins": 7},
    {"input": "logits", "aggregate": "per-image", "ignore_index": 255, "fine_bins": 64},
]


@st.composite
def maps_and_partition(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Random maps ``(N, H, W)`` and an ordered partition of their indices into batches."""
    n = draw(st.integers(1, 7))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    q = torch.rand(n, h, w, generator=gen, dtype=torch.float64)
    levels = draw(st.sampled_from([None, 4, 255]))  # float maps, or ties on a few levels
    if levels is not None:
        q = (q * levels).round() / levels
    y = (torch.rand(n, h, w, generator=gen, dtype=torch.float64) < q).double()
    soft = torch.rand(n, h, w, generator=gen) < 0.3
    y[soft] = torch.rand(int(soft.sum()), generator=gen, dtype=torch.float64)
    y[torch.rand(n, h, w, generator=gen) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = 255
    order = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    return q, y, [order[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=25, deadline=None)
@given(data=maps_and_partition(), mode=st.sampled_from(PROPERTY_MODES))
def test_any_partition_merged_equals_one_pass(data, mode: dict[str, Any]) -> None:
    q, y, batches = data
    options = dict(mode)
    if "ignore_index" not in options:
        y = torch.where(y == 255, torch.zeros_like(y), y)  # no void pixels without ignore_index
    preds = torch.logit(q.clamp(1e-6, 1 - 1e-6)) if options.get("input") == "logits" else q
    whole = pixel_calibration(preds, y, **options)
    parts = []
    for index in batches:
        metric = PixelCalibration(**options)
        metric.update(preds[index], y[index])
        parts.append(metric)
    merged = parts[0]
    for other in parts[1:]:
        merged.merge_state(other)
    one_pass = PixelCalibration(**options)
    one_pass.update(preds, y)
    assert_dicts_close(merged.compute(), whole, 1e-12, "merged vs functional")
    assert_dicts_close(merged.reliability(), one_pass.reliability(), 1e-12, "reliability")
    for k in COUNT_STATES:
        assert torch.equal(merged.metric_state[k], one_pass.metric_state[k]), k
    assert merged.count.item() == (y != options.get("ignore_index", -1)).sum().item()


# ------------------------------------------------------------- 3. float64 past 2^24 pixels

BIG = 2048  # one update: a (1, 2048, 2048) map = 2^22 pixels
TAIL = 31  # one-pixel updates after the first 2^24 pixels


def test_float64_counts_exact_past_2_pow_24_pixels_in_one_bin() -> None:
    """Bin (0.7, 0.8] receives 2^24 + 31 pixels; a float32 counter stops at 2^24.

    Bin A: four (1, 2048, 2048) maps at q = 0.75 (conf 0.75, predicted 1), 8 pixels with y = 0,
    then 31 one-pixel updates q = 0.75, y = 1: n_A = 2^24 + 31.
    Bin B: 64 pixels at q = 0.125 (conf 0.875, predicted 0), 32 of them with y = 0.
    Gaps |S_conf - S_acc|: A: |0.75 n_A - (n_A - 8)| = 0.25 n_A - 8, B: |56 - 32| = 0.25 * 64 + 8,
    so ECE = 0.25 (n_A + 64) / N = 1/4 exactly, MCE = 24/64, OE = (64/N)(7/8)(3/8).
    """
    n_a, n_b = 2**24 + TAIL, 64
    n = n_a + n_b
    metric = PixelCalibration(n_bins=10)
    preds = torch.full((1, BIG, BIG), 0.75)  # float32, 16 MiB, reused by every update
    ones = torch.ones((1, BIG, BIG), dtype=torch.uint8)
    first = ones.clone()
    first.view(-1)[:8] = 0
    for target in (first, ones, ones, ones):  # 4 x 2^22 = 2^24 pixels
        metric.update(preds, target)
    for _ in range(TAIL):
        metric.update(torch.tensor([[0.75]]), torch.tensor([[1]], dtype=torch.uint8))
    tail_y = torch.tensor([[0] * 32 + [1] * 32], dtype=torch.uint8)
    metric.update(torch.full((1, n_b), 0.125), tail_y)

    count = metric.reliability()["count"]
    assert count[7].item() == n_a and count[8].item() == n_b
    assert count.sum().item() == n and metric.count.item() == n
    assert metric.fine_count.sum().item() == n
    out = metric.compute()
    assert out["ece"].item() == 0.25
    assert out["mce"].item() == 24 / 64
    exact_oe = float(Fraction(n_b, n) * Fraction(7, 8) * Fraction(24, 64))
    exact_acc = float(Fraction(n_a - 8 + 32, n))
    assert out["oe"].item() == pytest.approx(exact_oe, rel=4 * 2**-52, abs=0.0)
    assert out["accuracy"].item() == pytest.approx(exact_acc, rel=4 * 2**-52, abs=0.0)

    # The same per-bin sums kept in float32 running totals, one addition per update (as the
    # ASLP evaluation code does): every per-update sum is exact, the totals are not.
    count32, conf32, acc32 = (torch.zeros(2, dtype=torch.float32) for _ in range(3))
    for wrong in (8, 0, 0, 0):
        count32 += torch.tensor([2**22, 0.0])
        conf32 += torch.tensor([0.75 * 2**22, 0.0])
        acc32 += torch.tensor([2**22 - wrong, 0.0])
    for _ in range(TAIL):
        count32 += torch.tensor([1.0, 0.0])
        conf32 += torch.tensor([0.75, 0.0])
        acc32 += torch.tensor([1.0, 0.0])
    count32 += torch.tensor([0.0, n_b])
    conf32 += torch.tensor([0.0, 0.875 * n_b])
    acc32 += torch.tensor([0.0, 32.0])
    assert count32[0].item() == 2**24  # the float32 counter lost every pixel past 2^24
    assert torch.ones(n_a, dtype=torch.float32).sum().item() != n_a  # not a float32 number
    ece32 = ((conf32 - acc32).abs().sum() / count32.sum()).item()
    assert abs(ece32 - 0.25) > 1e-6

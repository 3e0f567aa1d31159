"""Tests of densecal.posthoc: streamed temperature scaling for dense binary / multi-class maps.

References used here are independent of the implementation: NLLs from torch's
``binary_cross_entropy_with_logits`` / ``cross_entropy`` in float64, derivatives from autograd,
optima from a brute-force grid over ``log T``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import densecal.posthoc.nll as nll_module
from densecal.errors import DensecalInputError
from densecal.posthoc import (
    TemperatureScaler,
    flatten_pixels,
    infer_task,
    minimise_unimodal,
    scaled_nll_terms,
)

LOG_T_MIN, LOG_T_MAX = math.log(0.05), math.log(20.0)


# ----------------------------------------------------------------------------- data + references
def binary_data(n: int, size: int, scale: float, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Calibrated logits ``a`` (N, size, size), Bernoulli(sigmoid(a)) targets, logits scale*a."""
    g = torch.Generator().manual_seed(seed)
    a = 2.0 * torch.randn(n, size, size, generator=g)
    y = torch.bernoulli(torch.sigmoid(a), generator=g)
    return scale * a, y, a


def multiclass_data(n: int, c: int, size: int, scale: float,
                    seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Calibrated logits ``a`` (N, C, size, size), class draws from softmax(a), logits scale*a."""
    g = torch.Generator().manual_seed(seed)
    a = 1.5 * torch.randn(n, c, size, size, generator=g)
    p = torch.softmax(a, dim=1).movedim(1, -1).reshape(-1, c)
    y = torch.multinomial(p, 1, generator=g).reshape(n, size, size)
    return scale * a, y, a


def ref_nll(logits: Tensor, target: Tensor, t: float, multiclass: bool,
            ignore_index: int = -100) -> float:
    """Independent float64 mean NLL of ``logits / t``."""
    z = logits.double() / t
    if multiclass:
        return F.cross_entropy(z, target.long(), ignore_index=ignore_index).item()
    return F.binary_cross_entropy_with_logits(z, target.double()).item()


def grid_nll(logits: Tensor, target: Tensor, log_t: Tensor, multiclass: bool) -> Tensor:
    """Independent float64 mean NLL at every ``log_t`` of a grid, 100 grid points at a time."""
    out = []
    z = logits.double()
    for chunk in log_t.split(100):
        scale = torch.exp(-chunk).reshape(-1, *([1] * z.ndim))
        scaled = (z[None] * scale).flatten(0, 1)  # (G * N, ...)
        if multiclass:
            tgt = target.long().repeat(len(chunk), *([1] * (target.ndim - 1)))
            loss = F.cross_entropy(scaled, tgt, reduction="none")
        else:
            tgt = target.double().repeat(len(chunk), *([1] * (target.ndim - 1)))
            loss = F.binary_cross_entropy_with_logits(scaled, tgt, reduction="none")
        out.append(loss.reshape(len(chunk), -1).mean(1))
    return torch.cat(out)


def batched(logits: Tensor, target: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    return list(zip(logits.split(size), target.split(size), strict=True))


def mle_std_log_t(logits: Tensor, target: Tensor, log_t: float) -> float:
    """Asymptotic standard error of the MLE of log T: 1/sqrt(observed Fisher information)."""
    z, y = flatten_pixels(logits, target, task=infer_task(logits, target))
    _, _, d2 = scaled_nll_terms(z, y, log_t)
    return 1.0 / math.sqrt(d2.item())


@pytest.fixture(scope="module")
def binary_x2() -> tuple[Tensor, Tensor, Tensor]:
    return binary_data(64, 32, 2.0, seed=0)  # 65,536 pixels


@pytest.fixture(scope="module")
def multi_x3() -> tuple[Tensor, Tensor, Tensor]:
    return multiclass_data(16, 4, 32, 3.0, seed=1)  # 16,384 pixels, 4 classes


# ----------------------------------------------------------------------------- recovery of T
def test_binary_recovers_temperature_two(binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    result = TemperatureScaler().fit(batched(logits, y, 8))
    # the MLE's standard error in log T from the observed information (~0.008 here): 5 SE
    se = mle_std_log_t(logits, y, math.log(result.temperature))
    assert se < 0.02
    assert abs(math.log(result.temperature) - math.log(2.0)) < 5 * se
    assert result.converged and not result.at_bound and result.passes <= 10
    assert result.n_pixels == 64 * 32 * 32
    assert result.nll_before == pytest.approx(ref_nll(logits, y, 1.0, False), rel=1e-10)
    assert result.nll_after == pytest.approx(ref_nll(logits, y, result.temperature, False),
                                             rel=1e-10)
    # fitted T is the sample optimum: no worse than the true T = 2, far better than T = 1
    assert result.nll_after <= ref_nll(logits, y, 2.0, False)
    assert result.nll_after < 0.9 * result.nll_before


def test_multiclass_recovers_temperature_three(multi_x3: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = multi_x3
    scaler = TemperatureScaler()
    result = scaler.fit(batched(logits, y, 4))
    assert scaler.task == "multiclass"
    se = mle_std_log_t(logits, y, math.log(result.temperature))
    assert se < 0.03
    assert abs(math.log(result.temperature) - math.log(3.0)) < 5 * se
    assert result.converged and not result.at_bound
    assert result.nll_after == pytest.approx(ref_nll(logits, y, result.temperature, True),
                                             rel=1e-10)
    assert result.nll_after <= ref_nll(logits, y, 3.0, True) < result.nll_before


@pytest.mark.parametrize("multiclass", [False, True])
def test_matches_brute_force_grid(multiclass: bool) -> None:
    if multiclass:
        logits, y, _ = multiclass_data(4, 3, 16, 0.5, seed=5)  # under-confident: T < 1
    else:
        logits, y, _ = binary_data(8, 32, 4.0, seed=4)
    result = TemperatureScaler().fit(batched(logits, y, 3))
    grid = torch.linspace(LOG_T_MIN, LOG_T_MAX, 2001, dtype=torch.float64)
    values = grid_nll(logits, y, grid, multiclass)
    k = int(values.argmin())
    spacing = (LOG_T_MAX - LOG_T_MIN) / 2000
    # a unimodal function's minimiser lies within one grid step of the grid argmin; the fit
    # stops within tol = 1e-4 of the minimiser, so its NLL exceeds the minimum by O(tol^2)
    assert 0 < k < 2000
    assert abs(math.log(result.temperature) - grid[k].item()) <= spacing + 1e-4
    assert result.nll_after <= values[k].item() + 1e-8
    assert result.nll_after == pytest.approx(ref_nll(logits, y, result.temperature, multiclass),
                                             rel=1e-10)


def test_overconfident_model_heldout_nll_decreases() -> None:
    fit_logits, fit_y, _ = binary_data(32, 32, 4.0, seed=10)
    test_logits, test_y, test_a = binary_data(32, 32, 4.0, seed=11)
    scaler = TemperatureScaler(task="binary")
    result = scaler.fit(batched(fit_logits, fit_y, 4))
    before = ref_nll(test_logits, test_y, 1.0, False)
    after = F.binary_cross_entropy_with_logits(scaler(test_logits).double(),
                                               test_y.double()).item()
    oracle = ref_nll(test_a, test_y, 1.0, False)  # the calibrated logits themselves
    assert result.temperature == pytest.approx(4.0, rel=0.05)
    assert after < 0.7 * before
    assert after == pytest.approx(oracle, rel=0.01)


# ----------------------------------------------------------------------------- bounds, edge cases
def test_all_background_correct_model_goes_to_lower_bound() -> None:
    # every target 0 and every logit negative: each pixel is right, and dNLL/dlogT =
    # -sum z' sigmoid(z') > 0 for every T, so the optimum is the sharpest allowed T = t_min
    g = torch.Generator().manual_seed(2)
    logits = -0.5 - 4.0 * torch.rand(8, 16, 16, generator=g)
    y = torch.zeros_like(logits)
    result = TemperatureScaler().fit(batched(logits, y, 2))
    assert result.temperature == pytest.approx(0.05, rel=1e-12)
    assert result.at_bound and result.converged and result.passes <= 6
    assert math.isfinite(result.nll_after) and result.nll_after < result.nll_before
    assert result.nll_after == pytest.approx(ref_nll(logits, y, 0.05, False), rel=1e-9)


def test_all_background_wrong_model_goes_to_upper_bound() -> None:
    # every target 0, every logit positive: each pixel is wrong and dNLL/dlogT < 0 for every T,
    # so the optimum is the flattest allowed T = t_max (NLL tends to log 2 as T grows)
    g = torch.Generator().manual_seed(3)
    logits = 0.5 + 4.0 * torch.rand(8, 16, 16, generator=g)
    y = torch.zeros_like(logits)
    result = TemperatureScaler().fit(batched(logits, y, 2))
    assert result.temperature == pytest.approx(20.0, rel=1e-12)
    assert result.at_bound and result.converged
    assert result.nll_after == pytest.approx(ref_nll(logits, y, 20.0, False), rel=1e-9)
    assert math.log(2) < result.nll_after < result.nll_before


def test_all_background_saturated_logits_stay_finite() -> None:
    # logits -40 underflow sigmoid(z/T) to exactly 0 near t_min: still finite, bounded, done
    logits = torch.full((2, 8, 8), -40.0)
    result = TemperatureScaler().fit([(logits, torch.zeros(2, 8, 8))])
    assert result.temperature == pytest.approx(0.05) and result.at_bound and result.converged
    assert all(math.isfinite(t) and math.isfinite(f) for t, f in result.history)
    assert result.nll_after == 0.0 and result.passes <= 6


def test_custom_bounds_are_enforced(binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2  # optimum near T = 2, outside [0.5, 1.5]
    scaler = TemperatureScaler(t_min=0.5, t_max=1.5)
    result = scaler.fit(batched(logits, y, 16))
    assert result.temperature == pytest.approx(1.5, rel=1e-12) and result.at_bound
    assert all(0.5 <= t <= 1.5 for t, _ in result.history)
    assert scaler.temperature == pytest.approx(1.5, rel=1e-6)


def test_history_never_increases_the_reported_nll(binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    result = TemperatureScaler().fit(batched(logits, y, 16))
    assert len(result.history) == result.passes
    assert result.history[0] == (1.0, result.nll_before)
    assert result.nll_after == min(f for _, f in result.history)
    assert (result.temperature, result.nll_after) in result.history


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("multiclass", [False, True])
def test_streaming_equals_one_batch(multiclass: bool, binary_x2: tuple[Tensor, Tensor, Tensor],
                                    multi_x3: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = multi_x3 if multiclass else binary_x2
    one = TemperatureScaler().fit([(logits, y)])
    many = TemperatureScaler().fit(batched(logits, y, 1))
    assert many.temperature == pytest.approx(one.temperature, abs=1e-6)
    assert many.nll_after == pytest.approx(one.nll_after, rel=1e-12)


def test_blocked_terms_equal_unblocked(monkeypatch: pytest.MonkeyPatch,
                                       multi_x3: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = multi_x3
    z, t = flatten_pixels(logits, y, task="multiclass")
    whole = torch.stack(scaled_nll_terms(z, t, 0.7))
    monkeypatch.setattr(nll_module, "_BLOCK_ELEMENTS", 4001)  # 1000 rows of 4 classes per block
    blocked = torch.stack(scaled_nll_terms(z, t, 0.7))
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=0.0)


def test_callable_returning_generators_is_read_once_per_pass(
        binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    calls = []

    def fresh() -> Iterator[tuple[Tensor, Tensor]]:
        calls.append(1)
        return ((a, b) for a, b in zip(logits.split(8), y.split(8), strict=True))

    result = TemperatureScaler().fit(fresh)
    reference = TemperatureScaler().fit(batched(logits, y, 8))
    assert result.passes >= 3 and len(calls) == result.passes
    assert result.temperature == pytest.approx(reference.temperature, abs=1e-12)


def test_one_shot_iterator_needs_and_uses_the_cache(
        binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    reads = []

    def one_shot() -> Iterator[tuple[Tensor, Tensor]]:
        for pair in batched(logits, y, 8):
            reads.append(1)
            yield pair

    with pytest.raises(DensecalInputError, match=r"^batches: is a one-shot iterator"):
        TemperatureScaler().fit(one_shot())
    reads.clear()
    result = TemperatureScaler().fit(one_shot(), cache_logits=True)
    reference = TemperatureScaler().fit(batched(logits, y, 8))
    assert len(reads) == 8 and result.passes >= 3  # read once, replayed from the cache
    assert result.temperature == pytest.approx(reference.temperature, abs=1e-12)


def test_changing_data_between_passes_is_rejected() -> None:
    sizes = iter([4, 3, 3, 3, 3])

    def shrinking() -> list[tuple[Tensor, Tensor]]:
        n = next(sizes)
        return [(torch.full((n, 4), 2.0), torch.zeros(n, 4))]

    with pytest.raises(DensecalInputError, match="every pass must yield the same data"):
        TemperatureScaler().fit(shrinking)


# ----------------------------------------------------------------------------- ignore_index
def test_ignore_index_pixels_do_not_change_t(multi_x3: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = multi_x3
    clean = TemperatureScaler().fit(batched(logits, y, 4))
    noisy_logits, noisy_y = logits.clone(), y.clone()
    noisy_y[:, :4, :] = 255
    noisy_logits[:, 0, :4, :] = 1e4  # absurd, would dominate the NLL if counted
    # reference: the same non-ignored pixels, no ignored ones at all
    kept = (noisy_y != 255).reshape(-1)
    z = noisy_logits.movedim(1, -1).reshape(-1, 4)[kept]
    ref = TemperatureScaler().fit([(z.T.reshape(1, 4, -1), noisy_y.reshape(1, -1)[:, kept])])
    result = TemperatureScaler().fit(batched(noisy_logits, noisy_y, 4), ignore_index=255)
    assert result.n_pixels == int(kept.sum()) == 16 * 28 * 32
    assert result.temperature == pytest.approx(ref.temperature, abs=1e-6)
    assert result.nll_after == pytest.approx(
        ref_nll(noisy_logits, noisy_y, result.temperature, True, ignore_index=255), rel=1e-10)
    assert abs(result.temperature - clean.temperature) < 0.1  # same data minus 1/8 of pixels


def test_ignore_index_binary(binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    noisy_logits, noisy_y = logits.clone(), y.clone()
    noisy_y[:, 0, :] = 255.0
    noisy_logits[:, 0, :] = -1e4
    keep = noisy_y != 255
    ref = TemperatureScaler().fit([(logits[keep], y[keep])])
    result = TemperatureScaler().fit(batched(noisy_logits, noisy_y, 8), ignore_index=255)
    assert result.temperature == pytest.approx(ref.temperature, abs=1e-6)


# ----------------------------------------------------------------------------- exact derivatives
def autograd_terms(z: Tensor, y: Tensor, log_t: float, kind: str) -> Tensor:
    s = torch.tensor(log_t, dtype=torch.float64, requires_grad=True)
    scaled = z.double() / torch.exp(s)
    if kind == "binary":
        f = F.binary_cross_entropy_with_logits(scaled, y.double(), reduction="sum")
    elif kind == "hard":
        f = F.cross_entropy(scaled, y, reduction="sum")
    else:
        f = -(y.double() * torch.log_softmax(scaled, dim=1)).sum()
    (d1,) = torch.autograd.grad(f, s, create_graph=True)
    (d2,) = torch.autograd.grad(d1, s)
    return torch.stack([f.detach(), d1.detach(), d2])


@pytest.mark.parametrize("kind", ["binary", "soft-binary", "hard", "soft"])
@pytest.mark.parametrize("log_t", [-1.3, 0.0, 0.9])
def test_derivatives_match_autograd(kind: str, log_t: float) -> None:
    g = torch.Generator().manual_seed(7)
    if kind in ("binary", "soft-binary"):
        z = 3.0 * torch.randn(50, generator=g)
        y = torch.rand(50, generator=g) if kind == "soft-binary" else (torch.rand(50, generator=g)
                                                                        < 0.4).float()
        ref = autograd_terms(z, y, log_t, "binary")
    else:
        z = 3.0 * torch.randn(40, 5, generator=g)
        y = torch.randint(0, 5, (40,), generator=g)
        if kind == "soft":
            y = torch.softmax(torch.randn(40, 5, generator=g), dim=1)
        ref = autograd_terms(z, y, log_t, kind)
    ours = torch.stack(scaled_nll_terms(z, y, log_t))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_soft_multiclass_targets_fit(multi_x3: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = multi_x3
    one_hot = F.one_hot(y, 4).movedim(-1, 1).double()
    hard = TemperatureScaler().fit([(logits, y)])
    soft = TemperatureScaler("multiclass").fit([(logits, one_hot)])
    assert soft.temperature == pytest.approx(hard.temperature, abs=1e-9)


# ----------------------------------------------------------------------------- module behaviour
def test_apply_probabilities_and_state_dict_round_trip(
        binary_x2: tuple[Tensor, Tensor, Tensor]) -> None:
    logits, y, _ = binary_x2
    scaler = TemperatureScaler()
    result = scaler.fit(batched(logits[:16], y[:16], 8))
    buffer = io.BytesIO()
    torch.save(scaler.state_dict(), buffer)
    buffer.seek(0)
    restored = TemperatureScaler()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.task == "binary"
    assert restored.temperature == scaler.temperature == pytest.approx(result.temperature,
                                                                      rel=1e-6)
    x = torch.tensor([[4.0, -1.0, 0.0]])
    torch.testing.assert_close(restored(x), x / scaler.temperature)
    torch.testing.assert_close(restored.probabilities(x), torch.sigmoid(x / scaler.temperature))
    assert not any(p.requires_grad for p in restored.parameters())


def test_from_temperature_and_multiclass_probabilities() -> None:
    scaler = TemperatureScaler.from_temperature(2.0, task="multiclass")
    x = torch.tensor([[[2.0]], [[-4.0]], [[0.0]]])[None]  # (1, 3, 1, 1)
    torch.testing.assert_close(scaler.apply(x), x / 2)
    expected = torch.tensor([math.e, math.exp(-2.0), 1.0])
    expected = expected / expected.sum()
    torch.testing.assert_close(scaler.probabilities(x).reshape(3), expected)
    assert scaler.probabilities(x).dtype == x.dtype


def test_log_t_outside_bounds_is_clamped_in_forward() -> None:
    scaler = TemperatureScaler()
    with torch.no_grad():
        scaler.log_t.fill_(10.0)
    assert scaler.temperature == pytest.approx(20.0, rel=1e-6)
    torch.testing.assert_close(scaler(torch.tensor([40.0])), torch.tensor([2.0]))
    with torch.no_grad():
        scaler.log_t.fill_(-10.0)
    torch.testing.assert_close(scaler(torch.tensor([1.0])), torch.tensor([20.0]))


def test_module_apply_with_a_function_still_recurses() -> None:
    seen: list[str] = []
    model = nn.Sequential(nn.Linear(2, 2), TemperatureScaler())
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "TemperatureScaler", "Sequential"]


# ----------------------------------------------------------------------------- bad input
def good_pair() -> tuple[Tensor, Tensor]:
    return torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)


@pytest.mark.parametrize(("batches", "kwargs", "message"), [
    ([], {}, r"^batches: yielded no batch$"),
    ([(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 5, dtype=torch.long))], {},
     r"^batches\[0\]: multi-class target shape \(2, 5, 5\) does not match"),
    ([(torch.full((2, 4), math.nan), torch.zeros(2, 4))], {},
     r"^batches\[0\]: logits contain NaN"),
    ([(torch.zeros(2, 4), torch.full((2, 4), 1.5))], {},
     r"^batches\[0\]: binary targets must lie in \[0, 1\]"),
    ([good_pair(), (torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), 3))], {},
     r"^batches\[1\]: class indices must lie in \[0, 3\)"),
    ([(torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), -1))], {},
     r"^batches\[0\]: class indices"),
    ([(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4))], {},
     r"^batches\[0\]: multi-class class-index targets must be integers"),
    ([(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))], {},
     r"^batches\[0\]: logits must be a floating tensor"),
    ([(torch.zeros(2, 4), torch.full((2, 4), 255.0))], {"ignore_index": 255},
     r"^batches: holds no pixel"),
    ([torch.zeros(2, 4)], {}, r"^batches\[0\]: must be a \(logits, target\) pair"),
    ([good_pair()], {"max_passes": 0}, r"^max_passes: "),
    ([good_pair()], {"tol": 0.0}, r"^tol: "),
    (42, {}, r"^batches: must be an iterable"),
    ([(torch.zeros(2, 4), torch.zeros(2, 5))], {},
     r"^batches\[0\]: target shape \(2, 5\) does not fit logits shape \(2, 4\)"),
])
def test_bad_fit_input(batches: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DensecalInputError, match=message):
        TemperatureScaler().fit(batches, **kwargs)  # type: ignore[arg-type]


def test_bad_soft_multiclass_target() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    with pytest.raises(DensecalInputError, match="sum to 1"):
        TemperatureScaler("multiclass").fit([(logits, torch.full((1, 3, 2, 2), 0.5))])


def test_task_mismatch_is_rejected() -> None:
    with pytest.raises(DensecalInputError, match="binary target shape"):
        TemperatureScaler("binary").fit([good_pair()])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"t_min": 0.0}, r"^t_min: must be a finite number > 0"),
    ({"t_max": math.nan}, r"^t_max: must be a finite number > 0"),
    ({"t_min": 2.0, "t_max": 1.0}, r"^t_min: must be below t_max"),
    ({"temperature": 25.0}, r"^temperature: must lie in \[t_min, t_max\]"),
    ({"task": "regression"}, r"^task: must be one of"),
])
def test_bad_constructor_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DensecalInputError, match=message):
        TemperatureScaler(**kwargs)  # type: ignore[arg-type]


def test_from_temperature_outside_bounds_and_unknown_task() -> None:
    with pytest.raises(DensecalInputError, match=r"^temperature: "):
        TemperatureScaler.from_temperature(0.01)
    with pytest.raises(DensecalInputError, match=r"^task: unknown"):
        TemperatureScaler().probabilities(torch.zeros(3))


# ----------------------------------------------------------------------------- the 1-D search
def test_search_nonconvex_unimodal_function() -> None:
    # f = -exp(-(x - 0.4)^2) is unimodal with f'' < 0 away from its minimum: Newton is rejected
    # there and bisection / bound probes take over; the minimiser 0.4 is found to tol
    def evaluate(x: float) -> tuple[float, float, float]:
        e = math.exp(-((x - 0.4) ** 2))
        return -e, 2 * (x - 0.4) * e, (2 - 4 * (x - 0.4) ** 2) * e

    result = minimise_unimodal(evaluate, -3.0, 3.0, 2.8, tol=1e-8, max_evals=60)
    assert result.converged and not result.at_bound
    assert result.x == pytest.approx(0.4, abs=1e-6)
    fs = [f for _, f in result.history]
    running_best = [min(fs[: i + 1]) for i in range(len(fs))]
    assert result.f == running_best[-1] and result.f_start == fs[0]


def test_search_stops_at_max_evals_not_converged() -> None:
    result = minimise_unimodal(lambda x: (math.cosh(x - 1), math.sinh(x - 1), 0.0), -3.0, 3.0,
                               0.0, tol=1e-12, max_evals=3)
    assert result.evaluations == 3 and not result.converged
    assert -3.0 <= result.x <= 3.0

"""Tests of densecal.data.synthetic.toy: branch geometry, branch frequency, noise, determinism."""

from __future__ import annotations

import pytest
import torch

from densecal.data.synthetic.toy import sample_toy, toy_branches
from densecal.errors import DensecalInputError


def test_branch_values_hand_computed() -> None:
    x = torch.tensor([0.0, 0.25, 0.4, 0.6, 0.79, 0.8, 1.0], dtype=torch.float64)
    upper, lower = toy_branches(x)
    expected = [0.5, 0.5, 0.5, 0.25, 1.0 - 1.25 * 0.79, 0.0, 0.0]
    assert upper.tolist() == pytest.approx(expected, abs=1e-15)
    assert torch.equal(lower, -upper)


def test_noise_free_samples_lie_on_their_branch() -> None:
    x, y, b = sample_toy(2000, pi=0.7, sigma=0.0, seed=3)
    upper, _ = toy_branches(x.double())
    expected = torch.where(b == 0, upper, -upper)
    assert torch.allclose(y.double(), expected, atol=1e-6)
    assert set(b.unique().tolist()) == {0, 1}
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0


def test_branch_frequency_and_noise_level() -> None:
    x, y, b = sample_toy(20000, pi=0.7, sigma=0.1, seed=0)
    # Binomial(20000, 0.7): sd of the frequency ~ 0.0032, 5 sd tolerance
    assert float((b == 0).double().mean()) == pytest.approx(0.7, abs=0.016)
    upper, _ = toy_branches(x.double())
    resid = y.double() - torch.where(b == 0, upper, -upper)
    assert float(resid.std()) == pytest.approx(0.1, rel=0.03)


def test_deterministic_and_seed_dependent() -> None:
    a, c = sample_toy(50, seed=5), sample_toy(50, seed=5)
    assert all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    assert not torch.equal(a[0], sample_toy(50, seed=6)[0])


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 3, "pi": 1.5}, {"n": 3, "sigma": -0.1}])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(DensecalInputError):
        sample_toy(**kwargs)

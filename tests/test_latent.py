"""Latent math: properties of slerp/lerp, arithmetic, renormalisation, encoding."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cvae_art.vae_core import latent as L

DIM = st.integers(2, 64)
SEEDS = st.integers(0, 2**31 - 1)
T01 = st.floats(0.0, 1.0, allow_nan=False)
FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True)  # the same examples in every CI run


def vec(seed: int, d: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


@FAST
@given(SEEDS, SEEDS, DIM, st.floats(0.01, 100.0))
def test_slerp_is_exact_at_both_ends(s1, s2, d, scale):
    a, b = vec(s1, d, scale), vec(s2, d)
    assert torch.equal(L.slerp(a, b, 0.0), a)
    assert torch.equal(L.slerp(a, b, 1.0), b)
    path = L.slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert path.shape == (3, d)
    assert torch.equal(path[0], a) and torch.equal(path[2], b)


@FAST
@given(SEEDS, SEEDS, DIM, T01)
def test_slerp_of_unit_vectors_stays_unit(s1, s2, d, t):
    a, b = vec(s1, d), vec(s2, d)
    a, b = a / a.norm(), b / b.norm()
    z = L.slerp(a, b, t)
    assert math.isclose(float(z.norm()), 1.0, abs_tol=1e-4)  # float32: sin ratios at small angles lose digits


@FAST
@given(SEEDS, SEEDS, DIM, T01)
def test_slerp_follows_the_great_circle(s1, s2, d, t):
    """The angle to a grows linearly with t (what distinguishes slerp from normalised lerp)."""
    a, b = vec(s1, d).double(), vec(s2, d).double()
    a, b = a / a.norm(), b / b.norm()
    omega = math.acos(max(-1.0, min(1.0, float(a @ b))))
    z = L.slerp(a, b, t)
    angle = math.acos(max(-1.0, min(1.0, float(z @ a / z.norm()))))
    assert math.isclose(angle, t * omega, abs_tol=1e-6)


@FAST
@given(SEEDS, DIM, st.floats(1e-9, 1e-4), T01, st.floats(0.1, 10.0))
def test_slerp_near_parallel_is_finite_and_close_to_lerp(seed, d, eps, t, scale):
    a = vec(seed, d, scale)
    b = a * (1 + eps) + eps * vec(seed + 1, d)
    z = L.slerp(a, b, t)
    assert torch.isfinite(z).all()
    assert torch.allclose(z, L.lerp(a, b, t), atol=1e-4 * scale)


@FAST
@given(SEEDS, DIM, T01)
def test_slerp_of_opposite_unit_vectors_stays_unit_and_finite(seed, d, t):
    a = vec(seed, d)
    a = a / a.norm()
    z = L.slerp(a, -a, t)
    assert torch.isfinite(z).all()
    assert math.isclose(float(z.norm()), 1.0, abs_tol=1e-5)


def test_slerp_with_a_zero_vector_is_lerp_not_nan():
    b = torch.tensor([3.0, 4.0])
    z = L.slerp(torch.zeros(2), b, torch.linspace(0, 1, 5))
    assert torch.isfinite(z).all()
    assert torch.allclose(z, torch.linspace(0, 1, 5)[:, None] * b)


@FAST
@given(SEEDS, SEEDS, DIM, st.floats(0.1, 5.0), st.floats(0.1, 5.0), T01)
def test_slerp_interpolates_magnitude_linearly(s1, s2, d, ra, rb, t):
    a, b = vec(s1, d), vec(s2, d)
    a, b = a / a.norm() * ra, b / b.norm() * rb
    assert math.isclose(float(L.slerp(a, b, t).norm()), (1 - t) * ra + t * rb, rel_tol=1e-4)


def test_interpolation_broadcasts_rows_and_checks_batches():
    a, b = torch.randn(1, 8), torch.randn(4, 8)
    assert L.slerp(a, b, 0.3).shape == (4, 8)
    per_row = L.lerp(a, b, torch.tensor([0.0, 0.5, 1.0, 0.25]))
    assert torch.allclose(per_row[1], (a[0] + b[1]) / 2)
    assert torch.equal(per_row[2], b[2])
    with pytest.raises(ValueError, match="batch sizes"):
        L.lerp(torch.randn(3, 8), torch.randn(4, 8), 0.5)
    with pytest.raises(ValueError, match="latent sizes"):
        L.slerp(torch.randn(8), torch.randn(9), 0.5)


def test_arithmetic_mean_and_attribute_vector():
    a, b, c = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(L.analogy(a, b, c), a - b + c)
    assert torch.equal(L.add(a, b), a + b)
    assert torch.equal(L.subtract(a, b), a - b)
    assert torch.equal(L.scale(a, 2.5), a * 2.5)
    assert L.mean(a).shape == (1, 5)
    assert torch.allclose(L.mean(a)[0], a.mean(0))
    with_attr = torch.randn(6, 5) + torch.tensor([2.0, 0, 0, 0, 0])
    without = torch.randn(4, 5)
    v = L.attribute_vector(with_attr, without)
    assert v.shape == (1, 5)
    assert torch.allclose(v[0], with_attr.mean(0) - without.mean(0))


@FAST
@given(SEEDS, DIM, st.integers(1, 6), st.floats(0.1, 3.0))
def test_renormalize_puts_rows_on_the_prior_shell(seed, d, n, temperature):
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 0.01
    out = L.renormalize(z, temperature)
    assert torch.allclose(out.norm(dim=1), torch.full((n,), math.sqrt(d) * temperature), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(out, z, dim=1)
    assert torch.allclose(cos, torch.ones(n), atol=1e-5)  # direction kept
    assert torch.equal(L.renormalize(torch.zeros(1, d)), torch.zeros(1, d))


def test_encode_mean_is_deterministic_and_sample_is_seeded(tiny_model):
    x = torch.rand(3, 3, 48, 48)  # not the model's size: encode resizes
    m1, m2 = L.encode(tiny_model, x), L.encode(tiny_model, x)
    assert m1.shape == (3, tiny_model.config.latent_dim)
    assert torch.equal(m1, m2)
    s1 = L.encode(tiny_model, x, sample=True, seed=4)
    assert torch.equal(s1, L.encode(tiny_model, x, sample=True, seed=4))
    assert not torch.equal(s1, L.encode(tiny_model, x, sample=True, seed=5))
    assert not torch.equal(s1, m1)

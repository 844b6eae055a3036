"""Latent arithmetic and interpolation on [B, D] latent batches.

Every function takes latents as [D], [1, D] or [B, D] tensors and broadcasts like torch; the
results are plain tensors, so they chain (analogy of means, slerp of analogies, ...).
"""
from __future__ import annotations

import math

import torch

from .conditions import Cond
from .model import reparameterize

# Below this angle (radians) two directions count as parallel and slerp is lerp: sin(omega)
# would be a tiny divisor, and the two paths differ by O(omega^2) anyway.
PARALLEL_EPS = 1e-4
_NORM_EPS = 1e-12


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


def subtract(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - b


def scale(z: torch.Tensor, s: float | torch.Tensor) -> torch.Tensor:
    return z * s


def analogy(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A - B + C: 'C is to ? as B is to A' (e.g. smiling = neutral - frowning + smiling-ness)."""
    return a - b + c


def mean(z: torch.Tensor) -> torch.Tensor:
    """The mean latent of a batch, [1, D]."""
    return _rows(z).mean(0, keepdim=True)


def attribute_vector(z_with: torch.Tensor, z_without: torch.Tensor) -> torch.Tensor:
    """Mean of the latents that have an attribute minus the mean of those that do not, [1, D]."""
    return mean(z_with) - mean(z_without)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b. A tensor t [F] gives one row per value ([F, D]); exact at t = 0 and 1."""
    a, b, t = _broadcast(a, b, t)
    out = a + (b - a) * t
    return _exact_ends(out, a, b, t)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of directions with linearly interpolated magnitudes.

    Non-unit latents work (the magnitude goes linearly from |a| to |b|, so unit vectors stay
    unit); near-parallel or zero vectors fall back to lerp; exactly opposite vectors turn through
    a fixed perpendicular direction instead of dividing by sin(pi) = 0. Never NaN for finite input.
    """
    a, b, t = _broadcast(a, b, t)
    na = a.norm(dim=-1, keepdim=True)
    nb = b.norm(dim=-1, keepdim=True)
    ua = a / na.clamp_min(_NORM_EPS)
    ub = b / nb.clamp_min(_NORM_EPS)
    # atan2 of chord lengths is accurate at every angle; acos(dot) loses half the digits near 0 and pi.
    omega = 2 * torch.atan2((ua - ub).norm(dim=-1, keepdim=True), (ua + ub).norm(dim=-1, keepdim=True))
    sin = torch.sin(omega)
    degenerate = (na < _NORM_EPS) | (nb < _NORM_EPS) | (omega < PARALLEL_EPS)
    opposite = ~degenerate & (math.pi - omega < PARALLEL_EPS)
    regular = ~degenerate & ~opposite
    safe_sin = torch.where(regular, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe_sin
    if bool(opposite.any()):
        # Any great circle joins antipodes; take the one through the axis a is least aligned with.
        axis = torch.zeros_like(ua).scatter_(-1, ua.abs().argmin(-1, keepdim=True), 1.0)
        perp = axis - (axis * ua).sum(-1, keepdim=True) * ua
        perp = perp / perp.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
        half_turn = torch.cos(math.pi * t) * ua + torch.sin(math.pi * t) * perp
        direction = torch.where(opposite, half_turn, direction)
    out = direction * (na + (nb - na) * t)
    out = torch.where(regular | opposite, out, a + (b - a) * t)
    return _exact_ends(out, a, b, t)


def renormalize(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Scale each row to the typical radius of N(0, T^2 I), sqrt(D) * T (zero rows stay zero).

    Averages and lerps of prior samples shrink toward the origin, where the decoder produces
    washed-out images; this puts them back on the shell where the prior's mass lies.
    """
    d = z.shape[-1]
    norm = z.norm(dim=-1, keepdim=True)
    return z * (math.sqrt(d) * temperature / norm.clamp_min(_NORM_EPS))


@torch.inference_mode()
def encode(model, images: torch.Tensor, cond: Cond | None = None, sample: bool = False, seed: int = 0) -> torch.Tensor:
    """Latents [B, D] of float images [B, 3, H, W] (resized to the model's resolution first).

    `sample=False` gives the posterior mean (deterministic); `sample=True` draws z ~ q(z | x, c)
    with noise drawn on the CPU from `seed`, so every device gives the same latents.
    """
    from .images import fit

    images = fit(images.to(model.device, torch.float32), model.resolution)
    mu, logvar = model.encode(images, cond)
    if not sample:
        return mu
    g = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(mu.shape, generator=g).to(mu)
    return reparameterize(mu, logvar, eps)


# -- helpers -------------------------------------------------------------------------------------
def _rows(z: torch.Tensor) -> torch.Tensor:
    if z.dim() == 1:
        return z[None]
    if z.dim() != 2:
        raise ValueError(f"latents must be [D] or [B, D], got shape {list(z.shape)}")
    return z


def _broadcast(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a, b as [B, D] (or [D] when both are [D] and t is a number) and t as a [B, 1] column."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"latent sizes differ: {a.shape[-1]} and {b.shape[-1]}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    a, b = a.to(dtype), b.to(a.device, dtype)
    if not isinstance(t, torch.Tensor):
        t_col = torch.tensor(float(t), dtype=dtype, device=a.device)
        if a.dim() == 1 and b.dim() == 1:
            return a, b, t_col
        a, b, _ = _expand_rows(_rows(a), _rows(b), t_col.reshape(1))
        return a, b, t_col
    a, b, t = _expand_rows(_rows(a), _rows(b), t.to(a.device, dtype).reshape(-1))
    return a, b, t[:, None]


def _expand_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(a.shape[0], b.shape[0], t.shape[0])
    for name, x in (("a", a), ("b", b), ("t", t)):
        if x.shape[0] not in (1, n):
            raise ValueError(f"batch sizes do not match: {name} has {x.shape[0]} rows, expected 1 or {n}")
    return a.expand(n, -1), b.expand(n, -1), t.expand(n)


def _exact_ends(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Return a itself where t == 0 and b where t == 1 (no rounding at the keyframes)."""
    return torch.where(t == 0, a, torch.where(t == 1, b, out))

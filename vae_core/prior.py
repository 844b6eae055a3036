"""A learned prior p(z | c): a Gaussian mixture fitted to the aggregate posterior.

A VAE's encodings do not fill N(0, I): decoding a draw from N(0, I) lands between them, where
the decoder has never been trained, and gives blobs. Sampling from where the encodings are is the
fix that needs no retraining (Bauer & Mnih 2019 and VampPrior, Tomczak & Welling 2018, learn such
a prior; fitting one after training is the "two-stage" / ex-post density estimation of
Ghosh et al. 2020, "From variational to deterministic autoencoders").

The mixture is joint over latents and labels: p(z, c) = sum_k pi_k prod_f p(c_f | k) N(z | mu_k, S_k),
so p(z | c) is the components re-weighted by how often each label falls in them. By default
(`PriorConfig.per_label`) each label of the first factor gets its own share of the components,
fitted to its encodings alone, so p(c | k) is nearly one-hot; shared components blur the labels
into each other where the encodings of different labels overlap. A blend of labels mixes the
weights, and a null factor leaves them as they are.

Covariances are MAP estimates shrunk toward the pooled covariance (an inverse-Wishart prior with
`shrinkage` pseudo-points), so a component fitted to few points stays well conditioned.
Temperature T scales every draw's deviation from its component mean: T = 1 is the prior as
fitted, T = 0 the component means.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

from .conditions import Cond, labels_to_condition

if TYPE_CHECKING:  # model.py imports this module
    from .model import CVAE

PRIOR_CHOICES = ("learned", "normal")  # what a sampler may draw from; "learned" falls back to normal
# How a restyle moves a latent from its source condition to the target one: "prior" carries it by
# the optimal-transport map between the prior's Gaussian moments under each condition; "none"
# keeps it. A model without a learned prior keeps the latent either way.
TRANSPORT_CHOICES = ("prior", "none")


@dataclass
class PriorConfig:
    components: int = 64
    # Split the components among the labels of the model's first condition, each share fitted to
    # that label's encodings: p(z | c) then follows each label's own encodings instead of shared
    # components that blur the labels into each other (BENCHMARKS, samples: FID and style).
    per_label: bool = True
    draws: int = 4  # posterior draws per image: the aggregate posterior, not just the means
    iterations: int = 60
    shrinkage: float = 0.0  # pseudo-points toward the pooled covariance; 0: latent_dim
    label_smoothing: float = 1.0  # pseudo-counts per (component, label)
    seed: int = 0
    tol: float = 1e-4  # stop when the mean log-likelihood per point improves less than this

    def __post_init__(self) -> None:
        for name, lo in (("components", 1), ("draws", 1), ("iterations", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo or v > 100_000:
                raise ValueError(f"prior {name} must be a whole number from {lo} to 100000, got {v!r}")
        for name in ("shrinkage", "label_smoothing", "tol"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"prior {name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class PriorError(ValueError):
    pass


def gaussian_log_probs(z: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(z | means[k], L_k L_k^T) for every row and component, [B, K]."""
    d = z.shape[1]
    half_logdet = torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    # One triangular solve per component: broadcasting all K at once would hold [B, K, d, d].
    maha = torch.stack([
        torch.linalg.solve_triangular(scale_tril[j], (z - means[j]).T, upper=False).pow(2).sum(0)
        for j in range(len(means))
    ], dim=1)
    return -0.5 * maha - half_logdet - 0.5 * d * math.log(2 * math.pi)


class MixturePrior(nn.Module):
    """Shared Gaussian components with a label distribution per component, as buffers."""

    def __init__(self, latent_dim: int, components: int, conditions: dict[str, list[str]], label_moments: bool = True):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.factors = list(conditions)
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))
        self.register_buffer("means", torch.zeros(components, latent_dim))
        self.register_buffer("scale_tril", torch.eye(latent_dim).expand(components, -1, -1).clone())
        for f, labels in conditions.items():
            self.register_buffer(f"label_logp_{f}", torch.full((components, len(labels)), -math.log(max(len(labels), 1))))
        # Each label's own latent mean and covariance, for transport: the shared components blur
        # the labels into each other (with the mixture's moments the transport measured no gain
        # over a plain decode). Priors fitted before these existed transport with those instead.
        self.label_moments = label_moments and bool(conditions)
        if self.label_moments:
            for f, labels in conditions.items():
                self.register_buffer(f"label_mean_{f}", torch.zeros(len(labels), latent_dim))
                self.register_buffer(f"label_cov_{f}", torch.eye(latent_dim).expand(len(labels), -1, -1).clone())
        self.info: dict = {}

    def label_logp(self, factor: str) -> torch.Tensor:
        return getattr(self, f"label_logp_{factor}")

    # -- conditional weights ---------------------------------------------------------------------
    def component_logits(self, cond: Cond | None, batch: int) -> torch.Tensor:
        """log pi_k(c), unnormalised, [batch, K]. Label weights (one-hot, blend or null) mix the
        per-label component distributions; negative blend weights (extrapolation) are clamped."""
        logits = self.log_weights.expand(batch, -1).clone()
        for f in self.factors:
            if cond is None or f not in cond:
                continue
            w = cond[f].to(self.means)
            w = w.expand(batch, -1) if w.shape[0] == 1 else w
            labels = w[:, :-1].clamp(min=0)  # the last column is null: no information about k
            null = w[:, -1:].clamp(min=0)
            mixed = labels @ self.label_logp(f).exp().T + null  # [batch, K]; null contributes 1 per k
            logits = logits + torch.log(mixed.clamp(min=1e-30) / (labels.sum(1, keepdim=True) + null).clamp(min=1e-30))
        return logits

    def moments(self, cond: Cond | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [D] and covariance [D, D] of the mixture p(z | c) for one condition row, float64."""
        w = self.component_logits(cond, 1).cpu().double().softmax(1)[0]
        means, tril = self.means.cpu().double(), self.scale_tril.cpu().double()  # CPU: MPS has no float64
        cov_k = tril @ tril.transpose(1, 2)
        mean = w @ means
        second = torch.einsum("k,kij->ij", w, cov_k + means.unsqueeze(2) * means.unsqueeze(1))
        return mean, second - torch.outer(mean, mean)

    def factor_moments(self, factor: str, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of z under one factor's label weights [L + 1] (last: null, the
        whole mixture): the blend's mixture of the labels' own Gaussians, float64."""
        w = weights.cpu().double().clamp(min=0)
        w = w / w.sum().clamp(min=1e-30)
        whole = self.moments(None)
        means = torch.cat([getattr(self, f"label_mean_{factor}").cpu().double(), whole[0][None]])
        covs = torch.cat([getattr(self, f"label_cov_{factor}").cpu().double(), whole[1][None]])
        mean = w @ means
        second = torch.einsum("l,lij->ij", w, covs + means.unsqueeze(2) * means.unsqueeze(1))
        return mean, second - torch.outer(mean, mean)

    def transport(self, z: torch.Tensor, source: Cond | None, target: Cond | None) -> torch.Tensor:
        """Carry latents from p(z | source) to p(z | target) by the optimal-transport (Monge) map
        between the two conditionals' Gaussian moments: z' = m_t + A (z - m_s), with
        A = S_s^-1/2 (S_s^1/2 S_t S_s^1/2)^1/2 S_s^-1/2. The same whitening-colouring transform as
        Li et al. 2017 (universal style transfer, on features), here on the latent: where the
        encoder keeps some style in z, the map moves that part too. With label moments, one map
        per factor whose weights differ (applied in turn); latents whose source and target rows
        agree are returned as they are."""
        n = z.shape[0]
        # On the CPU in float64 (MPS has none); a restyle batch needs a few 128 x 128 maps at most.
        source, target = _rows(source, n) or {}, _rows(target, n) or {}
        out = z.detach().cpu().double().clone()
        if self.label_moments:
            null = {f: torch.eye(self.label_logp(f).shape[1] + 1, dtype=torch.float64)[-1] for f in self.factors}
            for f in self.factors:
                ws = source[f].cpu().double() if f in source else null[f].expand(n, -1)
                wt = target[f].cpu().double() if f in target else null[f].expand(n, -1)
                for row in torch.unique(torch.cat([ws, wt], 1), dim=0):
                    a, b = row[:ws.shape[1]], row[ws.shape[1]:]
                    if torch.equal(a, b):
                        continue
                    rows = ((ws == a) & (wt == b)).all(1)
                    out[rows] = _monge(*self.factor_moments(f, a), *self.factor_moments(f, b), out[rows])
            return out.to(z.device, z.dtype)
        ws = self.component_logits(source or None, n).cpu().softmax(1)
        wt = self.component_logits(target or None, n).cpu().softmax(1)
        for row in torch.unique(torch.cat([ws, wt], 1), dim=0):
            k = ws.shape[1]
            if torch.equal(row[:k], row[k:]):
                continue
            rows = ((ws == row[:k]) & (wt == row[k:])).all(1)
            first = int(rows.nonzero()[0])
            pick = lambda c: {f: v[first:first + 1] for f, v in c.items()} or None  # noqa: E731
            out[rows] = _monge(*self.moments(pick(source)), *self.moments(pick(target)), out[rows])
        return out.to(z.device, z.dtype)

    # -- density and sampling --------------------------------------------------------------------
    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z | mu_k, S_k) for every component, [B, K]."""
        return gaussian_log_probs(z, self.means, self.scale_tril)

    def log_prob(self, z: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """log p(z | c), [B]."""
        logits = self.component_logits(cond, z.shape[0])
        return torch.logsumexp(self.component_log_prob(z) + logits.log_softmax(1), dim=1)

    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0, cond: Cond | None = None) -> torch.Tensor:
        """n latents on the CPU from the generator, so a seed gives the same latents everywhere.
        The component and the noise are drawn before the temperature is applied: changing T
        moves each sample along its own line."""
        probs = self.component_logits(cond, n).float().cpu().softmax(1)
        k = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        means, tril = self.means.float().cpu(), self.scale_tril.float().cpu()
        return means[k] + temperature * (tril[k] @ eps.unsqueeze(-1)).squeeze(-1)


def _rows(cond: Cond | None, n: int) -> Cond | None:
    return None if cond is None else {f: v.expand(n, -1) if v.shape[0] == 1 else v for f, v in cond.items()}


def _monge(ms: torch.Tensor, cs: torch.Tensor, mt: torch.Tensor, ct: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The optimal-transport map from N(ms, cs) to N(mt, ct), applied to the rows of z (float64)."""
    root = _sqrtm(cs)
    inv_root = torch.linalg.inv(root)
    a = inv_root @ _sqrtm(root @ ct @ root) @ inv_root
    return mt.to(z) + (z - ms.to(z)) @ a.T.to(z)


def _sqrtm(c: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a covariance (eigenvalues floored: fitted ones are positive)."""
    w, v = torch.linalg.eigh((c + c.T) / 2)
    return (v * w.clamp(min=1e-12).sqrt()) @ v.T


# -- fitting ---------------------------------------------------------------------------------------
def _kmeans_init(x: torch.Tensor, k: int, g: torch.Generator, iters: int = 10) -> torch.Tensor:
    """k-means++ seeds refined by a few Lloyd steps."""
    n = x.shape[0]
    centres = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    d2 = (x - centres[0]).pow(2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / n)
        c = x[torch.multinomial(probs, 1, generator=g)].squeeze(0)
        centres.append(c)
        d2 = torch.minimum(d2, (x - c).pow(2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return c


def _shares(sizes: list[int], k: int) -> list[int]:
    """k components split in proportion to the group sizes (largest remainders), at least one each."""
    exact = [k * m / sum(sizes) for m in sizes]
    out = [max(1, int(e)) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: int(exact[i]) - exact[i]):
        if sum(out) >= k:
            break
        out[i] += 1
    return out


class _Fit(NamedTuple):
    log_weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor
    label_logp: dict[str, torch.Tensor]
    log_likelihood: float  # mean per latent
    iterations: int


def _em(z: torch.Tensor, y: dict[str, torch.Tensor], conditions: dict[str, list[str]], k: int, cfg: PriorConfig,
        pooled: torch.Tensor, g: torch.Generator) -> _Fit:
    """EM for one joint mixture of k components on z [N, d] (float64)."""
    n, d = z.shape
    nu = cfg.shrinkage or float(d)
    means = _kmeans_init(z, k, g)
    assign = torch.cdist(z, means).argmin(1)
    resp = torch.nn.functional.one_hot(assign, k).double()
    last = -math.inf
    for it in range(cfg.iterations):
        # M-step
        nk = resp.sum(0) + 1e-10
        log_w = torch.log(nk / n)
        means = (resp.T @ z) / nk[:, None]
        trils = []
        for j in range(k):
            diff = z - means[j]
            cov = (diff * resp[:, j:j + 1]).T @ diff
            cov = (cov + nu * pooled) / (nk[j] + nu)
            trils.append(torch.linalg.cholesky(cov))
        tril = torch.stack(trils)
        label_logp = {}
        for f, labs in conditions.items():
            counts = torch.full((k, len(labs)), cfg.label_smoothing, dtype=z.dtype)
            if f in y:
                known = y[f] >= 0
                counts += resp[known].T @ torch.nn.functional.one_hot(y[f][known], len(labs)).double()
            label_logp[f] = torch.log(counts / counts.sum(1, keepdim=True).clamp(min=1e-30))
        # E-step, in float64: the log-densities of 128-d Gaussians span hundreds of nats
        joint = gaussian_log_probs(z, means, tril) + log_w
        for f, labs in y.items():
            known = labs >= 0
            joint[known] += label_logp[f][:, labs[known]].T
        total = torch.logsumexp(joint, 1)
        resp = (joint - total[:, None]).exp()
        ll = float(total.mean())
        if ll - last < cfg.tol:
            break
        last = ll
    return _Fit(log_w, means, tril, label_logp, ll, it + 1)


def fit_mixture(
    z: torch.Tensor, labels: dict[str, np.ndarray | torch.Tensor], conditions: dict[str, list[str]],
    cfg: PriorConfig | None = None, progress: bool = False,
) -> MixturePrior:
    """EM for the joint mixture on latents z [N, d] with integer labels per factor (-1 = unknown).

    With `cfg.per_label`, the components are split among the labels of the first factor in
    proportion to their latents and each label's share is fitted to that label's latents alone
    (latents without that label form a group of their own); otherwise all components are shared."""
    cfg = cfg or PriorConfig()
    z = torch.as_tensor(z).double().cpu()
    if z.dim() != 2 or z.shape[0] < 2:
        raise PriorError(f"need at least 2 latents to fit a prior, got {list(z.shape)}")
    if not torch.isfinite(z).all():
        raise PriorError("the encodings contain NaN or infinite values; the model is broken or the images are")
    n, d = z.shape
    g = torch.Generator().manual_seed(cfg.seed)
    y = {f: torch.as_tensor(np.asarray(labels[f])).long() for f in conditions if f in labels}
    pooled = torch.cov(z.T) + 1e-6 * torch.eye(d, dtype=z.dtype)
    nu = cfg.shrinkage or float(d)

    split = next(iter(conditions), None) if cfg.per_label else None
    groups = [torch.ones(n, dtype=torch.bool)] if split not in y else [
        y[split] == v for v in torch.unique(y[split]).tolist()]
    sizes = [int(rows.sum()) for rows in groups]
    shares = [math.log(m / n) for m in sizes]
    # Each group's covariances shrink toward the pooled one of all latents: a small label stays
    # well conditioned even with fewer latents than dimensions.
    fits = [_em(z[rows], {f: v[rows] for f, v in y.items()}, conditions, min(k, m // 2 if m >= 4 else 1), cfg, pooled, g)
            for rows, m, k in zip(groups, sizes, _shares(sizes, cfg.components))]
    k = sum(len(fit.means) for fit in fits)
    prior = MixturePrior(d, k, conditions)
    prior.log_weights.copy_(torch.cat([share + fit.log_weights for share, fit in zip(shares, fits)]).float())
    prior.means.copy_(torch.cat([fit.means for fit in fits]).float())
    prior.scale_tril.copy_(torch.cat([fit.scale_tril for fit in fits]).float())
    for f in conditions:
        prior.label_logp(f).copy_(torch.cat([fit.label_logp[f] for fit in fits]).float())
    ll = sum(math.exp(share) * (fit.log_likelihood + share) for share, fit in zip(shares, fits))
    iterations = max(fit.iterations for fit in fits)
    for f, labs in conditions.items():
        for i in range(len(labs)):
            pts = z[y[f] == i] if f in y else z[:0]
            mean = pts.mean(0) if len(pts) else z.mean(0)
            scatter = (pts - mean).T @ (pts - mean) if len(pts) else torch.zeros_like(pooled)
            getattr(prior, f"label_mean_{f}")[i] = mean.float()
            getattr(prior, f"label_cov_{f}")[i] = ((scatter + nu * pooled) / (len(pts) + nu)).float()
    if progress:
        print(f"prior: EM stopped after {iterations} iterations, log-likelihood {ll:.3f} per latent")
    prior.info = {"kind": "mixture", "config": cfg.to_dict(), "components": k, "latents": n,
                  "iterations": iterations, "log_likelihood_per_latent": ll,
                  "split_by": split if split in y else None}
    return prior


def encode_aggregate(model: CVAE, images: np.ndarray, labels: dict[str, np.ndarray], draws: int, seed: int = 0,
                     batch: int = 256, controls: dict[str, np.ndarray] | None = None
                     ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """`draws` samples of q(z | x, c) per image (uint8 [N, H, W, 3], each under its own labels and
    control values, where known): the aggregate posterior that a prior has to match, with the
    labels repeated alongside."""
    from .images import to_tensor  # images.py needs OpenCV; model.py imports this module

    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            s = slice(i, min(i + batch, len(images)))
            x = to_tensor(images[s]).to(model.device)
            cond = labels_to_condition(model.vocab, {f: torch.from_numpy(np.asarray(labels[f][s])) for f in model.vocab},
                                       model.controls, {c: torch.from_numpy(np.asarray(v[s])) for c, v in (controls or {}).items()})
            mu, logvar = model.encode(x, cond)
            mu, std = mu.float().cpu(), (0.5 * logvar.float()).exp().cpu()
            eps = torch.randn(draws, *mu.shape, generator=g)
            out.append((mu[None] + eps * std[None]).transpose(0, 1).reshape(-1, mu.shape[1]))
    z = torch.cat(out)
    return z, {f: np.repeat(np.asarray(labels[f]), draws) for f in model.vocab}


def fit_prior(model: CVAE, images: np.ndarray, labels: dict[str, np.ndarray], cfg: PriorConfig | None = None,
              progress: bool = False, controls: dict[str, np.ndarray] | None = None) -> MixturePrior:
    """Fit a mixture prior to `model`'s encodings of `images` and attach it (model.prior). The
    prior is per label; the images are encoded under their control values too, so z holds what
    the controls do not."""
    cfg = cfg or PriorConfig()
    if len(images) < 2:
        raise PriorError(f"need at least 2 images to fit a prior, got {len(images)}")
    missing = [f for f in model.vocab if f not in labels]
    if missing:
        raise PriorError(f"the images have no labels for the model's condition(s) {missing}")
    z, zl = encode_aggregate(model, images, labels, cfg.draws, cfg.seed, controls=controls)
    prior = fit_mixture(z, zl, model.vocab, cfg, progress).to(model.device)
    prior.info["images"] = int(len(images))
    model.prior = prior
    return prior


def fit_prior_on_folder(model: CVAE, root: str | Path, cfg: PriorConfig | None = None, val_fraction: float | None = None,
                        workers: int = 2, progress: bool = False) -> tuple[MixturePrior, list[tuple[str, str]]]:
    """Fit `model`'s prior to a folder labelled as in training (sub-folders or metadata.csv).

    Validation images (the same path-hash split as training, `val_fraction` defaulting to the
    model's own) are left out, so held-out figures stay held out. Returns the prior and the
    files that could not be read."""
    from .data import data_root, load_image_set

    data = load_image_set(root, model.resolution, list(model.vocab), workers=workers, vocab=dict(model.vocab) or None,
                          progress=progress, control_ranges=model.controls,
                          # without a metadata.csv no control is known: encoded as null
                          controls=list(model.controls) if (data_root(root) / "metadata.csv").is_file() else [])
    if val_fraction is None:
        val_fraction = float(getattr(model, "train_config", {}).get("val_fraction", 0.05))
    train_idx, _ = data.split(val_fraction)
    if len(train_idx) < 2:
        train_idx = np.arange(len(data))
    for f in model.vocab:
        if not (data.labels[f][train_idx] >= 0).any():
            raise PriorError(f"{root}: no image has a label of the model's condition {f!r} "
                             f"({', '.join(model.vocab[f])}); label them by sub-folder or metadata.csv")
    prior = fit_prior(model, data.images[train_idx], {f: v[train_idx] for f, v in data.labels.items()}, cfg, progress,
                      {c: v[train_idx] for c, v in data.controls.items()})
    prior.info["fitted_on"] = str(root)
    return prior, data.skipped

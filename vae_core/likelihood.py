"""How likely the model finds an image: the importance-weighted bound on log p(x) (Burda et al.
2016), the figure the VAE literature reports (`cvae bench nll`); the per-image ELBO that anomaly
scores use is in anomaly.py."""
from __future__ import annotations

import math

import numpy as np
import torch

from .model import CVAE, reparameterize


def _batched(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def importance_sampled_nll(model: CVAE, x: torch.Tensor, k: int = 1000, chunk: int = 250, batch: int = 8,
                           seed: int = 0, prior: str = "learned") -> tuple[np.ndarray, np.ndarray]:
    """(-log p(x) estimated with k importance samples from q(z|x), -ELBO from the same samples), per image, in nats.

    x: binary [N, 1, R, R]. p(x|z) is Bernoulli with the channel-averaged decoder logits;
    log p(x) ~ logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k (Burda et al. 2016), with
    p(z) the model's learned prior (prior="learned", where it has one) or N(0, I)."""
    if model.vocab:
        raise ValueError("the NLL benchmark needs an unconditional model (trained with --condition none)")
    if model.config.recon != "bce":
        raise ValueError(f"the NLL benchmark needs a Bernoulli (recon='bce') model, this one is {model.config.recon!r}")
    g = torch.Generator().manual_seed(seed)
    d = model.config.latent_dim
    log2pi = math.log(2 * math.pi)
    nll, elbo = [], []
    with torch.inference_mode():
        for s in _batched(len(x), batch):
            xb = x[s].to(model.device)
            b = len(xb)
            mu, logvar = model.encode(xb.expand(-1, 3, -1, -1), None)
            logw = []
            for c in _batched(k, chunk):
                n = c.stop - c.start
                eps = torch.randn(b, n, d, generator=g).to(model.device)
                z = reparameterize(mu[:, None], logvar[:, None], eps)  # n draws per image
                logits = model.decode_logits(z.reshape(b * n, d), None).mean(1).reshape(b, n, -1)
                target = xb.flatten(1)[:, None].expand_as(logits)
                log_px = -torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
                if prior == "learned" and model.prior is not None:
                    log_pz = model.prior.log_prob(z.reshape(b * n, d)).reshape(b, n)
                else:
                    log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
                log_qz = -0.5 * (eps.pow(2) + log2pi + logvar[:, None]).sum(-1)
                logw.append((log_px + log_pz - log_qz).double().cpu())
            w = torch.cat(logw, 1)
            nll.append(-(torch.logsumexp(w, 1) - math.log(k)))
            elbo.append(-w.mean(1))
    return torch.cat(nll).numpy(), torch.cat(elbo).numpy()

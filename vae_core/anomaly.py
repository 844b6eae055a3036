"""Anomaly scores: how badly the model explains each image, to rank the odd ones in a set.

Two scores per image: the reconstruction error of the posterior mean (mean squared error per
pixel value, 0..1 scale), and the negative ELBO in nats per image (a Monte-Carlo estimate of
E_q[-log p(x|z)] + KL(q(z|x) || p(z)) under the model's own likelihood), which also counts how
unusual the image's latent is. Higher is more anomalous for both.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._cv2 import ERRORS as CV2_ERRORS, require_cv2
from . import distributed
from .conditions import Cond, CondSpec, subfolder_condition
from .images import ImageReadError, extensionless_files, fit, list_images, load_image, to_tensor, to_uint8
from .losses import kl_divergence, reconstruction_nll
from .model import reparameterize


@dataclass
class AnomalyResult:
    recon_error: torch.Tensor  # [B] mean squared error per pixel value of the mean reconstruction
    neg_elbo: torch.Tensor  # [B] nats per image
    error_map: torch.Tensor  # [B, R, R] squared error averaged over channels, at the model's resolution


def scores_in_batches(
    model, images: torch.Tensor, cond: Cond, samples: int = 8, seed: int = 0, batch_size: int = 32,
    callback: Callable[[int, int], None] | None = None,
) -> AnomalyResult:
    """anomaly_scores over a large batch, `batch_size` images at a time, with the seed of each
    batch offset by its position, as score_folder does: the same images give the same scores
    whichever way they arrive. cond: one row per image, or one for all."""
    n = images.shape[0]
    parts = []
    for i in range(0, n, batch_size):
        rows = {k: v[i : i + batch_size] if v.shape[0] == n else v for k, v in cond.items()}
        parts.append(anomaly_scores(model, images[i : i + batch_size], rows, samples=samples, seed=(seed + i) % 2**63))
        if callback is not None:
            callback(min(i + batch_size, n), n)
    return AnomalyResult(*(torch.cat([getattr(p, f) for p in parts]) for f in ("recon_error", "neg_elbo", "error_map")))


class ScoreList(list):
    """score_folder's result: [(path, recon_error, neg_elbo)], worst first; `.skipped` lists the
    unreadable files as (path, why)."""

    skipped: list[tuple[str, str]]


@torch.inference_mode()
def anomaly_scores(
    model, images: torch.Tensor, cond: Cond | CondSpec | None = None, samples: int = 8, seed: int = 0
) -> AnomalyResult:
    """Scores for float images [B, 3, H, W] in 0..1 (resized to the model's resolution).

    cond: a Cond (batch 1 or B), a spec such as "label=disc", or None for the null condition.
    samples: latent draws for the ELBO estimate; the noise comes from `seed` on the CPU, so
    scores are the same on every device.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got shape {list(images.shape)}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    x = fit(images.to(model.device, torch.float32), model.resolution)
    cond = model.condition(cond, x.shape[0])
    mu, logvar = model.encode(x, cond)
    recon = model.decode(mu, cond)
    sq = (recon - x).pow(2)
    g = torch.Generator().manual_seed(int(seed))
    nll = torch.zeros(x.shape[0], device=x.device)
    for _ in range(samples):
        eps = torch.randn(mu.shape, generator=g).to(mu)
        logits = model.decode_logits(reparameterize(mu, logvar, eps), cond)
        nll += reconstruction_nll(model.config.recon, logits, x, model.log_sigma)
    neg_elbo = nll / samples + kl_divergence(mu, logvar).sum(1)
    return AnomalyResult(
        recon_error=sq.flatten(1).mean(1).cpu(),
        neg_elbo=neg_elbo.cpu(),
        error_map=sq.mean(1).cpu(),
    )


# How a heat map's colours are scaled: "image" (each map to its own hot end: the top 1% of its
# pixels saturate, so a defect shows however well the rest is drawn), "batch" (one scale for all,
# to compare images; one very bad image then leaves the others dark), or a fixed number.
HEAT_SCALES = ("image", "batch")
HEAT_PERCENTILE = 99.0
# Turbo's hot end is dark red, which shows over white backgrounds; inferno's is nearly white.
HEAT_COLORMAP = "TURBO"
# Blur of the error map before colouring, as a Gaussian sigma per 64 px of map: the per-pixel error
# is speckle along every edge; smoothed, the regions that are wrong stand out.
HEAT_SMOOTH = 1.5
HEAT_DISPLAY = 256  # the smallest side heat maps are drawn at, so the colour bar's label is legible


def heat_scales(error_map: torch.Tensor, scale: str | float = "image") -> torch.Tensor:
    """The error at the hot end of each map's colour scale, [B] (see HEAT_SCALES)."""
    em = error_map.detach().float().cpu().flatten(1)
    if isinstance(scale, str):
        if scale not in HEAT_SCALES:
            raise ValueError(f"heat map scale must be one of {', '.join(HEAT_SCALES)} or a number, got {scale!r}")
        top = torch.quantile(em, HEAT_PERCENTILE / 100, dim=1) if scale == "image" else em.max().expand(em.shape[0])
    else:
        value = float(scale)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"heat map scale must be a positive number, got {scale!r}")
        top = torch.full((em.shape[0],), value)
    return top.clamp(min=1e-12)


def heatmap(
    error_map: torch.Tensor,
    images: torch.Tensor | np.ndarray | None = None,
    alpha: float = 0.7,
    scale: str | float = "image",
    colormap: str = HEAT_COLORMAP,
    colorbar: bool = False,
) -> np.ndarray:
    """Colour error maps [B, H, W] as uint8 RGB [B, H, W, 3], optionally over the images.

    The maps are smoothed first (HEAT_SMOOTH). scale: see HEAT_SCALES. Over images (float [B, 3, H, W] 0..1 or uint8 [B, H, W, 3], any size;
    the map is resized to them) each pixel's colour opacity is alpha x its heat, so where the model
    redraws the image well the image shows untouched and only the errors are coloured.
    colorbar: a strip below each map, cold (left) to hot (right), with the hot end's error value
    written on it (the map's scale, mean squared error per pixel value).
    """
    cv2 = require_cv2("the anomaly heat map's colour map")
    em = error_map.detach().float().cpu()
    if em.dim() == 2:
        em = em[None]
    if colormap.upper() not in {n[len("COLORMAP_"):] for n in dir(cv2) if n.startswith("COLORMAP_")}:
        raise ValueError(f"unknown colour map {colormap!r}; OpenCV's include INFERNO, JET, VIRIDIS, TURBO")
    cmap = getattr(cv2, f"COLORMAP_{colormap.upper()}")
    sigma = HEAT_SMOOTH * em.shape[-1] / 64
    em = torch.from_numpy(np.stack([cv2.GaussianBlur(m, (0, 0), sigma) for m in em.numpy()]))
    top = heat_scales(em, scale)
    heat = (em / top[:, None, None]).clamp(0, 1).numpy()
    base = None
    if images is not None:
        base = to_uint8(images) if isinstance(images, torch.Tensor) and images.is_floating_point() else np.asarray(images)
        if base.ndim == 3:
            base = base[None]
        if base.shape[0] != heat.shape[0]:
            raise ValueError(f"{base.shape[0]} images for {heat.shape[0]} error maps")
    out = []
    for i, h in enumerate(heat):
        if base is not None and h.shape != base[i].shape[:2]:
            h = cv2.resize(h, base[i].shape[1::-1], interpolation=cv2.INTER_NEAREST)
        colour = cv2.cvtColor(cv2.applyColorMap((h * 255).round().astype(np.uint8), cmap), cv2.COLOR_BGR2RGB)
        if base is not None:
            w = alpha * h[..., None]
            colour = (base[i] * (1 - w) + colour * w).round().astype(np.uint8)
        if colorbar:
            colour = np.concatenate([colour, _colorbar(cv2, cmap, colour.shape[1], float(top[i]))])
        out.append(colour)
    return np.stack(out)


def _colorbar(cv2, cmap: int, width: int, top: float) -> np.ndarray:
    height = max(8, width // 8)
    ramp = np.linspace(0, 255, width).round().astype(np.uint8)[None].repeat(height, 0)
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cmap), cv2.COLOR_BGR2RGB)
    text, font, size = f"{top:.3g}", cv2.FONT_HERSHEY_PLAIN, height / 14
    (tw, th), _ = cv2.getTextSize(text, font, size, 1)
    org = (max(0, width - tw - 1), (height + th) // 2)
    cv2.putText(bar, text, org, font, size, (0, 0, 0), 2, cv2.LINE_AA)  # outlined: legible on either end
    cv2.putText(bar, text, org, font, size, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def score_folder(
    model,
    folder: str | Path,
    cond: CondSpec | None = None,
    samples: int = 8,
    seed: int = 0,
    batch_size: int = 32,
    background: str = "white",
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    by: str = "neg_elbo",
) -> ScoreList:
    """(path, recon_error, neg_elbo) for every image under `folder`, worst first (by `by`).

    cond=None: each image's first sub-folder name when it is a label of the model's first
    factor, else the null condition (as in restyle). Unreadable files are skipped and listed in
    the result's `.skipped`. Streams in batches. Under torchrun each process scores every
    size-th batch, with the noise of its place in the whole list, and every process returns the
    whole ranking: the same as one process gives.
    """

    if by not in ("neg_elbo", "recon_error"):
        raise ValueError(f"by must be 'neg_elbo' or 'recon_error', got {by!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = list_images(folder)
    fixed = None if cond is None else model.condition(cond, 1)
    rows: list[tuple[str, float, float]] = []
    w, owned = distributed.init(model.device)
    skipped: list[tuple[str, str]] = extensionless_files(folder) if w.main else []
    r = model.resolution
    starts = distributed.shard(range(0, len(files), batch_size), w)
    for start in tqdm(starts, disable=not progress, desc=f"scoring {folder.name}", unit="batch"):
        arrays, keep = [], []
        for p in files[start:start + batch_size]:
            try:
                arrays.append(load_image(p, r, background))
                keep.append(p)
            except (ImageReadError, *CV2_ERRORS) as err:
                skipped.append((str(p), str(err)))
        if keep:
            c = fixed if fixed is not None else subfolder_condition(model, [p.relative_to(folder) for p in keep])
            res = scores_in_batches(model, to_tensor(np.stack(arrays)), c, samples, seed + start, batch_size)
            rows += [(str(p), float(e), float(n)) for p, e, n in zip(keep, res.recon_error, res.neg_elbo)]
        if callback is not None:
            callback(min(start + batch_size, len(files)), len(files))
    parts = distributed.gather((rows, skipped))
    distributed.finish(owned)
    key = 2 if by == "neg_elbo" else 1
    out = ScoreList(sorted((row for part, _ in parts for row in part), key=lambda row: row[key], reverse=True))
    out.skipped = [x for _, part in parts for x in part]
    return out

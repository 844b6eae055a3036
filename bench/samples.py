"""`cvae bench samples`: how much generated images look like the data, in a domain feature space.

The standard Inception FID needs downloaded weights; for a small domain the literature uses a
classifier trained on the domain itself (as for MNIST). The bench trains one on the training
split (a style head and a group head on a small conv net; deterministic, cached on disk) and
measures, in its penultimate features:
- FID (Heusel et al. 2017) and KID (Binkowski et al. 2018, unbiased, cubic polynomial kernel);
- precision / recall (Kynkaanniemi et al. 2019, k-NN radii) and density / coverage (Naeem et al.
  2020);
- the classifier's style accuracy on images generated for a style;
- memorisation: each image's pixel distance to its nearest training image, against the same
  distance for held-out real images (a prior that replays training encodings scores well on FID
  and is useless to an artist).
Every evaluated set is compared with the same reference (the training split) at the same size
as the held-out set, so the rows (real held-out, blurred, reconstructions, samples) read
against each other. Style transfer: held-out emoji drawn in every style, encoded in their own
style and decoded as each other one, against the real drawing of that emoji in that style.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .harness import Table, _batched, _metadata_column, _train_val_fraction, reconstruct, style_pairs
from ..vae_core.checkpoint import load_model, load_state, save_state
from ..vae_core.data import ImageSet, load_image_set
from ..vae_core.images import to_tensor
from ..vae_core.metrics import laplacian_variance, psnr, quality_report, ssim
from ..vae_core.model import CVAE
from ..vae_core.model import REFINE_DEFAULT


CLASSIFIER_EPOCHS = 20  # measured: 10 epochs read the held-out style right 76% of the time
# Draws of each sample row, averaged: one draw of the held-out set's size (253 on the emoji set)
# moved FID by +-2.2 and style accuracy by +-0.024 between seeds (BENCHMARKS.md), as much as
# the bars' margins; the spread is reported beside the mean.
SAMPLE_DRAWS = 3
# (transport, refine) of the restyle rows: each part alone, both, and neither.
RESTYLE_MODES = (("none", 0), ("prior", 0), ("none", REFINE_DEFAULT), ("prior", REFINE_DEFAULT))


# -- the domain classifier -------------------------------------------------------------------------
class DomainNet(nn.Module):
    """A small conv net with one head per label factor; `features` is what FID is computed in."""

    def __init__(self, heads: dict[str, int], width: int = 32, feature_dim: int = 128):
        super().__init__()
        chs = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        prev = 3
        for ch in chs:
            layers += [nn.Conv2d(prev, ch, 3, 1, 1), nn.GroupNorm(8, ch), nn.SiLU(),
                       nn.Conv2d(ch, ch, 3, 2, 1), nn.GroupNorm(8, ch), nn.SiLU()]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(prev, feature_dim)
        self.heads = nn.ModuleDict({f: nn.Linear(feature_dim, n) for f, n in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.proj(self.body(x * 2 - 1).mean((2, 3))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {f: head(h) for f, head in self.heads.items()}


def train_classifier(data: ImageSet, train_idx: np.ndarray, factors: list[str], epochs: int = CLASSIFIER_EPOCHS,
                     batch: int = 128, seed: int = 0, progress: bool = False) -> DomainNet:
    torch.manual_seed(seed)
    net = DomainNet({f: len(data.vocab[f]) for f in factors})
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train_idx) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        perm = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
        total = 0.0
        for s in _batched(len(perm), batch):
            idx = perm[s]
            x = to_tensor(data.images[idx])
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
            out = net(x)
            loss = sum(F.cross_entropy(out[f], torch.from_numpy(data.labels[f][idx]), ignore_index=-1) for f in factors)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            print(f"domain classifier epoch {epoch + 1}/{epochs}: loss {total / len(perm):.3f}", flush=True)
    return net.eval()


def cached_classifier(data: ImageSet, train_idx: np.ndarray, factors: list[str], cache_dir: str | Path,
                      key: dict, progress: bool = False) -> DomainNet:
    """The classifier for this data, split and settings: trained once, then loaded from `cache_dir`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"domain_classifier_{digest}.safetensors"
    heads = {f: len(data.vocab[f]) for f in factors}
    if path.is_file():
        net = DomainNet(heads)
        net.load_state_dict(load_state(path)["weights"])
        return net.eval()
    net = train_classifier(data, train_idx, factors, progress=progress)
    save_state(path, {"weights": net.state_dict(), "key": json.dumps(key)})
    return net


@torch.inference_mode()
def classify(net: DomainNet, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(features [N, F], predicted label per head) of float images in 0..1."""
    feats, preds = [], {f: [] for f in net.heads}
    for s in _batched(len(images), batch):
        x = images[s].float()
        h = net.features(x)
        feats.append(h)
        for f, head in net.heads.items():
            preds[f].append(head(h).argmax(1))
    return torch.cat(feats), {f: torch.cat(v) for f, v in preds.items()}


# -- distribution metrics --------------------------------------------------------------------------
def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    a, b = a.double(), b.double()
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = torch.cov(a.T), torch.cov(b.T)
    # tr sqrt(c1 c2) from the eigenvalues of sqrt(c1) c2 sqrt(c1), which is symmetric PSD
    w, v = torch.linalg.eigh(c1)
    s1 = (v * w.clamp(min=0).sqrt()) @ v.T
    eig = torch.linalg.eigvalsh(s1 @ c2 @ s1).clamp(min=0)
    return float((mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * eig.sqrt().sum())


def kid(a: torch.Tensor, b: torch.Tensor, subsets: int = 50, size: int = 200, seed: int = 0) -> float:
    """Kernel inception distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over subsets."""
    a, b = a.double(), b.double()
    d = a.shape[1]
    m = min(size, len(a), len(b))
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:m]]
        y = b[torch.randperm(len(b), generator=g)[:m]]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals.append(float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                          - 2 * kxy.mean()))
    return float(np.mean(vals))


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): the share of fakes inside the real
    manifold (union of k-NN balls), and of reals inside the fake one."""
    rr, rf = _knn_radii(real, k), _knn_radii(fake, k)
    d = torch.cdist(fake, real)  # [F, R]
    precision = float((d <= rr[None]).any(1).float().mean())
    recall = float((d.T <= rf[None]).any(1).float().mean())
    return precision, recall


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020)."""
    rr = _knn_radii(real, k)
    inside = torch.cdist(fake, real) <= rr[None]  # [F, R]
    density = float(inside.float().sum() / (k * len(fake)))
    coverage = float(inside.any(0).float().mean())
    return density, coverage


def nearest_rmse(images: torch.Tensor, reference: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Pixel RMSE of each image to its nearest reference image, [N]."""
    ref = reference.float().flatten(1)
    out = []
    for s in _batched(len(images), batch):
        out.append(torch.cdist(images[s].float().flatten(1), ref).min(1).values)
    return out[0].new_tensor([]) if not out else torch.cat(out) / math.sqrt(ref.shape[1])


def blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    import kornia

    k = int(2 * math.ceil(2 * sigma) + 1)
    return kornia.filters.gaussian_blur2d(images.float(), (k, k), (sigma, sigma))


def _metadata_columns(root: Path) -> list[str]:
    import csv

    meta = root / "metadata.csv"
    if not meta.is_file():
        raise ValueError(f"{root}: bench samples needs a metadata.csv with path, style and key columns")
    with open(meta, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


# -- the tables --------------------------------------------------------------------------------------
def _mean_row(rows: list[dict]) -> dict:
    """The rows of several draws of one set as one: each figure's mean, and the spread (standard
    deviation over the draws) of FID and style accuracy; None with a single draw."""
    out = {k: (float(np.mean([r[k] for r in rows])) if isinstance(v, float) else v) for k, v in rows[0].items()}
    for k in ("fid", "style acc"):
        out[f"{k} sd"] = float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 and rows[0][k] is not None else None
    return out


def _set_row(name: str, images: torch.Tensor, asked: np.ndarray, ctx: dict) -> dict:
    """One evaluated set against the reference; `asked`: the label of the factor each image should show."""
    net, ref_feats, ref_imgs, heldout_nn = ctx["net"], ctx["ref_feats"], ctx["ref_images"], ctx["heldout_nn"]
    feats, preds = classify(net, images)
    p, r = precision_recall(ref_feats, feats)
    dens, cov = density_coverage(ref_feats, feats)
    row = {"set": name, "images": len(images), "fid": fid(feats, ref_feats), "kid x1000": 1000 * kid(feats, ref_feats),
           "precision": p, "recall": r, "density": dens, "coverage": cov}
    known = asked >= 0
    row["style acc"] = float((preds[ctx["factor"]][known].numpy() == asked[known]).mean()) if known.any() else None
    nn_rmse = nearest_rmse(images, ref_imgs)
    row["nn rmse"] = float(nn_rmse.median())
    row["nn / held-out nn"] = float(nn_rmse.median() / heldout_nn) if heldout_nn else None
    return row


def _transfer_row(moved: torch.Tensor, target: torch.Tensor, source: torch.Tensor, hit: np.ndarray) -> dict:
    t_ssim, i_ssim = ssim(moved, target), ssim(source, target)
    # Sharpness beside the gain: blurring alone raises SSIM to a different drawing (1 px: +0.016).
    sharp = float(laplacian_variance(moved).mean() / max(laplacian_variance(target).mean(), 1e-12))
    return {"pairs": len(moved), "transfer ssim": t_ssim, "identity ssim": i_ssim, "ssim gain": t_ssim - i_ssim,
            "psnr gain": psnr(moved, target) - psnr(source, target), "target style acc": float(hit.mean()),
            "sharpness_ratio": sharp}


def _draw(model: CVAE, styles: np.ndarray, factor: str, seed: int, temperature: float, prior: str, batch: int = 256,
          refine: int = REFINE_DEFAULT) -> torch.Tensor:
    """Samples as a user draws them: one `cvae sample --cond style=S` call per style."""
    out = torch.empty(len(styles), 3, model.resolution, model.resolution)
    for s in np.unique(styles):
        rows = np.flatnonzero(styles == s)
        spec = f"{factor}={model.vocab[factor][s]}" if s >= 0 else None
        images = [model.sample(len(rows[sl]), model.condition(spec, 1), seed=seed + 7919 * int(s) + i,
                               temperature=temperature, prior=prior, refine=refine).float().cpu()
                  for i, sl in enumerate(_batched(len(rows), batch))]
        out[rows] = torch.cat(images)
    return out


def bench_samples(models: dict[str, str | Path], data_root: str | Path, device: str = "cpu",
                  temperatures: tuple[float, ...] = (1.0,), priors: tuple[str, ...] = ("learned", "normal"),
                  cache_dir: str | Path = "runs/bench_cache", factor: str = "style", group: str = "group",
                  seed: int = 0, workers: int = 2, progress: bool = False, draws: int = SAMPLE_DRAWS) -> list[Table]:
    if not 1 <= draws <= 20:
        raise ValueError(f"draws must be a whole number from 1 to 20, got {draws}")
    root = Path(data_root)
    first = load_model(next(iter(models.values())), device)
    val_fraction = _train_val_fraction(Path(next(iter(models.values()))))
    factors = [factor] + ([group] if group and group in _metadata_columns(root) else [])
    data = load_image_set(root, first.resolution, factors, workers=workers, progress=False)
    train_idx, val_idx = data.split(val_fraction)
    key = {"data": str(root.resolve()), "n": len(data), "res": first.resolution, "val": val_fraction,
           "factors": factors, "vocab": data.vocab, "seed": seed, "epochs": CLASSIFIER_EPOCHS, "version": 2}
    net = cached_classifier(data, train_idx, factors, cache_dir, key, progress)
    real_val = to_tensor(data.images[val_idx])
    ref_images = to_tensor(data.images[train_idx])
    ref_feats, _ = classify(net, ref_images)
    heldout_nn = float(nearest_rmse(real_val, ref_images).median())
    ctx = {"net": net, "ref_feats": ref_feats, "ref_images": ref_images, "heldout_nn": heldout_nn, "factor": factor}
    asked_val = data.labels[factor][val_idx]
    cols = ["model", "set", "prior", "T", "refine", "images", "fid", "fid sd", "kid x1000", "precision", "recall", "density",
            "coverage", "style acc", "style acc sd", "nn rmse", "nn / held-out nn"]
    quality = Table("samples", f"Sample quality on {root.name} (domain-classifier features)", cols)
    quality.rows.append({"model": "-", **_set_row("real held-out", real_val, asked_val, ctx)})
    quality.rows.append({"model": "-", **_set_row("real held-out, blurred (sigma 1 px)", blur(real_val), asked_val, ctx)})
    per_style = Table("samples_style", "Prior samples per style (T = 1, the model's default prior and refine passes)",
                      ["model", "style", "images", "fid", "kid x1000", "precision", "recall", "style acc"])
    pair_cols = ["model", "transport", "refine", "from", "to", "pairs", "transfer ssim", "identity ssim", "ssim gain",
                 "psnr gain", "target style acc", "sharpness_ratio"]
    transfer = Table("transfer", f"Style transfer on held-out emoji drawn in every {factor}", pair_cols)
    keys = _metadata_column(root, "key")
    for name, path in models.items():
        model = load_model(path, device)
        if list(model.vocab.get(factor, [])) != data.vocab[factor]:
            raise ValueError(f"{path}: its {factor} labels {model.vocab.get(factor)} are not the data's {data.vocab[factor]}")
        labels = {f: data.labels[f][val_idx] for f in model.vocab}
        recon, _ = reconstruct(model, data.images[val_idx], labels)
        quality.rows.append({"model": name, **_set_row("reconstructions (held-out)", recon, asked_val, ctx),
                             **quality_report(recon, real_val)})
        for prior in priors:
            if prior == "learned" and model.prior is None:
                continue
            for t in temperatures:
                for refine in sorted({0, REFINE_DEFAULT}):  # as drawn before refining existed, and now
                    rows = [_set_row("samples", _draw(model, asked_val, factor, seed + 1000 * i, t, prior, refine=refine),
                                     asked_val, ctx) for i in range(draws)]
                    quality.rows.append({"model": name, "prior": prior, "T": t, "refine": refine, **_mean_row(rows)})
        default = "learned" if model.prior is not None else "normal"
        for s, label in enumerate(data.vocab[factor]):
            ref_s = ref_feats[torch.from_numpy(data.labels[factor][train_idx] == s)]
            samples = _draw(model, np.full(250, s), factor, seed + 1, 1.0, default)
            feats, preds = classify(net, samples)
            p, r = precision_recall(ref_s, feats)
            per_style.rows.append({"model": name, "style": label, "images": len(samples), "fid": fid(feats, ref_s),
                                   "kid x1000": 1000 * kid(feats, ref_s), "precision": p, "recall": r,
                                   "style acc": float((preds[factor] == s).float().mean())})
        pairs = style_pairs(data, val_idx, keys, factor)
        for mode, refine in RESTYLE_MODES if pairs else ():
            if mode == "prior" and model.prior is None:
                continue
            src, dst = (np.array(p) for p in zip(*pairs))
            moved, _ = reconstruct(model, data.images[src], {f: data.labels[f][src] for f in model.vocab},
                                   decode_labels={f: data.labels[f][dst] for f in model.vocab}, transport=mode, refine=refine)
            target, source = to_tensor(data.images[dst]), to_tensor(data.images[src])
            _, preds = classify(net, moved)
            s_from, s_to = data.labels[factor][src], data.labels[factor][dst]
            hit = preds[factor].numpy() == s_to  # the classifier sees the target style
            how = {"model": name, "transport": mode, "refine": refine}
            for a, src_label in enumerate(data.vocab[factor]):
                for b, dst_label in enumerate(data.vocab[factor]):
                    sel = np.flatnonzero((s_from == a) & (s_to == b))
                    if a != b and len(sel):
                        transfer.rows.append({**how, "from": src_label, "to": dst_label,
                                              **_transfer_row(moved[sel], target[sel], source[sel], hit[sel])})
            transfer.rows.append({**how, "from": "all", "to": "all", **_transfer_row(moved, target, source, hit)})
    quality.columns += ["psnr", "ssim", "sharpness_ratio"]
    quality.notes += [
        f"reference: the {len(train_idx)} training-split images; every set has the held-out set's size "
        f"({len(val_idx)}) and style mix; split ImageSet.split({val_fraction}) as in training",
        f"features: the 128-d penultimate layer of a conv net trained on the training split with {' and '.join(factors)} "
        "heads (cached in " + str(cache_dir) + "); FID and KID in those features, KID with the cubic kernel, x1000",
        "precision/recall: k=3 nearest-neighbour radii (Kynkaanniemi 2019); density/coverage: k=5 (Naeem 2020)",
        "style acc: the classifier's style head agrees with the asked style (real held-out: with the true one)",
        "nn rmse: median pixel RMSE to the nearest training image; nn / held-out nn below 1 means samples sit closer "
        "to training images than new real images do (replay)",
        "samples: one `model.sample(n, style=S, seed, T, refine)` call per style, the learned prior where the model "
        f"has one; refine: decode-and-encode passes after drawing ({REFINE_DEFAULT} is the default); the mean of "
        f"{draws} draw(s) (seeds {seed}, {seed} + 1000, ...), sd: their standard deviation",
    ]
    transfer.notes += [
        "each held-out image of an emoji drawn in all styles, encoded in its own style and decoded as each other, "
        "against the real drawing of that emoji in the target style; identity = the untouched source as the "
        "prediction; gain = transfer - identity; target style acc: the classifier sees the target style",
        "transport: prior = the latent carried between the two styles' prior moments; none = decoded as encoded; "
        "refine: passes that decode under the target and encode again (cvae restyle's default: prior, "
        f"{REFINE_DEFAULT}); sharpness_ratio: Laplacian variance against the real target drawings",
    ]
    return [quality, per_style, transfer]

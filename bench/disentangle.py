"""`cvae bench disentangle`: how the latent code relates to the data's known factors.

For each labelled factor (style, and group where the metadata has it) and the posterior means of
the images (encoded under their own condition, as restyle and anomaly do):
- MIG, the mutual information gap (Chen et al. 2018, "Isolating sources of disentanglement"):
  the mutual information of the factor with its most informative latent dimension minus that of
  the second, over the factor's entropy; 1 = one dimension alone carries it.
- SAP (Kumar et al. 2018, "Variational inference of disentangled latent concepts"): the same gap
  in held-out accuracy of a one-dimension classifier (each of 20 bins of a dimension predicts its
  commonest label).
- A linear probe: held-out accuracy of a logistic regression from the whole code to the factor,
  beside chance. A conditional VAE should carry little of its condition in z: high probe
  accuracy on the conditioned factor means the latent still holds it (and a restyle then fights
  the latent); the unconditioned factors (group) are what z should hold.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .harness import Table, _batched, _train_val_fraction
from .samples import _metadata_columns
from ..vae_core.checkpoint import load_model
from ..vae_core.conditions import labels_to_condition
from ..vae_core.data import load_image_set
from ..vae_core.images import to_tensor

BINS = 20


def _discretize(codes: np.ndarray, edges_from: np.ndarray | None = None) -> np.ndarray:
    """Each dimension into BINS equal-width bins over the range of `edges_from` (default: codes)."""
    ref = codes if edges_from is None else edges_from
    lo, hi = ref.min(0), ref.max(0)
    scaled = (codes - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.clip((scaled * BINS).astype(int), 0, BINS - 1)


def _entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """I(z_j; v) in nats for every dimension j, from the joint histogram of binned z_j and v."""
    bins = _discretize(codes)
    k = labels.max() + 1
    out = np.empty(codes.shape[1])
    for j in range(codes.shape[1]):
        joint = np.zeros((BINS, k))
        np.add.at(joint, (bins[:, j], labels), 1)
        joint /= joint.sum()
        pz, pv = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
        nz = joint > 0
        out[j] = float((joint[nz] * np.log(joint[nz] / (pz @ pv)[nz])).sum())
    return out


def mig(codes: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(MIG, the most informative dimension)."""
    mi = mutual_information(codes, labels)
    top = np.sort(mi)[::-1]
    return float((top[0] - top[1]) / max(_entropy(labels), 1e-12)), int(mi.argmax())


def sap(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    """Top-1 minus top-2 held-out accuracy of the one-dimension bin classifiers."""
    bt, bs = _discretize(train), _discretize(test, edges_from=train)
    k = max(train_labels.max(), test_labels.max()) + 1
    acc = np.empty(train.shape[1])
    for j in range(train.shape[1]):
        counts = np.zeros((BINS, k))
        np.add.at(counts, (bt[:, j], train_labels), 1)
        predict = counts.argmax(1)  # empty bins predict label 0
        acc[j] = float((predict[bs[:, j]] == test_labels).mean())
    top = np.sort(acc)[::-1]
    return float(top[0] - top[1])


def linear_probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                 steps: int = 300, seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression (standardised codes, L2 1e-3)."""
    g = torch.Generator().manual_seed(seed)
    mean, std = train.mean(0), train.std(0) + 1e-6
    x = torch.from_numpy((train - mean) / std).float()
    y = torch.from_numpy(train_labels).long()
    k = int(max(train_labels.max(), test_labels.max())) + 1
    w = (torch.randn(x.shape[1], k, generator=g) * 0.01).requires_grad_()
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 1e-3 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = (torch.from_numpy((test - mean) / std).float() @ w + b).argmax(1).numpy()
    return float((pred == test_labels).mean())


def encode_means(model, images: np.ndarray, labels: dict[str, np.ndarray], batch: int = 256) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in _batched(len(images), batch):
            cond = labels_to_condition(model.vocab, {f: torch.from_numpy(v[s]) for f, v in labels.items() if f in model.vocab})
            mu, _ = model.encode(to_tensor(images[s]).to(model.device), cond)
            out.append(mu.float().cpu().numpy())
    return np.concatenate(out)


def bench_disentangle(models: dict[str, str | Path], data_root: str | Path, factors: list[str] | None = None,
                      device: str = "cpu") -> Table:
    """One row per model and factor; `factors`: default the model's own factors plus 'group'
    where the data has it."""
    root = Path(data_root)
    table = Table("disentangle", f"The latent code against the known factors of {root.name}",
                  ["model", "factor", "conditioned", "labels", "MIG", "top dim", "SAP", "linear probe acc", "chance"])
    for name, path in models.items():
        model = load_model(path, device)
        wanted = factors or list(model.vocab) + ["group"]
        columns = _metadata_columns(root) if (root / "metadata.csv").is_file() else []
        available = [f for f in wanted if f in model.vocab or f in columns]
        data = load_image_set(root, model.resolution, available, workers=2, progress=False)
        for f in model.vocab:
            if f in data.vocab and list(model.vocab[f]) != data.vocab[f]:
                raise ValueError(f"{path}: its {f} labels {model.vocab[f]} are not the data's {data.vocab[f]}")
        train_idx, val_idx = data.split(_train_val_fraction(Path(path)))
        own = {f: data.labels[f] for f in model.vocab if f in data.labels}
        codes = encode_means(model, data.images, own)
        for f in available:
            v = data.labels[f]
            tr, te = train_idx[v[train_idx] >= 0], val_idx[v[val_idx] >= 0]
            if len(np.unique(v[tr])) < 2 or not len(te):
                continue
            m, top = mig(codes[tr], v[tr])
            table.rows.append({
                "model": name, "factor": f, "conditioned": "yes" if f in model.vocab else "no",
                "labels": len(data.vocab[f]), "MIG": m, "top dim": top,
                "SAP": sap(codes[tr], v[tr], codes[te], v[te]),
                "linear probe acc": linear_probe(codes[tr], v[tr], codes[te], v[te]),
                "chance": float(np.bincount(v[te]).max() / len(te)),
            })
    table.notes += [
        "codes: posterior means under each image's own condition; MIG on the training split (20 bins per "
        "dimension), SAP and the probe trained on it and scored on the held-out split (ImageSet.split as in training)",
        "chance: the held-out share of the commonest label; a conditioned factor's probe near chance means z leaves "
        "it to the condition",
    ]
    return table


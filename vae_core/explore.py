"""The latent explorer's map: a 2-D chart of a set of latents (anchors) to move through.

The chart is the plane of the anchors' two principal directions, scaled so the anchors lie in
[-1, 1]. A point on it decodes to the plane's latent plus a blend of the anchors' off-plane parts,
weighted by inverse squared distance (Shepard) and rescaled to the blend of their lengths, so the
point on an anchor is exactly that anchor and a point between anchors keeps their norm (a plain
average shrinks towards the mean and decodes blurred, as a lerp does). Deterministic: the same
anchors give the same map on every machine (the principal directions' signs are fixed).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .conditions import Cond
from .limits import RANGES
from .model import REFINE_DEFAULT

# Map coordinates accepted: the anchors span [-1, 1]; up to 3 extrapolates along the plane.
MAP_RANGE, ANCHORS, PINS = RANGES["map_coordinate"], RANGES["anchors"], RANGES["pins"]


class ExplorerError(ValueError):
    pass


@dataclass
class LatentMap:
    mean: torch.Tensor  # [D]
    axes: torch.Tensor  # [2, D]: map unit -> latent offset along the plane
    coords: torch.Tensor  # [N, 2] anchors on the map
    residuals: torch.Tensor  # [N, D] each anchor's part off the plane

    @classmethod
    def fit(cls, z: torch.Tensor) -> "LatentMap":
        z = z.detach().double().cpu()
        if z.dim() != 2:
            raise ExplorerError(f"anchors must be latents [N, D], got shape {list(z.shape)}")
        ANCHORS.check(len(z), "anchors")
        if not torch.isfinite(z).all():
            raise ExplorerError("the anchors hold NaN or infinite values")
        mean = z.mean(0)
        _, _, vh = torch.linalg.svd(z - mean, full_matrices=False)
        basis = _complete(vh[:2], z.shape[1])
        # SVD's signs are arbitrary: fix each direction's largest component positive.
        basis = basis * torch.sign(basis.gather(1, basis.abs().argmax(1, keepdim=True)))
        coords = (z - mean) @ basis.T
        scale = float(coords.abs().max()) or 1.0
        coords = coords / scale
        residuals = (z - mean) - coords @ (basis * scale)
        return cls(mean, basis * scale, coords, residuals)

    def latents(self, points: torch.Tensor) -> torch.Tensor:
        """Latents [M, D] (float32) of map points [M, 2]."""
        p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
        for x in p.flatten().tolist():
            MAP_RANGE.check(x, "map coordinate")
        plane = self.mean + p @ self.axes
        d2 = torch.cdist(p, self.coords).pow(2)
        on = d2 < 1e-12
        w = torch.where(on.any(1, keepdim=True), on.double(), 1.0 / d2.clamp(min=1e-12))
        w = w / w.sum(1, keepdim=True)
        blend = w @ self.residuals
        length = w @ self.residuals.norm(dim=1)
        norm = blend.norm(dim=1)
        blend = blend * torch.where(norm > 1e-12, length / norm.clamp(min=1e-12), torch.ones_like(norm))[:, None]
        return (plane + blend).float()


def _complete(rows: torch.Tensor, dim: int) -> torch.Tensor:
    """Two orthonormal rows: `rows` (fewer when the anchors span less than a plane), completed
    by the first coordinate axes that are not in their span."""
    out = [r / r.norm() for r in rows if r.norm() > 1e-9]
    for k in range(dim):
        if len(out) == 2:
            break
        v = torch.zeros(dim, dtype=rows.dtype)
        v[k] = 1.0
        for u in out:
            v = v - (v @ u) * u
        if v.norm() > 1e-6:
            out.append(v / v.norm())
    return torch.stack(out)


def prior_anchors(model, count: int, seed: int, temperature: float, refine: int = REFINE_DEFAULT
                  ) -> tuple[torch.Tensor, Cond]:
    """`count` latents from the model's prior, the labels of its first factor in turn (so one map
    shows every style), refined as CVAE Sample refines them; and the condition of each."""
    ANCHORS.check(count, "count")
    vocab = model.vocab
    if not vocab:
        cond = model.condition(None, count)
        return model.refine(model.prior_sample(count, seed, temperature), cond, refine), cond
    factor = next(iter(vocab))
    labels = vocab[factor]
    zs, conds = [], []
    for i, label in enumerate(labels):
        n = count // len(labels) + (i < count % len(labels))
        if not n:
            continue
        c = model.condition({factor: label}, 1)
        zs.append(model.refine(model.prior_sample(n, seed + i, temperature, c), c, refine))
        conds.append(model.condition(c, n))
    return torch.cat(zs), {k: torch.cat([c[k] for c in conds]) for k in conds[0]}


# -- pinned points -----------------------------------------------------------------------------
@dataclass
class Pin:
    x: float
    y: float
    cond: dict[str, dict[str, float]]  # {factor: {label: weight}}, as the style sliders stood


def parse_pins(text: str, vocab: Mapping[str, list[str]]) -> list[Pin]:
    """Pins from the node's widget: a JSON list of {"x", "y", "cond": {factor: {label: weight}}}."""
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError as err:
        raise ExplorerError(f"pins: not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(raw, list):
        raise ExplorerError("pins: expected a JSON list of points")
    if len(raw) > PINS.hi:
        raise ExplorerError(f"pins: {len(raw)} points, at most {int(PINS.hi)}")
    return [pin(item, f"pin {i}", vocab) for i, item in enumerate(raw, 1)]


def pin(item: object, where: str, vocab: Mapping[str, list[str]]) -> Pin:
    """One point {"x", "y", "cond"} checked: coordinates on the map, known factors and labels."""
    if not isinstance(item, dict) or not {"x", "y"} <= set(item):
        raise ExplorerError(f"{where}: expected an object with x and y")
    xy = []
    for axis in ("x", "y"):
        v = item[axis]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExplorerError(f"{where}: {axis} must be a number, got {v!r}")
        try:
            xy.append(MAP_RANGE.check(float(v), f"{where} {axis} (a map coordinate)"))
        except ValueError as err:
            raise ExplorerError(str(err)) from None
    cond = item.get("cond") or {}
    if not isinstance(cond, dict) or not all(isinstance(v, dict) for v in cond.values()):
        raise ExplorerError(f"{where}: cond must map each factor to {{label: weight}}")
    for factor, weights in cond.items():
        if factor not in vocab:
            raise ExplorerError(f"{where}: unknown factor {factor!r}; this model has {sorted(vocab)}")
        unknown = set(weights) - set(vocab[factor]) - {"null"}
        if unknown:
            raise ExplorerError(f"{where}: unknown label(s) {sorted(unknown)} of {factor!r}")
        for label, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ExplorerError(f"{where}: the weight of {label!r} must be a number, got {w!r}")
            try:  # the same bounds as every blend weight
                RANGES["cond_weight"].check(float(w), f"{where}: the weight of {label!r}")
            except ValueError as err:
                raise ExplorerError(str(err)) from None
    return Pin(xy[0], xy[1], {f: {k: float(v) for k, v in w.items()} for f, w in cond.items()})


def pins_json(pins: list[Pin]) -> str:
    return json.dumps([{"x": p.x, "y": p.y, "cond": p.cond} for p in pins])

"""Conditions: named categorical factors given as a label, a blend of labels, or null, and
continuous controls given as a number.

A condition is a dict {factor: weights [B, n_labels + 1]}; the last column is the learned null
label. Weights mix the factor's embeddings linearly, so a blend of two conditions is the blend of
their weights, and a sweep between two styles is just a schedule over blend weights.

A control (a numeric metadata column, e.g. brightness) is a factor with two anchor rows, the
lowest and the highest value seen in training, plus null: the value v, normalised to
t = (v - lo) / (hi - lo), has the weights (1 - t, t, 0), so its embedding is affine in the value,
blends and sweeps stay linear in it, and values outside the trained range extrapolate.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

Vocab = Mapping[str, list[str]]
Controls = Mapping[str, Sequence[float]]  # name -> (lo, hi), the range the control was trained on
Cond = dict[str, torch.Tensor]
CONTROL_WIDTH = 3  # weights per control: at lo, at hi, null
# "style=noto" | "style=noto:0.5,openmoji:0.5;group=animals" | {"style": {"noto": 0.5, ...}}
CondSpec = str | Mapping[str, "str | Mapping[str, float]"] | None


class ConditionError(ValueError):
    pass


class ControlRangeWarning(UserWarning):
    """A control value outside the range the model was trained on: allowed, it extrapolates."""


def parse_cond_spec(spec: CondSpec) -> dict[str, dict[str, float]]:
    """Parse a condition spec into {factor: {label: weight}}; an absent factor means null."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out: dict[str, dict[str, float]] = {}
        for factor, value in spec.items():
            out[factor] = {value: 1.0} if isinstance(value, str) else {
                k: _weight(w, f"condition {factor}", k) for k, w in value.items()}
        return out
    if spec.strip().lower() in ("null", "none", ""):  # the unconditional decoder, as the README offers
        return {}
    out = {}
    for part in filter(None, (p.strip() for p in spec.replace("\n", ";").split(";"))):
        if "=" not in part:
            raise ConditionError(f"condition {part!r}: expected FACTOR=LABEL or FACTOR=LABEL:W,LABEL:W")
        factor, _, labels = part.partition("=")
        weights: dict[str, float] = {}
        for item in filter(None, (x.strip() for x in labels.split(","))):
            label, sep, w = item.partition(":")
            weights[label.strip()] = _weight(w, f"condition {part!r}", label) if sep else 1.0
        if not weights:
            raise ConditionError(f"condition {part!r}: no label after '='")
        out[factor.strip()] = weights
    return out


def _weight(w: object, where: str, label: str) -> float:
    """A blend weight: a finite number of moderate size (the nodes' sliders span -4..4)."""
    from .limits import RANGES

    try:
        value = float(w)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConditionError(f"{where}: weight {w!r} of {label!r} is not a number") from None
    try:
        return RANGES["cond_weight"].check(value, f"{where}: the weight of {label!r}")
    except ValueError as err:
        raise ConditionError(str(err)) from None


def make_condition(vocab: Vocab, spec: CondSpec = None, batch: int = 1, device: torch.device | str = "cpu",
                   controls: Controls | None = None) -> Cond:
    """Weights for every factor of `vocab` and every control; those the spec leaves out get null.

    Weights are normalised to sum to 1 (negative weights extrapolate, as in latent arithmetic).
    A control's "label" is its value, e.g. "brightness=0.9" or "brightness=0.2:0.5,0.8:0.5".
    """
    parsed = parse_cond_spec(spec)
    controls = controls or {}
    unknown = set(parsed) - set(vocab) - set(controls)
    if unknown:
        raise ConditionError(f"unknown condition factor(s) {sorted(unknown)}; this model has "
                             f"{sorted([*vocab, *controls])}")
    cond: Cond = {}
    for factor, labels in vocab.items():
        w = torch.zeros(len(labels) + 1)
        if factor not in parsed or parsed[factor] == {"null": 1.0}:
            w[-1] = 1.0
        else:
            for label, weight in parsed[factor].items():
                if label == "null":
                    w[-1] += weight
                    continue
                if label not in labels:
                    raise ConditionError(
                        f"unknown label {label!r} for factor {factor!r}; known: {', '.join(labels)}"
                    )
                w[labels.index(label)] += weight
            total = float(w.sum())
            if abs(total) < 1e-8:
                raise ConditionError(f"weights for factor {factor!r} sum to zero")
            w = w / total
        cond[factor] = w.expand(batch, -1).clone().to(device)
    for name, (lo, hi) in controls.items():
        w = torch.zeros(CONTROL_WIDTH)
        for value, weight in parsed.get(name, {"null": 1.0}).items():
            w += weight * (torch.tensor([0.0, 0.0, 1.0]) if value == "null" else control_weights(
                torch.tensor([control_value(name, value, lo, hi)]), lo, hi)[0])
        total = float(w.sum())
        if abs(total) < 1e-8:
            raise ConditionError(f"weights for control {name!r} sum to zero")
        cond[name] = (w / total).expand(batch, -1).clone().to(device)
    return cond


def control_value(name: str, value: str | float, lo: float, hi: float) -> float:
    """A control's value from a spec: a finite number; outside the trained range it warns."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConditionError(f"control {name!r}: {value!r} is not a number (trained on {lo:g} to {hi:g})") from None
    if not math.isfinite(v):
        raise ConditionError(f"control {name!r}: {value!r} is not a finite number")
    if not lo <= v <= hi:
        warnings.warn(ControlRangeWarning(
            f"control {name!r}: {v:g} is outside the range the model was trained on ({lo:g} to {hi:g}); "
            "the model extrapolates"), stacklevel=3)
    return v


def control_weights(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """[B] control values (NaN: unknown, the null row) -> [B, 3] weights (at lo, at hi, null)."""
    t = (values.double() - lo) / (hi - lo)
    unknown = torch.isnan(t)
    t = torch.nan_to_num(t).float()
    w = torch.stack([1 - t, t, torch.zeros_like(t)], 1)
    w[unknown] = torch.tensor([0.0, 0.0, 1.0])
    return w


def labels_to_condition(vocab: Vocab, indices: Mapping[str, torch.Tensor], controls: Controls | None = None,
                        values: Mapping[str, torch.Tensor] | None = None) -> Cond:
    """One-hot weights from integer label indices per factor (-1 = null), and each control's
    weights from its values (NaN, or a control without values: null)."""
    cond: Cond = {}
    for factor, labels in vocab.items():
        idx = indices[factor].long().clone()
        idx[idx < 0] = len(labels)
        cond[factor] = torch.nn.functional.one_hot(idx, len(labels) + 1).float()
    rows = next(iter(cond.values())).shape[0] if cond else None
    for name, (lo, hi) in (controls or {}).items():
        v = (values or {}).get(name)
        if v is None:
            v = torch.full((rows if rows is not None else 1,), float("nan"))
        cond[name] = control_weights(torch.as_tensor(v), lo, hi)
    return cond


def blend_conditions(a: Cond, b: Cond, t: float | torch.Tensor) -> Cond:
    """(1 - t) a + t b for every factor; t may be a [B] tensor for a per-frame sweep."""
    if isinstance(t, torch.Tensor):
        t = t.reshape(-1, 1)
    return {k: (1 - t) * a[k] + t * b[k] for k in a}


def is_cond(c: object) -> bool:
    """A Cond (weights per factor, tensors) rather than a spec to parse."""
    return isinstance(c, dict) and bool(c) and all(isinstance(v, torch.Tensor) for v in c.values())


def common_rows(*conds: Cond) -> int:
    """The batch that conditions of 1 or N rows broadcast to (the one rule for condition rows);
    a ConditionError when two of them have different numbers of rows, neither 1."""
    rows = {w.shape[0] for c in conds for w in c.values()} - {1}
    if len(rows) > 1:
        raise ConditionError(f"conditions of {' and '.join(map(str, sorted(rows)))} rows; use 1 or the same number")
    return rows.pop() if rows else 1


def repeat_condition(cond: Cond, batch: int) -> Cond:
    """Broadcast a batch-1 condition to `batch` rows (or check that batches already match)."""
    out: Cond = {}
    for k, w in cond.items():
        if w.shape[0] == batch:
            out[k] = w
        elif w.shape[0] == 1:
            out[k] = w.expand(batch, -1)
        else:
            raise ConditionError(f"condition {k!r} has batch {w.shape[0]}, expected 1 or {batch}")
    return out


def describe_condition(vocab: Vocab, cond: Cond, row: int = 0, controls: Controls | None = None) -> str:
    """Human-readable spec of one row, e.g. 'style=noto:0.5,openmoji:0.5;brightness=0.9', that
    make_condition reads back to the same weights."""
    parts = []
    for factor, labels in vocab.items():
        w = cond[factor][row]
        names = labels + ["null"]
        items = [f"{names[i]}:{float(w[i]):.3g}" for i in range(len(names)) if abs(float(w[i])) > 1e-6]
        parts.append(f"{factor}=" + ",".join(items))
    for name, (lo, hi) in (controls or {}).items():
        if name not in cond:
            continue
        a, b, null = (float(x) for x in cond[name][row])
        if abs(a + b) < 1e-6:
            parts.append(f"{name}=null")
            continue
        value = f"{lo + b / (a + b) * (hi - lo):.6g}"
        parts.append(f"{name}={value}" if abs(null) < 1e-6 else f"{name}={value}:{a + b:.3g},null:{null:.3g}")
    return ";".join(parts)


def subfolder_condition(model, rel_paths: Sequence[Path]) -> Cond:
    """One condition row per file: its first sub-folder name as the label of the model's first
    factor when it is one of that factor's labels; the null condition otherwise."""
    vocab = model.vocab
    if not vocab:
        return {}
    first = next(iter(vocab))
    labels = vocab[first]
    idx = {f: torch.full((len(rel_paths),), -1, dtype=torch.long) for f in vocab}
    for i, rel in enumerate(rel_paths):
        if len(rel.parts) > 1 and rel.parts[0] in labels:
            idx[first][i] = labels.index(rel.parts[0])
    return {k: v.to(model.device) for k, v in labels_to_condition(vocab, idx).items()}

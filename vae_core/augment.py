"""Augmentation: new training images drawn from a model, one folder per label, with a manifest.

`augment(model, OUT, per_label=N)` writes N prior samples (as `cvae sample` draws them) of each
label of the model's first factor, or of each given condition, to `OUT/<label>/`, which is a
training folder again (sub-folder names are labels), and lists every file in `OUT/manifest.csv`
with what made it: condition, seed, index, temperature, prior, refine passes and their step
(`10x0.3`), and the weights' digest.

Nothing is overwritten. A file is named by its seed and index (`s<seed>_<index>.png`), so another
seed writes beside what is there. A call that finds its files already written with the same
settings keeps them and writes only the missing ones (an interrupted run resumes; a larger N
adds to a smaller one); a file of that name made otherwise (another temperature, another model,
or not by augment) is refused, naming it. Image i of a label is the same image whatever N is and
however the run was interrupted: samples are drawn in fixed batches, each from its own seed.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import write_text
from .images import save_png
from .limits import check
from .model import REFINE_DEFAULT, REFINE_STEP, CVAE
from .prior import PRIOR_CHOICES

MANIFEST = "manifest.csv"
COLUMNS = ("path", "condition", "seed", "index", "temperature", "prior", "refine", "model")
PNG_KEY = "cvae-augment"  # the tEXt chunk holding the file's manifest row
BATCH = 32  # images drawn per seed: part of what makes image i the same in every call


class AugmentError(ValueError):
    pass


@dataclass
class Target:
    folder: str  # sub-folder of the output, a label's name made safe for a path
    condition: str  # canonical spec, as model.describe writes it


@dataclass
class AugmentResult:
    written: list[Path] = field(default_factory=list)
    kept: int = 0  # files already there with the same settings
    manifest: Path | None = None


def safe_name(label: str) -> str:
    """A label as one path component: no separators, no '..', nothing hidden."""
    return re.sub(r"[^\w.\-=,]+", "_", label).strip("._") or "label"


def targets(model: CVAE, conds: Sequence[str] | None = None, factor: str | None = None) -> list[Target]:
    """What to draw: each label of `factor` (default the model's first), or each condition given
    (its folder: the label, when the condition is one label of one factor; else the condition)."""
    if conds:
        out = [_target(model, model.condition(spec, 1)) for spec in conds]
    elif not model.vocab:
        out = [Target("unconditional", "")]
    else:
        factor = factor or next(iter(model.vocab))
        if factor not in model.vocab:
            raise AugmentError(f"factor {factor!r}: this model's factors are {', '.join(model.vocab)}")
        out = [_target(model, model.condition({factor: label}, 1)) for label in model.vocab[factor]]
    folders = [t.folder for t in out]
    if len(set(folders)) != len(folders):
        raise AugmentError(f"two conditions would share a folder ({', '.join(folders)}); give each condition once")
    return out


def _target(model: CVAE, cond: dict) -> Target:
    text = model.describe(cond)
    chosen = []
    for factor, labels in model.vocab.items():
        used = [j for j, w in enumerate(cond[factor][0].tolist()) if abs(w) > 1e-6]
        if used != [len(labels)]:  # not the null label alone
            chosen.append([labels[j] if j < len(labels) else "null" for j in used])
    chosen += [[c] for c in model.controls if float(cond[c][0, -1]) < 1 - 1e-6]  # a control set: its value names the folder
    folder = chosen[0][0] if len(chosen) == 1 and len(chosen[0]) == 1 and chosen[0][0] not in model.controls \
        else (text or "unconditional")
    return Target(safe_name(folder), text)


def batch_seed(seed: int, condition: str, batch: int) -> int:
    """The seed of one batch: from the user's seed, the condition's text and the batch's number."""
    words = [seed % 2**32, (seed % 2**64) >> 32, zlib.crc32(condition.encode()), batch]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] % 2**63)


def read_manifest(out_dir: Path) -> dict[str, dict[str, str]]:
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise AugmentError(f"{path}: not an augment manifest (columns {reader.fieldnames}, expected "
                                   f"{', '.join(COLUMNS)}); choose another output folder")
            return {row["path"]: row for row in reader}
    except (UnicodeDecodeError, csv.Error) as err:
        raise AugmentError(f"{path}: unreadable manifest ({err}); choose another output folder") from None


def _write_manifest(out_dir: Path, rows: dict[str, dict[str, str]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows[k] for k in sorted(rows))
    return write_text(out_dir / MANIFEST, buf.getvalue())


def _png_row(path: Path) -> dict[str, str] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get(PNG_KEY)
    except (OSError, UnidentifiedImageError):
        return None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def augment(
    model: CVAE,
    out_dir: str | Path,
    per_label: int,
    model_id: str,
    seed: int = 0,
    temperature: float = 1.0,
    conds: Sequence[str] | None = None,
    factor: str | None = None,
    prior: str = "learned",
    refine: int = REFINE_DEFAULT,
    callback: Callable[[int, int], None] | None = None,
) -> AugmentResult:
    """Write `per_label` samples of each target (see `targets`) below `out_dir`; model_id names
    the weights in the manifest (checkpoint.weights_digest)."""
    check("count", per_label)
    check("seed", seed)
    check("temperature", temperature)
    check("refine", refine)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AugmentError(f"{out_dir} is a file, not a folder")
    if prior not in PRIOR_CHOICES:
        raise AugmentError(f"prior must be one of {', '.join(PRIOR_CHOICES)}, got {prior!r}")
    if prior == "learned" and not model.has_learned_prior:
        prior = "normal"  # what the sampler draws from then; the manifest says what was drawn
    plan = targets(model, conds, factor)
    manifest = read_manifest(out_dir)
    result = AugmentResult(manifest=out_dir / MANIFEST)
    todo: list[tuple[Target, int, dict[str, str]]] = []
    adopted = False
    for t in plan:
        for i in range(per_label):
            rel = f"{t.folder}/s{seed}_{i:05d}.png"
            row = {"path": rel, "condition": t.condition, "seed": str(seed), "index": str(i), "temperature": f"{temperature:g}",
                   "prior": prior,
                   # with the step: files drawn with other passes (full steps before 0.3) differ
                   "refine": f"{refine}x{REFINE_STEP:g}", "model": model_id}
            old = manifest.get(rel)
            if old is None and (out_dir / rel).exists():
                old = _png_row(out_dir / rel)
                if old is None:
                    raise AugmentError(f"{out_dir / rel} exists and was not written by augment; it is left as it is: "
                                       "choose another --seed or output folder")
                manifest[rel] = old  # written before an interruption, its manifest row not yet
                adopted = True
            if old is not None:
                if {k: old.get(k) for k in COLUMNS} != row:
                    diff = ", ".join(f"{k} {old.get(k)} (asked {row[k]})" for k in COLUMNS if old.get(k) != row[k])
                    raise AugmentError(f"{out_dir / rel} was made with other settings ({diff}); it is not overwritten: "
                                       "choose another --seed or output folder")
                if (out_dir / rel).exists():
                    result.kept += 1
                    continue
            todo.append((t, i, row))  # new, or listed and since deleted: drawn again, the same image
    batches: dict[tuple[str, int], list[tuple[Target, int, dict[str, str]]]] = {}
    for item in todo:
        batches.setdefault((item[0].condition, item[1] // BATCH), []).append(item)
    done = 0
    for (condition, b), items in batches.items():
        images = model.sample(BATCH, model.condition(condition, 1), seed=batch_seed(seed, condition, b),
                              temperature=temperature, prior=prior, refine=refine).float().cpu()
        for _, i, row in items:
            path = out_dir / row["path"]
            save_png(path, images[i % BATCH], {PNG_KEY: json.dumps(row, sort_keys=True)})
            manifest[row["path"]] = row
            result.written.append(path)
        _write_manifest(out_dir, manifest)
        done += len(items)
        if callback is not None:
            callback(done, len(todo))
    if adopted and not todo:
        _write_manifest(out_dir, manifest)
    return result

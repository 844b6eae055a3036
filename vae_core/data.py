"""Training data: a folder of images labelled by sub-folder names or by a metadata.csv.

Every image is decoded once (in DataLoader workers), composited, resized and cached as uint8 at
the training resolution; unreadable files are skipped and reported, never a crash mid-run. The
validation split is a hash of each file's relative path, so it is stable when files are added.
"""
from __future__ import annotations

import csv
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ._cv2 import ERRORS as CV2_ERRORS
from .conditions import Cond, labels_to_condition
from .images import IMAGE_EXTENSIONS, ImageReadError, extensionless_files, list_images, load_image, parse_color

# Above this many bytes the decoded cache lives in a memory-mapped file in the run folder.
MEMORY_CACHE_LIMIT = 2 << 30


class DataError(ValueError):
    pass


@dataclass
class ImageSet:
    """Decoded images (uint8 [N, R, R, 3]), integer labels per factor (-1 = none), names, and the
    values of continuous controls (float [N], NaN = none) with their ranges."""

    images: np.ndarray
    labels: dict[str, np.ndarray]
    vocab: dict[str, list[str]]
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    control_ranges: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def condition(self, idx: np.ndarray, drop: Callable[[int], torch.Tensor] | None = None) -> Cond:
        """The condition of images `idx`: labels and control values. `drop(n)`, a [n] bool mask
        per factor and control, sets those entries to null (label dropout in training)."""
        labels, values = {}, {}
        for f, v in self.labels.items():
            labels[f] = torch.from_numpy(v[idx]).clone()
            if drop is not None:
                labels[f][drop(len(idx))] = -1
        for c, v in self.controls.items():
            values[c] = torch.from_numpy(v[idx]).clone()
            if drop is not None:
                values[c][drop(len(idx))] = float("nan")
        return labels_to_condition(self.vocab, labels, self.control_ranges, values)

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, validation indices), by a hash of each name."""
        if val_fraction <= 0 or len(self) < 2:
            return np.arange(len(self)), np.arange(0)
        h = np.array([zlib.crc32(os.fsencode(n)) % 10_000 for n in self.names])  # any file name, also not UTF-8
        val = h < val_fraction * 10_000
        if val.all() or not val.any():  # tiny sets: keep at least one image on each side
            val = np.zeros(len(self), bool)
            val[int(np.argmin(h))] = True
        return np.flatnonzero(~val), np.flatnonzero(val)


def data_root(root: str | Path) -> Path:
    """The data folder: `root`, or the folder of a metadata.csv given instead (the help offers both)."""
    root = Path(root)
    return root.parent if root.is_file() and root.name == "metadata.csv" else root


def scan_folder(root: str | Path, conditions: list[str] | None, controls: Sequence[str] = ()
                ) -> tuple[list[Path], dict[str, list[str | None]], dict[str, np.ndarray]]:
    """Files, their raw labels and their control values (NaN where the cell is empty). A
    metadata.csv wins over sub-folder names; controls need one."""
    root = data_root(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    meta = root / "metadata.csv"
    if controls and not meta.is_file():
        raise DataError(f"{root}: --control {controls[0]} needs a metadata.csv with a numeric column {controls[0]!r}")
    clash = set(controls) & set(conditions or [])
    if clash:
        raise DataError(f"{sorted(clash)[0]!r} is given as both a --condition and a --control")
    if meta.is_file():
        try:
            with open(meta, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except UnicodeDecodeError as err:
            raise DataError(f"{meta}: not UTF-8 text (byte {err.start}); save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
        except csv.Error as err:
            raise DataError(f"{meta}: not a readable CSV ({err})") from None
        if not rows or "path" not in rows[0]:
            raise DataError(f"{meta}: needs a 'path' column and one column per condition factor")
        factors = conditions or []
        missing = [c for c in factors if c not in rows[0]]
        if missing:
            raise DataError(f"{meta}: no column {missing[0]!r} for --condition; columns: {', '.join(rows[0])}")
        missing = [c for c in controls if c not in rows[0]]
        if missing:
            raise DataError(f"{meta}: no column {missing[0]!r} for --control; columns: {', '.join(rows[0])}")
        images = [(line, r) for line, r in enumerate(rows, 2) if Path(r["path"]).suffix.lower() in IMAGE_EXTENSIONS]
        files = [root / r["path"] for _, r in images]
        labels = {c: [r[c] or None for _, r in images] for c in factors}
        return files, labels, {c: _control_column(meta, c, images) for c in controls}
    files = list_images(root)
    if conditions is None:
        has_subfolders = any(len(p.relative_to(root).parts) > 1 for p in files)
        conditions = ["label"] if has_subfolders else []
    if len(conditions) > 1:
        raise DataError(f"{root}: sub-folder names give one factor; for {conditions} use a metadata.csv")
    labels = {
        c: [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in files]
        for c in conditions
    }
    return files, labels, {}


def _control_column(meta: Path, name: str, rows: list[tuple[int, dict[str, str]]]) -> np.ndarray:
    """A numeric column as floats (an empty cell: NaN, unknown); anything else is refused by line."""
    out = np.full(len(rows), np.nan)
    for i, (line, row) in enumerate(rows):
        cell = (row[name] or "").strip()
        if not cell:
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            raise DataError(f"{meta}, line {line}: {name} = {cell!r} is not a number (--control {name} "
                            "needs numbers; leave the cell empty where it is unknown)") from None
        if not math.isfinite(out[i]):
            raise DataError(f"{meta}, line {line}: {name} = {cell!r} is not a finite number")
    return out


class _DecodeDataset(Dataset):
    def __init__(self, files: list[Path], size: int, background: str):
        self.files, self.size, self.background = files, size, background

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return i, load_image(self.files[i], self.size, self.background), ""
        except (ImageReadError, *CV2_ERRORS) as err:
            return i, np.zeros((self.size, self.size, 3), np.uint8), str(err)


def load_image_set(
    root: str | Path,
    resolution: int,
    conditions: list[str] | None = None,
    background: str = "white",
    workers: int = 2,
    cache_dir: str | Path | None = None,
    vocab: dict[str, list[str]] | None = None,
    progress: bool = True,
    controls: Sequence[str] = (),
    control_ranges: dict[str, list[float]] | None = None,
) -> ImageSet:
    """Decode a folder into an ImageSet. `vocab` and `control_ranges` fix the label order and the
    controls' ranges (when resuming); otherwise each control's range is its column's min and max."""
    parse_color(background)  # a bad colour is the user's one mistake, not one per image in a worker
    root = data_root(root)
    files, raw, values = scan_folder(root, conditions, controls)
    if not files:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively)")
    if vocab is None:
        vocab = {f: sorted({v for v in vals if v is not None}) for f, vals in raw.items()}
    for f, labels in vocab.items():
        if not labels:
            raise DataError(f"{root}: condition {f!r} has no labels (no sub-folders or empty column)")
    n, r = len(files), resolution
    if cache_dir is not None and n * r * r * 3 > MEMORY_CACHE_LIMIT:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        images = np.lib.format.open_memmap(Path(cache_dir) / f"cache_{r}.npy", mode="w+", dtype=np.uint8, shape=(n, r, r, 3))
    else:
        images = np.empty((n, r, r, 3), np.uint8)
    ok = np.ones(n, bool)
    skipped: list[tuple[str, str]] = []
    loader = DataLoader(
        _DecodeDataset(files, r, background), batch_size=None, num_workers=workers,
        persistent_workers=False, prefetch_factor=16 if workers else None,
    )
    for i, img, err in tqdm(loader, total=n, desc=f"decoding {root.name}", disable=not progress, unit="img"):
        if err:
            ok[i] = False
            skipped.append((str(files[i]), err))
        else:
            images[i] = img
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in files]
    keep = np.flatnonzero(ok)
    labels = {}
    for f, vals in raw.items():
        idx = np.array([vocab[f].index(v) if v in vocab[f] else -1 for v in vals], np.int64)
        labels[f] = idx[keep]
    if not len(keep):
        raise DataError(f"{root}: none of the {n} images could be read; first error: {skipped[0][1]}")
    values = {c: v[keep] for c, v in values.items()}
    if control_ranges is None:
        control_ranges = {}
        for c, v in values.items():
            known = v[~np.isnan(v)]
            if len(known) < 2 or known.min() == known.max():
                raise DataError(f"{root / 'metadata.csv'}: control {c!r} needs at least two different numbers "
                                f"(found {', '.join(sorted({f'{x:g}' for x in known})) or 'none'})")
            control_ranges[c] = [float(known.min()), float(known.max())]
    if not (root / "metadata.csv").is_file():  # the folder is the list: its extension-less files are named too
        skipped += extensionless_files(root)
    if len(keep) < n:
        # Compact in place (keep is increasing, so j <= i): `images[keep]` would copy a
        # memory-mapped cache into RAM, which is what the memmap is there to avoid.
        for j, i in enumerate(keep):
            if j != i:
                images[j] = images[i]
        images = images[: len(keep)]
    return ImageSet(images, labels, vocab, [names[i] for i in keep], skipped, values,
                    {c: list(control_ranges[c]) for c in values})


def image_set_from_arrays(images: np.ndarray, labels: dict[str, list[str]] | None = None) -> ImageSet:
    """An ImageSet from decoded uint8 [N,R,R,3] images and per-factor label strings."""
    labels = labels or {}
    vocab = {f: sorted(set(v)) for f, v in labels.items()}
    idx = {f: np.array([vocab[f].index(x) for x in v], np.int64) for f, v in labels.items()}
    for f, v in idx.items():
        if len(v) != len(images):
            raise DataError(f"condition {f!r}: {len(v)} labels for {len(images)} images")
    return ImageSet(np.ascontiguousarray(images), idx, vocab, [f"image_{i:05d}" for i in range(len(images))])


def batch_indices(train_idx: np.ndarray, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The batch for `step`: a function of (seed, step) only, so a resumed run sees the same data."""
    n = len(train_idx)
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()
    if n < batch_size:
        perm = np.resize(perm, batch_size)
        return train_idx[perm]
    return train_idx[perm[k * batch_size : (k + 1) * batch_size]]

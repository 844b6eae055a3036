"""Restyle a folder: encode each image with its source condition, decode it with a target one.

Streams in batches (memory does not depend on the folder size), keeps relative paths and file
names, writes every file atomically (a kill never leaves half a file), skips outputs that already
exist so a re-run finishes an interrupted folder, and never writes over its inputs.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from ._cv2 import ERRORS as CV2_ERRORS
from .conditions import Cond, CondSpec, subfolder_condition
from .files import atomic_write
from .images import ImageReadError, extensionless_files, list_images, parse_color, read_image, resize, resize_center_crop, to_tensor, to_uint8
from .limits import check
from .model import REFINE_DEFAULT, reparameterize
from .prior import TRANSPORT_CHOICES

JPEG_QUALITY = 95


@dataclass
class RestyleReport:
    written: list[str] = field(default_factory=list)  # output files written by this run
    existing: list[str] = field(default_factory=list)  # outputs already there, left as they were
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input file, why)


def restyle_latents(model, z: torch.Tensor, source: Cond | None, target: Cond | None, transport: str = "prior",
                    refine: int = REFINE_DEFAULT) -> torch.Tensor:
    """Latents encoded under `source`, ready to decode under `target`.

    transport (TRANSPORT_CHOICES): "prior" carries them by the optimal-transport map between the
    two conditions' parts of the learned prior; "none" keeps them. refine: passes that decode
    under the target and encode the drawing again under the target: each pulls it onto what the
    model draws in that style (the autoencoder's own fixed points), which moves it closer to the
    real drawing in the target style and makes it sharper, not blurrier (measured in `cvae bench
    samples`)."""
    _check_transport(transport)
    if transport == "prior" and model.prior is not None:
        z = model.prior.transport(z, source, target)
    return model.refine(z, target, refine)


def _check_transport(transport: str) -> None:
    if transport not in TRANSPORT_CHOICES:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORT_CHOICES)}, got {transport!r}")


def check_folders(src: Path, dst: Path) -> None:
    """Refuse an output folder that is, holds or sits inside the input folder: restyle never
    reads its own outputs as inputs and never writes over an input."""
    if not src.is_dir():
        raise FileNotFoundError(f"input folder {src} does not exist")
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"output {dst} exists and is not a folder")
    s, d = src.resolve(), dst.resolve()
    if s == d:
        raise ValueError(
            f"input and output are the same folder ({src}); restyle never overwrites its inputs: "
            "choose another output folder"
        )
    if d.is_relative_to(s):
        raise ValueError(f"output folder {dst} is inside the input folder {src}: its files would be read as inputs "
                         "or written over them; choose an output folder outside the input folder")
    if s.is_relative_to(d):
        raise ValueError(f"input folder {src} is inside the output folder {dst}: outputs would be written over inputs; "
                         "choose an output folder outside the input folder")


def _encode_file(path: Path, image: np.ndarray) -> bytes:
    """The file's bytes in the format its extension names (JPEG at quality 95, WebP lossless)."""
    import io

    from PIL import Image

    ext = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF", ".gif": "GIF"}
    if ext not in formats:
        raise ValueError(f"{path}: cannot write {ext or 'extension-less'} files")
    options = {".jpg": {"quality": JPEG_QUALITY}, ".jpeg": {"quality": JPEG_QUALITY}, ".webp": {"lossless": True},
               ".png": {"compress_level": 4}}.get(ext, {})
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=formats[ext], **options)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def restyle_folder(
    model,
    src: str | Path,
    dst: str | Path,
    target: CondSpec | Cond,
    source: CondSpec | Cond | None = None,
    batch_size: int = 32,
    sample: bool = False,
    size: str = "model",
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    background: str = "white",
    seed: int = 0,
    transport: str = TRANSPORT_CHOICES[0],
    refine: int = REFINE_DEFAULT,
) -> RestyleReport:
    """Restyle every image under `src` (recursively) into `dst`, same relative paths and names.

    target / source: condition specs ("style=openmoji", "style=noto:0.7,openmoji:0.3", a dict) or
    single-row Conds.
    source=None: each image's first sub-folder name when it is a label of the model's first
    factor, else the null condition. sample: encode with z ~ q(z|x) (seeded per file) instead of
    the mean. size: "model" writes the model's resolution; "source" writes the source's size
    (its centre square, like the model saw it). callback(done, total) may raise to cancel; a
    re-run then skips the outputs already written (unless overwrite). transport, refine: how the
    latent moves from the source condition to the target one (restyle_latents).

    Under torchrun each process restyles its share of the files (distributed.shard), so every
    output is written once, and every process returns the report of all of them.
    """
    src, dst = Path(src), Path(dst)
    check_folders(src, dst)
    if size not in ("model", "source"):
        raise ValueError(f"size must be 'model' or 'source', got {size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_transport(transport)
    check("refine", refine)
    parse_color(background)
    target_cond = model.condition(target, 1)  # bad specs fail before any work
    source_cond = None if source is None else model.condition(source, 1)
    files = list_images(src)
    inputs = {p.resolve() for p in files}
    for p in files:
        out = (dst / p.relative_to(src)).resolve()
        if out in inputs:
            raise ValueError(
                f"output {out} would overwrite the input {p}: output folder {dst} overlaps input folder {src}; "
                "choose an output folder outside the input folder"
            )
    w, owned = distributed.init(model.device)
    report = RestyleReport(failed=extensionless_files(src) if w.main else [])
    todo: list[Path] = []
    for p in distributed.shard(files, w):  # before looking for outputs, which the other processes write
        out = dst / p.relative_to(src)
        if out.exists() and not overwrite:
            report.existing.append(str(out))
        else:
            todo.append(p)
    total, done = len(todo), 0
    r = model.resolution
    bar = tqdm(total=total, desc=f"restyle {src.name}", unit="img", disable=not progress)
    try:
        for start in range(0, total, batch_size):
            batch = todo[start:start + batch_size]
            arrays, keep, sizes = [], [], []
            for p in batch:
                try:
                    img = read_image(p, background)
                except (ImageReadError, *CV2_ERRORS) as err:
                    report.failed.append((str(p), str(err)))
                    continue
                sizes.append(min(img.shape[:2]))
                arrays.append(resize_center_crop(img, r))
                keep.append(p)
            if keep:
                rels = [p.relative_to(src) for p in keep]
                outs = _restyle_batch(model, np.stack(arrays), rels, source_cond, target_cond, sample, seed, transport, refine)
                for p, rel, out, side in zip(keep, rels, outs, sizes):
                    if size == "source" and side != r:
                        out = resize(out, side, side)
                    dest = dst / rel
                    try:
                        data = _encode_file(dest, out)
                    except ValueError as err:
                        report.failed.append((str(p), str(err)))
                        continue
                    # A write that fails (read-only, disk full) stops the run: the next file would
                    # fail the same way. What is written is whole, and a re-run continues from it.
                    _write(dest, data)
                    report.written.append(str(dest))
            done += len(batch)
            bar.update(len(batch))
            if callback is not None:
                callback(done, total)
    finally:
        bar.close()
    parts = distributed.gather(report)
    distributed.finish(owned)
    return RestyleReport(*([x for part in parts for x in getattr(part, f)] for f in ("written", "existing", "failed")))


def _file_generator(seed: int, rel: Path) -> torch.Generator:
    """A CPU generator for one file from the run's seed (any int) and its relative path."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(os.fsencode(rel.as_posix()))) % 2**63)


@torch.inference_mode()
def _restyle_batch(
    model, images: np.ndarray, rels: list[Path], source: Cond | None, target: Cond, sample: bool, seed: int,
    transport: str, refine: int,
) -> np.ndarray:
    x = to_tensor(images).to(model.device)
    src_cond = source if source is not None else subfolder_condition(model, rels)
    mu, logvar = model.encode(x, src_cond)
    z = mu
    if sample:
        # Noise seeded by each file's relative path: the same file gets the same result whatever
        # batch it lands in, so a re-run matches an uninterrupted run.
        eps = torch.stack([torch.randn(mu.shape[1], generator=_file_generator(seed, rel)) for rel in rels]).to(mu)
        z = reparameterize(mu, logvar, eps)
    return to_uint8(model.decode(restyle_latents(model, z, src_cond, target, transport, refine), target))
